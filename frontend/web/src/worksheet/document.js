/**
 * The worksheet's document: a Y.Doc (yjs) in jupyter_ydoc's YNotebook schema, kept in step
 * with the server over the feed WebSocket, and the awareness of who is where in it
 * (docs/protocol.md, "The worksheet document").
 *
 * Syncing (the Yjs handshake, both ways): each time the feed confirms the page's subscription
 * (at first and after every reconnect) the page sends `doc_sync` with its state vector; the
 * server answers `doc_state` with what the page lacks and the server's own state vector, from
 * which the page sends back what the server lacks. From then on every `doc_update` message on
 * the feed is applied (the page's own echoes too: applying twice is harmless). Edits made here
 * go out as `doc_update` frames, each with a `ref`, and are kept until the server's `doc_ack`
 * for that ref says they are committed; the ones not acknowledged are sent again after a
 * reconnect. So an edit is never lost by a dropped socket or a restarting service.
 *
 * The page never creates the document's structure: `meta` and `cells` are whatever the server
 * has (the service creates them, and converts old worksheets). Cells are added, deleted, moved
 * and retyped only when a person asks, each as one transaction with this page's origin, so
 * that the undo manager (this person's edits only: their typing and their cell operations)
 * can take them back.
 *
 * Awareness (y-protocols): this page's state is {user: {name, color, colorLight}, cell,
 * cursor}; updates go out as `awareness` frames and others' come back the same way.
 */
import { fromBase64, toBase64 } from "lib0/buffer";
import {
  Awareness,
  applyAwarenessUpdate,
  encodeAwarenessUpdate,
  removeAwarenessStates,
} from "y-protocols/awareness";
import * as Y from "yjs";

import { CODES } from "../api.js";

/** The origin of updates from the server; anything else is this page's and is sent. */
export const REMOTE = Symbol("remote");
const RETRY_MS = 3000; // an update the server could not take now (unavailable): sent again
const SETTLE_MS = 1000; // this page's awareness is sent again this long after it last changed
const MAX_TRIES = 5; // ...at most this many times, unless the socket drops and comes back
// Refusals that sending again will not change: the update is dropped (and the person told).
const FINAL_CODES = new Set([CODES.FORBIDDEN, CODES.TOO_LARGE, CODES.INVALID_PARAMS, CODES.NOT_FOUND]);
const EMPTY_UPDATE = 2; // bytes of an update with nothing in it

export class WorksheetDocument {
  /**
   * `worksheet`: its id; `feed`: the FeedConnection; `user`: {name, color, colorLight};
   * `onSynced()`: called once the first `doc_state` is applied; `onSaveState(state)`:
   * "saved" or "saving" (updates not yet acknowledged); `onCellsSaving(saving, saved)`: the
   * ids of cells that now have edits in flight, and of those whose edits are all committed
   * now; `onRefused(frame)`: an update the
   * server refused for good; `onPeers()`: the others' awareness changed.
   */
  constructor({ worksheet, feed, user, mayEdit, onSynced, onSaveState, onCellsSaving, onRefused, onPeers }) {
    this.worksheet = worksheet;
    this.feed = feed;
    this.doc = new Y.Doc();
    this.cells = this.doc.getArray("cells");
    this.meta = this.doc.getMap("meta");
    this.origin = { name: "cellbus page" }; // this person's cell operations
    this.undoManager = new Y.UndoManager(this.cells, {
      trackedOrigins: new Set([this.origin]), // the editors add theirs (y-codemirror.next)
      captureTimeout: 500,
    });
    this.awareness = new Awareness(this.doc);
    this.awareness.setLocalState({ user, cell: null, cursor: null });
    this.pending = new Map(); // ref -> base64 update, until its doc_ack
    this.pendingCells = new Map(); // ref -> the ids of the cells its update changed
    this.savingCells = new Set(); // cells with edits not acknowledged yet
    this.waiters = []; // whenSaved's, resolved when nothing is pending
    this.nextRef = 1;
    this.subscriptions = 0;
    this.live = false; // subscribed on an open socket: updates go out at once
    this.tries = new Map(); // ref -> refusals that may pass if tried again
    this.synced = false;
    this.retryTimer = 0;
    this.mayEdit = mayEdit; // () => whether this person may edit (a viewer's page sends nothing)
    this.onSynced = onSynced;
    this.onSaveState = onSaveState;
    this.onCellsSaving = onCellsSaving;
    this.onRefused = onRefused;
    this.onPeers = onPeers;

    this.doc.on("update", (update, origin, doc, transaction) => {
      if (origin !== REMOTE) this.sendUpdate(toBase64(update), this.cellsOf(transaction));
    });
    this.awareness.on("update", ({ added, updated, removed }, origin) => {
      if (origin === REMOTE) return;
      this.sendAwareness([...added, ...updated, ...removed]);
      // The relay may drop an update under load (the next one does as well), and the next
      // may not come for 15 s: the last state of a burst is sent once more, a moment later
      // (a page that had it ignores it: same clock).
      clearTimeout(this.settleTimer);
      if (this.gone) return;
      this.settleTimer = setTimeout(() => this.sendAwareness([this.doc.clientID]), SETTLE_MS);
    });
    this.awareness.on("change", ({ added, updated, removed }, origin) => {
      const others = (ids) => ids.some((id) => id !== this.doc.clientID);
      // Someone new: tell them who is here (the server relays, it does not remember).
      if (origin === REMOTE && others(added)) this.sendAwareness([this.doc.clientID]);
      if (others([...added, ...updated, ...removed])) this.onPeers(); // (or timed out)
    });
  }

