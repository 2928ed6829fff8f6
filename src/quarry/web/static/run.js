// The run page: follow the run's events live, list them as they come, and when the
// run ends swap in the server-rendered details (steps, outputs, exports) — the page
// is fetched again and its #run-detail replaced, so no markup is built here.
import { follow } from "./sse.js";

var detail = document.getElementById("run-detail");
var list = document.getElementById("events");
var status = document.getElementById("live-status");
var runId = detail.getAttribute("data-run");
var lastId = null;
var refreshing = null;
var sourcesNode = document.getElementById("task-sources");
var sources = sourcesNode ? JSON.parse(sourcesNode.textContent) : null;

// The file:line of a step's task (as quarry.catalog.task_sources computes it).
export function taskSource(step) {
  if (!sources || !step) return null;
  var key = String(step).replace(/\.iter\.\d+/g, "");
  var cut = key.indexOf(".workflow.");
  if (cut >= 0) key = key.slice(0, cut);
  if (key.indexOf("tasks.") !== 0) return null;
  var line = sources.lines[key];
  return line !== undefined ? sources.path + ":" + line : sources.path;
}

function line(name, event) {
  var parts = [name];
  if (event.step) parts.push(String(event.step));
  if (event.task) parts.push("(" + event.task + ")");
  if (event.rows !== undefined && event.rows !== null) parts.push(event.rows + " rows");
  if (event.seconds !== undefined) parts.push(event.seconds + " s");
  if (event.error) {
    parts.push("— " + (event.error.message || JSON.stringify(event.error)));
    var at = taskSource(event.step || (event.error.details && event.error.details.step));
    if (at) parts.push("at " + at);
  }
  var li = document.createElement("li");
  li.textContent = parts.join(" ");
  if (event.error) li.className = "error";
  list.appendChild(li);
  status.textContent = "Latest: " + parts.slice(0, 3).join(" ");
}

// Replace the details with a fresh server rendering (steps as they finish). One
// fetch at a time; `after` waits for the one in flight and then fetches again (the
// final rendering must be read after the run ended, not before).
function refresh(after) {
  if (refreshing) {
    return after ? refreshing.then(function () { return refresh(false); }) : refreshing;
  }
  refreshing = fetch(window.location.pathname, { headers: { Accept: "text/html" } })
    .then(function (resp) { return resp.text(); })
    .then(function (text) {
      var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("run-detail");
      if (fresh) detail.replaceWith(document.importNode(fresh, true));
      detail = document.getElementById("run-detail");
    })
    .finally(function () { refreshing = null; });
  return refreshing;
}

function watch(attempt) {
  follow("/api/v1/runs/" + encodeURIComponent(runId) + "/events", function (name, event, id) {
    if (id) lastId = id;
    line(name, event);
    if (name.indexOf("step.") === 0 && name !== "step.started") refresh();
  }, lastId).then(function (how) {
    if (how === "end") {
      refresh(true).then(function () {
        document.body.setAttribute("data-run-state", "finished");
        status.textContent = "The run has finished: " +
          (document.getElementById("run-state") || {}).textContent;
      });
    } else if (attempt < 5) {
      watch(attempt + 1); // the stream closed early (a restart): resume after lastId
    }
  }, function (err) {
    status.textContent = "Live updates stopped: " + err.message + ". Reload to try again.";
  });
}

// A step's output as a table under its row (the first rows of its JSON output).
var SHOWN_ROWS = 100;

function cell(tag, text) {
  var node = document.createElement(tag);
  node.textContent = text === null || text === undefined ? "" :
    typeof text === "object" ? JSON.stringify(text) : String(text);
  return node;
}

function outputTable(doc) {
  if (!doc || !Array.isArray(doc.columns)) {
    return cell("pre", JSON.stringify(doc, null, 2));
  }
  var table = document.createElement("table");
  table.className = "list";
  var head = table.createTHead().insertRow();
  doc.columns.forEach(function (c) { var th = cell("th", c); th.scope = "col"; head.appendChild(th); });
  var body = table.createTBody();
  doc.rows.slice(0, SHOWN_ROWS).forEach(function (row) {
    var tr = body.insertRow();
    doc.columns.forEach(function (c) { tr.appendChild(cell("td", Array.isArray(row) ? row[doc.columns.indexOf(c)] : row[c])); });
  });
  var wrap = document.createElement("div");
  wrap.appendChild(table);
  if (doc.rows.length > SHOWN_ROWS) {
    wrap.appendChild(cell("p", "Showing the first " + SHOWN_ROWS + " of " + doc.rows.length + " rows; the CSV has them all."));
  }
  return wrap;
}

document.addEventListener("click", function (event) {
  var button = event.target.closest ? event.target.closest("button.show-rows") : null;
  if (!button) return;
  var target = document.getElementById(button.getAttribute("aria-controls"));
  if (!target.hidden) { target.hidden = true; button.setAttribute("aria-expanded", "false"); return; }
  var box = target.querySelector("div");
  box.textContent = "Loading…";
  target.hidden = false;
  button.setAttribute("aria-expanded", "true");
  fetch(button.getAttribute("data-url"), { headers: { Accept: "application/json" } })
    .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then(function (doc) { box.textContent = ""; box.appendChild(outputTable(doc)); },
      function (err) { box.textContent = "The output could not be loaded: " + err.message; });
});

// A finished run's stream replays its events and ends at once: the log is complete.
watch(0);
