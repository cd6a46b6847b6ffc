/**
 * The feed WebSocket (`GET /ws`): live session feeds that survive disconnects.
 *
 * One `FeedConnection` per signed-in page carries every subscription. For each session it
 * remembers the cursor of the last message it handed on; when the socket drops (the network,
 * a web process restarting, the server cutting off a slow reader with an `overflow` frame) it
 * reconnects by itself with exponential backoff and subscribes again from those cursors, so
 * the server sends exactly what was missed. A message whose cursor is not past the one
 * remembered is dropped: nothing is shown twice, even if the server repeats itself.
 *
 * Frames (docs/api.md): the client sends `subscribe` {session, cursor} and `ping`; the server
 * sends `subscribed`, `messages` {session, cursor, messages: [{cursor, message}, ...]} (a
 * batch of one session's feed messages, in order), `presence` {session, users}, `error`
 * {code, message, session}, `pong`, and `closing`/`overflow` {cursors} before it closes the
 * socket. `revoked` {message} means the token was revoked (a logout, perhaps in another tab)
 * or expired: the connection stops for good and `onRevoked` is called.
 *
 * A subscription may name its worksheet too: it is then made by worksheet, and the worksheet's
 * document frames (docs/protocol.md, "The worksheet document") go to its handlers: `doc_state`,
 * `doc_ack`, `awareness`, and `error` frames that carry a `ref` (a refused update). The page
 * sends its own (`doc_sync`, `doc_update`, `awareness`) with `send`; `onSubscribed` tells it
 * each time the server has confirmed the subscription (on every reconnect too), which is when
 * a document must be synchronised again.
 *
 * A server that restarted may no longer have what the page saw (docs/protocol.md, "Epochs"):
 * each `subscribed` frame names the server's epoch, and every subscribe sends the epoch its
 * cursor came from. When the server answers `reset` (the feed lost messages this page saw, or
 * all of them), the subscription goes on from the server's cursor and `onReset(session)` is
 * called: the app opens the page afresh (document, outputs, session state). After a
 * reconnect the state is "syncing" until every subscription is confirmed (and every page
 * that had to be opened afresh has subscribed again); only then "open" (shown as "Live").
 */

import { CODES } from "./api.js";

const BACKOFF_FIRST_MS = 250;
const BACKOFF_MAX_MS = 5000;
const PING_EVERY_MS = 20_000; // a socket that does not answer a ping within this is dead
// Refusals that trying again will not change: not signed in, not allowed, no such session.
const FATAL_CODES = new Set([CODES.UNAUTHENTICATED, CODES.FORBIDDEN, CODES.NOT_FOUND]);
const STATES = ["connecting", "syncing", "open", "reconnecting", "closed"];
const RELOAD_WAIT_MS = 10_000; // a page opened afresh that never subscribes again stops holding "syncing"

export class FeedConnection {
  /**
   * `onState(state, info)` is told of every change of the connection's state: "connecting"
   * (first attempt), "syncing" (connected, subscriptions not all confirmed yet), "open",
   * "reconnecting" (with `info.retryInMs` and `info.drops`, the number of times the socket
   * has dropped) and "closed" (by `close()`). `onRevoked(frame)` is called when the server
   * closes the socket because its token was revoked; `onReset(session, frame)` when the
   * server no longer has what a subscription without its own `onReset` handler saw.
   */
  constructor({ url = defaultUrl(), onState = () => {}, onRevoked = () => {}, onReset = null } = {}) {
    this.url = url;
    this.onState = onState;
    this.onRevoked = onRevoked;
    this.onReset = onReset;
    this.epoch = null; // the server's, as its latest `subscribed` said
    this.syncing = new Set(); // subscriptions not yet confirmed since the socket opened
    this.reloading = new Map(); // session -> timer: opened afresh, not subscribed again yet
    this.subscriptions = new Map(); // session -> Subscription
    this.state = "connecting";
    this.drops = 0;
    this.attempt = 0;
    this.ws = null;
    this.retryTimer = 0;
    this.pingTimer = 0;
    this.awaitingPong = false;
    this.closedByUs = false;
    this._connect();
    this._onOnline = () => this._retryNow();
    window.addEventListener("online", this._onOnline);
  }

