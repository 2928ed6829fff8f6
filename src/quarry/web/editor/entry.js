// What Quarry's IDE page takes from CodeMirror 6 (and the `yaml` parser, for
// schema checks with positions): bundled by scripts/build-editor into
// static/vendor/codemirror.min.js, one ES module loaded only by the IDE page.
export { EditorState, Compartment } from "@codemirror/state";
export {
  EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter,
  drawSelection, highlightSpecialChars,
} from "@codemirror/view";
export { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
export {
  syntaxHighlighting, defaultHighlightStyle, indentOnInput, bracketMatching, foldGutter,
  foldKeymap,
} from "@codemirror/language";
export { yaml } from "@codemirror/lang-yaml";
export { autocompletion, completionKeymap, closeBrackets, closeBracketsKeymap } from "@codemirror/autocomplete";
export { linter, lintGutter, lintKeymap, setDiagnostics, forceLinting } from "@codemirror/lint";
export { searchKeymap, highlightSelectionMatches } from "@codemirror/search";
export { parseDocument, isMap, isSeq, isScalar, isPair, LineCounter } from "yaml";
