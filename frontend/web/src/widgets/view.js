/**
 * A widget output (`application/vnd.jupyter.widget-view+json`, {model_id}): a sandboxed
 * output frame (src/outputs/sandbox.js) that draws the widget with the widgets' own manager
 * (frame.js) and follows the session's comms through the page's `WidgetHub` (hub.js).
 */
import { SandboxFrame } from "../outputs/sandbox.js";

export const WIDGET_MIME = "application/vnd.jupyter.widget-view+json";

export class WidgetFrame extends SandboxFrame {
  /** The widget of model `modelId`; `fallback`: the output's text/plain, shown if it is gone. */
  constructor(hub, modelId, fallback = "") {
    super("", "widget");
    this.hub = hub;
    this.modelId = String(modelId ?? "");
    this.fallback = String(fallback ?? "");
    this.synced = false; // the frame has the comms' state (hub.sync)
    this.el.dataset.modelId = this.modelId;
  }

  receive(data) {
    if (data.cellbus === "ready") {
      this.ready = true;
      this.hub.ready(this);
    } else if (data.cellbus === "comm_send") {
      this.hub.send(this, data);
    } else {
      super.receive(data); // its height
    }
  }

  /** Show another widget here (an update_display_data). */
  show(modelId, fallback = "") {
    this.modelId = String(modelId ?? "");
    this.fallback = String(fallback ?? "");
    this.el.dataset.modelId = this.modelId;
    if (this.synced) this.postToFrame({ cellbus: "widget", model_id: this.modelId, fallback: this.fallback });
  }

  destroy() {
    super.destroy();
    this.hub.forget(this);
  }
}
