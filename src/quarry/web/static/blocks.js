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

export function renderBlock(block) {
  var box = el("section", { className: "block block-" + block.type });
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
  return box;
}
