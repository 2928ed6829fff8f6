// Quarry app page: fetch the stored result, run the app when none is stored, render.
// Vanilla JavaScript; charts by vega-embed (vendored under /static/vendor).
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("quarry-app").textContent);
  var els = {
    title: document.getElementById("app-title"),
    description: document.getElementById("app-description"),
    controls: document.getElementById("controls"),
    status: document.getElementById("status"),
    progress: document.getElementById("progress"),
    error: document.getElementById("error"),
    blocks: document.getElementById("blocks"),
    refresh: document.getElementById("refresh"),
  };
  // Control values as the user chose them (query text); the server resolves defaults.
  var chosen = {};
  var current = null; // the "run needed" details or the last document: revision + controls
  var busy = false;
  var generation = 0;

  new URLSearchParams(window.location.search).forEach(function (value, key) {
    if (key !== "workspace") chosen[key] = value;
  });

  // -- small helpers ------------------------------------------------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "className") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(c); });
    return node;
  }

  function setState(state, text) {
    document.body.setAttribute("data-state", state);
    els.status.textContent = text;
    els.status.className = "status status-" + state;
  }

  function showError(message) {
    els.error.textContent = message;
    els.error.hidden = false;
    setState("error", "Failed");
  }

  function clearError() {
    els.error.hidden = true;
    els.error.textContent = "";
  }

  function query(params) {
    var q = new URLSearchParams();
    Object.keys(params).forEach(function (k) {
      var v = params[k];
      if (v !== null && v !== undefined) q.set(k, String(v));
    });
    var s = q.toString();
    return s ? "?" + s : "";
  }

  function errorText(body, fallback) {
    if (body && body.message) return body.message;
    return fallback;
  }

  // -- data and runs ------------------------------------------------------------------
  function load(afterRun) {
    var mine = ++generation;
    clearError();
    setState("loading", afterRun ? "Loading the new result…" : "Loading…");
    return fetch(config.dataUrl + query(chosen), { headers: { Accept: "application/json" } })
      .then(function (resp) {
        return resp.json().then(function (body) { return { resp: resp, body: body }; },
          function () { return { resp: resp, body: null }; });
      })
      .then(function (got) {
        if (mine !== generation) return;
        if (got.resp.ok) {
          render(got.body);
          return;
        }
        var details = (got.body && got.body.details) || {};
        if (got.resp.status === 404 && details.run_needed === true) {
          current = details;
          if (afterRun) {
            showError("The run finished but stored no result for these controls.");
            return;
          }
          startRun(details);
          return;
        }
        showError(errorText(got.body, "Loading the app failed (HTTP " + got.resp.status + ")."));
      })
      .catch(function (err) {
        if (mine === generation) showError("Loading the app failed: " + err);
      });
  }

  function startRun(target) {
    if (busy) return;
    busy = true;
    els.refresh.disabled = true;
    els.progress.textContent = "";
    els.progress.hidden = false;
    setState("running", "Starting a run…");
    var body = {
      kind: "app",
      name: config.app,
      variables: target.controls || {},
      revision: target.revision_id || undefined,
    };
    fetch(config.runsUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    })
      .then(function (resp) {
        return resp.json().then(function (json) {
          if (!resp.ok) throw new Error(errorText(json, "HTTP " + resp.status));
          return json;
        });
      })
      .then(function (run) {
        setState("running", "Running (run " + run.id.slice(0, 8) + ")…");
        return follow(run.id).then(function () { return finish(run.id); });
      })
      .catch(function (err) {
        showError("The app run failed: " + (err && err.message ? err.message : err));
      })
      .then(function () {
        busy = false;
        els.refresh.disabled = false;
      });
  }

  function progressLine(event) {
    var parts = [event.type || "event"];
    var what = event.step || event.step_key || event.name || event.task;
    if (what) parts.push(String(what));
    if (event.rows !== undefined && event.rows !== null) parts.push(event.rows + " rows");
    if (event.error) parts.push("— " + (event.error.message || JSON.stringify(event.error)));
    var li = el("li", { text: parts.join(" "), className: event.error ? "bad" : "" });
    els.progress.appendChild(li);
    els.status.textContent = "Running: " + parts.slice(0, 2).join(" ");
  }

  // Server-sent events read with fetch: event names vary, so parse the stream here.
  function follow(runId) {
    return fetch(config.runUrl + encodeURIComponent(runId) + "/events", {
      headers: { Accept: "text/event-stream" },
    }).then(function (resp) {
      if (!resp.ok || !resp.body) return poll(runId);
      var reader = resp.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) return;
          buffer += decoder.decode(chunk.value, { stream: true });
          var cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            var frame = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            var name = "message";
            var data = "";
            frame.split("\n").forEach(function (line) {
              if (line.indexOf("event:") === 0) name = line.slice(6).trim();
              else if (line.indexOf("data:") === 0) data += line.slice(5).trim();
            });
            if (name === "end") { reader.cancel(); return; }
            try { progressLine(JSON.parse(data || "{}")); } catch (e) { progressLine({ type: name }); }
          }
          return pump();
        });
      }
      return pump();
    }, function () { return poll(runId); });
  }

  function poll(runId) {
    return new Promise(function (resolve) {
      function tick() {
        fetch(config.runUrl + encodeURIComponent(runId)).then(function (r) { return r.json(); })
          .then(function (run) {
            if (run.finished_at) resolve(); else setTimeout(tick, 1000);
          }, function () { setTimeout(tick, 2000); });
      }
      tick();
    });
  }

  function finish(runId) {
    return fetch(config.runUrl + encodeURIComponent(runId)).then(function (r) { return r.json(); })
      .then(function (run) {
        if (run.state !== "succeeded") {
          throw new Error(run.error || "the run ended " + run.state);
        }
        els.progress.hidden = true;
        return load(true);
      });
  }

  // -- controls ----------------------------------------------------------------------
  function renderControls(controls) {
    els.controls.textContent = "";
    controls.forEach(function (c) {
      var id = "control-" + c.name;
      var input;
      if (c.type === "toggle") {
        input = el("input", { type: "checkbox", id: id });
        input.checked = c.value === true;
        input.addEventListener("change", function () { change(c.name, input.checked ? "true" : "false"); });
      } else if (c.type === "date") {
        input = el("input", { type: "date", id: id });
        input.value = c.value || "";
        input.addEventListener("change", function () { change(c.name, input.value || null); });
      } else {
        input = el("select", { id: id });
        (c.options || []).forEach(function (o) {
          var opt = el("option", { value: String(o), text: String(o) });
          if (String(o) === String(c.value)) opt.selected = true;
          input.appendChild(opt);
        });
        input.addEventListener("change", function () { change(c.name, input.value); });
      }
      els.controls.appendChild(el("label", { for: id, className: "control" }, [
        el("span", { text: c.label || c.name }), input,
      ]));
    });
  }

  function change(name, value) {
    if (value === null) delete chosen[name]; else chosen[name] = value;
    var url = window.location.pathname + query(Object.assign({}, urlExtras(), chosen));
    window.history.replaceState(null, "", url);
    load(false);
  }

  function urlExtras() {
    var ws = new URLSearchParams(window.location.search).get("workspace");
    return ws ? { workspace: ws } : {};
  }

  // -- blocks ------------------------------------------------------------------------
  var currency = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
  var grouped = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });

  function formatCell(value, column) {
    if (value === null || value === undefined) return "";
    if (typeof value === "number") {
      if (column.format === "currency") return currency.format(value);
      if (column.format === "percent") return grouped.format(value) + "%";
      if (column.format === "number") return grouped.format(value);
      return Number.isInteger(value) ? String(value) : value.toFixed(2);
    }
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function renderTable(block) {
    var head = el("tr", {}, block.columns.map(function (c) {
      return el("th", { text: c.name, className: c.kind === "number" ? "num" : "" });
    }));
    var body = block.rows.map(function (row) {
      return el("tr", {}, row.map(function (v, i) {
        var col = block.columns[i];
        return el("td", { text: formatCell(v, col), className: col.kind === "number" ? "num" : "" });
      }));
    });
    var table = el("table", { className: "data" }, [el("thead", {}, [head]), el("tbody", {}, body)]);
    var wrap = el("div", { className: "table-wrap" }, [table]);
    if (block.truncated) {
      wrap.appendChild(el("p", { className: "note",
        text: "Showing the first " + block.rows.length + " of " + block.row_count + " rows." }));
    }
    return wrap;
  }

  function renderChart(block) {
    var target = el("div", { className: "chart" });
    window.vegaEmbed(target, block.spec, { renderer: "svg", actions: false })
      .catch(function (err) {
        target.appendChild(el("p", { className: "error", text: "Chart failed: " + err }));
      });
    return target;
  }

  function renderBlock(block) {
    var box = el("section", { className: "block block-" + block.type });
    if (block.type === "row") {
      box.style.gridTemplateColumns = "repeat(" + block.columns + ", minmax(0, 1fr))";
      block.children.forEach(function (child) { box.appendChild(renderBlock(child)); });
      return box;
    }
    if (block.type === "markdown") {
      box.innerHTML = window.QuarryMarkdown.render(block.content);
      return box;
    }
    if (block.title) box.appendChild(el("h2", { text: block.title }));
    if (block.error) {
      box.appendChild(el("p", { className: "error", text: block.error }));
    } else if (block.type === "table") {
      box.appendChild(renderTable(block));
    } else {
      box.appendChild(renderChart(block));
    }
    return box;
  }

  function render(doc) {
    current = { revision_id: doc.revision_id, controls: {} };
    doc.controls.forEach(function (c) { current.controls[c.name] = c.value; });
    els.title.textContent = doc.title;
    document.title = doc.title + " · Quarry";
    els.description.textContent = doc.description || "";
    renderControls(doc.controls);
    els.blocks.textContent = "";
    doc.display.forEach(function (block) { els.blocks.appendChild(renderBlock(block)); });
    setState("ready", "Revision " + String(doc.revision_id).slice(0, 12));
  }

  els.refresh.addEventListener("click", function () {
    if (current) startRun(current); else load(false);
  });
  load(false);
})();
