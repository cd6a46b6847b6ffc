/**
 * The worksheet's cells in order, on the page: the view of the document's `cells` array.
 *
 * The order is the document's. Cells appear, go and move here only as the array changes (an
 * edit of this person's or anyone's, applied to the Y.Doc), read from the array's own events:
 * each change touches only the cells it names, so a worksheet of hundreds of cells stays quick.
 * A moved cell is a deleted cell and an inserted copy with the same id (Yjs has no move); the
 * copy gets the view the cell had, with its outputs, run and editor, so a move loses nothing
 * shown. A cell deleted for good takes its view with it.
 */
import { h } from "../dom.js";

export class CellList {
  /** `cells`: the Y.Array; `makeView(ymap)` -> CellView. */
  constructor(cells, makeView) {
    this.cells = cells;
    this.makeView = makeView;
    this.views = []; // in the array's order
    this.byId = new Map(); // id -> the first view with that id
    this.el = h("div", { class: "cells", "data-testid": "cells" });
    this.observer = (event) => this.changed(event);
    this.cells.observe(this.observer);
    this.reset();
  }

  /** Show the array as it is. */
  reset() {
    for (const view of this.views) view.destroy();
    this.views = this.cells.toArray().map((ymap) => this.makeView(ymap));
    this.index();
    this.el.replaceChildren(...this.views.map((view) => view.el));
  }

  /** The array changed: apply its delta (retain, delete, insert) to the views. */
  changed(event) {
    const next = [];
    const gone = new Map(); // id -> views deleted here, which a copy may take (a move)
    let at = 0;
    for (const part of event.changes.delta) {
      if (part.retain) {
        next.push(...this.views.slice(at, at + part.retain));
        at += part.retain;
      } else if (part.delete) {
        for (const view of this.views.slice(at, at + part.delete)) {
          if (!gone.has(view.id)) gone.set(view.id, []);
          gone.get(view.id).push(view);
        }
        at += part.delete;
      } else if (part.insert) {
        next.push(...part.insert); // Y.Maps, given views below
      }
    }
    next.push(...this.views.slice(at));
    const focused = this.views.find((view) => view.el.contains(document.activeElement));
    const onCell = focused && document.activeElement === focused.el; // command mode (selection.js)
    this.views = next.map((item) => {
      if (!(item instanceof Object) || item.el) return item; // a view kept
      const reused = gone.get(item.get("id"))?.shift();
      if (reused) {
        reused.bind(item);
        return reused;
      }
      return this.makeView(item);
    });
    for (const views of gone.values()) for (const view of views) view.destroy();
    if (this.views.length !== this.cells.length) {
      console.warn("cells: the page lost count of the cells; showing them afresh");
      this.reset();
      return;
    }
    this.index();
    this.place();
    if (focused && this.views.includes(focused) && !focused.el.contains(document.activeElement)) {
      if (onCell) focused.focusCell();
      else focused.focus(); // moving its element took the focus away
    }
  }

  index() {
    this.byId.clear();
    for (const view of this.views) if (!this.byId.has(view.id)) this.byId.set(view.id, view);
  }

  /** Put the elements in the views' order, moving only those out of place. */
  place() {
    const wanted = new Set(this.views.map((view) => view.el));
    for (const child of [...this.el.children]) if (!wanted.has(child)) child.remove();
    let previous = null;
    for (const view of this.views) {
      const expected = previous ? previous.nextSibling : this.el.firstChild;
      if (expected !== view.el) this.el.insertBefore(view.el, expected);
      previous = view.el;
    }
  }

  get(id) {
    return this.byId.get(id);
  }

  indexOf(view) {
    return this.views.indexOf(view);
  }

  at(index) {
    return this.views[index];
  }

  get length() {
    return this.views.length;
  }

  destroy() {
    this.cells.unobserve(this.observer);
    for (const view of this.views) view.destroy();
    this.views = [];
    this.byId.clear();
    this.el.replaceChildren();
  }
}
