// The chat page: threads of an agent, a question posted, its answer followed over
// server-sent events (EventSource: the session cookie goes along), tool calls with
// their SQL and results, tables and charts inline, cancel and retry.
// Text only: every value from the server or the model goes in with textContent; the
// final answer is Markdown through markdown.js, which escapes every character first.
import { el } from "./controls.js";
import { render as renderMarkdown } from "./markdown.js";

var config = JSON.parse(document.getElementById("quarry-chat").textContent);
var $ = function (id) { return document.getElementById(id); };
var FINAL = ["answered", "max_iterations", "failed", "cancelled"];
var RETRYABLE = ["max_iterations", "failed", "cancelled"];

var state = { workspace: "", agent: "", thread: null, reply: null, source: null, cursor: null };

function csrf() {
  var meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute("content") : "";
}

function seg(path) { return path.split("/").map(encodeURIComponent).join("/"); }
function base() { return "/api/v1/workspaces/" + encodeURIComponent(state.workspace); }
function threadUrl(id) { return base() + "/threads/" + encodeURIComponent(id); }

function api(method, url, body) {
  var init = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (method !== "GET") {
    init.headers["X-CSRF-Token"] = csrf();
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
  }
  return fetch(url, init).then(function (r) {
    return r.json().catch(function () { return {}; }).then(function (j) {
      if (!r.ok) throw new Error(j.message || j.detail || ("HTTP " + r.status));
      return j;
    });
  });
}

function showError(message) {
  var box = $("chat-error");
  box.textContent = message || "";
  box.hidden = !message;
}

function status(text) { $("chat-status").textContent = text; }

// -- the address: ?workspace=&agent=&thread= ------------------------------------------
function writeUrl() {
  var q = new URLSearchParams();
  q.set("workspace", state.workspace);
  q.set("agent", state.agent);
  if (state.thread) q.set("thread", state.thread.id);
  var url = "/chat?" + q.toString();
  if (url !== window.location.pathname + window.location.search) history.pushState(null, "", url);
}

// -- tables and charts -----------------------------------------------------------------
// The execute_sql result the model read: CSV, then a "[N rows]" or truncation note.
export function parseCsv(text) {
  var rows = [], row = [], cell = "", quoted = false;
  for (var i = 0; i < text.length; i++) {
    var ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { cell += '"'; i++; }
      else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"' && cell === "") quoted = true;
    else if (ch === ",") { row.push(cell); cell = ""; }
    else if (ch === "\n") { row.push(cell); rows.push(row); row = []; cell = ""; }
    else if (ch !== "\r") cell += ch;
  }
  if (cell !== "" || row.length) { row.push(cell); rows.push(row); }
  return rows;
}

function resultTable(tool) {
  var lines = parseCsv(String(tool.content || ""));
  var note = null;
  var last = lines.length ? lines[lines.length - 1].join(",") : "";
  if (/^\[.*\]$/.test(last)) { note = last.slice(1, -1); lines.pop(); }
  if (lines.length < 1) return null;
  var header = lines[0];
  var body = lines.slice(1).map(function (cells) {
    return el("tr", {}, cells.map(function (c) { return el("td", { text: c }); }));
  });
  var table = el("table", { className: "data" }, [
    el("thead", {}, [el("tr", {}, header.map(function (h) { return el("th", { scope: "col", text: h }); }))]),
    el("tbody", {}, body),
  ]);
  var wrap = el("div", { className: "table-wrap", tabindex: "0", role: "region",
    "aria-label": "Result of " + tool.name }, [table]);
  if (note) wrap.appendChild(el("p", { className: "small muted", text: note }));
  return wrap;
}

// The visualize tool's chart (Oxy's: title, xAxis, yAxis, series of line/bar/pie) as
// a Vega-Lite spec.
export function vegaLite(chart) {
  var series = chart.series || [];
  var spec = { $schema: "https://vega.github.io/schema/vega-lite/v5.json", width: 480, height: 240 };
  if (chart.title) spec.title = String(chart.title);
  if (series.length && series[0].type === "pie") {
    spec.data = { values: (series[0].data || []).map(function (d) {
      return { category: String(d && d.name), value: Number(d && d.value) };
    }) };
    spec.mark = { type: "arc", tooltip: true };
    spec.encoding = { theta: { field: "value", type: "quantitative" },
      color: { field: "category", type: "nominal" } };
    return spec;
  }
  var x = chart.xAxis || {}, y = chart.yAxis || {};
  var categories = x.data || [];
  var values = [];
  series.forEach(function (s, n) {
    (s.data || []).forEach(function (v, i) {
      var point = Array.isArray(v) ? { x: v[0], y: v[1] }
        : { x: i < categories.length ? categories[i] : i, y: v && typeof v === "object" ? v.value : v };
      point.series = s.name || ("series " + (n + 1));
      point.mark = s.type;
      values.push(point);
    });
  });
  var xType = x.type === "time" ? "temporal" : x.type === "value" || x.type === "log" ? "quantitative" : "ordinal";
  var encoding = {
    x: { field: "x", type: xType, title: x.name || null, sort: null },
    y: { field: "y", type: "quantitative", title: y.name || null },
  };
  if (series.length > 1) encoding.color = { field: "series", type: "nominal" };
  spec.data = { values: values };
  spec.layer = ["bar", "line"].filter(function (m) {
    return series.some(function (s) { return s.type === m; });
  }).map(function (m) {
    return { transform: [{ filter: { field: "mark", equal: m } }],
      mark: { type: m, tooltip: true, point: m === "line" }, encoding: encoding };
  });
  return spec;
}

