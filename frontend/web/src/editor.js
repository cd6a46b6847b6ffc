/**
 * The code editor of a cell: CodeMirror 6 with Python highlighting, bracket matching and
 * closing, undo history, and the notebook's keys:
 *
 *   Shift+Enter  run the cell (and go to the next one); Ctrl/Cmd+Enter: run and stay
 *   Tab          complete from the live session (`session.complete`): one match is inserted,
 *                several are listed; at the start of a line, or with a selection, indent
 *   Shift+Tab    show what the session knows of the name at the cursor (`session.inspect`);
 *                with a selection, dedent
 *   Escape       close the completion list or the docstring
 *
 * Text set from elsewhere (another user's edit) is marked with the `remote` annotation, so
 * it is not saved back as if the user had typed it, and it is left out of the undo history.
 */
import {
  autocompletion,
  closeBrackets,
  closeBracketsKeymap,
  completionKeymap,
  completionStatus,
  acceptCompletion,
  startCompletion,
} from "@codemirror/autocomplete";
import { defaultKeymap, history, historyKeymap, indentLess, indentMore } from "@codemirror/commands";
import { python } from "@codemirror/lang-python";
import {
  bracketMatching,
  defaultHighlightStyle,
  indentOnInput,
  indentUnit,
  syntaxHighlighting,
} from "@codemirror/language";
import { highlightSelectionMatches, searchKeymap } from "@codemirror/search";
import { Annotation, Compartment, EditorState, Prec, Transaction } from "@codemirror/state";
import { drawSelection, highlightSpecialChars, keymap, placeholder, tooltips } from "@codemirror/view";
import { EditorView } from "codemirror";

const remote = Annotation.define();

/**
 * An editor in `parent` holding `doc`. Callbacks: `onChange(text)` after the user changes the
 * text; `onRun({advance})`; `complete(code, pos)` resolving to {from, to, matches} (positions
 * in the editor's units) or null; `inspect(code, pos)`; `onEscape()`; `onFocus()`.
 */
export function createEditor({
  parent,
  doc,
  editable,
  onChange,
  onRun,
  complete,
  inspect,
  onEscape,
  onFocus,
}) {
  const editability = new Compartment();
  let prefetched = null; // the completions Tab fetched, for the list it opens

  const completionSource = async (context) => {
    const code = context.state.doc.toString();
    let result =
      prefetched && prefetched.code === code && prefetched.pos === context.pos ? prefetched.result : null;
    prefetched = null;
    if (!result) {
      if (!context.explicit) return null;
      result = await complete(code, context.pos);
    }
    if (!result || !result.matches.length) return null;
    return {
      from: result.from,
      to: result.to,
      options: result.matches.map((label) => ({ label })),
      validFor: /^[\w.]*$/,
    };
  };

  const tab = (view) => {
    if (!view.state.facet(EditorView.editable)) return false; // let Tab move the focus on
    if (completionStatus(view.state) === "active") return acceptCompletion(view);
    const { main } = view.state.selection;
    const line = view.state.doc.lineAt(main.head);
    const before = line.text.slice(0, main.head - line.from);
    if (!main.empty || !before.trim()) return indentMore(view);
    tabComplete(view);
    return true;
  };

  const tabComplete = async (view) => {
    const code = view.state.doc.toString();
    const pos = view.state.selection.main.head;
    const result = await complete(code, pos);
    if (!result?.matches.length || view.state.doc.toString() !== code) return;
    if (result.matches.length === 1) {
      const insert = result.matches[0];
      view.dispatch({
        changes: { from: result.from, to: result.to, insert },
        selection: { anchor: result.from + insert.length },
        userEvent: "input.complete",
      });
      return;
    }
    prefetched = { code, pos, result };
    startCompletion(view);
  };

  const shiftTab = (view) => {
    if (!view.state.selection.main.empty) return indentLess(view);
    inspect(view.state.doc.toString(), view.state.selection.main.head);
    return true;
  };

  const notebookKeys = Prec.highest(
    keymap.of([
      { key: "Shift-Enter", run: () => (onRun({ advance: true }), true) },
      { key: "Mod-Enter", run: () => (onRun({ advance: false }), true) },
      { key: "Tab", run: tab },
      { key: "Shift-Tab", run: shiftTab },
      { key: "Escape", run: () => (onEscape(), false) },
    ]),
  );

  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc,
      extensions: [
        notebookKeys,
        highlightSpecialChars(),
        history(),
        drawSelection(),
        indentOnInput(),
        indentUnit.of("    "),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        bracketMatching(),
        closeBrackets(),
        autocompletion({ override: [completionSource], activateOnTyping: false, icons: false }),
        // in <body>: a cell contains its paint (cell.css), which would clip the list
        tooltips({ parent: document.body }),
        highlightSelectionMatches(),
        python(),
        placeholder("Python code · Shift+Enter runs it · Tab completes"),
        keymap.of([
          ...closeBracketsKeymap,
          ...defaultKeymap,
          ...searchKeymap,
          ...historyKeymap,
          ...completionKeymap,
        ]),
        editability.of(editabilityOf(editable)),
        EditorView.updateListener.of((update) => {
          if (update.focusChanged && update.view.hasFocus) onFocus();
          if (!update.docChanged) return;
          if (update.transactions.some((tr) => tr.docChanged && !tr.annotation(remote))) {
            onChange(update.state.doc.toString());
          }
        }),
        EditorView.contentAttributes.of({ "aria-label": "Cell source", "data-testid": "cell-input" }),
      ],
    }),
  });

  return {
    view,
    get text() {
      return view.state.doc.toString();
    },
    /** Replace the text with `text` from elsewhere, changing only what differs. */
    setText(text) {
      const current = view.state.doc.toString();
      if (current === text) return;
      view.dispatch({
        changes: minimalChange(current, text),
        annotations: [remote.of(true), Transaction.addToHistory.of(false)],
      });
    },
    setEditable(value) {
      view.dispatch({ effects: editability.reconfigure(editabilityOf(value)) });
    },
    focus() {
      view.focus();
    },
    destroy() {
      view.destroy();
    },
  };
}

function editabilityOf(editable) {
  return [EditorView.editable.of(editable), EditorState.readOnly.of(!editable)];
}

/** The one change that turns `before` into `after`: keeps the cursor where the text agrees. */
function minimalChange(before, after) {
  let start = 0;
  const max = Math.min(before.length, after.length);
  while (start < max && before[start] === after[start]) start++;
  let end = 0;
  while (end < max - start && before[before.length - 1 - end] === after[after.length - 1 - end]) end++;
  return { from: start, to: before.length - end, insert: after.slice(start, after.length - end) };
}

/**
 * Positions: the API counts characters (Unicode code points, as Python does); CodeMirror
 * counts UTF-16 units. The two differ after an emoji or other astral character.
 */
export function toCodePoints(text, pos) {
  return [...text.slice(0, pos)].length;
}

export function fromCodePoints(text, points) {
  let units = 0;
  let count = 0;
  for (const char of text) {
    if (count >= points) break;
    units += char.length;
    count++;
  }
  return units;
}
