/**
 * Rich outputs (display_data, execute_result): choosing the best MIME type of a bundle and
 * drawing it.
 *
 * Like Jupyter, a bundle offers several representations of one value; the richest one this
 * app can show safely wins. HTML and SVG go into a sandboxed frame (sandbox.js), and so does
 * JavaScript (`application/javascript`: run there, never in the app's page); Markdown is
 * rendered as Markdown cells are (markdown.js: markdown-it, KaTeX, sanitised by DOMPurify);
 * LaTeX is typeset by KaTeX (latex.js); images are data: URLs; JSON is a tree that collapses
 * (json-tree.js); text/plain (with ANSI colours) is the fallback. A parallel map's progress
 * (`application/vnd.cellbus.parallel+json`) is drawn by the app (parallel.js), in place.
 * An ipywidget (its view's model id) is drawn live in a sandboxed frame too (src/widgets/), on a
 * page that follows the session's comms (`widgets`, the page's WidgetHub).
 */
import { h } from "../dom.js";
import { renderMarkdown } from "../markdown.js";
import { ansiToHtml } from "./ansi.js";
import { jsonTree } from "./json-tree.js";
import { renderLatex } from "./latex.js";
import { WIDGET_MIME, WidgetFrame } from "../widgets/view.js";
import { SandboxFrame } from "./sandbox.js";
import { PARALLEL_MIME, ParallelView } from "./parallel.js";

const ORDER = [
  PARALLEL_MIME, // before text/html: the same progress, drawn by the app with its dashboard link
  WIDGET_MIME,
  "text/html",
  "image/svg+xml",
  "text/latex", // before images, as in JupyterLab: sympy's PNG of a formula is the poorer one
  "image/png",
  "image/jpeg",
  "text/markdown",
  "application/javascript",
  "application/json",
  "text/plain",
];

/** What a sandboxed frame shows, by MIME type (an SVG document is HTML content too). */
const FRAMED = { "text/html": "html", "image/svg+xml": "svg", "application/javascript": "javascript" };

/** The MIME type of `data` (a bundle) this app shows, or null if none. */
function chooseMime(data, widgets) {
  return ORDER.find((mime) => data && data[mime] !== undefined && (mime !== WIDGET_MIME || widgets)) ?? null;
}

/**
 * A view of the bundle `data` (with `metadata`): {el, update(data, metadata), destroy()}.
 * An update of a sandboxed output re-renders in the same frame, so it does not flicker.
 * `widgets`: the page's WidgetHub, if widgets may be drawn live.
 */
export function mimeView(data, metadata = {}, widgets = null) {
  const view = {
    mime: chooseMime(data, widgets),
    el: null,
    frame: null,
    parallel: null,
    update(newData, newMetadata = {}) {
      const mime = chooseMime(newData, widgets);
      if (this.parallel && mime === this.mime) {
        this.parallel.update(newData[mime]);
        return;
      }
      if (this.frame && mime === this.mime && mime === WIDGET_MIME) {
        this.frame.show(newData[mime]?.model_id, newData["text/plain"]);
        return;
      }
      if (this.frame && mime === this.mime) {
        this.frame.update(textOf(newData[mime]));
        return;
      }
      const next = mimeView(newData, newMetadata, widgets);
      this.el.replaceWith(next.el);
      this.destroy();
      Object.assign(this, { mime: next.mime, el: next.el, frame: next.frame, parallel: next.parallel });
    },
    destroy() {
      this.frame?.destroy();
    },
  };
  const mime = view.mime;
  const value = mime ? data[mime] : undefined;
  if (mime === PARALLEL_MIME) {
    view.parallel = new ParallelView(value);
    view.el = view.parallel.el;
  } else if (mime === WIDGET_MIME) {
    view.frame = new WidgetFrame(widgets, value?.model_id, data["text/plain"]);
    view.el = view.frame.el;
  } else if (FRAMED[mime]) {
    view.frame = new SandboxFrame(textOf(value), FRAMED[mime]);
    view.el = view.frame.el;
  } else {
    view.el = h(
      "div",
      { class: `output output-${cssName(mime)}`, "data-testid": "output", dataset: { mime: mime ?? "" } },
      render(mime, value, metadata),
    );
  }
  return view;
}

function render(mime, value, metadata) {
  switch (mime) {
    case "image/png":
    case "image/jpeg": {
      const size = metadata?.[mime] ?? {};
      return h("img", {
        src: `data:${mime};base64,${String(value).replace(/\s/g, "")}`,
        alt: "image output",
        width: size.width,
        height: size.height,
        "data-testid": "output-image",
      });
    }
    case "text/markdown": {
      const div = h("div", { class: "markdown", "data-testid": "output-markdown" });
      div.append(renderMarkdown(textOf(value)));
      return div;
    }
    case "text/latex":
      return renderLatex(textOf(value));
    case "application/json":
      return jsonTree(value, metadata?.[mime] ?? {});
    case "text/plain": {
      const pre = h("pre", { class: "output-text", "data-testid": "output-text" });
      pre.innerHTML = ansiToHtml(textOf(value));
      return pre;
    }
    default:
      return h("pre", { class: "output-text muted" }, "(an output this app cannot show)");
  }
}

/** nbformat's multi-line strings may be a list of lines. */
function textOf(value) {
  return Array.isArray(value) ? value.join("") : String(value ?? "");
}

function cssName(mime) {
  return (mime ?? "unknown").replace(/[^a-z0-9]+/g, "-");
}
