// The IDE page: file tree, CodeMirror editor (loaded lazily from the vendored bundle),
// compile problems inline (live over SSE), save with the expected hash (a conflict
// shows both versions), git (Staged and Changes lists with stage and unstage buttons,
// diffs, commit of the staged set, branches, switch, pull, push) and "Run this" for a workflow or an app (a draft run). Everything goes through
// the Factory's file and git API; workspace text is only ever inserted as text.
import { follow } from "./sse.js";
import { completer, kindOf, validate } from "./ide_schema.js";

var cfg = JSON.parse(document.getElementById("ide-config").textContent);
var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
var $ = function (id) { return document.getElementById(id); };

var CM = null; // the CodeMirror bundle, once loaded
var view = null;
var current = { path: null, hash: null, saved: "" };
var schemas = {};
var compile = { branch: null, row: null }; // the compile status row of the current branch
var gitBranch = null;
var filesList = [];

// --- HTTP -------------------------------------------------------------------------------

function ApiError(status, body) {
  this.status = status;
  this.body = body || {};
  this.message = (body && body.message) || "HTTP " + status;
}

function api(url, opts) {
  opts = opts || {};
  var headers = { Accept: "application/json" };
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  if (opts.method && opts.method !== "GET") headers["X-CSRF-Token"] = csrf;
  return fetch(url, {
    method: opts.method || "GET",
    headers: headers,
    credentials: "same-origin",
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  }).then(function (resp) {
    var type = resp.headers.get("content-type") || "";
    var read = type.indexOf("json") >= 0 ? resp.json() : resp.text();
    return read.then(function (data) {
      if (!resp.ok) throw new ApiError(resp.status, typeof data === "object" ? data : { message: data });
      return { data: data, headers: resp.headers };
    });
  });
}

function fileUrl(path) {
  return cfg.filesUrl + "/" + path.split("/").map(encodeURIComponent).join("/");
}

function say(text) { $("ide-notice").textContent = text; }

function fail(err) {
  say("");
  var box = $("ide-error");
  box.textContent = err && err.message ? err.message : String(err);
  box.hidden = false;
}

function ok(text) {
  $("ide-error").hidden = true;
  say(text);
}

// --- compile problems --------------------------------------------------------------------

function problemsOf(path) {
  var row = compile.row;
  if (!row || !row.problems) return [];
  return row.problems.filter(function (p) { return !path || p.path === path; });
}

function pickRow(status) {
  var rows = status.branches || [];
  var want = gitBranch || status.default_branch;
  return rows.find(function (r) { return r.branch === want; }) ||
    rows.slice().sort(function (a, b) { return (b.updated_at || "").localeCompare(a.updated_at || ""); })[0] || null;
}

function showCompile(status) {
  compile.row = pickRow(status);
  var row = compile.row;
  var badge = $("ide-compile");
  var state = row ? row.state : "none";
  var errors = problemsOf(null).filter(function (p) { return p.severity !== "warning"; }).length;
  badge.className = "badge state-" + (state === "succeeded" ? "ok" : state === "failed" ? "bad" : "running");
  badge.textContent = state + (row && row.problems && row.problems.length ? " · " + row.problems.length + " problem" + (row.problems.length > 1 ? "s" : "") : "") +
    (row && row.draft ? " (draft)" : "") + (row && row.promoted ? " (live)" : "");
  badge.setAttribute("data-state", state);
  badge.setAttribute("data-errors", String(errors));
  var notice = $("ide-notice");
  if (/compiling…$/.test(notice.textContent) && (state === "succeeded" || state === "failed")) {
    notice.textContent = notice.textContent.replace(/compiling…$/, state === "failed"
      ? "the compile failed (see Problems)." : "compiled" + (row && row.promoted ? ", live." : ", a draft."));
  }
  renderProblems();
  renderTree();
  relint();
}

