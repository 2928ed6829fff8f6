// A small SVG bar chart for the explorer: the first column as categories, the first
// numeric column as bar lengths. Drawn with SVG attributes only (no style attribute),
// so it needs nothing beyond the strict Content-Security-Policy, and no chart library.
var NS = "http://www.w3.org/2000/svg";
var MAX_BARS = 40;

function node(tag, attrs, text) {
  var n = document.createElementNS(NS, tag);
  Object.keys(attrs).forEach(function (k) { n.setAttribute(k, String(attrs[k])); });
  if (text !== undefined) n.textContent = text;
  return n;
}

/** An <svg> for `result` ({columns, rows}), or null when it has nothing to plot. */
export function barChart(result, title) {
  var rows = result.rows.map(function (r) {
    return Array.isArray(r) ? r : result.columns.map(function (c) { return r[c]; });
  });
  if (!rows.length || result.columns.length < 2) return null;
  var value = result.columns.findIndex(function (_, i) {
    return i > 0 && rows.every(function (r) { return r[i] === null || typeof r[i] === "number"; });
  });
  if (value < 0) return null;
  var shown = rows.slice(0, MAX_BARS);
  var max = Math.max.apply(null, shown.map(function (r) { return Math.abs(r[value] || 0); })) || 1;
  var rowHeight = 22, label = 180, width = 720, plot = width - label - 90;
  var svg = node("svg", {
    viewBox: "0 0 " + width + " " + (shown.length * rowHeight + 10),
    width: width, class: "minichart", role: "img", "aria-label": title,
  });
  svg.appendChild(node("title", {}, title));
  shown.forEach(function (r, i) {
    var y = 5 + i * rowHeight;
    var length = Math.max(1, (Math.abs(r[value] || 0) / max) * plot);
    svg.appendChild(node("text", { x: label - 8, y: y + 15, "text-anchor": "end", "font-size": 12, fill: "#1d2330" },
      String(r[0] === null ? "∅" : r[0]).slice(0, 28)));
    svg.appendChild(node("rect", { x: label, y: y + 3, width: length, height: rowHeight - 6, fill: "#4c78a8" }));
    svg.appendChild(node("text", { x: label + length + 6, y: y + 15, "font-size": 12, fill: "#545c6c" },
      r[value] === null ? "" : Number(r[value]).toLocaleString("en-US", { maximumFractionDigits: 2 })));
  });
  return svg;
}