  /** The feed handlers of this document, for `FeedConnection.subscribe`. */
  get handlers() {
    return {
      onSubscribed: () => this.resync(),
      onDisconnected: () => (this.live = false),
      onDocState: (frame) => this.applyState(frame),
      onDocAck: (frame) => this.acknowledged(frame.ref),
      onDocUpdate: (frame) => this.apply(frame.update), // committed later: on the feed
      onAwareness: (frame) => this.applyAwareness(frame.update),
      onDocError: (frame) => this.refused(frame),
      ownsRef: (ref) => this.pending.has(ref),
    };
  }

  // -- syncing ------------------------------------------------------------------------------

  /** The subscription is (again) confirmed: the handshake, unacknowledged updates, awareness. */
  resync() {
    this.live = true;
    this.handshake();
    if (this.subscriptions++ === 0) {
      this.sendAwareness([this.doc.clientID]);
    } else {
      // Back after a drop: the server told the others we left, with a clock one past ours;
      // two steps past it, our state is news to them again.
      const state = this.awareness.getLocalState();
      this.awareness.setLocalState({ ...state });
      this.awareness.setLocalState({ ...state });
    }
  }

  /** `doc_sync`, and every update not acknowledged yet (again: applying twice is harmless). */
  handshake() {
    this.feed.send({
      op: "doc_sync",
      worksheet: this.worksheet,
      state_vector: toBase64(Y.encodeStateVector(this.doc)),
    });
    for (const [ref, update] of this.pending) this.feed.send(this.updateFrame(ref, update));
  }

  applyState(frame) {
    if (!this.apply(frame.update)) return;
    if (frame.state_vector && this.mayEdit()) {
      const missing = Y.encodeStateAsUpdate(this.doc, fromBase64(frame.state_vector));
      if (missing.length > EMPTY_UPDATE) this.sendUpdate(toBase64(missing));
    }
    if (!this.synced) {
      this.synced = true;
      this.onSynced();
    }
  }

  /** A `doc_update` message from the feed (anyone's, this page's own echoes included). */
  applyMessage(content) {
    if (content?.update) this.apply(content.update);
  }

  apply(update) {
    try {
      Y.applyUpdate(this.doc, fromBase64(update), REMOTE);
      return true;
    } catch (error) {
      console.warn("document: an update that does not apply", error);
      return false;
    }
  }

  sendUpdate(update, cells = new Set()) {
    const ref = this.nextRef++;
    this.pending.set(ref, update);
    this.pendingCells.set(ref, cells);
    this.showCellsSaving();
    if (this.pending.size === 1) this.onSaveState("saving");
    if (this.live) this.feed.send(this.updateFrame(ref, update)); // else resync sends it
  }