function renderProblems() {
  var list = $("ide-problems");
  list.replaceChildren();
  var all = problemsOf(null);
  $("ide-problem-count").textContent = String(all.length);
  if (compile.row && compile.row.error && !all.length) {
    var li0 = document.createElement("li");
    li0.className = "error";
    li0.textContent = compile.row.error;
    list.appendChild(li0);
  }
  all.forEach(function (p) {
    var li = document.createElement("li");
    li.className = p.severity === "warning" ? "warning" : "problem";
    var link = document.createElement("button");
    link.type = "button";
    link.className = "link-like";
    link.textContent = p.path + ":" + p.line + ":" + p.column;
    link.addEventListener("click", function () { open(p.path, p.line); });
    li.appendChild(link);
    li.appendChild(document.createTextNode(" " + (p.severity === "warning" ? "warning: " : "") + p.message));
    list.appendChild(li);
  });
  if (!all.length && !(compile.row && compile.row.error)) {
    var none = document.createElement("li");
    none.className = "muted";
    none.textContent = "No problems.";
    list.appendChild(none);
  }
}

function watchCompile() {
  follow(cfg.eventsUrl, function (name, data) {
    if (name === "status") showCompile(data);
  }).then(function () {
    watchCompile();
  }, function () {
    window.setTimeout(watchCompile, 2000); // the Factory restarting: try again
  });
}

// --- file tree ----------------------------------------------------------------------------

function loadTree() {
  return api(cfg.filesUrl).then(function (r) {
    filesList = r.data.files.filter(function (f) { return f.type === "file"; }).map(function (f) { return f.path; });
    renderTree();
  }, fail);
}

function renderTree() {
  var root = $("ide-files");
  root.replaceChildren();
  var counts = {};
  problemsOf(null).forEach(function (p) { counts[p.path] = (counts[p.path] || 0) + 1; });
  var folders = {};
  filesList.forEach(function (path) {
    var cut = path.lastIndexOf("/");
    var dir = cut < 0 ? "" : path.slice(0, cut);
    (folders[dir] = folders[dir] || []).push(path);
  });
  Object.keys(folders).sort().forEach(function (dir) {
    var parent = root;
    if (dir) {
      var li = document.createElement("li");
      var label = document.createElement("span");
      label.className = "folder";
      label.textContent = dir + "/";
      li.appendChild(label);
      parent = document.createElement("ul");
      li.appendChild(parent);
      root.appendChild(li);
    }
    folders[dir].sort().forEach(function (path) {
      var item = document.createElement("li");
      var button = document.createElement("button");
      button.type = "button";
      button.className = "file";
      button.setAttribute("data-path", path);
      button.textContent = path.slice(dir ? dir.length + 1 : 0);
      if (path === current.path) button.setAttribute("aria-current", "true");
      if (counts[path]) {
        var badge = document.createElement("span");
        badge.className = "badge state-bad";
        badge.textContent = String(counts[path]);
        badge.setAttribute("aria-label", counts[path] + " problems");
        button.appendChild(document.createTextNode(" "));
        button.appendChild(badge);
      }
      button.addEventListener("click", function () { open(path); });
      item.appendChild(button);
      parent.appendChild(item);
    });
  });
  var add = document.createElement("li");
  add.className = "new-file";
  if (cfg.canEdit) {
    var form = document.createElement("form");
    var lab = document.createElement("label");
    lab.setAttribute("for", "ide-new-path");
    lab.textContent = "New file";
    var input = document.createElement("input");
    input.id = "ide-new-path";
    input.placeholder = "workflows/new.workflow.yml";
    var go = document.createElement("button");
    go.type = "submit";
    go.textContent = "Create file";
    form.append(lab, input, go);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var path = input.value.trim();
      if (!path) return;
      api(fileUrl(path), { method: "PUT", body: { content: "", expected_hash: null } })
        .then(function () { return loadTree(); })
        .then(function () { return open(path); }, fail);
    });
    add.appendChild(form);
    root.appendChild(add);
  }
}

// --- the editor ---------------------------------------------------------------------------