  /**
   * Follow `session` from `cursor` (0: every retained message). `handlers.onMessage(message,
   * cursor)` gets each Jupyter message once, in order; `onPresence(users)` who watches;
   * `onError(frame)` a refusal (say, access removed). With `worksheet` (the session's), the
   * subscription is by worksheet and also gets its document's frames: `onSubscribed()`,
   * `onDocState(frame)`, `onDocAck(frame)`, `onDocUpdate(frame)`, `onAwareness(frame)`,
   * `onDocError(frame)`, and `onDisconnected()` when the socket drops.
   * Returns a function that unsubscribes.
   */
  subscribe(session, cursor, handlers, worksheet = null) {
    // `start`: the cursor of the latest subscribe sent; `confirmed` once the server says it
    // started there (its `subscribed` frame names the cursor, telling it from earlier ones)
    // `epoch`: the server's epoch when `cursor` was current
    const subscription = {
      session,
      worksheet,
      cursor,
      start: cursor,
      epoch: this.epoch,
      handlers,
      confirmed: false,
    };
    this.subscriptions.set(session, subscription);
    clearTimeout(this.reloading.get(session));
    this.reloading.delete(session);
    if (this.state === "syncing") this.syncing.add(subscription);
    this._send(subscribeFrame(subscription));
    return () => {
      if (this.subscriptions.get(session) !== subscription) return;
      this.subscriptions.delete(session);
      this._send({ op: "unsubscribe", session });
      this._synced(subscription);
    };
  }

