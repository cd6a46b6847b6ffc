/**
 * Every command of the worksheet page, by id: its label, its keys and what it does. The
 * palette (palette.js) lists them all, the shortcuts panel shows their keys, and the keyboard
 * (keyboard.js) runs them by key. Commands work on the selected cells (selection.js), as
 * JupyterLab's do.
 *
 * A command's `keys` are [mode, key]: "command" (the keyboard is on the cells), "edit" (in an
 * editor: the editor's own keys, editor.js, listed here to be shown) or "any" (everywhere on
 * the page). Keys are named as `keyName` names them (keyboard.js): "A", "Shift+J", "D D" (a
 * chord), "Ctrl+Enter" (Cmd on a Mac). Commands that change the worksheet need the editor
 * role: a viewer's page lists them, disabled, and their keys do nothing.
 */
import { toast } from "../toast.js";
import { openCheckpointsDialog, saveCheckpoint } from "./checkpoints.js";
import {
  copyCells,
  cutCells,
  deleteCells,
  hasCopied,
  insertCells,
  isHidden,
  isScrolled,
  pasteCells,
  setCellsType,
  setHidden,
  setScrolled,
} from "./operations.js";
import { reasonFor } from "./sheet-bar.js";

export class Commands {
  /** `page`: the WorksheetPage; `panels`: {palette(), shortcuts(), toc(), find()} to open them. */
  constructor(page, panels) {
    this.page = page;
    this.list = definitions(page, panels);
    this.byId = new Map(this.list.map((command) => [command.id, command]));
    this.byKey = new Map();
    for (const command of this.list) {
      for (const [mode, key] of command.keys) this.byKey.set(`${mode} ${key}`, command);
    }
  }

  /** The command bound to `key` in `mode` ("command" or "any"), if any. */
  bound(mode, key) {
    return this.byKey.get(`${mode} ${key}`) ?? null;
  }

  /** Whether `key` is the first key of a command-mode chord ("D" of "D D"). */
  startsChord(key) {
    for (const command of this.list) {
      if (command.keys.some(([mode, k]) => mode === "command" && k.startsWith(`${key} `))) return true;
    }
    return false;
  }

  allowed(command) {
    return command.needs !== "editor" || this.page.editable;
  }

  /** Run command `id`. From a key, a command this person may not run does nothing. */
  run(id, { fromKey = false } = {}) {
    const command = this.byId.get(id);
    if (!command) return;
    if (!this.allowed(command)) {
      if (!fromKey) toast(reasonFor(this.page.role, "editor"), "error");
      return;
    }
    Promise.resolve()
      .then(() => command.run())
      .catch((error) => toast(String(error?.message ?? error), "error"));
  }
}

/** The keys of a command as people read them: "Ctrl+Shift+C", "D, D". */
export function showKey(key) {
  const mac = /Mac|iPhone|iPad/.test(navigator.platform);
  return key
    .split(" ")
    .map((part) => (mac ? part.replace("Ctrl", "⌘") : part).replace("Arrow", ""))
    .join(", ");
}