function loadEditor() {
  return Promise.all([
    import(cfg.editorUrl),
    api(cfg.schemasUrl).then(function (r) { schemas = r.data; }, function () { schemas = {}; }),
  ]).then(function (got) {
    CM = got[0];
    var readOnly = !cfg.canEdit;
    var lint = CM.linter(function (v) {
      var text = v.state.doc.toString();
      var found = [];
      if (!current.path) return found;
      var kind = kindOf(current.path);
      if (/\.ya?ml$/.test(current.path)) {
        try { found = validate(CM, kind ? schemas[kind] : null, text); } catch (e) { found = []; }
        found.forEach(function (d) { d.source = "schema"; });
      }
      problemsOf(current.path).forEach(function (p) {
        var n = Math.max(1, Math.min(p.line || 1, v.state.doc.lines));
        var line = v.state.doc.line(n);
        var from = Math.min(line.from + Math.max(0, (p.column || 1) - 1), line.to);
        found.push({
          from: from, to: Math.max(from, line.to),
          severity: p.severity === "warning" ? "warning" : "error",
          source: "compile", message: p.message,
        });
      });
      return found;
    }, {
      delay: 300,
      // a new compile status (or another file opened) re-runs it without an edit
      needsRefresh: function (u) {
        return u.transactions.some(function (tr) { return tr.isUserEvent("quarry.compile"); });
      },
    });
    var state = CM.EditorState.create({
      doc: "",
      extensions: [
        CM.lineNumbers(), CM.highlightActiveLineGutter(), CM.highlightSpecialChars(),
        CM.history(), CM.foldGutter(), CM.drawSelection(), CM.indentOnInput(),
        CM.syntaxHighlighting(CM.defaultHighlightStyle, { fallback: true }), CM.bracketMatching(),
        CM.highlightActiveLine(), CM.highlightSelectionMatches(), CM.yaml(),
        CM.autocompletion({ override: [completer(CM, function () {
          var kind = current.path ? kindOf(current.path) : null;
          return kind ? schemas[kind] : null;
        })] }),
        lint, CM.lintGutter(),
        CM.EditorState.readOnly.of(readOnly),
        CM.EditorView.cspNonce.of(cfg.styleNonce),
        CM.EditorView.contentAttributes.of({ "aria-label": "File content", "aria-describedby": "editor-heading", tabindex: "0" }),
        CM.keymap.of([
          { key: "Mod-s", preventDefault: true, run: function () { save(); return true; } },
        ].concat(CM.defaultKeymap, CM.historyKeymap, CM.foldKeymap, CM.completionKeymap,
          CM.lintKeymap, CM.searchKeymap)),
        CM.EditorView.updateListener.of(function (u) { if (u.docChanged) dirtyChanged(); }),
      ],
    });
    view = new CM.EditorView({ state: state, parent: $("ide-cm") });
    document.body.setAttribute("data-editor", "ready");
  });
}

function relint() {
  if (view) view.dispatch({ userEvent: "quarry.compile" });
}

function text() { return view ? view.state.doc.toString() : ""; }

function setText(value) {
  view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: value } });
}

function dirtyChanged() {
  var dirty = current.path !== null && text() !== current.saved;
  $("ide-dirty").textContent = dirty ? "(unsaved)" : "";
  var save = $("ide-save");
  if (save) save.disabled = !dirty;
}

function open(path, line) {
  if (!view) return editorReady.then(function () { return open(path, line); });
  if (current.path && current.path !== path && text() !== current.saved &&
      !window.confirm("Discard the unsaved changes to " + current.path + "?")) {
    return Promise.resolve();
  }
  return api(fileUrl(path)).then(function (r) {
    if ((r.headers.get("content-type") || "").indexOf("text/") !== 0) {
      throw new Error(path + " is not a text file; it is not opened in the editor.");
    }
    current = { path: path, hash: r.headers.get("X-Quarry-Content-Hash"), saved: r.data };
    setText(r.data);
    $("ide-path").textContent = path;
    $("ide-conflict").hidden = true;
    if ($("ide-delete")) $("ide-delete").disabled = false;
    var run = $("ide-run");
    var kind = kindOf(path);
    if (run) {
      run.hidden = !(kind === "workflow" || kind === "app");
      run.textContent = kind === "app" ? "Run this app" : "Run this workflow";
    }
    dirtyChanged();
    renderTree();
    var url = new URL(window.location.href);
    url.searchParams.set("file", path);
    window.history.replaceState(null, "", url.toString());
    if (line) {
      var at = view.state.doc.line(Math.max(1, Math.min(line, view.state.doc.lines))).from;
      view.dispatch({ selection: { anchor: at }, scrollIntoView: true });
      view.focus();
    }
    relint();
  }, fail);
}