  updateFrame(ref, update) {
    return { op: "doc_update", worksheet: this.worksheet, update, ref };
  }

  acknowledged(ref) {
    if (!this.pending.delete(ref)) return;
    this.tries.delete(ref);
    this.pendingCells.delete(ref);
    this.showCellsSaving();
    if (!this.pending.size) {
      this.onSaveState("saved");
      for (const resolve of this.waiters.splice(0)) resolve();
    }
  }

  refused(frame) {
    if (frame.ref === undefined || frame.ref === null) {
      // the handshake itself was refused (say, a service away for a moment): try again
      if (!FINAL_CODES.has(frame.code)) this.retrySoon();
      console.warn("document:", frame.message);
      return;
    }
    if (!this.pending.has(frame.ref)) return;
    const tries = (this.tries.get(frame.ref) ?? 0) + 1;
    this.tries.set(frame.ref, tries);
    if (!FINAL_CODES.has(frame.code) && tries < MAX_TRIES) {
      this.retrySoon(); // kept, and sent again
      return;
    }
    this.pending.delete(frame.ref); // refused for good (not allowed, too large, gone)
    this.tries.delete(frame.ref);
    this.pendingCells.delete(frame.ref);
    this.showCellsSaving();
    if (!this.pending.size) {
      this.onSaveState("saved");
      for (const resolve of this.waiters.splice(0)) resolve();
    }
    this.onRefused(frame);
  }

  /** The ids of the cells a transaction changed (their text, type, metadata...). */
  cellsOf(transaction) {
    const ids = new Set();
    for (const type of transaction?.changed?.keys() ?? []) {
      let item = type._item; // up the tree to the cell map, a child of `cells`
      while (item && item.parent !== this.cells) item = item.parent?._item;
      const id = item?.content?.type?.get?.("id");
      if (typeof id === "string") ids.add(id);
    }
    return ids;
  }

  showCellsSaving() {
    const now = new Set();
    for (const cells of this.pendingCells.values()) for (const id of cells) now.add(id);
    const saving = [...now].filter((id) => !this.savingCells.has(id));
    const saved = [...this.savingCells].filter((id) => !now.has(id));
    this.savingCells = now;
    if (saving.length || saved.length) this.onCellsSaving(saving, saved);
  }

