// A small, safe Markdown subset for app text blocks: headings, paragraphs, lists,
// code, emphasis and http(s)/relative links. All text is HTML-escaped first, so
// author content can never inject markup or script. An ES module (no globals).

export function escape(text) {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}

function safeUrl(url) {
  return /^(https?:\/\/|\/|#|\.\/)/i.test(url) ? url : "#";
}

function inline(text) {
  var codes = [];
  var out = escape(text).replace(/`([^`]+)`/g, function (_, code) {
    codes.push(code);
    return "\u0000" + (codes.length - 1) + "\u0000";
  });
  out = out
    .replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, function (_, label, url) {
      return '<a href="' + safeUrl(url) + '" rel="noopener">' + label + "</a>";
    })
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/__([^_]+)__/g, "<strong>$1</strong>")
    .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>")
    .replace(/(^|\W)_([^_\s][^_]*)_(?=\W|$)/g, "$1<em>$2</em>");
  return out.replace(/\u0000(\d+)\u0000/g, function (_, i) {
    return "<code>" + codes[Number(i)] + "</code>";
  });
}

export function render(source) {
  var lines = String(source || "").replace(/\r\n?/g, "\n").split("\n");
  var html = [];
  var para = [];
  var list = null; // "ul" or "ol"
  var fence = null;

  function flushPara() {
    if (para.length) html.push("<p>" + inline(para.join(" ")) + "</p>");
    para = [];
  }
  function closeList() {
    if (list) html.push("</" + list + ">");
    list = null;
  }

  lines.forEach(function (line) {
    if (fence !== null) {
      if (/^\s*```/.test(line)) {
        html.push("<pre><code>" + escape(fence.join("\n")) + "</code></pre>");
        fence = null;
      } else {
        fence.push(line);
      }
      return;
    }
    var m;
    if (/^\s*```/.test(line)) {
      flushPara(); closeList(); fence = [];
    } else if ((m = /^(#{1,6})\s+(.*)$/.exec(line))) {
      flushPara(); closeList();
      var level = m[1].length;
      html.push("<h" + level + ">" + inline(m[2].trim()) + "</h" + level + ">");
    } else if ((m = /^\s*[-*+]\s+(.*)$/.exec(line))) {
      flushPara();
      if (list !== "ul") { closeList(); html.push("<ul>"); list = "ul"; }
      html.push("<li>" + inline(m[1]) + "</li>");
    } else if ((m = /^\s*\d+[.)]\s+(.*)$/.exec(line))) {
      flushPara();
      if (list !== "ol") { closeList(); html.push("<ol>"); list = "ol"; }
      html.push("<li>" + inline(m[1]) + "</li>");
    } else if (/^\s*$/.test(line)) {
      flushPara(); closeList();
    } else if (/^\s*(---|\*\*\*)\s*$/.test(line)) {
      flushPara(); closeList(); html.push("<hr>");
    } else {
      closeList();
      para.push(line.trim());
    }
  });
  if (fence !== null) html.push("<pre><code>" + escape(fence.join("\n")) + "</code></pre>");
  flushPara();
  closeList();
  return html.join("\n");
}