function save(expected) {
  if (!current.path || !cfg.canEdit) return Promise.resolve();
  var content = text();
  var hash = expected !== undefined ? expected : current.hash;
  say("Saving " + current.path + "…");
  return api(fileUrl(current.path), { method: "PUT", body: { content: content, expected_hash: hash } })
    .then(function (r) {
      current.hash = r.data.hash;
      current.saved = content;
      $("ide-conflict").hidden = true;
      dirtyChanged();
      ok("Saved " + current.path + "; compiling…");
      refreshGit();
    }, function (err) {
      if (err.status === 409) return conflict(content);
      fail(err);
    });
}

// Someone saved the file since we read it: show both, let the person keep one.
function conflict(mine) {
  return api(fileUrl(current.path)).then(function (r) {
    var theirs = r.data;
    var theirHash = r.headers.get("X-Quarry-Content-Hash");
    $("conflict-path").textContent = current.path;
    $("conflict-mine").textContent = mine;
    $("conflict-theirs").textContent = theirs;
    var box = $("ide-conflict");
    box.hidden = false;
    box.focus();
    say("Not saved: " + current.path + " changed since you opened it.");
    $("conflict-keep-mine").onclick = function () { save(theirHash); };
    $("conflict-take-theirs").onclick = function () {
      current.hash = theirHash;
      current.saved = theirs;
      setText(theirs);
      box.hidden = true;
      dirtyChanged();
      ok("Took the saved version of " + current.path + ".");
    };
  }, fail);
}

function runThis() {
  var kind = kindOf(current.path || "");
  if (kind !== "workflow" && kind !== "app") return;
  var first = text() !== current.saved ? save() : Promise.resolve();
  first.then(function () {
    if (text() !== current.saved) return null; // the save did not go through (a conflict)
    say("Starting a draft run of " + current.path + "…");
    return api(cfg.draftRunsUrl, { method: "POST", body: { kind: kind, name: current.path } });
  }).then(function (r) {
    if (!r) return;
    var notice = $("ide-notice");
    notice.replaceChildren();
    notice.appendChild(document.createTextNode("Draft run started. "));
    var a = document.createElement("a");
    a.href = "/runs/" + encodeURIComponent(r.data.id);
    a.textContent = "Open the run";
    a.id = "ide-run-link";
    notice.appendChild(a);
  }, fail);
}

// --- git -----------------------------------------------------------------------------------

var CODES = { M: "modified", A: "added", D: "deleted", R: "renamed", C: "copied", T: "type changed", "?": "new", U: "conflict" };
var changes = { staged: [], unstaged: [] }; // the last status, as the two lists show it
var gitBusy = false;

// One list (Staged or Changes): each file with its change, a Stage or Unstage button
// (editors only) and a diff button for that side.
function renderChanges(listId, entries, staged) {
  var list = $(listId);
  list.replaceChildren();
  if (!entries.length) {
    var none = document.createElement("li");
    none.className = "muted";
    none.textContent = staged ? "Nothing staged." : "No changes.";
    list.appendChild(none);
  }
  entries.forEach(function (f) {
    var li = document.createElement("li");
    li.setAttribute("data-path", f.path);
    var name = document.createElement("span");
    name.className = "change-path";
    name.textContent = (f.from ? f.from + " → " : "") + f.path;
    var code = document.createElement("span");
    code.className = "muted";
    code.textContent = "(" + (CODES[f.code] || f.code) + ")";
    li.append(name, code);
    if (cfg.canEdit) {
      var act = document.createElement("button");
      act.type = "button";
      act.className = staged ? "git-unstage" : "git-stage";
      act.textContent = staged ? "Unstage" : "Stage";
      act.setAttribute("aria-label", (staged ? "Unstage " : "Stage ") + f.path);
      act.addEventListener("click", function () {
        stageOrUnstage(staged ? "/unstage" : "/stage", f.from ? [f.path, f.from] : [f.path], act);
      });
      li.appendChild(act);
    }
    var diff = document.createElement("button");
    diff.type = "button";
    diff.className = "link-like";
    diff.textContent = "diff";
    diff.setAttribute("aria-label", (staged ? "Staged diff: " : "Diff of ") + f.path);
    diff.addEventListener("click", function () { showDiff(f.path, staged); });
    li.appendChild(diff);
    list.appendChild(li);
  });
}

