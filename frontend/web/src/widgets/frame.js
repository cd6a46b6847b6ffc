/**
 * ipywidgets inside a sandboxed output frame: the entry of dist/assets/widgets-*.js, which
 * static/sandbox.html loads only when it is asked to show a widget (never in the app's page).
 *
 * Widget views are drawn by the widgets' own HTML manager (`@jupyter-widgets/html-manager`),
 * with only the models built in here: @jupyter-widgets/base, controls and output. Nothing is
 * ever loaded from elsewhere: `loadClass` refuses any other module (the manager's CDN loader,
 * `requireLoader`, is not even bundled).
 *
 * The frame's opaque origin cannot reach the API, so the manager's comms talk to the kernel
 * through the app (src/widgets/hub.js), by postMessage:
 *   app -> frame  {cellbus: "widget", model_id, fallback, readonly}  show this widget
 *   app -> frame  {cellbus: "comm", msg}      a comm_open, comm_msg or comm_close of the
 *                                             session (the Jupyter message, as on the feed)
 *   app -> frame  {cellbus: "comm_idle", ref} the kernel is done with the message `ref`
 *   app -> frame  {cellbus: "readonly", readonly}
 *   frame -> app  {cellbus: "comm_send", ref, comm_id, kind, data}   kind: msg or close
 * `ref` is the frame's own id of a message it sent: the manager needs a message id at once
 * (ipywidgets 8 drops the echo of its own update by that id), before the app has the real
 * one from `session.comm`. The app writes `ref` into the parent of the echo it forwards here.
 */
import "@fortawesome/fontawesome-free/css/all.min.css";
import "@fortawesome/fontawesome-free/css/v4-shims.min.css";
import "@lumino/widgets/style/index.css";
import "@jupyter-widgets/controls/css/widgets.css";

import * as base from "@jupyter-widgets/base";
import * as controls from "@jupyter-widgets/controls";
import { HTMLManager } from "@jupyter-widgets/html-manager/lib/htmlmanager.js";
import * as output from "@jupyter-widgets/html-manager/lib/output.js";

const WIDGET_TARGET = "jupyter.widget";
const PROTOCOL_VERSION = "2.1.0"; // ipywidgets 8's
/** The modules a widget may name, with the major version of ipywidgets 8's protocol for it. */
const MODULES = {
  "@jupyter-widgets/base": { module: base, major: "2" },
  "@jupyter-widgets/controls": { module: controls, major: "2" },
  "@jupyter-widgets/output": { module: output, major: "1" },
};

/** One comm of the kernel, as the manager sees it; what it sends goes to the app. */
class FrameComm {
  constructor(link, commId, targetName) {
    this.link = link;
    this.comm_id = commId;
    this.target_name = targetName;
    this.onMsg = null;
    this.onClose = null;
  }

  open() {
    throw new Error("a widget here cannot open a comm"); // only the kernel opens them
  }

  send(data, callbacks) {
    return this.link.send(this, "msg", data, callbacks);
  }

  close(data = {}, callbacks) {
    const ref = this.link.send(this, "close", data, callbacks);
    this.link.comms.delete(this.comm_id);
    return ref;
  }

  on_msg(callback) {
    this.onMsg = callback;
  }

  on_close(callback) {
    this.onClose = callback;
  }
}

/** The HTML manager with cellbus's comms and only the built-in widget modules. */
class FrameManager extends HTMLManager {
  async loadClass(className, moduleName, moduleVersion) {
    const known = MODULES[moduleName];
    if (!known) throw new Error(`widgets of ${moduleName} are not available here`);
    if (
      String(moduleVersion)
        .replace(/^[\^~]/, "")
        .split(".")[0] !== known.major
    ) {
      throw new Error(`${moduleName} ${moduleVersion} is not supported (ipywidgets 8 is)`);
    }
    const cls = known.module[className];
    if (!cls) throw new Error(`no ${className} in ${moduleName}`);
    return cls;
  }

  _create_comm() {
    return Promise.reject(new Error("a widget here cannot open a comm"));
  }

  _get_comm_info() {
    return Promise.resolve({});
  }
}

/** The frame's end of the link with the app. */
class Link {
  constructor(root) {
    this.root = root;
    this.manager = new FrameManager();
    this.comms = new Map(); // comm id -> FrameComm
    this.waiting = new Map(); // ref -> the callbacks of a message sent
    this.nextRef = 1;
  }

  send(comm, kind, data, callbacks) {
    const ref = `cellbus-frame-${this.nextRef++}`;
    if (callbacks?.iopub?.status) this.waiting.set(ref, callbacks);
    parent.postMessage({ cellbus: "comm_send", ref, comm_id: comm.comm_id, kind, data }, "*");
    return ref;
  }

  receive(data) {
    switch (data.cellbus) {
      case "comm":
        return this.comm(data.msg);
      case "comm_idle": {
        const callbacks = this.waiting.get(data.ref);
        this.waiting.delete(data.ref);
        callbacks?.iopub?.status?.({
          header: { msg_type: "status" },
          parent_header: { msg_id: data.ref },
          content: { execution_state: "idle" },
        });
        return undefined;
      }
      case "widget":
        if ("readonly" in data) this.readonly(data.readonly);
        return this.show(data.model_id, data.fallback);
      case "readonly":
        return this.readonly(data.readonly);
      default:
        return undefined;
    }
  }

  comm(msg) {
    const content = msg.content ?? {};
    const type = msg.header?.msg_type;
    if (type === "comm_open") {
      if (content.target_name !== WIDGET_TARGET || this.comms.has(content.comm_id)) return;
      const comm = new FrameComm(this, content.comm_id, content.target_name);
      this.comms.set(comm.comm_id, comm);
      // The protocol's version is in the message's metadata; a comm_open without it (from a
      // kernel that leaves metadata out) is taken as ipywidgets 8's: loadClass still checks
      // each model's module version.
      const metadata = { version: PROTOCOL_VERSION, ...msg.metadata };
      this.manager
        .handle_comm_open(comm, { ...msg, metadata, buffers: [] })
        .catch((error) => console.warn(error));
    } else if (type === "comm_msg") {
      this.comms.get(content.comm_id)?.onMsg?.({ ...msg, buffers: [] });
    } else if (type === "comm_close") {
      const comm = this.comms.get(content.comm_id);
      this.comms.delete(content.comm_id);
      comm?.onClose?.(msg);
    }
  }

  async show(modelId, fallback) {
    this.root.replaceChildren();
    if (!this.manager.has_model(modelId)) {
      this.showFallback(fallback);
      return;
    }
    try {
      const model = await this.manager.get_model(modelId);
      const view = await this.manager.create_view(model);
      await this.manager.display_view(view, this.root);
      this.root.dataset.widget = model.get("_model_name") ?? "";
    } catch (error) {
      console.warn(error);
      this.showFallback(fallback);
    }
  }

  /** A widget whose model the kernel no longer has (a restart, or a saved output). */
  showFallback(fallback) {
    const pre = document.createElement("pre");
    pre.className = "widget-fallback";
    pre.textContent = fallback || "(a widget that is no longer live)";
    this.root.replaceChildren(pre);
    this.root.dataset.widget = "none";
  }

  /** Viewers see widgets move but cannot move them: nothing in the frame takes input. */
  readonly(readonly) {
    this.root.inert = Boolean(readonly);
  }
}

window.cellbusWidgets = { Link };