  retrySoon() {
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.live && this.handshake(), RETRY_MS);
  }

  /** Resolves once every edit made so far is committed on the server. */
  whenSaved() {
    if (!this.pending.size) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  get saving() {
    return this.pending.size > 0;
  }

  // -- awareness ----------------------------------------------------------------------------

  applyAwareness(update) {
    try {
      applyAwarenessUpdate(this.awareness, fromBase64(update), REMOTE);
    } catch (error) {
      console.warn("document: an awareness update that does not apply", error);
    }
  }

  sendAwareness(clients) {
    if (!clients.length) return;
    const update = encodeAwarenessUpdate(this.awareness, clients);
    this.feed.send({ op: "awareness", worksheet: this.worksheet, update: toBase64(update) });
  }

  /** This person is in cell `cell` (an id, or null), with `cursor` {anchor, head} or null. */
  setWhere(cell, cursor) {
    const state = this.awareness.getLocalState();
    if (state && state.cell === cell && sameCursor(state.cursor, cursor)) return;
    this.awareness.setLocalState({ ...state, cell, cursor });
  }

  /**
   * The others here: [{clientId, user: {name, color, colorLight}, cell, cursor}]. What others
   * say of themselves is checked: a name is text, a colour only a colour.
   */
  peers() {
    const peers = [];
    for (const [clientId, state] of this.awareness.getStates()) {
      if (clientId === this.doc.clientID || !state?.user) continue;
      const color = colour(state.user.color, "#1c7ed6");
      const user = {
        name: String(state.user.name ?? "someone").slice(0, 64),
        color,
        colorLight: colour(state.user.colorLight, color),
      };
      const cell = typeof state.cell === "string" ? state.cell : null;
      peers.push({ clientId, user, cell, cursor: state.cursor ?? null });
    }
    return peers;
  }

  // -- cell operations (this person's, one transaction each) ---------------------------------

  /** One cell operation: one undo step of its own, never merged with typing around it. */
  transact(fn) {
    this.undoManager.stopCapturing();
    this.doc.transact(fn, this.origin);
    this.undoManager.stopCapturing();
  }

  indexOf(id) {
    let index = 0;
    for (const cell of this.cells) {
      if (cell.get("id") === id) return index;
      index++;
    }
    return -1;
  }

  /** A new cell just after cell `after` (null: at the top); returns its id. */
  insertCell(after, cellType = "code", source = "") {
    const id = newCellId();
    this.transact(() => {
      const index = after === null ? 0 : this.indexOf(after) + 1;
      const cell = new Y.Map();
      cell.set("id", id);
      cell.set("cell_type", cellType);
      cell.set("source", new Y.Text(source));
      cell.set("metadata", new Y.Map());
      if (cellType === "code") {
        cell.set("execution_count", null);
        cell.set("outputs", new Y.Array());
      }
      this.cells.insert(index < 0 ? this.cells.length : index, [cell]);
    });
    return id;
  }

  deleteCell(id) {
    this.transact(() => {
      const index = this.indexOf(id);
      if (index >= 0) this.cells.delete(index, 1);
    });
  }

  /**
   * Move cell `id` by `delta` places: deleted and inserted again as a copy with the same id,
   * type, source and metadata (Yjs has no move; jupyter_ydoc and JupyterLab do the same).
   */
  moveCell(id, delta) {
    this.transact(() => {
      const index = this.indexOf(id);
      const target = index + delta;
      if (index < 0 || target < 0 || target >= this.cells.length) return;
      const copy = copyCell(this.cells.get(index));
      this.cells.delete(index, 1);
      this.cells.insert(target, [copy]);
    });
  }

  /** Make cell `id` a code, markdown or raw cell (in place: its text stays the same Y.Text). */
  setCellType(id, cellType) {
    this.transact(() => {
      const cell = this.cells.get(this.indexOf(id));
      if (!cell || cell.get("cell_type") === cellType) return;
      cell.set("cell_type", cellType);
      if (cellType === "code") {
        if (!cell.has("execution_count")) cell.set("execution_count", null);
        if (!cell.has("outputs")) cell.set("outputs", new Y.Array());
        if (cell.has("attachments")) cell.delete("attachments");
      } else {
        if (cell.has("execution_count")) cell.delete("execution_count");
        if (cell.has("outputs")) cell.delete("outputs");
      }
    });
  }

  undo() {
    this.undoManager.undo();
  }

  redo() {
    this.undoManager.redo();
  }

  /** This person left (the tab closes, or goes elsewhere): the others are told at once. */
  leave() {
    this.gone = true;
    clearTimeout(this.settleTimer);
    removeAwarenessStates(this.awareness, [this.doc.clientID], "local"); // sent
  }

  destroy() {
    clearTimeout(this.retryTimer);
    clearTimeout(this.settleTimer);
    this.leave();
    this.awareness.destroy();
    this.undoManager.destroy();
    this.doc.destroy();
  }
}

/** A copy of the cell map `cell`, for moving it: same keys, new shared types. */
function copyCell(cell) {
  const copy = new Y.Map();
  for (const [key, value] of cell.entries()) {
    if (value instanceof Y.Text) copy.set(key, new Y.Text(value.toString()));
    else if (value instanceof Y.Map) copy.set(key, new Y.Map(Object.entries(value.toJSON())));
    else if (value instanceof Y.Array) copy.set(key, Y.Array.from(value.toJSON()));
    else copy.set(key, value);
  }
  return copy;
}

/** `value` if it is a plain CSS colour (hex, rgb(), hsl()), else `fallback`. */
function colour(value, fallback) {
  const plain = /^(#[0-9a-f]{3,8}|(rgb|hsl)a?\([0-9.,%/ a-z-]*\))$/i;
  return typeof value === "string" && plain.test(value) ? value : fallback;
}

function sameCursor(a, b) {
  if (!a || !b) return a === b;
  return JSON.stringify(a) === JSON.stringify(b);
}

/** A new cell id: a random UUID (nbformat's rule: 1-64 letters, digits, - and _). */
function newCellId() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16)); // outside secure contexts too
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
