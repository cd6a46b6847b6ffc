/**
 * Which cells are selected, and whether the keyboard is in a cell's editor (edit mode) or on
 * the cells themselves (command mode), as in JupyterLab.
 *
 * One cell is active (the one the keyboard is on); Shift+J/K extend the selection from an
 * anchor to the active cell, so several cells can be copied, deleted or retyped at once. In
 * command mode the active cell's element has the focus (it takes the keys: keyboard.js) and is
 * outlined; the page's `data-mode` says which mode it is in. Selection is this person's only:
 * it is not in the document, and nobody else sees it.
 *
 * Cells are kept by id, so a selection follows its cells when others add or move cells; the
 * active cell's last index is kept too, so deleting it selects the cell that took its place.
 */
import { frameScheduler } from "../dom.js";

export class Selection {
  /** `page`: the WorksheetPage (its `cells`, a CellList, and `el`). */
  constructor(page) {
    this.page = page;
    this.mode = "command";
    this.activeId = null;
    this.anchorId = null;
    this.lastIndex = 0;
    this.marked = new Set(); // the views shown as active or selected
    this.showSoon = frameScheduler(() => this.show());
    this.onFocusIn = (event) => this.focusIn(event);
    page.cells.el.addEventListener("focusin", this.onFocusIn);
    this.onFocusOut = (event) => {
      const next = event.relatedTarget instanceof Element ? event.relatedTarget : null;
      if (!next?.closest(".cm-editor")) this.setMode("command"); // out of the editors
    };
    page.cells.el.addEventListener("focusout", this.onFocusOut);
    this.onMouseDown = (event) => this.mouseDown(event);
    page.cells.el.addEventListener("mousedown", this.onMouseDown);
    page.el.dataset.mode = this.mode;
  }

  get views() {
    return this.page.cells.views;
  }

  /** The active cell: the one chosen last, or the cell now where it was, or the first. */
  active() {
    const views = this.views;
    if (!views.length) return null;
    const view = this.activeId ? this.page.cells.get(this.activeId) : null;
    if (view) {
      this.lastIndex = views.indexOf(view);
      return view;
    }
    return views[Math.min(this.lastIndex, views.length - 1)];
  }

  /** The selected cells, in the worksheet's order (the active one at least). */
  selected() {
    const active = this.active();
    if (!active) return [];
    const anchor = this.anchorId ? this.page.cells.get(this.anchorId) : null;
    if (!anchor || anchor === active) return [active];
    const views = this.views;
    const [from, to] = [views.indexOf(anchor), views.indexOf(active)].sort((a, b) => a - b);
    return views.slice(from, to + 1);
  }

  /** Make `view` the active cell; with `extend`, the selection reaches from the anchor to it. */
  select(view, { extend = false } = {}) {
    if (!view) return;
    if (!extend || !this.anchorId || !this.page.cells.get(this.anchorId)) {
      this.anchorId = extend ? (this.active()?.id ?? view.id) : view.id;
    }
    this.activeId = view.id;
    this.lastIndex = this.views.indexOf(view);
    this.show();
  }

  /** Select several cells: `views` in order, the last one active. */
  selectRange(views) {
    if (!views.length) return;
    this.anchorId = views[0].id;
    this.activeId = views[views.length - 1].id;
    this.lastIndex = this.views.indexOf(views[views.length - 1]);
    this.show();
  }

  /** The keyboard on the cells: `view` (or the active cell) selected, its element focused. */
  commandMode(view = this.active(), { extend = false } = {}) {
    if (!view) return;
    this.select(view, { extend });
    this.setMode("command");
    view.focusCell();
  }

  /** Into `view`'s editor (a Markdown cell shows its source). */
  editMode(view = this.active()) {
    if (!view) return;
    this.select(view);
    this.setMode("edit");
    if (view.cellType === "markdown") view.edit();
    else view.focus();
  }

  /** Move the active cell by `delta` places (Shift: extend the selection); stays in command mode. */
  move(delta, { extend = false } = {}) {
    const views = this.views;
    const active = this.active();
    if (!active) return;
    const index = Math.max(0, Math.min(views.length - 1, views.indexOf(active) + delta));
    this.commandMode(views[index], { extend });
  }

  setMode(mode) {
    this.mode = mode;
    this.page.el.dataset.mode = mode;
  }

  /** The keyboard went into a cell: its editor (edit mode), or the cell or its rendering. */
  focusIn(event) {
    const target = event.target instanceof Element ? event.target : null;
    const view = this.viewAt(target);
    if (!view) return;
    const editing = Boolean(target.closest(".cm-editor"));
    if (editing || view.id !== this.activeId || this.selected().length === 1) this.select(view);
    this.setMode(editing ? "edit" : "command");
  }

  /** A click on a cell outside its editor and controls selects it (Shift: extends). */
  mouseDown(event) {
    const target = event.target instanceof Element ? event.target : null;
    const view = this.viewAt(target);
    if (!view || target.closest(".cm-editor, .cell-editor, button, input, select, textarea, a, iframe")) {
      return;
    }
    if (target.closest(".outputs, .markdown-cell, .cell-inspector, .cell-stdin")) {
      this.select(view, { extend: event.shiftKey });
      return; // text there may be selected and copied: the focus is left alone
    }
    event.preventDefault();
    this.commandMode(view, { extend: event.shiftKey });
  }

  viewAt(target) {
    const el = target?.closest("section.cell");
    return el ? this.page.viewOf.get(el) : null;
  }

  /** Outline the active cell and shade the selected ones (touching only those that change). */
  show() {
    const active = this.active();
    const selected = new Set(this.selected());
    for (const view of new Set([...this.marked, ...selected])) {
      view.el.classList.toggle("cell-active", view === active);
      view.el.classList.toggle("cell-selected", selected.has(view) && selected.size > 1);
      if (selected.has(view)) view.el.dataset.selected = "true";
      else delete view.el.dataset.selected;
    }
    this.marked = selected;
  }

  destroy() {
    this.page.cells.el.removeEventListener("focusin", this.onFocusIn);
    this.page.cells.el.removeEventListener("focusout", this.onFocusOut);
    this.page.cells.el.removeEventListener("mousedown", this.onMouseDown);
  }
}
