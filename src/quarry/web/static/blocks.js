// Display blocks of an app document: markdown (already templated by the server, made
// safe here), tables with their column formats, Vega-Lite charts, rows as grids.
import { el } from "./controls.js";
import { render as renderMarkdown } from "./markdown.js";

var currency = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
var grouped = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });

export function formatCell(value, column) {
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

function compare(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return 1; // empty cells last, either way
  if (b === null || b === undefined) return -1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

// Sorting by a column: a button in its header (keyboard and screen readers reach it),
// aria-sort on the header; ascending, then descending. The block's rows stay as sent.
function renderTable(block) {
  var tbody = el("tbody", {});
  var order = block.rows.slice();
  function fill() {
    tbody.textContent = "";
    order.forEach(function (row) {
      tbody.appendChild(el("tr", {}, row.map(function (v, i) {
        var col = block.columns[i];
        return el("td", { text: formatCell(v, col), className: col.kind === "number" ? "num" : "" });
      })));
    });
  }
  var headers = block.columns.map(function (c, i) {
    var button = el("button", { type: "button", className: "sort", text: c.name });
    var th = el("th", { scope: "col", className: c.kind === "number" ? "num" : "" }, [button]);
    button.addEventListener("click", function () {
      var ascending = th.getAttribute("aria-sort") !== "ascending";
      headers.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      order = block.rows.slice().sort(function (a, b) {
        var got = compare(a[i], b[i]);
        return ascending ? got : -got;
      });
      fill();
    });
    return th;
  });
  fill();
  var table = el("table", { className: "data" }, [el("thead", {}, [el("tr", {}, headers)]), tbody]);
  var wrap = el("div", { className: "table-wrap" }, [table]);
  if (block.truncated) {
    wrap.appendChild(el("p", { className: "note",
      text: "Showing the first " + block.rows.length + " of " + block.row_count + " rows." }));
  }
  return wrap;
}

function renderChart(block) {
  var target = el("div", { className: "chart" });
  // ast + the expression interpreter: Vega evaluates chart expressions without
  // compiling code (no 'unsafe-eval' in the page's Content-Security-Policy).
  var options = { renderer: "svg", actions: false, ast: true, expr: window.vega.expressionInterpreter };
  window.vegaEmbed(target, block.spec, options)
    .catch(function (err) {
      target.appendChild(el("p", { className: "error", text: "Chart failed: " + err }));
    });
  return target;
}

// -- CSV of a block's data (made in the page from the rows it already has) ------------
function csvCell(value) {
  if (value === null || value === undefined) return "";
  var text = typeof value === "object" ? JSON.stringify(value) : String(value);
  // Quote when needed; a leading = + - @ is prefixed so a spreadsheet shows it as text.
  if (/^[=+\-@]/.test(text) && !/^-?[0-9.]+$/.test(text)) text = "'" + text;
  return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
}

export function blockCsv(block) {
  var header, rows;
  if (block.type === "table") {
    header = block.columns.map(function (c) { return c.name; });
    rows = block.rows;
  } else {
    var values = (block.spec && block.spec.data && block.spec.data.values) || [];
    header = values.length ? Object.keys(values[0]) : [];
    rows = values.map(function (v) { return header.map(function (k) { return v[k]; }); });
  }
  return [header].concat(rows).map(function (r) { return r.map(csvCell).join(","); }).join("\r\n") + "\r\n";
}

function slug(text) {
  return String(text || "data").toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "") || "data";
}

function downloadButton(block) {
  var label = "Download CSV" + (block.title ? " of " + block.title : "");
  var button = el("button", { type: "button", className: "download", "aria-label": label, text: "Download CSV" });
  button.addEventListener("click", function () {
    var url = URL.createObjectURL(new Blob([blockCsv(block)], { type: "text/csv;charset=utf-8" }));
    var link = el("a", { href: url, download: slug(block.title || block.data) + ".csv" });
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  });
  return el("div", { className: "block-tools" }, [button]);
}

export function renderBlock(block) {
  var box = el("section", { className: "block block-" + block.type });
  if (block.data) box.setAttribute("data-task", block.data);
  if (block.type === "row") {
    box.style.gridTemplateColumns = "repeat(" + block.columns + ", minmax(0, 1fr))";
    block.children.forEach(function (child) { box.appendChild(renderBlock(child)); });
    return box;
  }
  if (block.type === "markdown" && !block.error) {
    box.innerHTML = renderMarkdown(block.content);
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
  if (!block.error && (block.type === "table" || (block.spec && block.spec.data))) {
    box.appendChild(downloadButton(block));
  }
  return box;
}