var vegaLoaded = null;
function loadVega() {
  if (vegaLoaded) return vegaLoaded;
  vegaLoaded = config.vega.reduce(function (done, src) {
    return done.then(function () {
      return new Promise(function (resolve, reject) {
        var script = el("script", { src: src });
        script.onload = resolve;
        script.onerror = function () { reject(new Error("could not load " + src)); };
        document.head.appendChild(script);
      });
    });
  }, Promise.resolve());
  return vegaLoaded;
}

function chartBox(chart) {
  var target = el("div", { className: "chart", role: "img",
    "aria-label": "Chart" + (chart.title ? ": " + chart.title : "") });
  loadVega().then(function () {
    var options = { renderer: "svg", actions: false, ast: true, expr: window.vega.expressionInterpreter };
    return window.vegaEmbed(target, vegaLite(chart), options);
  }).catch(function (err) {
    target.appendChild(el("p", { className: "error", text: "Chart failed: " + err }));
  });
  return target;
}

// -- messages ----------------------------------------------------------------------------
function messageBox(role) {
  var box = el("article", { className: "msg msg-" + role });
  var who = el("p", { className: "who-said", text: role === "user" ? "You" : "Agent" });
  box.appendChild(who);
  return box;
}

function addQuestion(message) {
  var box = messageBox("user");
  box.appendChild(el("p", { className: "text", text: message.content }));
  $("chat-log").appendChild(box);
}

function setStatus(view, value) {
  view.status = value;
  view.badge.textContent = value;
  view.badge.className = "reply-status " + (value === "answered" ? "ok" : RETRYABLE.indexOf(value) >= 0 ? "bad" : "");
  view.box.setAttribute("data-status", value);
}

function addReply(message) {
  var box = messageBox("assistant");
  var badge = el("span", { className: "reply-status" });
  box.firstChild.appendChild(badge);
  var tools = el("div", { className: "tools" });
  var text = el("div", { className: "text" });
  var error = el("p", { className: "error", hidden: "" });
  box.appendChild(tools);
  box.appendChild(text);
  box.appendChild(error);
  $("chat-log").appendChild(box);
  var view = { id: message.id, box: box, badge: badge, tools: tools, text: text, error: error,
    calls: {}, streamed: "" };
  setStatus(view, message.status || "queued");
  (message.tools || []).forEach(function (t) { toolCall(view, t); toolResult(view, t); });
  if (message.content) showAnswer(view, message.content);
  if (message.error) showReplyError(view, message.error);
  return view;
}

function showAnswer(view, content) {
  view.text.className = "text md";
  view.text.innerHTML = renderMarkdown(content);
}

function showReplyError(view, error) {
  var text = typeof error === "object" && error ? (error.message || JSON.stringify(error)) : String(error);
  view.error.textContent = text;
  view.error.hidden = false;
}

function toolCall(view, call) {
  if (view.calls[call.id]) return view.calls[call.id];
  var summary = el("summary", { text: "Tool call: " + call.name });
  var details = el("details", { className: "tool-detail" }, [summary]);
  if (call.sql) {
    details.appendChild(el("p", { className: "small muted", text: "SQL" + (call.database ? " on " + call.database : "") }));
    details.appendChild(el("pre", { className: "sql", text: call.sql }));
  } else if (call.arguments) {
    details.appendChild(el("p", { className: "small muted", text: "Arguments" }));
    details.appendChild(el("pre", { text: typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments) }));
  }
  var result = el("div", { className: "tool-result" });
  var box = el("div", { className: "tool", "data-tool": call.name }, [details, result]);
  view.tools.appendChild(box);
  // Text streamed before a tool call was the model thinking aloud: the answer follows.
  view.streamed = "";
  view.text.className = "text";
  view.text.textContent = "";
  view.calls[call.id] = { box: box, summary: summary, details: details, result: result, name: call.name };
  return view.calls[call.id];
}

