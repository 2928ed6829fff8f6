// Quarry app page (an ES module): fetch the stored result for the chosen control
// values, run the app when none is stored, follow the run, render. Charts by
// vega-embed (vendored under /static/vendor). No inline script: CSP-friendly.
import { el, chosenFromUrl, queryText, renderControls, writeUrl } from "./controls.js";
import { renderBlock } from "./blocks.js";

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
var chosen = chosenFromUrl();
var current = null; // the "run needed" details or the last document: revision + controls
var busy = false;
var pending = false; // values changed while a run was in flight: look again after it
var lastRun = null; // the control values of the last run this page started (JSON)
var generation = 0;
var changed = null; // the control just changed: only the blocks that read it are stale

// Whether a block shows data that the change of ``changed`` recomputes (every block
// when no single control changed, or when what it reads is not known).
function stale(block) {
  if (changed === null) return true;
  var task = block.getAttribute("data-task");
  var needs = task && config.dependsOn ? config.dependsOn[task] : null;
  return !Array.isArray(needs) || needs.indexOf(changed) >= 0;
}

// Every state-changing request carries the page's CSRF token (quarry.web.session).
function csrfToken() {
  var meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute("content") : "";
}

function setState(state, text) {
  document.body.setAttribute("data-state", state);
  // Blocks on screen are stale while new data loads: say so on each of them.
  var busy = state === "loading" || state === "running";
  els.blocks.querySelectorAll(".block").forEach(function (b) {
    if (busy && stale(b)) b.setAttribute("aria-busy", "true"); else b.removeAttribute("aria-busy");
  });
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

function errorText(body, fallback) {
  if (body && body.message) return body.message;
  return fallback;
}

// -- data and runs --------------------------------------------------------------------
function load(afterRun) {
  var mine = ++generation;
  clearError();
  setState("loading", afterRun ? "Loading the new result…" : "Loading…");
  return fetch(config.dataUrl + queryText(chosen), { headers: { Accept: "application/json" } })
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
        if (afterRun && JSON.stringify(details.controls) === lastRun) {
          showError("The run finished but stored no result for these controls.");
          return;
        }
        if (busy) { pending = true; return; }
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
  lastRun = JSON.stringify(target.controls || {});
  els.refresh.disabled = true;
  els.progress.textContent = "";
  els.progress.hidden = false;
  setState("running", "Starting a run…");
  var body = {
    kind: "app",
    name: config.app,
    controls: target.controls || {},
    revision: target.revision_id || undefined,
  };
  fetch(config.runsUrl, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      Accept: "application/json",
      "X-CSRF-Token": csrfToken(),
    },
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
      if (pending) { pending = false; load(false); }
    });
}

function progressLine(event) {
  var parts = [event.type || "event"];
  var what = event.step || event.step_key || event.name || event.task;
  if (what) parts.push(String(what));
  if (event.rows !== undefined && event.rows !== null) parts.push(event.rows + " rows");
  if (event.error) parts.push("— " + (event.error.message || JSON.stringify(event.error)));
  if (event.message && !event.error) parts.push("— " + event.message);
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

// -- controls and rendering -------------------------------------------------------------
function change(name, value) {
  changed = name;
  if (value === null) delete chosen[name]; else chosen[name] = value;
  writeUrl(chosen);
  load(false);
}

function render(doc) {
  current = { revision_id: doc.revision_id, controls: {} };
  doc.controls.forEach(function (c) { current.controls[c.name] = c.value; });
  els.title.textContent = doc.title;
  document.title = doc.title + " · Quarry";
  els.description.textContent = doc.description || "";
  renderControls(els.controls, doc.controls, change);
  els.blocks.textContent = "";
  doc.display.forEach(function (block) { els.blocks.appendChild(renderBlock(block)); });
  setState("ready", "Revision " + String(doc.revision_id).slice(0, 12));
}

els.controls.addEventListener("submit", function (event) { event.preventDefault(); });
els.refresh.addEventListener("click", function () {
  changed = null;
  if (current) startRun(current); else load(false);
});
// Back/forward between shared views: the URL is the state.
window.addEventListener("popstate", function () {
  changed = null;
  chosen = chosenFromUrl();
  load(false);
});
load(false);
