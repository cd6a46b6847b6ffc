/**
 * Find and replace across the worksheet: the text of every cell (code, Markdown and raw), in
 * the worksheet's order. The panel counts the matches ("2 of 5"), and Enter, ↓ and ↑ go from
 * one to the next, selecting it in its cell's editor (a rendered Markdown cell is scrolled to).
 * Replacing edits the cells' shared text through the document, as typing does: everyone sees
 * it at once, and Ctrl+Z takes it back (Replace all is one step). Matching is plain text,
 * case-insensitive unless "Aa" is on. The count follows anyone's edits while the panel is open.
 */
import { frameScheduler, h } from "../dom.js";

export class FindPanel {
  /** `page`: the WorksheetPage (its cells, document, selection and role). */
  constructor(page) {
    this.page = page;
    this.current = -1; // index in this.found
    this.found = [];
    this.query = h("input", {
      type: "search",
      placeholder: "Find",
      "aria-label": "Find",
      "data-testid": "find-input",
      oninput: () => this.search({ from: "start" }),
      onkeydown: (event) => {
        if (event.key !== "Enter") return;
        event.preventDefault();
        this.step(event.shiftKey ? -1 : 1);
      },
    });
    this.replacement = h("input", {
      type: "text",
      placeholder: "Replace with",
      "aria-label": "Replace with",
      "data-testid": "replace-input",
      onkeydown: (event) => {
        if (event.key !== "Enter") return;
        event.preventDefault();
        this.replace();
      },
    });
    this.caseBox = h("input", {
      type: "checkbox",
      "data-testid": "find-case",
      onchange: () => this.search({ from: "start" }),
    });
    this.count = h("span", { class: "find-count muted", "data-testid": "find-count", role: "status" });
    const button = (label, title, testid, onclick) =>
      h("button", { type: "button", title, "aria-label": title, "data-testid": testid, onclick }, label);
    this.replaceButtons = [
      button("Replace", "Replace this match", "replace-one", () => this.replace()),
      button("All", "Replace every match", "replace-all", () => this.replaceAll()),
    ];
    this.el = h(
      "aside",
      {
        class: "side-panel find-panel",
        hidden: true,
        "aria-label": "Find and replace",
        "data-testid": "find-panel",
      },
      h(
        "div",
        { class: "side-panel-header" },
        h("span", { class: "side-panel-title" }, "Find and replace"),
        h(
          "button",
          {
            type: "button",
            class: "icon-button",
            title: "Close (Escape)",
            "aria-label": "Close find",
            "data-testid": "find-close",
            onclick: () => this.close(),
          },
          "✕",
        ),
      ),
      h(
        "div",
        { class: "find-row" },
        this.query,
        h("label", { class: "find-case", title: "Match case" }, this.caseBox, "Aa"),
      ),
      h(
        "div",
        { class: "find-row" },
        this.count,
        button("↑", "Previous match (Shift+Enter)", "find-prev", () => this.step(-1)),
        button("↓", "Next match (Enter)", "find-next", () => this.step(1)),
      ),
      h("div", { class: "find-row" }, this.replacement, this.replaceButtons),
    );
    this.el.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        this.close();
      }
    });
    this.refreshSoon = frameScheduler(() => this.search({ from: "current" }));
    this.observer = () => {
      if (!this.el.hidden && !this.replacing) this.refreshSoon();
    };
    page.doc.cells.observeDeep(this.observer);
  }

  get open() {
    return !this.el.hidden;
  }

  /** Open (or go back to) the panel, with the text selected in an editor, if any, to find. */
  show() {
    const selected = window.getSelection()?.toString() ?? "";
    if (selected && !selected.includes("\n")) this.query.value = selected;
    this.el.hidden = false;
    this.page.el.classList.add("find-open");
    this.setEditable(this.page.editable);
    this.query.focus();
    this.query.select();
    this.search({ from: "start" });
  }

  close() {
    if (this.el.hidden) return;
    this.el.hidden = true;
    this.page.el.classList.remove("find-open");
    this.mark(null);
    const view = this.found[this.current]?.view ?? this.page.selection.active();
    this.found = [];
    if (view) this.page.selection.commandMode(view);
  }

  setEditable(editable) {
    this.replacement.disabled = !editable;
    for (const button of this.replaceButtons) button.disabled = !editable;
  }

  /** Every match: [{view, from, to}], in the worksheet's order. */
  matches() {
    const needle = this.query.value;
    if (!needle) return [];
    const exact = this.caseBox.checked;
    const wanted = exact ? needle : needle.toLowerCase();
    const found = [];
    for (const view of this.page.cells.views) {
      const text = exact ? view.ytext.toString() : view.ytext.toString().toLowerCase();
      for (let at = text.indexOf(wanted); at >= 0; at = text.indexOf(wanted, at + wanted.length)) {
        found.push({ view, from: at, to: at + needle.length });
      }
    }
    return found;
  }

  /** Search again; `from`: "start" (the first match) or "current" (stay near the match shown). */
  search({ from }) {
    const before = this.found[this.current];
    this.found = this.matches();
    if (!this.found.length) this.current = -1;
    else if (from === "start" || !before) this.current = 0;
    else {
      const views = this.page.cells.views;
      const place = (m) => [views.indexOf(m.view), m.from];
      const [cell, at] = place(before);
      const index = this.found.findIndex((m) => {
        const [c, f] = place(m);
        return c > cell || (c === cell && f >= at);
      });
      this.current = index < 0 ? 0 : index;
    }
    this.showCount();
    // after others' edits (or this person's typing), the cursor is left where it is
    const moved = from === "start";
    this.mark(this.found[this.current] ?? null, { scroll: moved, select: moved });
  }

  showCount() {
    this.count.textContent = this.found.length
      ? `${this.current + 1} of ${this.found.length}`
      : this.query.value
        ? "No matches"
        : "";
    this.count.dataset.total = String(this.found.length);
  }

  step(delta) {
    if (!this.found.length) return;
    this.current = (this.current + delta + this.found.length) % this.found.length;
    this.showCount();
    this.mark(this.found[this.current]);
  }

  /** Show match `match` (null: none): its cell selected, the text selected in its editor. */
  mark(match, { scroll = true, select = true } = {}) {
    for (const view of this.page.cells.views) view.el.classList.remove("cell-find-current");
    if (!match) return;
    const view = match.view;
    view.el.classList.add("cell-find-current");
    if (!select) return;
    this.page.selection.select(view);
    if (view.cellType === "markdown" && !view.editing) {
      if (scroll) view.el.scrollIntoView({ block: "nearest" });
      return;
    }
    const editor = view.materialize().view;
    editor.dispatch({ selection: { anchor: match.from, head: match.to }, scrollIntoView: scroll });
    if (scroll) view.el.scrollIntoView({ block: "nearest" });
  }

  /** Replace the match shown, then show the next. */
  replace() {
    const match = this.found[this.current];
    if (!match || !this.page.editable) return;
    const ytext = match.view.ytext;
    const text = this.replacement.value;
    this.edit(() => {
      ytext.delete(match.from, match.to - match.from);
      ytext.insert(match.from, text);
    });
    const after = { view: match.view, from: match.from + text.length };
    this.found = this.matches();
    const views = this.page.cells.views;
    const index = this.found.findIndex(
      (m) =>
        views.indexOf(m.view) > views.indexOf(after.view) || (m.view === after.view && m.from >= after.from),
    );
    this.current = this.found.length ? (index < 0 ? 0 : index) : -1;
    this.showCount();
    this.mark(this.found[this.current] ?? null);
  }

  /** Replace every match, as one edit. */
  replaceAll() {
    if (!this.page.editable) return;
    const found = this.matches();
    if (!found.length) return;
    const text = this.replacement.value;
    this.edit(() => {
      for (const match of [...found].reverse()) {
        match.view.ytext.delete(match.from, match.to - match.from);
        match.view.ytext.insert(match.from, text);
      }
    });
    this.search({ from: "start" });
  }

  edit(fn) {
    this.replacing = true;
    try {
      this.page.doc.transact(fn);
    } finally {
      this.replacing = false;
    }
  }

  destroy() {
    this.page.doc.cells.unobserveDeep(this.observer);
  }
}
