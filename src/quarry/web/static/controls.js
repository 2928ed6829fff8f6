// The controls bar: one real widget per control (select, checkbox, date picker) and
// the chosen values in the page URL, so a view can be shared by its address.

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

// Query parameters the page itself uses, never control values.
var RESERVED = ["workspace", "revision"];

/** Control values named in the page URL (query text; the server checks them). */
export function chosenFromUrl() {
  var chosen = {};
  new URLSearchParams(window.location.search).forEach(function (value, key) {
    if (RESERVED.indexOf(key) < 0) chosen[key] = value;
  });
  return chosen;
}

/** ``?a=1&b=2`` for the values that are set (null/undefined left out). */
export function queryText(params) {
  var q = new URLSearchParams();
  Object.keys(params).forEach(function (k) {
    var v = params[k];
    if (v !== null && v !== undefined) q.set(k, String(v));
  });
  var s = q.toString();
  return s ? "?" + s : "";
}

/** Put ``chosen`` in the address bar (a new history entry), keeping ?workspace=. */
export function writeUrl(chosen) {
  var keep = {};
  var current = new URLSearchParams(window.location.search);
  RESERVED.forEach(function (k) { if (current.has(k)) keep[k] = current.get(k); });
  var url = window.location.pathname + queryText(Object.assign(keep, chosen));
  if (url !== window.location.pathname + window.location.search) {
    window.history.pushState(null, "", url);
  }
}

function selectWidget(c, id, onChange) {
  var input = el("select", { id: id, name: c.name });
  var options = (c.options || []).slice();
  // A value outside the options (a default a source task does not list) stays shown.
  if (c.value !== null && c.value !== undefined &&
      !options.some(function (o) { return String(o) === String(c.value); })) {
    options.unshift(c.value);
  }
  options.forEach(function (o) {
    var opt = el("option", { value: String(o), text: String(o) });
    if (String(o) === String(c.value)) opt.selected = true;
    input.appendChild(opt);
  });
  input.addEventListener("change", function () { onChange(c.name, input.value); });
  return input;
}

function toggleWidget(c, id, onChange) {
  var input = el("input", { type: "checkbox", id: id, name: c.name, role: "switch" });
  input.checked = c.value === true;
  input.addEventListener("change", function () {
    onChange(c.name, input.checked ? "true" : "false");
  });
  return input;
}

function dateWidget(c, id, onChange) {
  var input = el("input", { type: "date", id: id, name: c.name });
  input.value = c.value || "";
  input.addEventListener("change", function () { onChange(c.name, input.value || null); });
  return input;
}

/** Draw ``controls`` (from the app document) into ``form``; ``onChange(name, text)``. */
export function renderControls(form, controls, onChange) {
  form.textContent = "";
  controls.forEach(function (c) {
    var id = "control-" + c.name;
    var widget = c.type === "toggle" ? toggleWidget(c, id, onChange)
      : c.type === "date" ? dateWidget(c, id, onChange)
      : selectWidget(c, id, onChange);
    // The label names the widget alone (wrapping it would add the options' text).
    form.appendChild(el("div", { className: "control control-" + c.type }, [
      el("label", { for: id, text: c.label || c.name }), widget,
    ]));
  });
}

export { el };
