// Server-sent events read with fetch (event names vary, so EventSource's per-name
// listeners would miss some): onEvent(name, data, id) for every frame; resolves at
// `event: end` or when the stream closes. Same-origin: the session cookie goes along.
export function follow(url, onEvent, lastId) {
  var headers = { Accept: "text/event-stream" };
  if (lastId) headers["Last-Event-ID"] = String(lastId);
  return fetch(url, { headers: headers, credentials: "same-origin" }).then(function (resp) {
    if (!resp.ok || !resp.body) throw new Error("the event stream answered HTTP " + resp.status);
    var reader = resp.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) return "closed";
        buffer += decoder.decode(chunk.value, { stream: true });
        var cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          var frame = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          var name = "message", data = "", id = null;
          frame.split("\n").forEach(function (line) {
            if (line.indexOf("event:") === 0) name = line.slice(6).trim();
            else if (line.indexOf("data:") === 0) data += line.slice(5).trim();
            else if (line.indexOf("id:") === 0) id = line.slice(3).trim();
          });
          if (name === "end") { reader.cancel(); return "end"; }
          var parsed = {};
          try { parsed = JSON.parse(data || "{}"); } catch (e) { parsed = { raw: data }; }
          onEvent(name, parsed, id);
        }
        return pump();
      });
    }
    return pump();
  });
}