function showStatus(s) {
  gitBranch = s.branch;
  $("ide-branch").textContent = s.branch || "(detached)";
  changes = { staged: s.staged || [], unstaged: s.unstaged || [] };
  renderChanges("git-staged", changes.staged, true);
  renderChanges("git-changes", changes.unstaged, false);
  $("git-staged-count").textContent = String(changes.staged.length);
  $("git-changes-count").textContent = String(changes.unstaged.length);
  if ($("git-stage-all")) $("git-stage-all").disabled = !changes.unstaged.length;
  if ($("git-unstage-all")) $("git-unstage-all").disabled = !changes.staged.length;
}

// Stage or unstage, render the status the answer carries, and keep the keyboard
// where it was: the button now in the clicked one's place, else the list's last,
// else the other list's first, else the commit message (after Stage all: the message).
function stageOrUnstage(route, paths, button) {
  if (gitBusy) return Promise.resolve();
  gitBusy = true;
  var list = button.closest("ul");
  var selector = route === "/stage" ? "button.git-stage" : "button.git-unstage";
  var index = list ? Array.prototype.indexOf.call(list.querySelectorAll(selector), button) : -1;
  var had = document.activeElement === button;
  return api(cfg.gitUrl + route, { method: "POST", body: { paths: paths } }).then(function (r) {
    showStatus(r.data);
    var what = paths.length > 2 ? paths.length + " files" : paths.join(", ");
    ok((route === "/stage" ? "Staged " : "Unstaged ") + what + ".");
    if (!had) return;
    var same = list ? list.querySelectorAll(selector) : [];
    var other = document.querySelector(route === "/stage" ? "#git-staged button.git-unstage" : "#git-changes button.git-stage");
    var next = list ? same[Math.min(index, same.length - 1)] || other : route === "/stage" ? null : other;
    (next || $("git-message")).focus();
  }, fail).then(function () { gitBusy = false; });
}

function refreshGit() {
  var status = api(cfg.gitUrl + "/status").then(function (r) { showStatus(r.data); });
  var branches = api(cfg.gitUrl + "/branches").then(function (r) {
    var select = $("git-branches");
    select.replaceChildren();
    r.data.branches.forEach(function (b) {
      var opt = document.createElement("option");
      opt.value = b.name;
      opt.textContent = b.name + (b.current ? " (current)" : "");
      opt.selected = b.current;
      select.appendChild(opt);
    });
  });
  var log = api(cfg.gitUrl + "/log?limit=8").then(function (r) {
    var list = $("git-log");
    list.replaceChildren();
    r.data.commits.forEach(function (c) {
      var li = document.createElement("li");
      var code = document.createElement("code");
      code.textContent = String(c.sha || c.commit || "").slice(0, 7);
      li.append(code, document.createTextNode(" " + (c.subject || c.message || "")));
      list.appendChild(li);
    });
  });
  return Promise.all([status, branches, log]).catch(fail);
}

function gitAction(path, body, done) {
  say(path.slice(1).replace(/^./, function (c) { return c.toUpperCase(); }) + "…");
  return api(cfg.gitUrl + path, { method: "POST", body: body || {} }).then(function (r) {
    ok(done(r.data));
    return Promise.all([refreshGit(), loadTree()]);
  }, fail);
}

function compileText(c) {
  if (!c) return "";
  if (c.state === "failed") return "; the compile failed (" + (c.problems || []).length + " problems)";
  return "; compiled" + (c.promoted ? " and live" : "");
}