function toolResult(view, data) {
  var call = toolCall(view, data);
  if (call.done) return; // a replayed result after a resumed turn
  if (data.content === undefined && data.error === undefined) return; // not run yet
  call.done = true;
  var facts = [];
  if (data.rows !== undefined && data.rows !== null) facts.push(data.rows + " rows");
  if (data.seconds !== undefined) facts.push(Number(data.seconds).toFixed(2) + " s");
  if (data.error) facts.push("failed");
  call.summary.textContent = "Tool call: " + call.name + (facts.length ? " · " + facts.join(" · ") : "");
  if (data.sql && !call.details.querySelector("pre.sql")) {
    call.details.appendChild(el("pre", { className: "sql", text: data.sql }));
  }
  if (data.error) {
    call.result.appendChild(el("p", { className: "error", text: data.error }));
    return;
  }
  if (data.chart) {
    call.result.appendChild(chartBox(data.chart));
  } else if (data.sql && data.rows !== undefined) {
    var table = resultTable({ name: call.name, content: data.content });
    if (table) call.result.appendChild(table);
  } else if (data.content) {
    call.details.appendChild(el("p", { className: "small muted", text: "Result" }));
    call.details.appendChild(el("pre", { text: String(data.content) }));
  }
}

// -- following a turn ---------------------------------------------------------------
function busy(on) {
  document.body.setAttribute("data-chat-state", on ? "running" : "idle");
  if ($("chat-cancel")) $("chat-cancel").hidden = !on;
  if ($("chat-send")) $("chat-send").disabled = on;
}

function showRetry() {
  var button = $("chat-retry");
  if (!button) return;
  var view = state.reply;
  button.hidden = !(view && RETRYABLE.indexOf(view.status) >= 0);
}

function stopFollowing() {
  if (state.source) { state.source.close(); state.source = null; }
}

function follow(view, url) {
  stopFollowing();
  state.reply = view;
  busy(true);
  showRetry();
  status("The agent is working…");
  var source = new EventSource(url, { withCredentials: true });
  state.source = source;
  function on(name, handler) {
    source.addEventListener(name, function (event) {
      var data = {};
      try { data = JSON.parse(event.data || "{}"); } catch (e) { data = {}; }
      handler(data);
      scrollDown();
    });
  }
  on("queued", function () { setStatus(view, "queued"); });
  on("started", function () { setStatus(view, "running"); });
  on("text", function (d) { view.streamed += d.text || ""; view.text.textContent = view.streamed; });
  on("tool_call", function (d) { toolCall(view, d); });
  on("tool_result", function (d) { toolResult(view, d); });
  on("warning", function (d) { status("Warning: " + (d.message || "")); });
  on("cancel_requested", function () { status("Cancelling…"); });
  on("answer", function (d) { showAnswer(view, d.content || ""); });
  on("error", function (d) { if (d && d.message) showReplyError(view, d.message); });
  on("done", function (d) {
    stopFollowing();
    setStatus(view, d.status || "answered");
    finished(view);
  });
  source.onerror = function () {
    // CONNECTING: the browser reconnects by itself (Last-Event-ID resumes the turn).
    if (source.readyState === EventSource.CLOSED && state.source === source) {
      stopFollowing();
      busy(false);
      showError("The answer stream was refused; reload the page to try again.");
    }
  };
}

function finished(view) {
  busy(false);
  showRetry();
  status(view.status === "answered" ? "Answered." : "The turn ended: " + view.status + ".");
  loadThreads(false);
  if ($("chat-input")) $("chat-input").focus();
}

function scrollDown() {
  var log = $("chat-log");
  log.scrollTop = log.scrollHeight;
}

function startTurn(turn) {
  state.thread = turn.thread;
  $("thread-title").textContent = turn.thread.title || "Thread";
  writeUrl();
  addQuestion(turn.message);
  follow(addReply(turn.reply), turn.events_url);
  scrollDown();
}

// -- threads --------------------------------------------------------------------------
function clearLog() {
  var log = $("chat-log");
  log.textContent = "";
  state.reply = null;
  showRetry();
}

function openThread(id) {
  stopFollowing();
  busy(false);
  showError("");
  return api("GET", threadUrl(id)).then(function (doc) {
    state.thread = doc.thread;
    $("thread-title").textContent = doc.thread.title || "Thread";
    clearLog();
    var last = null;
    doc.messages.forEach(function (m) {
      if (m.role === "user") addQuestion(m);
      else last = addReply(m);
    });
    state.reply = last;
    markCurrent();
    if (last && FINAL.indexOf(last.status) < 0) {
      follow(last, threadUrl(id) + "/events?message=" + encodeURIComponent(last.id));
    } else {
      showRetry();
      status("");
    }
    scrollDown();
  }).catch(function (err) { showError("Could not open the thread: " + err.message); });
}

