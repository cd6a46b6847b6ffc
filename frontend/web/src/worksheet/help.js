/**
 * The help panel: where IPython's pager shows what `len?` or `obj??` asks for.
 *
 * The kernel does not print that help into the cell: it sends it in the run's `execute_reply`
 * as a `page` payload ({source: "page", data: a MIME bundle}), as Jupyter kernels do, so it is
 * not saved with the outputs. The page that ran the cell opens this panel with it (others see
 * nothing: it is the asker's help). HTML is shown as any HTML output is (in a sandboxed
 * frame, in the app's theme); text with its ANSI colours, which are the theme's `--ansi-*`
 * (outputs.css: 4.5:1 or more on `--surface` in the light and the dark theme), so IPython's
 * coloured headers and Pygments' signature read in both. ✕ or Escape closes it.
 */
import { h } from "../dom.js";
import { mimeView } from "../outputs/mime.js";

const SHOWN = ["text/html", "text/plain"];

export class HelpPanel {
  constructor() {
    this.view = null;
    this.body = h("div", { class: "help-body", "data-testid": "help-body" });
    this.el = h(
      "aside",
      { class: "help-panel", hidden: true, "aria-label": "Help", "data-testid": "help-panel" },
      h(
        "div",
        { class: "help-header" },
        h("span", { class: "help-title" }, "Help"),
        h(
          "button",
          {
            type: "button",
            class: "icon-button",
            title: "Close (Escape)",
            "aria-label": "Close help",
            "data-testid": "help-close",
            onclick: () => this.close(),
          },
          "✕",
        ),
      ),
      this.body,
    );
    this.onKeyDown = (event) => {
      if (event.key === "Escape" && !this.el.hidden && !event.defaultPrevented) this.close();
    };
    document.addEventListener("keydown", this.onKeyDown);
  }

  /** Show the MIME bundle `data` (a `page` payload's). */
  show(data) {
    const bundle = Object.fromEntries(
      SHOWN.filter((mime) => data?.[mime] !== undefined).map((m) => [m, data[m]]),
    );
    if (!Object.keys(bundle).length) return;
    this.view?.destroy();
    this.view = mimeView(bundle);
    this.body.replaceChildren(this.view.el);
    this.el.hidden = false;
  }

  close() {
    this.el.hidden = true;
    this.view?.destroy();
    this.view = null;
    this.body.replaceChildren();
  }

  destroy() {
    document.removeEventListener("keydown", this.onKeyDown);
    this.close();
  }
}