// The diff of one file's staged or unstaged side, or (no path) of every change.
function showDiff(path, staged) {
  var pre = $("git-diff-text");
  var query = [];
  if (path) query.push("path=" + encodeURIComponent(path), "staged=" + (staged ? "true" : "false"));
  var url = cfg.gitUrl + "/diff" + (query.length ? "?" + query.join("&") : "");
  return api(url).then(function (r) {
    pre.textContent = r.data || "No differences.";
    pre.setAttribute("aria-label", path ? (staged ? "Staged diff of " : "Diff of ") + path : "Diff");
    pre.hidden = false;
  }, fail);
}

function deleteFile() {
  var path = current.path;
  if (!path || !window.confirm("Delete " + path + "? (Until you commit, git can bring it back.)")) return;
  api(fileUrl(path) + "?expected_hash=" + encodeURIComponent(current.hash || ""), { method: "DELETE" })
    .then(function () {
      current = { path: null, hash: null, saved: "" };
      setText("");
      $("ide-path").textContent = "No file open";
      $("ide-delete").disabled = true;
      dirtyChanged();
      ok("Deleted " + path + "; compiling…");
      return Promise.all([loadTree(), refreshGit()]);
    }, function (err) {
      if (err.status === 409) fail(new Error(path + " changed since you opened it; open it again first."));
      else fail(err);
    });
}

function wireGit() {
  $("git-diff").addEventListener("click", function () { showDiff(null, false); });
  var form = $("git-commit");
  if (!form) return;
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    if (!changes.staged.length) {
      fail(new Error("Nothing is staged: stage the changes to commit (Stage beside a file, or Stage all)."));
      return;
    }
    gitAction("/commit", { message: $("git-message").value }, function (d) {
      $("git-message").value = "";
      return "Committed " + String(d.commit).slice(0, 7) + " on " + d.branch + compileText(d.compile) + ".";
    });
  });
  $("git-stage-all").addEventListener("click", function () {
    var paths = changes.unstaged.map(function (f) { return f.path; });
    if (paths.length) stageOrUnstage("/stage", paths, $("git-stage-all"));
  });
  $("git-unstage-all").addEventListener("click", function () {
    var paths = [];
    changes.staged.forEach(function (f) { paths.push(f.path); if (f.from) paths.push(f.from); });
    if (paths.length) stageOrUnstage("/unstage", paths, $("git-unstage-all"));
  });
  $("git-switch").addEventListener("click", function () {
    var branch = $("git-branches").value;
    if (current.path && text() !== current.saved) {
      fail(new Error("Save your edits to " + current.path + " (or undo them) before switching branches."));
      return;
    }
    gitAction("/switch", { branch: branch }, function (d) { return "Switched to " + d.branch + "."; })
      .then(function () {
        if (current.path && filesList.indexOf(current.path) >= 0) return open(current.path);
      });
  });
  $("git-create").addEventListener("click", function () {
    var name = $("git-new-branch").value.trim();
    if (!name) return;
    api(cfg.gitUrl + "/branches", { method: "POST", body: { name: name } }).then(function () {
      $("git-new-branch").value = "";
      ok("Created branch " + name + "; switch to it to work there.");
      return refreshGit();
    }, fail);
  });
  $("git-pull").addEventListener("click", function () {
    gitAction("/pull", {}, function (d) { return d.updated ? "Pulled: now at " + String(d.after).slice(0, 7) + compileText(d.compile) + "." : "Already up to date."; });
  });
  $("git-push").addEventListener("click", function () {
    gitAction("/push", {}, function (d) { return "Pushed " + d.branch + " (" + String(d.commit).slice(0, 7) + ")."; });
  });
}

// --- start ---------------------------------------------------------------------------------

var saveButton = $("ide-save");
if (saveButton) saveButton.addEventListener("click", function () { save(); });
var deleteButton = $("ide-delete");
if (deleteButton) deleteButton.addEventListener("click", deleteFile);
var runButton = $("ide-run");
if (runButton) runButton.addEventListener("click", runThis);
wireGit();
window.addEventListener("beforeunload", function (ev) {
  if (current.path && text() !== current.saved) ev.preventDefault();
});

var editorReady = loadEditor();
Promise.all([editorReady, refreshGit(), loadTree()]).then(function () {
  watchCompile();
  var first = cfg.file || filesList.find(function (p) { return p === "config.yml"; }) || filesList[0];
  if (first) return open(first);
}).catch(fail);
