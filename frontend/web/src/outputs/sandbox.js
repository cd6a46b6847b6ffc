/**
 * HTML, SVG and JavaScript from user code, shown in sandboxed frames.
 *
 * Output HTML is written by whoever ran the cell, and every viewer of the worksheet sees it,
 * so it must not run in the app's page: a script there could call the API as the viewer. It
 * goes into `<iframe sandbox="allow-scripts" src="/sandbox.html">`. Without
 * `allow-same-origin` the frame's origin is opaque: it cannot read the app's cookies, storage
 * or DOM, and the server refuses its requests (no cookie is sent, and its Origin is not the
 * site's). Scripts inside still run, so plots and widgets that draw with JavaScript work, and
 * so does `application/javascript` (`%%javascript`, IPython's `Javascript`): it runs there,
 * never in the app's page, with `element` its output's own element, as in Jupyter.
 *
 * The app and the frame talk only by postMessage (see static/sandbox.html):
 *   frame -> app  {cellbus: "ready"}                 the frame has loaded; send the content
 *   app -> frame  {cellbus: "theme", theme, colorScheme, colors}   the app's theme (theme.js),
 *                                                    on ready and whenever it changes
 *   app -> frame  {cellbus: "render", html}          show this HTML (again, on update_display_data)
 *   app -> frame  {cellbus: "render", javascript}    run this script, with `element`
 *   frame -> app  {cellbus: "height", height}        the content's height, to size the frame
 * Messages are matched to frames by `event.source`, as the frame's origin is "null": a
 * message from any other window, or from a frame this page did not make, is ignored. What a
 * frame posts can only resize that frame, between MIN_HEIGHT and MAX_HEIGHT px (a height that
 * is not a finite number is ignored), and ask for its own content again ("ready", answered
 * once per load of the frame and once more, never in a loop); anything else it posts is
 * ignored (tests/browser/test_sandbox_channel.py). Widget outputs use the same frame and more
 * messages (src/widgets/view.js, src/widgets/frame.js), from widget frames only.
 */
import { h } from "../dom.js";
import { currentTheme, onThemeChange, themeMessage } from "./theme.js";

const SANDBOX_URL = "/sandbox.html";
export const MIN_HEIGHT = 16; // px
export const MAX_HEIGHT = 5000; // px; taller content scrolls inside its frame
const frames = new Set();

window.addEventListener("message", (event) => {
  const data = event.data;
  if (!data || typeof data !== "object" || typeof data.cellbus !== "string") return;
  for (const frame of frames) {
    if (frame.iframe.contentWindow === event.source) {
      if (data.cellbus === "ready") {
        if (!frame.readyAllowed()) return;
        frame.postToFrame(themeMessage()); // widget frames too
      }
      frame.receive(data);
      return;
    }
  }
});

onThemeChange(() => {
  const message = themeMessage();
  for (const frame of frames) if (frame.ready) frame.postToFrame(message);
});

export class SandboxFrame {
  /**
   * A frame showing `content`: HTML (`kind` "html"; an SVG document, "svg", is HTML too) or a
   * script to run (`kind` "javascript").
   */
  constructor(content, kind = "html") {
    this.content = content;
    this.kind = kind;
    this.ready = false;
    this.iframe = h("iframe", {
      class: "output-sandbox",
      sandbox: "allow-scripts",
      src: `${SANDBOX_URL}?theme=${currentTheme()}`,
      title: `${kind} output`,
      "data-testid": "sandbox-frame",
      loading: "lazy",
      style: { height: "24px" },
    });
    this.el = h(
      "div",
      { class: `output output-${kind}`, "data-testid": "output", dataset: { mime: kind } },
      this.iframe,
    );
    // A frame says "ready" once per load of its page (a frame moved in the page loads again);
    // more would be its content asking to be sent again, which would run its scripts again:
    // at most one more per load, so an output cannot keep the app re-sending it in a loop.
    this.loads = 0;
    this.readies = 0;
    this.iframe.addEventListener("load", () => (this.loads += 1));
    frames.add(this);
  }

  /** Whether to answer a "ready" from the frame (counted: see the constructor). */
  readyAllowed() {
    if (this.readies > this.loads) return false;
    this.readies += 1;
    return true;
  }

  /** Show new content (an update_display_data). */
  update(content) {
    this.content = content;
    if (this.ready) this.post();
  }

  receive(data) {
    if (data.cellbus === "ready") {
      this.ready = true;
      this.post();
    } else if (data.cellbus === "height") {
      this.resize(data.height);
    }
  }

  /** The frame's height for content `height` px tall (what the frame said: checked). */
  resize(height) {
    if (typeof height !== "number" || !Number.isFinite(height)) return;
    const clamped = Math.min(MAX_HEIGHT, Math.max(MIN_HEIGHT, Math.ceil(height)));
    this.iframe.style.height = `${clamped}px`;
    this.el.dataset.rendered = "true";
  }

  post() {
    const key = this.kind === "javascript" ? "javascript" : "html";
    this.postToFrame({ cellbus: "render", [key]: String(this.content ?? "") });
  }

  postToFrame(message) {
    // "*": the frame's origin is opaque, so no origin can be named; what goes to it is the
    // session's own output and state and the app's colours, which carry nothing secret.
    this.iframe.contentWindow?.postMessage(message, "*");
  }

  /** Called when the output is removed: stop routing messages to it. */
  destroy() {
    frames.delete(this);
  }
}