  /** Send `frame` if the socket is open; returns whether it was sent. */
  send(frame) {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  close() {
    this.closedByUs = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    window.removeEventListener("online", this._onOnline);
    this.ws?.close(1000);
    this._setState("closed");
  }

  // -- the socket -------------------------------------------------------------------------

  _connect() {
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this._scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.onopen = () => this._onOpen(ws);
    ws.onmessage = (event) => this._onFrame(event.data);
    ws.onclose = () => this._onClose(ws);
  }

  _onOpen(ws) {
    if (ws !== this.ws) return;
    for (const sub of this.subscriptions.values()) {
      sub.confirmed = false;
      sub.start = sub.cursor;
      ws.send(JSON.stringify(subscribeFrame(sub)));
    }
    this.attempt = 0;
    this.syncing = new Set(this.subscriptions.values());
    this._setState("syncing");
    this._synced(null);
    clearInterval(this.pingTimer);
    this.awaitingPong = false;
    this.pingTimer = setInterval(() => this._ping(ws), PING_EVERY_MS);
  }

  _ping(ws) {
    if (ws !== this.ws || ws.readyState !== WebSocket.OPEN) return;
    if (this.awaitingPong) {
      ws.close(4001, "no pong"); // the connection is dead without having said so
      return;
    }
    this.awaitingPong = true;
    ws.send('{"op":"ping"}');
  }

  _onClose(ws) {
    if (ws !== this.ws) return;
    clearInterval(this.pingTimer);
    this.ws = null;
    for (const sub of this.subscriptions.values()) sub.handlers.onDisconnected?.();
    if (this.closedByUs) return;
    this.drops += this.state === "open" ? 1 : 0;
    this._scheduleRetry();
  }

  _scheduleRetry() {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.attempt);
    const delay = Math.round(base * (0.8 + Math.random() * 0.4)); // jitter: not all at once
    this.attempt += 1;
    this._setState("reconnecting", { retryInMs: delay });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this._connect(), delay);
  }

  _retryNow() {
    if (this.state !== "reconnecting" || this.ws) return;
    clearTimeout(this.retryTimer);
    this._connect();
  }

  _resubscribe(sub) {
    if (this.subscriptions.get(sub.session) === sub) {
      sub.confirmed = false;
      sub.start = sub.cursor;
      this._send(subscribeFrame(sub));
    }
  }

  _send(frame) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
    // otherwise `_onOpen` sends every subscription when the socket is back
  }

  _setState(state, info = {}) {
    if (!STATES.includes(state)) throw new Error(`unknown state ${state}`);
    this.state = state;
    this.onState(state, { drops: this.drops, ...info });
  }

  /** `sub` is confirmed (or gone): "open" once nothing is left to confirm or to reload. */
  _synced(sub) {
    this.syncing.delete(sub);
    if (this.state === "syncing" && !this.syncing.size && !this.reloading.size) this._setState("open");
  }

  /** The server no longer has what `sub` saw after `frame.cursor`: go on from there. */
  _reset(sub, frame) {
    sub.cursor = frame.cursor;
    if (sub.handlers.onReset) {
      sub.handlers.onReset(frame);
    } else if (this.onReset) {
      // the page is opened afresh and subscribes again: not "open" until it has
      const timer = setTimeout(() => {
        this.reloading.delete(sub.session);
        this._synced(null);
      }, RELOAD_WAIT_MS);
      this.reloading.set(sub.session, timer);
      this.onReset(sub.session, frame);
    } else {
      sub.handlers.onSubscribed?.();
    }
  }

  _byWorksheet(worksheet) {
    for (const sub of this.subscriptions.values()) if (sub.worksheet === worksheet) return sub;
    return undefined;
  }

  // -- frames from the server -------------------------------------------------------------

  _onFrame(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      console.warn("feed: a frame that is not JSON", data);
      return;
    }
    const sub = frame.session ? this.subscriptions.get(frame.session) : undefined;
    const doc = frame.worksheet ? this._byWorksheet(frame.worksheet) : undefined;
    switch (frame.type) {
      case "messages":
        // Not subscribed; frames of an earlier subscription to the session (the server sends
        // `subscribed` before any message of a new one); or messages seen already.
        if (!sub || !sub.confirmed || frame.cursor <= sub.cursor) return;
        for (const { cursor, message } of frame.messages) {
          if (cursor <= sub.cursor) continue;
          sub.cursor = cursor;
          sub.handlers.onMessage?.(message, cursor);
          if (this.subscriptions.get(frame.session) !== sub) return; // a handler unsubscribed
        }
        return;
      case "subscribed":
        // the answer to the latest subscribe names its cursor (`asked`, if reset)
        if (sub && !sub.confirmed && (frame.reset ? frame.asked : frame.cursor) === sub.start) {
          sub.confirmed = true;
          if (frame.epoch) this.epoch = sub.epoch = frame.epoch;
          if (frame.reset) this._reset(sub, frame);
          else sub.handlers.onSubscribed?.();
          this._synced(sub);
        }
        return;
      case "doc_state":
        doc?.handlers.onDocState?.(frame);
        return;
      case "doc_ack":
        doc?.handlers.onDocAck?.(frame);
        return;
      case "doc_update": // another person's update, relayed before its commit
        doc?.handlers.onDocUpdate?.(frame);
        return;
      case "awareness":
        doc?.handlers.onAwareness?.(frame);
        return;
      case "presence":
        sub?.handlers.onPresence?.(frame.users);
        return;
      case "error":
        if ((frame.ref !== undefined && frame.ref !== null) || (!sub && doc)) {
          // about a document (a refused update carries its ref): its worksheet's page
          const owner = doc ?? [...this.subscriptions.values()].find((s) => s.handlers.ownsRef?.(frame.ref));
          if (owner) owner.handlers.onDocError?.(frame);
          else console.warn("feed:", frame.message);
        } else if (!sub) console.warn("feed:", frame.message);
        else if (FATAL_CODES.has(frame.code)) {
          this.subscriptions.delete(frame.session); // refused for good: tell the page
          sub.handlers.onError?.(frame);
          this._synced(sub);
        } else {
          setTimeout(() => this._resubscribe(sub), BACKOFF_MAX_MS); // a service was away
        }
        return;
      case "pong":
        this.awaitingPong = false;
        return;
      case "revoked": // signed out: reconnecting with the same cookie would be refused
        this.close();
        this.onRevoked(frame);
        return;
      case "closing": // a web process going away; "overflow": we read too slowly
      case "overflow":
        return; // the close follows; our own cursors say where to resume
      default:
        console.warn("feed: unknown frame", frame.type);
    }
  }
}

function subscribeFrame({ session, worksheet, cursor, epoch }) {
  // by worksheet when known (the server then knows which document the socket follows)
  const frame = worksheet
    ? { op: "subscribe", session, worksheet, cursor }
    : { op: "subscribe", session, cursor };
  if (epoch && Number.isInteger(cursor) && cursor > 0) frame.epoch = epoch; // where the cursor is from
  return frame;
}

function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

/**
 * The session state a feed message announces (docs/protocol.md, "The feed"): a `status`'s
 * `execution_state` (Jupyter's: starting, busy, idle) or a `session_state`'s `state`
 * (cellbus's own: restarting, dead, hibernated, restoring); undefined for any other message.
 */
export function stateOf(message) {
  const type = message.header.msg_type;
  if (type === "status") return message.content.execution_state;
  if (type === "session_state") return message.content.state;
  return undefined;
}