function definitions(page, panels) {
  const selection = page.selection;
  const doc = page.doc;
  const selected = () => selection.selected();
  const active = () => selection.active();
  const all = () => [...page.cells.views];
  const code = (views) => views.filter((view) => view.cellType === "code");

  /** A new cell above or below the active one, selected, in command mode (as JupyterLab's a, b). */
  const insert = (below) => {
    const view = active();
    let after = null;
    if (view && below) after = view.id;
    else if (view) after = page.cells.at(page.cells.indexOf(view) - 1)?.id ?? null;
    const id = doc.insertCell(after);
    selection.commandMode(page.cells.get(id));
  };

  const remove = (views, cut = false) => {
    if (!views.length) return;
    const next = page.cells.at(page.cells.indexOf(views[views.length - 1]) + 1);
    const previous = page.cells.at(page.cells.indexOf(views[0]) - 1);
    if (cut) cutCells(doc, views);
    else deleteCells(doc, views);
    const stay = next ?? previous;
    if (stay) selection.commandMode(stay);
  };

  const paste = (before) => {
    if (!hasCopied()) return;
    const ids = pasteCells(doc, active(), { before });
    const views = ids.map((id) => page.cells.get(id)).filter(Boolean);
    if (views.length) {
      selection.selectRange(views);
      selection.commandMode(views[views.length - 1], { extend: true });
    }
  };

  const retype = (type) => {
    const views = selected();
    setCellsType(doc, views, type);
    for (const view of views) if (type === "markdown") view.showRendered();
    selection.commandMode(active(), { extend: true });
  };

  /** Shift+Enter in command mode: run the selected cells and go on to the next one. */
  const runAndAdvance = async () => {
    const views = selected();
    if (views.length === 1) return page.run(views[0], { advance: true, command: true });
    const next = page.cells.at(page.cells.indexOf(views[views.length - 1]) + 1);
    if (next) selection.commandMode(next);
    return page.runCells(views);
  };

  const runSelected = () => {
    const views = selected();
    if (views.length === 1) return page.run(views[0], { command: true });
    return page.runCells(views);
  };

  /** Enter: into the active cell's editor, its input shown first if it was collapsed. */
  const editActive = () => {
    const view = active();
    if (view && isHidden(view, "source")) setHidden(doc, [view], "source", false);
    selection.editMode(view);
  };

  const toggle = (what, views) => setHidden(doc, views, what, !views.every((view) => isHidden(view, what)));

  const command = (id, label, run, { keys = [], needs = "editor", category = "Cells" } = {}) => ({
    id,
    label,
    run,
    keys,
    needs,
    category,
  });
  const C = (key) => ["command", key];
  const E = (key) => ["edit", key];
  const ANY = (key) => ["any", key];

  return [
    // -- modes and selection
    command("edit-mode", "Edit the cell (edit mode)", () => editActive(), {
      keys: [C("Enter")],
      category: "Modes",
    }),
    command("command-mode", "Leave the editor (command mode)", () => selection.commandMode(), {
      keys: [E("Escape")],
      needs: "viewer",
      category: "Modes",
    }),
    command("select-above", "Select the cell above", () => selection.move(-1), {
      keys: [C("K"), C("ArrowUp")],
      needs: "viewer",
      category: "Selection",
    }),
    command("select-below", "Select the cell below", () => selection.move(1), {
      keys: [C("J"), C("ArrowDown")],
      needs: "viewer",
      category: "Selection",
    }),
    command("extend-above", "Extend the selection above", () => selection.move(-1, { extend: true }), {
      keys: [C("Shift+K"), C("Shift+ArrowUp")],
      needs: "viewer",
      category: "Selection",
    }),
    command("extend-below", "Extend the selection below", () => selection.move(1, { extend: true }), {
      keys: [C("Shift+J"), C("Shift+ArrowDown")],
      needs: "viewer",
      category: "Selection",
    }),
    command(
      "select-all",
      "Select all cells",
      () => {
        const views = all();
        selection.selectRange(views);
        if (views.length) selection.commandMode(views[views.length - 1], { extend: true });
      },
      { keys: [C("Ctrl+A")], needs: "viewer", category: "Selection" },
    ),

    // -- cells
    command("insert-above", "Insert a cell above", () => insert(false), { keys: [C("A")] }),
    command("insert-below", "Insert a cell below", () => insert(true), { keys: [C("B")] }),
    command("delete-cells", "Delete the selected cells", () => remove(selected()), { keys: [C("D D")] }),
    command("to-code", "Change to code", () => retype("code"), { keys: [C("Y")] }),
    command("to-markdown", "Change to Markdown", () => retype("markdown"), { keys: [C("M")] }),
    command("to-raw", "Change to raw", () => retype("raw"), { keys: [C("R")] }),
    command("copy-cells", "Copy the selected cells", () => copyCells(selected()), {
      keys: [C("C")],
      needs: "viewer",
    }),
    command("cut-cells", "Cut the selected cells", () => remove(selected(), true), { keys: [C("X")] }),
    command("paste-below", "Paste cells below", () => paste(false), { keys: [C("V")] }),
    command("paste-above", "Paste cells above", () => paste(true), { keys: [C("Shift+V")] }),
    command(
      "move-up",
      "Move the selected cells up",
      () => {
        for (const view of selected()) page.move(view, -1);
        selection.commandMode(active(), { extend: true });
      },
      { keys: [] },
    ),
    command(
      "move-down",
      "Move the selected cells down",
      () => {
        for (const view of selected().reverse()) page.move(view, 1);
        selection.commandMode(active(), { extend: true });
      },
      { keys: [] },
    ),
    command("undo-cells", "Undo your last edit", () => doc.undo(), { keys: [C("Z")] }),
    command("redo-cells", "Redo", () => doc.redo(), { keys: [C("Shift+Z")] }),
    command(
      "duplicate-cells",
      "Duplicate the selected cells",
      () => {
        const views = selected();
        copyCells(views);
        insertCells(
          doc,
          views[views.length - 1].id,
          views.map((view) => ({
            cell_type: view.cellType,
            source: view.ytext.toString(),
            metadata: view.metadata,
          })),
        );
      },
      { keys: [] },
    ),

    // -- running
    command("run-advance", "Run the selected cells and select the next", runAndAdvance, {
      keys: [C("Shift+Enter"), E("Shift+Enter")],
      category: "Run",
    }),
    command("run-cell", "Run the selected cells", runSelected, {
      keys: [C("Ctrl+Enter"), E("Ctrl+Enter")],
      category: "Run",
    }),
    command("run-insert", "Run the cell and insert one below", () => page.run(active(), { insert: true }), {
      keys: [C("Alt+Enter"), E("Alt+Enter")],
      category: "Run",
    }),
    command("run-all", "Run all cells", () => page.runCells(all()), { category: "Run" }),
    command(
      "run-above",
      "Run all cells above",
      () => page.runCells(all().slice(0, Math.max(0, page.cells.indexOf(active())))),
      { category: "Run" },
    ),
    command(
      "run-below",
      "Run the selected cell and all below",
      () => page.runCells(all().slice(Math.max(0, page.cells.indexOf(active())))),
      { category: "Run" },
    ),
    command(
      "restart-run-all",
      "Restart the session and run all cells",
      async () => {
        if (await page.restart()) await page.runCells(all());
      },
      { category: "Session" },
    ),
    command("restart", "Restart the session", () => page.restart(), {
      keys: [C("0 0")],
      category: "Session",
    }),
    command("interrupt", "Interrupt the session", () => page.interrupt(), {
      keys: [C("I I")],
      category: "Session",
    }),
    command("save-checkpoint", "Save a checkpoint", () => saveCheckpoint(page), {
      keys: [ANY("Ctrl+S")],
      category: "Worksheet",
    }),
    command("checkpoints", "Checkpoints: list, restore, delete", () => openCheckpointsDialog(page), {
      needs: "viewer",
      category: "Worksheet",
    }),

    // -- outputs and views
    command(
      "clear-outputs",
      "Clear the outputs of the selected cells",
      () => page.clearOutputs(code(selected())),
      {
        category: "Outputs",
      },
    ),
    command("clear-all-outputs", "Clear all outputs", () => page.clearOutputs(null), { category: "Outputs" }),
    command("toggle-input", "Collapse or expand the selected inputs", () => toggle("source", selected()), {
      category: "View",
    }),
    command(
      "toggle-outputs",
      "Collapse or expand the selected outputs",
      () => toggle("outputs", code(selected())),
      { category: "View" },
    ),
    command("collapse-all-inputs", "Collapse all inputs", () => setHidden(doc, all(), "source", true), {
      category: "View",
    }),
    command("expand-all-inputs", "Expand all inputs", () => setHidden(doc, all(), "source", false), {
      category: "View",
    }),
    command("collapse-all-outputs", "Collapse all outputs", () => setHidden(doc, all(), "outputs", true), {
      category: "View",
    }),
    command("expand-all-outputs", "Expand all outputs", () => setHidden(doc, all(), "outputs", false), {
      category: "View",
    }),
    command(
      "toggle-scrolled",
      "Scroll long outputs of the selected cells (or not)",
      () => {
        const views = code(selected());
        setScrolled(doc, views, !views.every(isScrolled));
      },
      { category: "View" },
    ),
    command("scroll-all-outputs", "Scroll all long outputs", () => setScrolled(doc, all(), true), {
      category: "View",
    }),
    command("unscroll-all-outputs", "Show all outputs whole", () => setScrolled(doc, all(), false), {
      category: "View",
    }),

    // -- panels
    command("palette", "Command palette", () => panels.palette(), {
      keys: [ANY("Ctrl+Shift+C")],
      needs: "viewer",
      category: "Panels",
    }),
    command("shortcuts", "Keyboard shortcuts", () => panels.shortcuts(), {
      keys: [C("H")],
      needs: "viewer",
      category: "Panels",
    }),
    command("toc", "Table of contents", () => panels.toc(), { needs: "viewer", category: "Panels" }),
    command("find", "Find and replace", () => panels.find(), {
      keys: [ANY("Ctrl+F")],
      needs: "viewer",
      category: "Panels",
    }),
  ];
}
