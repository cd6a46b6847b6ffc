/**
 * Rich outputs (display_data, execute_result): choosing the best MIME type of a bundle and
 * drawing it.
 *
 * Like Jupyter, a bundle offers several representations of one value; the richest one this
 * app can show safely wins. HTML and SVG go into a sandboxed frame (sandbox.js); Markdown is
 * rendered as Markdown cells are (markdown.js: markdown-it, KaTeX, sanitised by DOMPurify);
 * images are data: URLs; JSON is pretty-printed; text/plain (with ANSI colours) is the fallback.
 * An ipywidget (its view's model id) is drawn live in a sandboxed frame too (src/widgets/), on a
 * page that follows the session's comms (`widgets`, the page's WidgetHub).
 */
import { h } from "../dom.js";
import { renderMarkdown } from "../markdown.js";
import { ansiToHtml } from "./ansi.js";
import { WIDGET_MIME, WidgetFrame } from "../widgets/view.js";
import { SandboxFrame } from "./sandbox.js";

const ORDER = [
  WIDGET_MIME,
  "text/html",
  "image/svg+xml",
  "image/png",
  "image/jpeg",
  "text/markdown",
  "application/json",
  "text/plain",
];

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
    update(newData, newMetadata = {}) {
      const mime = chooseMime(newData, widgets);
      if (this.frame && mime === this.mime && mime === WIDGET_MIME) {
        this.frame.show(newData[mime]?.model_id, newData["text/plain"]);
        return;
      }
      if (this.frame && mime === this.mime) {
        this.frame.update(String(newData[mime]));
        return;
      }
      const next = mimeView(newData, newMetadata, widgets);
      this.el.replaceWith(next.el);
      this.destroy();
      Object.assign(this, { mime: next.mime, el: next.el, frame: next.frame });
    },
    destroy() {
      this.frame?.destroy();
    },
  };
  const mime = view.mime;
  const value = mime ? data[mime] : undefined;
  if (mime === WIDGET_MIME) {
    view.frame = new WidgetFrame(widgets, value?.model_id, data["text/plain"]);
    view.el = view.frame.el;
  } else if (mime === "text/html" || mime === "image/svg+xml") {
    // an SVG document is HTML content too
    view.frame = new SandboxFrame(String(value), mime === "text/html" ? "html" : "svg");
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
      div.append(renderMarkdown(String(value)));
      return div;
    }
    case "application/json":
      return h("pre", { class: "output-json", "data-testid": "output-json" }, JSON.stringify(value, null, 2));
    case "text/plain": {
      const pre = h("pre", { class: "output-text", "data-testid": "output-text" });
      pre.innerHTML = ansiToHtml(String(value));
      return pre;
    }
    default:
      return h("pre", { class: "output-text muted" }, "(an output this app cannot show)");
  }
}

function cssName(mime) {
  return (mime ?? "unknown").replace(/[^a-z0-9]+/g, "-");
}