function markCurrent() {
  Array.from($("chat-threads").querySelectorAll("a")).forEach(function (a) {
    if (state.thread && a.getAttribute("data-thread") === state.thread.id) a.setAttribute("aria-current", "true");
    else a.removeAttribute("aria-current");
  });
}

function threadLink(t) {
  var q = new URLSearchParams({ workspace: state.workspace, agent: state.agent, thread: t.id });
  var when = new Date(t.updated_at);
  var a = el("a", { href: "/chat?" + q.toString(), "data-thread": t.id }, [
    document.createTextNode(t.title || "Untitled"),
    el("span", { className: "when", text: isNaN(when) ? "" : when.toLocaleString() }),
  ]);
  a.addEventListener("click", function (event) {
    event.preventDefault();
    openThread(t.id).then(writeUrl);
  });
  return el("li", {}, [a]);
}

function loadThreads(more) {
  var list = $("chat-threads");
  var q = new URLSearchParams({ agent: state.agent, limit: "30" });
  if (more && state.cursor) q.set("cursor", state.cursor);
  return api("GET", base() + "/threads?" + q.toString()).then(function (doc) {
    if (!more) list.textContent = "";
    doc.threads.forEach(function (t) { list.appendChild(threadLink(t)); });
    if (!list.children.length) list.appendChild(el("li", { className: "muted", text: "No threads yet." }));
    state.cursor = doc.next_cursor;
    $("chat-more").hidden = !doc.next_cursor;
    markCurrent();
  }).catch(function (err) { showError("Could not list the threads: " + err.message); });
}

function newThread() {
  stopFollowing();
  busy(false);
  state.thread = null;
  clearLog();
  showError("");
  status("");
  $("thread-title").textContent = "New thread";
  $("chat-log").appendChild(el("p", { className: "muted chat-hint", text: "Ask a question about your data." }));
  markCurrent();
  writeUrl();
  if ($("chat-input")) $("chat-input").focus();
}

function pickAgent(value) {
  var cut = value.indexOf("|");
  state.workspace = value.slice(0, cut);
  state.agent = value.slice(cut + 1);
  state.cursor = null;
}

// -- actions --------------------------------------------------------------------------
function send(event) {
  event.preventDefault();
  var input = $("chat-input");
  var content = input.value.trim();
  if (!content || state.source) return;
  showError("");
  $("chat-send").disabled = true;
  var asked = state.thread
    ? api("POST", threadUrl(state.thread.id) + "/messages", { content: content })
    : api("POST", base() + "/agents/" + seg(state.agent) + "/threads", { message: content });
  asked.then(function (turn) {
    input.value = "";
    if (!state.thread) clearLog();
    startTurn(turn);
    if (!state.thread || !$("chat-threads").querySelector('[data-thread="' + turn.thread.id + '"]')) loadThreads(false);
  }).catch(function (err) {
    $("chat-send").disabled = false;
    showError("Could not send: " + err.message);
  });
}

function cancel() {
  if (!state.thread) return;
  status("Cancelling…");
  api("POST", threadUrl(state.thread.id) + "/cancel").catch(function (err) {
    showError("Could not cancel: " + err.message);
  });
}

function retry() {
  if (!state.thread) return;
  showError("");
  $("chat-retry").hidden = true;
  api("POST", threadUrl(state.thread.id) + "/retry").then(startTurn).catch(function (err) {
    showError("Could not retry: " + err.message);
    showRetry();
  });
}

function start() {
  var select = $("chat-agent");
  var wanted = config.workspace + "|" + config.agent;
  if (Array.from(select.options).some(function (o) { return o.value === wanted; })) select.value = wanted;
  pickAgent(select.value);
  select.addEventListener("change", function () { pickAgent(select.value); newThread(); loadThreads(false); });
  $("chat-new").addEventListener("click", newThread);
  $("chat-more").addEventListener("click", function () { loadThreads(true); });
  var form = $("chat-form");
  if (form) {
    form.addEventListener("submit", send);
    $("chat-input").addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    $("chat-cancel").addEventListener("click", cancel);
    $("chat-retry").addEventListener("click", retry);
  }
  window.addEventListener("popstate", function () { window.location.reload(); });
  loadThreads(false);
  if (config.thread && select.value === wanted) openThread(config.thread);
}

start();
