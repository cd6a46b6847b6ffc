/**
 * One stream output (stdout or stderr), growing as the feed brings more text.
 *
 * A cell that prints 100,000 lines must not freeze the page, so:
 * - new text is appended to the `<pre>` (only the new part is converted and inserted), at
 *   most once per animation frame however many feed messages arrived;
 * - past MAX_LINES lines (or MAX_CHARS characters) only the last MAX_LINES are in the page,
 *   under a notice that says how many there are, with "Show all" to put every line in;
 * - text with carriage returns (progress bars) is redrawn as a terminal would show it.
 * The whole text is always kept, so "Show all" and exporting lose nothing.
 */
import { h, frameScheduler } from "../dom.js";
import { formatCount } from "../format.js";
import { ansiConverter, applyCarriageReturns } from "./ansi.js";

const MAX_LINES = 5000;
const MAX_CHARS = 1_000_000;

export class StreamView {
  constructor(name, text = "") {
    this.name = name;
    this.text = "";
    this.newlines = 0;
    this.carriage = false; // the text has "\r": redraw it whole each time
    this.showAll = false;
    this.renderedFrom = 0; // what the <pre> shows: text.slice(renderedFrom, renderedTo)
    this.renderedTo = 0;
    this.converter = ansiConverter();
    this.pre = h("pre", { class: `output-stream stream-${name}`, "data-testid": `output-${name}` });
    this.notice = h("div", { class: "stream-notice", hidden: true, "data-testid": "stream-truncated" });
    this.el = h(
      "div",
      { class: "output output-stream-wrap", "data-testid": "output" },
      this.notice,
      this.pre,
    );
    this.schedule = frameScheduler(() => this.render());
    if (text) this.append(text);
  }

  append(text) {
    this.text += text;
    this.newlines += countNewlines(text);
    if (text.includes("\r")) this.carriage = true;
    this.schedule();
  }

  get lineCount() {
    return this.newlines + (this.text && !this.text.endsWith("\n") ? 1 : 0);
  }

  render() {
    const limited = !this.showAll && (this.newlines > MAX_LINES || this.text.length > MAX_CHARS);
    if (!limited && !this.carriage && this.renderedFrom === 0) {
      const fresh = this.text.slice(this.renderedTo);
      if (fresh) this.pre.insertAdjacentHTML("beforeend", this.converter.ansi_to_html(fresh));
      this.renderedTo = this.text.length;
      this.notice.hidden = true;
      return;
    }
    const from = limited ? this.tailStart() : 0;
    const shown = this.text.slice(from);
    this.converter = ansiConverter();
    this.pre.innerHTML = this.converter.ansi_to_html(this.carriage ? applyCarriageReturns(shown) : shown);
    this.renderedFrom = from;
    this.renderedTo = this.text.length;
    this.showNotice(limited ? countNewlines(shown) + (shown.endsWith("\n") ? 0 : 1) : 0);
  }

  /** Where the last MAX_LINES lines (at most MAX_CHARS characters) begin. */
  tailStart() {
    let index = this.text.endsWith("\n") ? this.text.length - 1 : this.text.length;
    for (let lines = 0; lines < MAX_LINES && index > 0; lines++) {
      index = this.text.lastIndexOf("\n", index - 1);
      if (index < 0) return 0;
    }
    return Math.max(index + 1, this.text.length - MAX_CHARS);
  }

  showNotice(shownLines) {
    if (!shownLines) {
      this.notice.hidden = true;
      return;
    }
    const button = h(
      "button",
      {
        type: "button",
        class: "link-button",
        "data-testid": "stream-show-all",
        onclick: () => {
          this.showAll = true;
          this.render();
        },
      },
      "Show all",
    );
    this.notice.replaceChildren(
      `Showing the last ${formatCount(shownLines)} of ${formatCount(this.lineCount)} lines. `,
      button,
    );
    this.notice.hidden = false;
  }
}

function countNewlines(text) {
  let count = 0;
  for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) count++;
  return count;
}
