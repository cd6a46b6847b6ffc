/**
 * The editor of a cell: CodeMirror 6 bound to the cell's shared text (a Y.Text of the
 * worksheet's document, by y-codemirror.next), with Python highlighting in code cells, bracket
 * matching and closing, and the notebook's keys:
 *
 *   Shift+Enter  run the cell (show a Markdown cell) and go to the next one (on the last
 *                cell, a new one); Ctrl/Cmd+Enter: run and stay; Alt+Enter: run and insert
 *                a cell below
 *   Tab          complete from the live session (`session.complete`): one match is inserted,
 *                several are listed; at the start of a line, with a selection, or outside code
 *                cells, indent
 *   Shift+Tab    show what the session knows of the name at the cursor (`session.inspect`);
 *                with a selection, dedent
 *   Escape       close the completion list, the search or the docstring; else leave the
 *                editor for command mode (the worksheet's keys: keyboard.js)
 *   Ctrl/Cmd+Z   undo this person's last edit (Ctrl+Y or Ctrl/Cmd+Shift+Z redoes), with the
 *                worksheet's undo manager: never someone else's edit
 *
 * Everyone's typing meets in the Y.Text, character by character: nothing is saved by hand and
 * nothing conflicts. Others' cursors and selections in the cell are drawn with their name and
 * colour (`setPeers`); this person's cursor is reported with `onCursor`.
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
import { defaultKeymap, indentLess, indentMore } from "@codemirror/commands";
import { python } from "@codemirror/lang-python";
import { bracketMatching, indentOnInput, indentUnit } from "@codemirror/language";
import { highlightSelectionMatches, searchKeymap } from "@codemirror/search";
import { Compartment, EditorState, Prec, StateEffect, StateField } from "@codemirror/state";
import {
  Decoration,
  EditorView,
  ViewPlugin,
  WidgetType,
  drawSelection,
  highlightSpecialChars,
  keymap,
  placeholder,
  tooltips,
} from "@codemirror/view";
import { yCollab, ySyncAnnotation, ySyncFacet, yUndoManagerKeymap } from "y-codemirror.next";
import * as Y from "yjs";
import { codeHighlighting } from "./code-style.js";

const PLACEHOLDERS = {
  code: "Python code · Shift+Enter runs it · Tab completes",
  markdown: "Markdown, with $math$ · Shift+Enter shows it",
  raw: "Raw text: never run, exported as it is",
};

/**
 * An editor in `parent` bound to `ytext`, undoing with `undoManager`; `cellType` is "code",
 * "markdown" or "raw". Callbacks: `onRun({advance})`; `complete(code, pos)` resolving to
 * {from, to, matches} (positions in the editor's units) or null; `inspect(code, pos)`;
 * `onEscape()` (returns whether it closed something); `onCommandMode()` (Escape with nothing
 * to close); `onFocus()`; `onCursor({anchor, head})` (Yjs relative positions, as JSON)
 * when this person moves their cursor or selection here.
 */
