// Schema help for the IDE's editor: which JSON Schema a file follows (by the kind its
// name gives it, as quarry.definitions.kinds decides), completion of keys and enum
// values at the cursor, and validation of a parsed YAML document (unknown keys where
// the model forbids them, missing required keys, values outside an enum). The schemas
// are the compiler's own pydantic models (GET /ide/schemas.json); the compile
// problems remain the authority, this is the quick feedback while typing.

var SUFFIXES = [
  ["workflow", "workflow"], ["procedure", "workflow"], ["automation", "workflow"],
  ["app", "app"], ["agent", "agent"], ["agentic", "agentic"], ["view", "view"],
  ["topic", "topic"], ["schedule", "schedule"], ["monitor", "monitor"],
  ["motif", "motif"], ["query", "query"],
];

export function kindOf(path) {
  if (path === "config.yml" || path === "config.yaml") return "config";
  var base = path.split("/").pop();
  for (var i = 0; i < SUFFIXES.length; i++) {
    for (var ext of [".yml", ".yaml"]) {
      var suffix = "." + SUFFIXES[i][0] + ext;
      if (base.length > suffix.length && base.endsWith(suffix)) return SUFFIXES[i][1];
    }
  }
  return null;
}

// Every alternative a schema allows, $refs followed and unions flattened.
function alternatives(root, schema, seen) {
  if (!schema || typeof schema !== "object") return [];
  seen = seen || 0;
  if (seen > 40) return [];
  if (schema.$ref) {
    var name = schema.$ref.replace(/^#\/(\$defs|definitions)\//, "");
    var defs = root.$defs || root.definitions || {};
    return alternatives(root, defs[name], seen + 1);
  }
  var out = [];
  var union = schema.anyOf || schema.oneOf;
  if (union) union.forEach(function (s) { out = out.concat(alternatives(root, s, seen + 1)); });
  if (schema.allOf) schema.allOf.forEach(function (s) { out = out.concat(alternatives(root, s, seen + 1)); });
  if (!union && !schema.allOf) out.push(schema);
  else if (schema.properties || schema.items) out.push(schema);
  return out;
}

function isObject(s) { return s.type === "object" || !!s.properties; }
function isArray(s) { return s.type === "array" || !!s.items; }
function allowed(s) {
  if (s.const !== undefined) return [s.const];
  if (Array.isArray(s.enum)) return s.enum;
  return null;
}

// Narrow object alternatives by a discriminating key (``type``, ``kind``) whose value
// the document already has.
function narrow(root, objects, has) {
  for (var key of ["type", "kind"]) {
    if (objects.length < 2 || has[key] === undefined) continue;
    var kept = objects.filter(function (s) {
      var prop = s.properties && s.properties[key];
      if (!prop) return false;
      var values = [];
      alternatives(root, prop).forEach(function (a) { values = values.concat(allowed(a) || []); });
      return values.indexOf(has[key]) >= 0;
    });
    if (kept.length) objects = kept;
  }
  return objects;
}

function step(root, alts, key) {
  var out = [];
  alts.forEach(function (s) {
    if (key === "[]") {
      if (isArray(s) && s.items) out = out.concat(alternatives(root, s.items));
    } else if (isObject(s)) {
      if (s.properties && s.properties[key]) out = out.concat(alternatives(root, s.properties[key]));
      else if (s.additionalProperties && typeof s.additionalProperties === "object")
        out = out.concat(alternatives(root, s.additionalProperties));
    }
  });
  return out;
}

// --- validation ---------------------------------------------------------------------

export function validate(Y, root, text) {
  var found = [];
  var doc = Y.parseDocument(text, { prettyErrors: false, uniqueKeys: true });
  doc.errors.forEach(function (e) {
    var at = e.pos || [0, 0];
    found.push({ from: at[0], to: Math.max(at[1], at[0]), severity: "error", message: "YAML: " + e.message.split("\n")[0] });
  });
  if (doc.errors.length || !root || !doc.contents) return found;
  walk(Y, root, doc.contents, alternatives(root, root), found);
  return found;
}

function rangeOf(node) {
  var r = (node && node.range) || [0, 0];
  return [r[0], Math.max(r[1], r[0])];
}

function walk(Y, root, node, alts, found) {
  if (!alts.length || !node) return;
  if (Y.isMap(node)) {
    var objects = alts.filter(isObject);
    if (!objects.length) {
      if (alts.every(function (s) { return s.type && s.type !== "object"; })) {
        var r0 = rangeOf(node);
        found.push({ from: r0[0], to: r0[0] + 1, severity: "error", message: "expected " + alts.map(function (s) { return s.type; }).join(" or ") + ", not a mapping" });
      }
      return;
    }
    var has = {};
    node.items.forEach(function (p) {
      if (Y.isScalar(p.key)) has[String(p.key.value)] = Y.isScalar(p.value) ? p.value.value : null;
    });
    objects = narrow(root, objects, has);
    node.items.forEach(function (pair) {
      if (!Y.isScalar(pair.key)) return;
      var key = String(pair.key.value);
      var known = objects.some(function (s) {
        return (s.properties && s.properties[key]) || s.additionalProperties !== false || s.patternProperties;
      });
      if (!known) {
        var names = [];
        objects.forEach(function (s) { names = names.concat(Object.keys(s.properties || {})); });
        names = names.filter(function (n, i) { return names.indexOf(n) === i; });
        var r = rangeOf(pair.key);
        found.push({ from: r[0], to: r[1], severity: "error",
          message: "unknown key '" + key + "'" + (names.length ? " (known keys: " + names.slice(0, 16).join(", ") + ")" : "") });
        return;
      }
      walk(Y, root, pair.value, step(root, objects, key), found);
    });
    if (objects.length === 1 && Array.isArray(objects[0].required)) {
      var missing = objects[0].required.filter(function (k) { return has[k] === undefined; });
      if (missing.length) {
        var first = node.items.length ? rangeOf(node.items[0].key) : rangeOf(node);
        found.push({ from: first[0], to: first[1], severity: "error",
          message: "missing required key" + (missing.length > 1 ? "s " : " ") + missing.map(function (k) { return "'" + k + "'"; }).join(", ") });
      }
    }
  } else if (Y.isSeq(node)) {
    var items = step(root, alts.filter(isArray), "[]");
    node.items.forEach(function (item) { walk(Y, root, item, items, found); });
  } else if (Y.isScalar(node)) {
    var value = node.value;
    if (value === null) return;
    var enums = [];
    var every = alts.every(function (s) {
      var a = allowed(s);
      if (a) { enums = enums.concat(a); return true; }
      return false;
    });
    if (every && enums.length && enums.indexOf(value) < 0) {
      var rs = rangeOf(node);
      found.push({ from: rs[0], to: rs[1], severity: "error",
        message: JSON.stringify(value) + " is not one of: " + enums.slice(0, 20).map(String).join(", ") });
    }
  }
}

// --- completion ---------------------------------------------------------------------

// The path of keys (and "[]" for list items) that leads to the map at the cursor,
// read from indentation: good for block YAML, which is what workspace files are.
function containerPath(lines, lineIndex, indent) {
  var path = [];
  var need = indent;
  for (var i = lineIndex - 1; i >= 0 && need > 0; i--) {
    var text = lines[i];
    var m = /^(\s*)(.*)$/.exec(text);
    var body = m[2];
    if (!body || body[0] === "#") continue;
    var ind = m[1].length;
    var item = /^-(\s+|$)/.exec(body);
    if (item && ind < need) {
      path.unshift("[]");
      need = ind + 1; // the list's key may sit at the item's own indent
      continue;
    }
    if (ind >= need) continue;
    var key = /^([\w.\-]+|"[^"]*"|'[^']*'):\s*(#.*)?$/.exec(body);
    if (key) {
      path.unshift(key[1].replace(/^["']|["']$/g, ""));
      need = ind;
    } else {
      need = ind;
    }
  }
  return path;
}

export function completer(Y, getRoot) {
  return function (context) {
    var root = getRoot();
    if (!root) return null;
    var state = context.state;
    var line = state.doc.lineAt(context.pos);
    var before = line.text.slice(0, context.pos - line.from);
    var lines = [];
    for (var n = 1; n < line.number; n++) lines.push(state.doc.line(n).text);
    var keyAt = /^(\s*)(-\s+)?([\w.\-]*)$/.exec(before);
    var valueAt = /^(\s*)(-\s+)?([\w.\-]+):\s+([\w.\-]*)$/.exec(before);
    if (keyAt) {
      if (!keyAt[3] && !context.explicit && !keyAt[2]) return null;
      var indent = keyAt[1].length + (keyAt[2] ? keyAt[2].length : 0);
      var path = containerPath(lines, line.number - 1, keyAt[2] ? keyAt[1].length + 1 : indent);
      if (keyAt[2]) path.push("[]");
      var alts = alternatives(root, root);
      path.forEach(function (k) { alts = step(root, alts, k); });
      var options = [];
      var seen = {};
      alts.filter(isObject).forEach(function (s) {
        Object.keys(s.properties || {}).forEach(function (name) {
          if (seen[name]) return;
          seen[name] = true;
          var prop = s.properties[name];
          options.push({ label: name, type: "property", apply: name + ": ",
            detail: (prop && (prop.type || (prop.anyOf ? "…" : ""))) || "",
            info: (prop && prop.description) || undefined });
        });
      });
      if (!options.length) return null;
      return { from: context.pos - keyAt[3].length, options: options, validFor: /^[\w.\-]*$/ };
    }
    if (valueAt) {
      var vindent = valueAt[1].length + (valueAt[2] ? valueAt[2].length : 0);
      var vpath = containerPath(lines, line.number - 1, valueAt[2] ? valueAt[1].length + 1 : vindent);
      if (valueAt[2]) vpath.push("[]");
      vpath.push(valueAt[3]);
      var valts = alternatives(root, root);
      vpath.forEach(function (k) { valts = step(root, valts, k); });
      var values = [];
      valts.forEach(function (s) { values = values.concat(allowed(s) || []); });
      values = values.filter(function (v, i) { return v !== null && values.indexOf(v) === i; });
      if (!values.length) return null;
      return {
        from: context.pos - valueAt[4].length,
        options: values.map(function (v) { return { label: String(v), type: "enum" }; }),
        validFor: /^[\w.\-]*$/,
      };
    }
    return null;
  };
}
