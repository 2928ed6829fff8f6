// The semantic explorer: the topic's members from the catalog API, a query built
// from the form, its SQL (?sql_only=1) and rows from the query API. Text only: every
// value goes in with textContent, never as markup.
import { el } from "./controls.js";
import { barChart } from "./minichart.js";

var form = document.getElementById("explore");
var $ = function (id) { return document.getElementById(id); };
var catalog = null;

function csrf() {
  var meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.getAttribute("content") : "";
}

function base() { return "/api/v1/workspaces/" + encodeURIComponent($("x-workspace").value) + "/semantic"; }

function options(select, items, keepFirst) {
  while (select.options.length > (keepFirst ? 1 : 0)) select.remove(select.options.length - 1);
  items.forEach(function (m) { select.appendChild(el("option", { value: m, text: m })); });
}

function checkboxes(fieldset, names, prefix) {
  Array.from(fieldset.querySelectorAll("label")).forEach(function (l) { l.remove(); });
  names.forEach(function (name, i) {
    var id = prefix + i;
    var box = el("input", { type: "checkbox", id: id, value: name });
    fieldset.appendChild(el("label", { for: id }, [box, document.createTextNode(" " + name)]));
  });
}

function members(topicName) {
  var topic = catalog.topics.find(function (t) { return t.name === topicName; });
  var views = topic ? topic.views : catalog.views.map(function (v) { return v.name; });
  var found = { measure: [], dimension: [], time: [] };
  catalog.views.forEach(function (v) {
    if (views.indexOf(v.name) < 0) return;
    v.members.forEach(function (m) { (found[m.kind] || []).push(m.qualified_name); });
  });
  return found;
}

function showTopic() {
  var m = members($("x-topic").value);
  checkboxes($("x-measures"), m.measure, "x-m-");
  checkboxes($("x-dimensions"), m.dimension, "x-d-");
  options($("x-time"), m.time, true);
  options($("x-filter-field"), m.dimension.concat(m.time), true);
}

function loadCatalog() {
  $("x-status").textContent = "Loading the catalog…";
  return fetch(base() + "/catalog", { headers: { Accept: "application/json" } })
    .then(function (r) { return r.json(); })
    .then(function (doc) {
      catalog = doc;
      options($("x-topic"), doc.topics.map(function (t) { return t.name; }), false);
      showTopic();
      $("x-status").textContent = doc.topics.length + " topics.";
    });
}

function query() {
  var checked = function (id) {
    return Array.from($(id).querySelectorAll("input:checked")).map(function (i) { return i.value; });
  };
  var q = { topic: $("x-topic").value, measures: checked("x-measures"), dimensions: checked("x-dimensions") };
  if ($("x-time").value) q.time_dimensions = [{ dimension: $("x-time").value, granularity: $("x-grain").value }];
  if ($("x-filter-field").value) {
    q.filters = [{ field: $("x-filter-field").value, op: $("x-filter-op").value, value: $("x-filter-value").value }];
  }
  var limit = parseInt($("x-limit").value, 10);
  if (limit > 0) q.limit = limit;
  return q;
}

function post(url, body) {
  return fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrf() },
    body: JSON.stringify(body),
  }).then(function (r) {
    return r.json().then(function (j) {
      if (!r.ok) throw new Error(j.message || ("HTTP " + r.status));
      return j;
    });
  });
}

// The query as an Oxy ``semantic_query`` task: YAML whose values are JSON (a JSON
// string or list is a valid YAML flow scalar), so nothing needs YAML quoting rules.
export function taskYaml(q) {
  var j = JSON.stringify;
  var lines = ["- name: explore_query", "  type: semantic_query", "  topic: " + j(q.topic),
    "  measures: " + j(q.measures || [])];
  if (q.dimensions && q.dimensions.length) lines.push("  dimensions: " + j(q.dimensions));
  (q.time_dimensions || []).forEach(function (t, i) {
    if (i === 0) lines.push("  time_dimensions:");
    lines.push("    - dimension: " + j(t.dimension), "      granularity: " + j(t.granularity));
  });
  (q.filters || []).forEach(function (f, i) {
    if (i === 0) lines.push("  filters:");
    lines.push("    - field: " + j(f.field), "      op: " + j(f.op), "      value: " + j(f.value));
  });
  if (q.limit) lines.push("  limit: " + j(q.limit));
  return lines.join("\n") + "\n";
}

function table(result) {
  var head = el("tr", {}, result.columns.map(function (c) { return el("th", { text: c, scope: "col" }); }));
  var rows = result.rows.map(function (row) {
    var values = Array.isArray(row) ? row : result.columns.map(function (c) { return row[c]; });
    return el("tr", {}, values.map(function (v) {
      // floats to 4 decimals: sums of money read 150924.78, not 150924.7800000001
      var text = v === null || v === undefined ? "" :
        typeof v === "number" && !Number.isInteger(v) ? String(Math.round(v * 1e4) / 1e4) : String(v);
      return el("td", { text: text, className: typeof v === "number" ? "num" : "" });
    }));
  });
  return el("table", { className: "list" }, [el("thead", {}, [head]), el("tbody", {}, rows)]);
}

form.addEventListener("submit", function (event) {
  event.preventDefault();
  var q = query();
  $("x-error").hidden = true;
  $("x-status").textContent = "Running…";
  document.body.setAttribute("data-state", "loading");
  post(base() + "/query?sql_only=1", q)
    .then(function (compiled) {
      $("x-sql").textContent = compiled.sql;
      return post(base() + "/query?format=json", q);
    })
    .then(function (result) {
      var box = $("x-rows");
      box.textContent = "";
      box.appendChild(table(result));
      var chart = $("x-chart");
      chart.textContent = "";
      var svg = barChart(result, "Chart of " + q.measures.join(", ") + " by " + (result.columns[0] || ""));
      if (svg) chart.appendChild(svg); else chart.appendChild(el("p", { className: "empty", text: "Nothing to plot." }));
      $("x-status").textContent = result.row_count + " rows" + (result.truncated ? " (truncated)" : "") + ".";
      $("x-task").textContent = taskYaml(q);
      $("x-copy").disabled = false;
      document.body.setAttribute("data-state", "ready");
    })
    .catch(function (err) {
      $("x-error").textContent = err.message;
      $("x-error").hidden = false;
      $("x-status").textContent = "Failed.";
      document.body.setAttribute("data-state", "error");
    });
});
$("x-copy").addEventListener("click", function () {
  var text = $("x-task").textContent;
  var done = function () { $("x-status").textContent = "Task copied."; };
  if (navigator.clipboard) {
    navigator.clipboard.writeText(text).then(done, function () {
      $("x-status").textContent = "Copying was refused: select the task text instead.";
    });
  }
});
$("x-workspace").addEventListener("change", loadCatalog);
$("x-topic").addEventListener("change", showTopic);
loadCatalog();
