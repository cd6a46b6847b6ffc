/**
 * The app's end of ipywidgets: the comms of the worksheet's session, shared with the sandboxed
 * frames that draw widgets (src/widgets/frame.js), and what those frames send, to the kernel.
 *
 * A widget is shared: its model lives in the kernel, and every page that shows it follows the
 * kernel's comm messages on the session's feed. When someone moves a slider, their frame sends
 * one `update` per change (`session.comm`, throttled by ipywidgets itself: it waits for the
 * kernel's `idle` before sending again); the kernel applies it and sends `echo_update` to
 * everyone, which moves the slider on every other screen. The sender's frame knows its own
 * echo by the message id it gave (see frame.js) and does not send it back.
 *
 * What is trusted: frames run the widgets' code and the widgets' HTML (an `HTML` widget's
 * value is the kernel's, so user code's), so what a frame posts is checked here: only frames
 * this hub made, only `msg` and `close` of comms the session has open, and only from people
 * with the editor role (a viewer's frames are also inert: see frame.js). The server checks the
 * role again on `session.comm`.
 *
 * A page that opens while widgets live (their comm_open came before the page's feed cursor)
 * gets the comms by reading the session's feed from its start, once, the first time it shows a
 * widget or sees a comm message; pages without widgets read nothing more. Asking the kernel
 * (ipywidgets' `request_states` over a control comm) was the other way, but a viewer may not
 * send comm messages, and a control comm's answer would be a message on everyone's feed.
 * The cost: a feed keeps its last messages only (CELLBUS_FEED_RETENTION, 10,000 by default),
 * so a widget whose comm_open was trimmed away shows as text, as a saved widget does after a
 * restart.
 *
 * An `Output` widget shows the outputs of the request it names (capture.js): those go into
 * its state here, and not under their cell.
 */
import { call, describeError } from "../api.js";
import { stateOf } from "../feed.js";
import { toast } from "../toast.js";
import { OutputCapture } from "./capture.js";

const COMM_TYPES = new Set(["comm_open", "comm_msg", "comm_close"]);
/** Session states (of a `session_state`) after which the kernel knows none of its comms. */
const COMMS_LOST = new Set(["restarting", "dead", "restoring"]);
const SEND_KINDS = new Set(["msg", "close"]);

export class WidgetHub {
  constructor() {
    this.session = null;
    this.editable = false;
    this.comms = new Map(); // comm id -> {open: the comm_open message, state: its state now}
    this.frames = new Set(); // WidgetFrames made for this page
    this.history = "unread"; // unread | reading | read
    this.historyEnd = 0; // the feed's messages up to this cursor are in `comms`
    this.early = []; // [message, cursor] seen while the history is read
    this.inFlight = 0; // session.comm calls not answered yet
    this.held = []; // messages for frames, held while a call is in flight (see `deliver`)
    this.sent = new Map(); // msg_id of a message a frame sent -> {frame, ref}
    this.capture = new OutputCapture(); // in the order the comms' state is kept (`apply`)
    // Where the page draws an output (widget or cell), decided in the order the page sees the
    // feed: the history, read ahead on its own, may already have ended a capture that the
    // live feed's next output still belongs to.
    this.routing = new OutputCapture();
    this.synthetic = 0; // numbers the updates made here for Output widgets
  }

  /** The page knows its session now. */
  start(session) {
    this.session = session;
  }

  /** Whether this person may move widgets (the editor role); told to every frame. */
  setEditable(editable) {
    this.editable = editable;
    for (const frame of this.frames) frame.postToFrame({ cellbus: "readonly", readonly: !editable });
  }

  // -- the feed -----------------------------------------------------------------------------

  /**
   * Every message the page takes from the feed, with its cursor. Returns whether an Output
   * widget shows it (then the cell does not).
   */
  feed(message, cursor) {
    const captured = this.route(message);
    if (!captured && !this.isRelevant(message)) return false;
    if (this.history === "read") this.take(message, cursor);
    else {
      this.early.push([message, cursor]);
      this.readHistory();
    }
    return captured;
  }

