/**
 * The worksheet's cells in order, on the page and in memory.
 *
 * The order is the server's: cells are added, moved and removed here only as the feed
 * announces it (`cell_created`, `cell_moved`, `cell_deleted`, each "after" a cell or at the
 * top), never ahead of it. The feed gives every watcher the same changes in the same order,
 * so every page ends with the same order as the server, even when two people move cells at
 * once; applying one's own move early and the other's later could not promise that.
 * Each change touches one element, so a worksheet of hundreds of cells stays quick.
 */
import { h } from "../dom.js";

export class CellList {
  constructor(makeView) {
    this.makeView = makeView; // cell (as the API gives it) -> CellView
    this.views = []; // in order
    this.byId = new Map();
    this.el = h("div", { class: "cells", "data-testid": "cells" });
  }

  /** Show `cells` (in order) instead of what is shown. */
  reset(cells) {
    for (const view of this.views) view.destroy();
    this.views = [];
    this.byId.clear();
    const fragment = document.createDocumentFragment();
    for (const cell of cells) {
      const view = this.makeView(cell);
      this.views.push(view);
      this.byId.set(cell.id, view);
      fragment.append(view.el);
    }
    this.el.replaceChildren(fragment);
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

  /** Add `cell` just after cell `after` (null: at the top); nothing if it is here already. */
  insert(cell, after) {
    if (this.byId.has(cell.id)) return this.byId.get(cell.id);
    const view = this.makeView(cell);
    this.byId.set(cell.id, view);
    this.place(view, after);
    return view;
  }

  /** Move cell `id` to just after cell `after` (null: to the top). */
  move(id, after) {
    const view = this.byId.get(id);
    if (!view || id === after) return;
    this.views.splice(this.views.indexOf(view), 1);
    this.place(view, after);
  }

  remove(id) {
    const view = this.byId.get(id);
    if (!view) return;
    this.views.splice(this.views.indexOf(view), 1);
    this.byId.delete(id);
    view.el.remove();
    view.destroy();
  }

  place(view, after) {
    const previous = after ? this.byId.get(after) : null;
    const index = previous ? this.views.indexOf(previous) + 1 : 0;
    const next = this.views[index];
    this.views.splice(index, 0, view);
    this.el.insertBefore(view.el, next ? next.el : null);
  }
}
