/**
 * HTML and SVG from user code, shown in sandboxed frames.
 *
 * Output HTML is written by whoever ran the cell, and every viewer of the worksheet sees it,
 * so it must not run in the app's page: a script there could call the API as the viewer. It
 * goes into `<iframe sandbox="allow-scripts" src="/sandbox.html">`. Without
 * `allow-same-origin` the frame's origin is opaque: it cannot read the app's cookies, storage
 * or DOM, and the server refuses its requests (no cookie is sent, and its Origin is not the
 * site's). Scripts inside still run, so plots and widgets that draw with JavaScript work.
 *
 * The app and the frame talk only by postMessage (see static/sandbox.html):
 *   frame -> app  {cellbus: "ready"}            the frame has loaded; send the content
 *   app -> frame  {cellbus: "render", html}      show this (again, on update_display_data)
 *   frame -> app  {cellbus: "height", height}    the content's height, to size the frame
 * Messages are matched to frames by `event.source`, as the frame's origin is "null". Widget
 * outputs use the same frame and more messages (src/widgets/view.js, src/widgets/frame.js).
 */
import { h } from "../dom.js";

const SANDBOX_URL = "/sandbox.html";
const MAX_HEIGHT = 5000; // px; taller content scrolls inside its frame
const frames = new Set();

window.addEventListener("message", (event) => {
  const data = event.data;
  if (!data || typeof data !== "object" || typeof data.cellbus !== "string") return;
  for (const frame of frames) {
    if (frame.iframe.contentWindow === event.source) {
      frame.receive(data);
      return;
    }
  }
});

export class SandboxFrame {
  /** A frame showing `html` (an SVG document is HTML here too). */
  constructor(html, kind = "html") {
    this.html = html;
    this.ready = false;
    this.iframe = h("iframe", {
      class: "output-sandbox",
      sandbox: "allow-scripts",
      src: SANDBOX_URL,
      title: `${kind} output`,
      "data-testid": "sandbox-frame",
      loading: "lazy",
      style: { height: "24px" },
    });
    this.el = h("div", { class: `output output-${kind}`, "data-testid": "output" }, this.iframe);
    frames.add(this);
  }

  /** Show new content (an update_display_data). */
  update(html) {
    this.html = html;
    if (this.ready) this.post();
  }

  receive(data) {
    if (data.cellbus === "ready") {
      this.ready = true;
      this.post();
    } else if (data.cellbus === "height" && Number.isFinite(data.height)) {
      const height = Math.min(MAX_HEIGHT, Math.max(16, Math.ceil(data.height)));
      this.iframe.style.height = `${height}px`;
      this.el.dataset.rendered = "true";
    }
  }

  post() {
    this.postToFrame({ cellbus: "render", html: this.html });
  }

  postToFrame(message) {
    // "*": the frame's origin is opaque, so no origin can be named; what goes to it is the
    // session's own output and state, which carries nothing secret.
    this.iframe.contentWindow?.postMessage(message, "*");
  }

  /** Called when the output is removed: stop routing messages to it. */
  destroy() {
    frames.delete(this);
  }
}