  /**
   * A message from before the page's cursor, replayed to draw a recent run's outputs afresh:
   * whether an Output widget captured it (then it is not drawn under its cell). The widget
   * itself gets it from the history (`readHistory`).
   */
  capturedInReplay(message) {
    return this.route(message);
  }

  /**
   * Whether an Output widget shows `message` rather than its cell, by the capturing state the
   * messages before it set (`routing`, in the page's order); then the state `message` sets.
   */
  route(message) {
    const captured = this.routing.capturers(message).length > 0;
    const type = message.header.msg_type;
    const content = message.content ?? {};
    if (COMMS_LOST.has(stateOf(message))) this.routing.clear();
    else if (type === "comm_open" || type === "comm_msg")
      this.routing.follow(content.comm_id, content.data?.state);
    else if (type === "comm_close") this.routing.forget(content.comm_id);
    return captured;
  }

  /** Read the session's feed from its start (once): the comms opened before this page. */
  readHistory() {
    if (this.history !== "unread" || !this.session) return this.historyRead;
    this.history = "reading";
    this.historyRead = (async () => {
      let since = 0;
      try {
        for (;;) {
          const page = await call("feed.poll", { session: this.session, since, timeout: 0 });
          if (!page.messages.length) break;
          for (const message of page.messages) this.apply(message);
          since = page.cursor;
        }
      } catch (error) {
        console.warn("widgets: the feed's history could not be read:", describeError(error));
      }
      this.historyEnd = since;
      this.history = "read";
      for (const [message, cursor] of this.early.splice(0)) this.take(message, cursor);
      for (const frame of this.frames) if (frame.ready) this.sync(frame);
    })();
    return this.historyRead;
  }

  /**
   * Whether `message` matters here: comm messages, the loss of every comm, and the `idle`
   * after a message a frame sent (which may come before the call that sent it is answered).
   */
  isRelevant(message) {
    const type = message.header.msg_type;
    if (COMM_TYPES.has(type)) return true;
    const state = stateOf(message);
    return (
      COMMS_LOST.has(state) ||
      (state === "idle" && (this.inFlight > 0 || this.sent.has(message.parent_header?.msg_id)))
    );
  }

  take(message, cursor) {
    if (cursor <= this.historyEnd) return; // read with the history already
    for (const each of this.apply(message)) this.deliver(each);
  }

  /** Keep the comms' state as the kernel has it; returns the messages for the frames. */
  apply(message) {
    const capturers = this.capture.capturers(message);
    if (capturers.length) return this.captured(capturers, message);
    const type = message.header.msg_type;
    const content = message.content ?? {};
    const state = content.data?.state;
    if (COMMS_LOST.has(stateOf(message))) {
      this.comms.clear();
      this.capture.clear();
    } else if (type === "comm_open") {
      this.comms.set(content.comm_id, { open: message, state: { ...(state ?? {}) } });
      this.capture.follow(content.comm_id, state);
    } else if (type === "comm_msg") {
      const comm = this.comms.get(content.comm_id);
      const method = content.data?.method;
      if (comm && (method === "update" || method === "echo_update")) Object.assign(comm.state, state);
      if (comm) this.capture.follow(content.comm_id, state);
    } else if (type === "comm_close") {
      this.comms.delete(content.comm_id);
      this.capture.forget(content.comm_id);
    }
    return [message];
  }

  /** An output that Output widgets (`commIds`) show: into their state, and to the frames. */
  captured(commIds, message) {
    const updates = [];
    for (const commId of commIds) {
      const comm = this.comms.get(commId);
      if (!comm) continue;
      comm.state.outputs = this.capture.take(commId, comm.state.outputs, message);
      this.synthetic += 1;
      updates.push({
        header: { msg_id: `cellbus-capture-${this.synthetic}`, msg_type: "comm_msg" },
        parent_header: {},
        content: {
          comm_id: commId,
          data: { method: "update", state: { outputs: comm.state.outputs }, buffer_paths: [] },
        },
      });
    }
    return updates;
  }

