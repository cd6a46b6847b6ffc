/**
 * The table of contents: a side panel listing the Markdown cells' headings (`#` to `######`,
 * and Setext's `===` and `---` underlines), indented by level, kept up to date as anyone edits.
 * A click scrolls to the heading (in the cell's rendering, or to the cell while it is being
 * edited) and selects its cell. Headings in fenced code blocks are not headings.
 */
import { frameScheduler, h } from "../dom.js";

/** The headings of Markdown `source`: [{level, text}], in order. */
export function headingsOf(source) {
  const headings = [];
  let fence = null;
  const lines = source.split("\n");
  for (const [index, line] of lines.entries()) {
    const opening = /^\s{0,3}(`{3,}|~{3,})/.exec(line);
    if (opening) {
      if (!fence) fence = opening[1][0];
      else if (opening[1][0] === fence) fence = null;
      continue;
    }
    if (fence) continue;
    const atx = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line);
    if (atx) {
      headings.push({ level: atx[1].length, text: plainText(atx[2]) });
      continue;
    }
    const next = lines[index + 1] ?? "";
    if (line.trim() && /^\s{0,3}(=+|-+)\s*$/.test(next) && !/^\s{0,3}([-*+]\s|>|\d+[.)]\s)/.test(line)) {
      headings.push({ level: next.trim()[0] === "=" ? 1 : 2, text: plainText(line.trim()) });
    }
  }
  return headings;
}

/** Heading text without Markdown's marks (emphasis, code, links, math dollars kept). */
function plainText(text) {
  return text
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, "$1")
    .replace(/[*_`]+/g, "")
    .trim();
}

export class TableOfContents {
  /** `page`: the WorksheetPage (its cells, document and selection). */
  constructor(page) {
    this.page = page;
    this.list = h("ol", { class: "toc-list", "data-testid": "toc-list" });
    this.empty = h("p", { class: "muted toc-empty" }, "No headings: Markdown cells' # headings show here.");
    this.el = h(
      "aside",
      {
        class: "side-panel toc-panel",
        hidden: true,
        "aria-label": "Table of contents",
        "data-testid": "toc-panel",
      },
      h(
        "div",
        { class: "side-panel-header" },
        h("span", { class: "side-panel-title" }, "Contents"),
        h(
          "button",
          {
            type: "button",
            class: "icon-button",
            title: "Close",
            "aria-label": "Close the table of contents",
            "data-testid": "toc-close",
            onclick: () => this.close(),
          },
          "✕",
        ),
      ),
      this.empty,
      this.list,
    );
    this.refreshSoon = frameScheduler(() => this.refresh());
    this.observer = () => {
      if (!this.el.hidden) this.refreshSoon();
    };
    page.doc.cells.observeDeep(this.observer);
  }

  get open() {
    return !this.el.hidden;
  }

  toggle() {
    if (this.open) this.close();
    else this.show();
  }

  show() {
    this.el.hidden = false;
    this.page.el.classList.add("toc-open");
    this.refresh();
    this.list.querySelector("button")?.focus();
  }

  close() {
    this.el.hidden = true;
    this.page.el.classList.remove("toc-open");
  }

  refresh() {
    const items = [];
    for (const view of this.page.cells.views) {
      if (view.cellType !== "markdown") continue;
      for (const [index, heading] of headingsOf(view.ytext.toString()).entries()) {
        items.push(
          h(
            "li",
            { class: `toc-item toc-level-${heading.level}`, dataset: { level: String(heading.level) } },
            h(
              "button",
              {
                type: "button",
                class: "toc-link",
                "data-testid": "toc-entry",
                dataset: { cellId: view.id, level: String(heading.level) },
                onclick: () => this.go(view.id, index),
              },
              heading.text || "(untitled)",
            ),
          ),
        );
      }
    }
    this.list.replaceChildren(...items);
    this.empty.hidden = items.length > 0;
  }

  /** Scroll to the `index`th heading of cell `id`, and select the cell. */
  go(id, index) {
    const view = this.page.cells.get(id);
    if (!view) return;
    this.page.selection.select(view);
    const heading = view.rendered.hidden
      ? null
      : view.rendered.querySelectorAll("h1, h2, h3, h4, h5, h6")[index];
    (heading ?? view.el).scrollIntoView({ block: "start" });
  }

  destroy() {
    this.page.doc.cells.unobserveDeep(this.observer);
  }
}