export function createEditor({
  parent,
  ytext,
  undoManager,
  cellType = "code",
  editable,
  onRun,
  complete,
  inspect,
  onEscape,
  onCommandMode = () => {},
  onFocus,
  onCursor,
}) {
  const editability = new Compartment();
  const collab = new Compartment();
  const language = new Compartment();
  let kind = cellType;
  let prefetched = null; // the completions Tab fetched, for the list it opens

  const completionSource = async (context) => {
    if (kind !== "code") return null;
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
    if (kind !== "code" || !main.empty || !before.trim()) return indentMore(view);
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
    if (!view.state.selection.main.empty || kind !== "code") return indentLess(view);
    inspect(view.state.doc.toString(), view.state.selection.main.head);
    return true;
  };

  const notebookKeys = Prec.highest(
    keymap.of([
      { key: "Shift-Enter", run: () => (onRun({ advance: true }), true) },
      { key: "Mod-Enter", run: () => (onRun({ advance: false }), true) },
      { key: "Alt-Enter", run: () => (onRun({ insert: true }), true) },
      { key: "Tab", run: tab },
      { key: "Shift-Tab", run: shiftTab },
      { key: "Escape", run: () => Boolean(onEscape()) },
      // Ctrl/Cmd+Shift+Z: redo, whichever key value the browser reports with Shift held
      { any: (view, event) => isRedoZ(event) && (undoManager.redo(), true) },
    ]),
  );

  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: ytext.toString(),
      extensions: [
        notebookKeys,
        // y-codemirror.next: the text in both directions, and undo with the shared manager
        collab.of(yCollab(ytext, null, { undoManager })),
        remoteCursors,
        localCursor(onCursor), // after the sync plugin: the Y.Text already has the change
        highlightSpecialChars(),
        drawSelection(),
        indentOnInput(),
        indentUnit.of("    "),
        codeHighlighting, // the theme's colours (code-style.js)
        bracketMatching(),
        closeBrackets(),
        autocompletion({ override: [completionSource], activateOnTyping: false, icons: false }),
        // in <body>: a cell contains its paint (cell.css), which would clip the list
        tooltips({ parent: document.body }),
        highlightSelectionMatches(),
        language.of(languageOf(kind)),
        keymap.of([
          ...yUndoManagerKeymap,
          ...closeBracketsKeymap,
          ...defaultKeymap,
          ...searchKeymap,
          ...completionKeymap,
        ]),
        editability.of(editabilityOf(editable)),
        EditorView.updateListener.of((update) => {
          if (update.focusChanged && update.view.hasFocus) onFocus();
          // moving the cursor ends an undo step: typing elsewhere is undone on its own
          if (!update.docChanged && update.transactions.some((tr) => tr.isUserEvent("select"))) {
            undoManager.stopCapturing();
          }
        }),
        EditorView.contentAttributes.of({ "aria-label": "Cell source", "data-testid": "cell-input" }),
        // Escape that nothing in the editor wanted (a list, the search panel): command mode.
        // Not handled, so the page's own Escape (closing the help panel) still sees it.
        Prec.lowest(keymap.of([{ key: "Escape", run: () => (onCommandMode(), false) }])),
      ],
    }),
  });

  return {
    view,
    get text() {
      return view.state.doc.toString();
    },
    /** Bind to another Y.Text: the cell was moved, and a copy of it took its place. */
    rebind(newText) {
      if (newText === view.state.facet(ySyncFacet)?.ytext) return;
      const text = newText.toString();
      const same = text === view.state.doc.toString();
      view.dispatch({
        changes: same ? [] : { from: 0, to: view.state.doc.length, insert: text },
        effects: [collab.reconfigure(yCollab(newText, null, { undoManager })), setPeers.of([])],
      });
    },
    setCellType(type) {
      if (type === kind) return;
      kind = type;
      view.dispatch({ effects: language.reconfigure(languageOf(type)) });
    },
    /** Others' cursors in this cell: [{clientId, user: {name, color, colorLight}, cursor}]. */
    setPeers(peers) {
      view.dispatch({ effects: setPeers.of(peers) });
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

function isRedoZ(event) {
  return (
    (event.ctrlKey || event.metaKey) && event.shiftKey && !event.altKey && event.key.toLowerCase() === "z"
  );
}

function editabilityOf(editable) {
  return [EditorView.editable.of(editable), EditorState.readOnly.of(!editable)];
}

function languageOf(cellType) {
  return [cellType === "code" ? python() : [], placeholder(PLACEHOLDERS[cellType] ?? "")];
}

// -- cursors -------------------------------------------------------------------------------

const setPeers = StateEffect.define();

/**
 * Others' cursors and selections, from `setPeers`. Their positions are Yjs relative positions:
 * they are resolved again whenever text comes from the document (which already has it then),
 * so a cursor whose awareness arrived before the text it points into appears with that text;
 * this person's own typing only moves them along (the document does not have it yet).
 */
const remoteCursors = StateField.define({
  create: () => ({ peers: [], decorations: Decoration.none }),
  update(value, tr) {
    for (const effect of tr.effects) {
      if (effect.is(setPeers))
        return { peers: effect.value, decorations: peerDecorations(tr.state, effect.value) };
    }
    if (!tr.docChanged) return value;
    if (tr.annotation(ySyncAnnotation) && value.peers.length) {
      return { peers: value.peers, decorations: peerDecorations(tr.state, value.peers) };
    }
    return { peers: value.peers, decorations: value.decorations.map(tr.changes) };
  },
  provide: (field) => EditorView.decorations.from(field, (value) => value.decorations),
});

function peerDecorations(state, peers) {
  const conf = state.facet(ySyncFacet);
  if (!conf || !peers.length) return Decoration.none;
  const ranges = [];
  const length = state.doc.length;
  for (const { clientId, user, cursor } of peers) {
    const anchor = absolute(cursor?.anchor, conf.ytext);
    const head = absolute(cursor?.head, conf.ytext);
    if (anchor === null || head === null) continue;
    const from = Math.min(anchor, head, length);
    const to = Math.min(Math.max(anchor, head), length);
    const color = user.color ?? "#1c7ed6";
    if (from < to) {
      const style = `background-color: ${user.colorLight ?? color}`;
      ranges.push(Decoration.mark({ class: "remote-selection", attributes: { style } }).range(from, to));
    }
    const widget = new CaretWidget(clientId, String(user.name ?? "someone"), color);
    ranges.push(Decoration.widget({ widget, side: head > anchor ? -1 : 1 }).range(Math.min(head, length)));
  }
  return Decoration.set(ranges, true);
}

/** A relative position (JSON) in `ytext` as an index, or null if it is not in `ytext`. */
function absolute(json, ytext) {
  if (!json) return null;
  try {
    const relative = Y.createRelativePositionFromJSON(json);
    const position = Y.createAbsolutePositionFromRelativePosition(relative, ytext.doc);
    return position && position.type === ytext ? position.index : null;
  } catch {
    return null;
  }
}

class CaretWidget extends WidgetType {
  constructor(clientId, name, color) {
    super();
    this.clientId = clientId;
    this.name = name;
    this.color = color;
  }

  eq(other) {
    return other.clientId === this.clientId && other.name === this.name && other.color === this.color;
  }

  toDOM() {
    // The name is drawn by CSS (`::after`, from data-name): shown, but not part of the text,
    // so it is never copied, selected or read as the cell's text.
    const caret = document.createElement("span");
    caret.className = "remote-cursor";
    caret.style.setProperty("--cursor-colour", this.color);
    caret.dataset.testid = "remote-cursor";
    caret.dataset.name = this.name;
    caret.title = this.name;
    return caret;
  }

  ignoreEvent() {
    return true;
  }
}

/** Reports this person's cursor (as Yjs relative positions) whenever they move it here. */
function localCursor(onCursor) {
  return ViewPlugin.define(() => ({
    update(update) {
      if (!(update.selectionSet || update.focusChanged)) return;
      const view = update.view;
      if (!view.contentDOM.contains(view.root.activeElement)) return;
      const conf = view.state.facet(ySyncFacet);
      if (!conf) return;
      const { anchor, head } = view.state.selection.main;
      const position = (index) =>
        Y.relativePositionToJSON(Y.createRelativePositionFromTypeIndex(conf.ytext, index));
      onCursor({ anchor: position(anchor), head: position(head) });
    },
  }));
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