  /**
   * Hand a live message to the frames. While a frame's `session.comm` call is unanswered, its
   * message id is not known here yet, and the kernel's echo or idle (on the feed, which may
   * be quicker than the call's answer) could not be told apart from others': so messages wait
   * until no call is in flight, then go in order. Calls take milliseconds, and ipywidgets
   * sends one update at a time per widget.
   */
  deliver(message) {
    if (this.inFlight > 0) this.held.push(message);
    else this.forward(message);
  }

  forward(message) {
    const parentId = message.parent_header?.msg_id;
    const mine = parentId ? this.sent.get(parentId) : undefined;
    const state = stateOf(message);
    if (state) {
      if (mine && state === "idle") {
        this.sent.delete(parentId);
        mine.frame.postToFrame({ cellbus: "comm_idle", ref: mine.ref });
      }
      return;
    }
    const msg = plainMessage(message);
    for (const frame of this.frames) {
      if (!frame.synced) continue; // gets the comms' state when it is
      const own =
        mine?.frame === frame ? { ...msg, parent_header: { ...msg.parent_header, msg_id: mine.ref } } : msg;
      frame.postToFrame({ cellbus: "comm", msg: own });
    }
  }

  // -- the frames ---------------------------------------------------------------------------

  /** `frame` (a WidgetFrame) loaded: it gets every live comm's state, then its widget. */
  async ready(frame) {
    this.frames.add(frame);
    await this.readHistory();
    if (this.history === "read" && !frame.synced) this.sync(frame);
  }

  sync(frame) {
    for (const { open, state } of this.comms.values()) {
      const msg = plainMessage(open);
      msg.content = { ...msg.content, data: { ...msg.content.data, state: { ...state }, buffer_paths: [] } };
      frame.postToFrame({ cellbus: "comm", msg });
    }
    frame.synced = true;
    frame.postToFrame({
      cellbus: "widget",
      model_id: frame.modelId,
      fallback: frame.fallback,
      readonly: !this.editable,
    });
  }

  forget(frame) {
    this.frames.delete(frame);
    for (const [msgId, sent] of this.sent) if (sent.frame === frame) this.sent.delete(msgId);
  }

  /** A frame sends a comm message ({ref, comm_id, kind, data}): to the kernel, if allowed. */
  async send(frame, { ref, comm_id: commId, kind, data }) {
    const release = () => frame.postToFrame({ cellbus: "comm_idle", ref }); // the widget's throttle
    if (!this.editable || !SEND_KINDS.has(kind) || !this.comms.has(commId) || !isPlainObject(data)) {
      release();
      return;
    }
    this.inFlight += 1;
    try {
      const { msg_id: msgId } = await call("session.comm", {
        session: this.session,
        comm_id: commId,
        data,
        kind,
      });
      if (this.frames.has(frame)) this.sent.set(msgId, { frame, ref });
      this.failing = false;
    } catch (error) {
      release();
      if (!this.failing) toast(`A widget's change was not sent: ${describeError(error)}`, "error");
      this.failing = true; // one toast while it keeps failing (a slider sends many changes)
    } finally {
      this.inFlight -= 1;
      if (this.inFlight === 0) for (const message of this.held.splice(0)) this.forward(message);
    }
  }

  destroy() {
    this.frames.clear();
    this.comms.clear();
    this.sent.clear();
    this.capture.clear();
  }
}

/** What a frame needs of a message (and structured clone can copy). */
function plainMessage(message) {
  return {
    header: {
      msg_id: message.header.msg_id,
      msg_type: message.header.msg_type,
      username: message.header.username,
    },
    parent_header: { msg_id: message.parent_header?.msg_id, msg_type: message.parent_header?.msg_type },
    metadata: message.metadata ?? {},
    content: message.content ?? {},
  };
}

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
