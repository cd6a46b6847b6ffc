/**
 * A worksheet at `/w/<id>`: its cells, live, that several people edit at once.
 *
 * The cells are the worksheet's document (document.js): a Y.Doc synchronised over the feed
 * WebSocket, into which everyone's keystrokes and cell operations go, merged character by
 * character, with no saving by hand and no conflicts. The page shows the document's `cells`
 * (cells.js) and turns what the user does to cells (add, delete, move, change type, undo) into
 * edits of it. Who is in which cell, and their cursors, come from the document's awareness.
 *
 * Runs stay with the session: `cell.evaluate` asks for one (once the server has every edit),
 * and its outputs stream on the session's feed, in one order for every watcher (runs.js routes
 * them to cells), with the session's state, renames and sharing. The page opens what the
 * document does not hold (saved outputs, the session's state) at a feed cursor (snapshot.js),
 * then follows the feed from there.
 *
 * The user's role decides what they may do: viewers watch everything but cannot edit or run,
 * and the controls say so.
 *
 * What the kernel asks of people goes to whoever ran the cell: an `input()` (a box under the
 * cell, answered with `session.input`; others see that the session waits), help from the
 * pager (`len?`: the help panel, help.js) and `set_next_input` (a new cell below, or the
 * cell's text replaced). Widgets are shared by everyone (src/widgets/hub.js).
 *
 * The worksheet's files (its workspace) are in the files panel (src/files/panel.js), opened from
 * the bar and listed again when the feed says they changed (`files_changed`).
 *
 * The keyboard works as JupyterLab's: edit mode in a cell's editor, command mode on the cells
 * (selection.js), their keys (keyboard.js) and every command (commands.js) in the palette
 * (palette.js), with the table of contents (toc.js) and find and replace (find.js) beside the
 * cells. Clearing outputs asks the server (`worksheet.clear_outputs`), which tells every page
 * on the feed (`outputs_cleared`).
 */
import { CODES, NetworkError, call, describeError } from "../api.js";
import { askText, confirmAction } from "../dialogs/dialog.js";
import { openShareDialog } from "../dialogs/share.js";
import { frameScheduler, h } from "../dom.js";
import { fromCodePoints, toCodePoints } from "../editor.js";
import { ROLE_RANK } from "../generated.js";
import { stateOf } from "../feed.js";
import { FilesPanel } from "../files/panel.js";
import { exportNotebook } from "../notebooks.js";
import { DisplayRegistry } from "../outputs/area.js";
import { toast } from "../toast.js";
import { WidgetHub } from "../widgets/hub.js";
import { CellView } from "./cell.js";
import { CellList } from "./cells.js";
import { Commands } from "./commands.js";
import { WorksheetDocument } from "./document.js";
import { FindPanel } from "./find.js";
import { HelpPanel } from "./help.js";
import { Keyboard } from "./keyboard.js";
import { openPalette, openShortcuts } from "./palette.js";
import { RunTracker } from "./runs.js";
import { setHidden } from "./operations.js";
import { SheetBar, colourOf, reasonFor } from "./sheet-bar.js";
import { Selection } from "./selection.js";
import { loadSnapshot } from "./snapshot.js";
import { TableOfContents } from "./toc.js";

const NEAR_PX = 1500; // a cell this close to the screen gets its editor
const LEAVE_WAIT_MS = 10_000; // leaving the page: how long edits in flight may take to be saved
const VIEWER_NOTE =
  "You are a viewer: you see everything live, but you cannot edit or run cells. " +
  "Ask an owner for the editor role.";

export class WorksheetPage {
  constructor({ id, user, feed, session = null }) {
    this.id = id;
    this.user = user;
    this.feed = feed;
    this.session = session;
    this.role = "viewer";
    this.title = "";
    this.historyCursor = 0; // feed messages up to here are in the snapshot already
    this.rebuild = new Set();
    this.replayed = new Set(); // rebuilt runs whose start the replay has reached
    this.saved = new Map(); // cell id -> the cell as worksheet.get gave it (outputs, last run)
    this.waiting = []; // feed messages that came before the document: handled once it is here
    this.info = null;
    this.peerCells = new Set(); // the cells where others were shown last
    this.onBeforeUnload = (event) => {
      if (this.doc.saving) event.preventDefault(); // edits the server has not confirmed yet
    };
    window.addEventListener("beforeunload", this.onBeforeUnload);
    this.onPageHide = () => this.doc.leave(); // the tab closes: no cursor left behind
    window.addEventListener("pagehide", this.onPageHide);
    this.onKeyDown = (event) => this.keyDown(event);
    document.addEventListener("keydown", this.onKeyDown);
    this.displays = new DisplayRegistry();
    this.widgets = new WidgetHub();
    this.help = new HelpPanel();
    this.files = new FilesPanel(id);
    this.bar = new SheetBar({
      runAll: () => this.runCells([...this.cells.views]),
      interrupt: () => this.interrupt(),
      restart: () => this.restart(),
      addCell: () => this.createCell(this.cells.at(this.cells.length - 1)?.id ?? null),
      share: () => openShareDialog({ id: this.id, title: this.title }, this.user),
      export: () => this.export(),
      rename: () => this.rename(),
      palette: () => this.commands.run("palette"),
      shortcuts: () => this.commands.run("shortcuts"),
    });
    this.doc = new WorksheetDocument({
      worksheet: id,
      feed,
      user: {
        name: user.username,
        color: colourOf(user.username),
        colorLight: colourOf(user.username, 0.25),
      },
      mayEdit: () => this.editable,
      onSynced: () => this.synced(),
      onSaveState: (state) => this.bar.setSaveState(state),
      onCellsSaving: (saving, saved) => {
        for (const id of saving) this.cells?.get(id)?.showSaveState("saving");
        for (const id of saved) this.cells?.get(id)?.showSaveState("saved");
      },
      onRefused: (frame) => toast(`An edit was refused: ${frame.message}`, "error"),
      onPeers: () => this.showPeersSoon(),
    });
    this.showPeersSoon = frameScheduler(() => this.showPeers());
    // Cells get their editor as they come near the screen (cell.js): opening is quick
    this.viewOf = new WeakMap(); // cell element -> CellView
    this.nearby = new IntersectionObserver(
      (entries) => {
        for (const entry of entries) {
          if (!entry.isIntersecting) continue;
          this.nearby.unobserve(entry.target);
          this.viewOf.get(entry.target)?.nearScreen();
        }
      },
      { rootMargin: `${NEAR_PX}px 0px` },
    );
    this.cells = new CellList(this.doc.cells, (ymap) => this.cellView(ymap));
    this.doc.cells.observe(() => this.showPeersSoon()); // new views show who is in them
    this.tracker = new RunTracker({
      cellFor: (cellId) => this.cells.get(cellId),
      onQueue: (waiting) => this.bar.setQueue(waiting),
      onInput: (cell, message, live) => this.inputRequested(cell, message, live),
      onPayloads: (cell, message, run, live) => this.payloads(cell, message, run, live),
    });
    this.banner = h("div", { class: "banner", hidden: true, "data-testid": "worksheet-banner" });
    this.addButton = h(
      "button",
      {
        type: "button",
        class: "add-cell-bottom",
        "data-testid": "add-cell-bottom",
        onclick: () => this.createCell(this.cells.at(this.cells.length - 1)?.id ?? null),
      },
      "+ Add a cell",
    );
    this.el = h(
      "main",
      { class: "worksheet-page", "data-testid": "worksheet-page" },
      this.bar.el,
      this.banner,
      this.cells.el,
      this.addButton,
      this.help.el,
      this.files.el,
    );
    this.bar.el.querySelector(".sheet-tools").append(this.files.toggle);
    this.selection = new Selection(this);
    this.toc = new TableOfContents(this);
    this.find = new FindPanel(this);
    this.el.append(this.toc.el, this.find.el);
    this.commands = new Commands(this, {
      palette: () => openPalette(this.commands),
      shortcuts: () => openShortcuts(this.commands),
      toc: () => this.toc.toggle(),
      find: () => this.find.show(),
    });
    this.keyboard = new Keyboard(this, this.commands);
    this.doc.cells.observe(() => this.selection.showSoon()); // new views show the selection
    this.load();
  }

  get editable() {
    return (ROLE_RANK[this.role] ?? 0) >= ROLE_RANK.editor;
  }

  async load() {
    let snapshot;
    try {
      snapshot = await loadSnapshot(this.id, this.session);
    } catch (error) {
      const missing = error.code === CODES.NOT_FOUND || error.code === CODES.INVALID_PARAMS;
      this.showBanner(
        missing ? "This worksheet does not exist, or it is not shared with you." : describeError(error),
        "error",
      );
      this.bar.el.hidden = true;
      this.addButton.hidden = true;
      return;
    }
    if (this.destroyed) return; // the user went elsewhere meanwhile
    const { sheet, info, cursor, rebuild } = snapshot;
    this.session = sheet.session;
    this.widgets.start(this.session);
    this.setTitle(sheet.title);
    this.setRole(sheet.role);
    for (const cell of sheet.cells) {
      this.saved.set(cell.id, cell);
      if (cell.run_msg_id) this.tracker.known(cell.run_msg_id, cell.id);
    }
    this.bar.setSessionState(info.state);
    this.info = info;
    this.historyCursor = cursor;
    this.rebuild = rebuild;
    this.unsubscribe = this.feed.subscribe(
      this.session,
      rebuild.size ? 0 : cursor,
      {
        onMessage: (message, at) => this.onFeed(message, at),
        onPresence: (users) => this.bar.setPresence(users, this.user.username),
        onError: (frame) => this.onFeedError(frame),
        ...this.doc.handlers, // the document's frames, and its handshake on every (re)subscribe
      },
      this.id,
    );
  }

  /** The document is here (its first `doc_state`): the cells are shown; now the runs. */
  synced() {
    if (this.destroyed) return;
    this.tracker.showSession(this.info); // later changes come on the feed (cell_run, busy, reply)
    for (const [message, cursor] of this.waiting.splice(0)) this.onFeed(message, cursor);
    this.el.dataset.loaded = "true";
  }

  cellView(ymap) {
    const id = ymap.get("id");
    const view = new CellView(ymap, {
      saved: this.saved.get(id) ?? null,
      saving: this.doc.savingCells.has(id),
      editable: this.editable,
      readOnlyReason: reasonFor(this.role, "editor"),
      displays: this.displays,
      widgets: this.widgets,
      undoManager: this.doc.undoManager,
      actions: {
        run: (view, options) => this.run(view, options),
        insertAfter: (view) => this.createCell(view.id),
        move: (view, delta) => this.move(view, delta),
        remove: (view) => this.removeCell(view),
        setType: (view, type) => this.setType(view, type),
        complete: (code, pos) => this.complete(code, pos),
        inspect: (code, pos) => this.inspect(code, pos),
        focused: (view) => this.doc.setWhere(view.id, this.whereCursor(view)),
        cursor: (view, cursor) => this.doc.setWhere(view.id, cursor),
        forget: (view) => this.nearby.unobserve(view.el),
        commandMode: (view) => this.selection.commandMode(view),
        unfold: (view, what) => this.editable && setHidden(this.doc, [view], what, false),
      },
    });
    this.viewOf.set(view.el, view);
    this.nearby.observe(view.el);
    return view;
  }

  /** The cursor to keep when the user comes back to `view`: theirs if they were there. */
  whereCursor(view) {
    const state = this.doc.awareness.getLocalState();
    return state?.cell === view.id ? (state.cursor ?? null) : null;
  }

  // -- the feed -----------------------------------------------------------------------------

  onFeed(message, cursor) {
    const type = message.header.msg_type;
    if (type === "doc_update") {
      this.doc.applyMessage(message.content); // any, even from before the snapshot: harmless
      return;
    }
    if (!this.doc.synced) {
      this.waiting.push([message, cursor]); // runs need their cells: shown with the document
      return;
    }
    if (cursor <= this.historyCursor) {
      if (!this.widgets.capturedInReplay(message)) this.replay(message);
      return;
    }
    if (type === "files_changed") {
      this.files.changed(message.content.paths); // its parent may be a run: not the run's news
      return;
    }
    // comms (the hub reads what came before by itself), and outputs an Output widget shows
    if (this.widgets.feed(message, cursor)) return;
    const state = stateOf(message); // a status, or cellbus's session_state
    if (state) this.bar.setSessionState(state, message.content.reason);
    if (RunTracker.isRunMessage(message)) {
      this.tracker.handle(message);
      return;
    }
    const content = message.content;
    switch (type) {
      case "worksheet_renamed":
        this.setTitle(content.title);
        break;
      case "worksheet_shared":
        if (content.username === this.user.username && content.role !== "none") this.setRole(content.role);
        break;
      case "outputs_cleared":
        this.outputsCleared(content.cells ?? []);
        break;
      default:
        break; // cells change in the document: doc_update
    }
  }

  /** A message from before the snapshot: only the runs being rebuilt want it (snapshot.js). */
  replay(message) {
    if (!RunTracker.isRunMessage(message)) return;
    const msgId = message.parent_header.msg_id;
    if (!this.rebuild.has(msgId)) return;
    const type = message.header.msg_type;
    if (type === "execute_input" || (type === "status" && message.content.execution_state === "busy")) {
      this.replayed.add(msgId);
    }
    if (this.replayed.has(msgId)) this.tracker.handle(message, { live: false });
  }

  /** The feed refused this page for good: access removed, or the worksheet is gone. */
  onFeedError(frame) {
    const removed = frame.code === CODES.FORBIDDEN;
    this.setRole("viewer");
    this.bar.setRole("none");
    this.showBanner(removed ? "Your access to this worksheet was removed." : frame.message, "error");
  }

  // -- what the user does -------------------------------------------------------------------

  /**
   * Run `view`'s cell (a Markdown cell is shown rendered). `advance`: then on to the next cell
   * (on the last, a new cell, with the keyboard in it); `insert`: a new cell below, with the
   * keyboard in it; `command`: the next cell is selected in command mode, not edited.
   */
  async run(view, { advance = false, insert = false, command = false } = {}) {
    if (!view) return;
    let next = null;
    if (insert || (advance && !this.cells.at(this.cells.indexOf(view) + 1))) {
      next = this.insertBelow(view);
    } else if (advance) {
      next = this.cells.at(this.cells.indexOf(view) + 1);
      if (command) this.selection.commandMode(next);
      else next.focus();
    }
    if (view.cellType === "markdown") {
      view.showRendered(); // rendered here: Markdown is not run
      if (!next) view.focus(); // the rendering has the keyboard: Enter edits again
      return;
    }
    if (view.cellType !== "code") return; // raw cells are never run
    if (!this.editable) {
      toast(reasonFor(this.role, "editor"), "error");
      return;
    }
    view.queued(this.user.username);
    await this.doc.whenSaved(); // the server runs the text it has: all of this person's
    await this.evaluate(view, { alreadyQueued: true });
  }

  /** A new code cell below `view`, with the keyboard in it (null for a viewer). */
  insertBelow(view) {
    if (!this.editable || !this.doc.synced) return null;
    const next = this.cells.get(this.doc.insertCell(view.id));
    next?.focus();
    return next ?? null;
  }

  /** Run `views` in order (Markdown cells are shown rendered); stops at a run refused. */
  async runCells(views) {
    if (!this.editable) {
      toast(reasonFor(this.role, "editor"), "error");
      return;
    }
    for (const view of views) view.showRendered();
    const code = views.filter((view) => view.cellType === "code");
    for (const view of code) view.queued(this.user.username);
    await this.doc.whenSaved();
    for (const [index, view] of code.entries()) {
      if (!(await this.evaluate(view, { alreadyQueued: true }))) {
        for (const rest of code.slice(index + 1)) rest.setState("idle"); // never asked for
        break;
      }
    }
  }

  /** Ask the server to run `view`'s cell; resolves to whether it was queued. */
  async evaluate(view, { alreadyQueued = false } = {}) {
    if (!alreadyQueued) view.queued(this.user.username);
    try {
      const { msg_id: msgId } = await call("cell.evaluate", { id: view.id });
      this.tracker.known(msgId, view.id, { seen: true });
      return true;
    } catch (error) {
      view.setState("idle");
      toast(describeError(error), "error");
      return false;
    }
  }

  async interrupt() {
    try {
      await call("session.interrupt", { session: this.session });
    } catch (error) {
      toast(describeError(error), "error");
    }
  }

  /** Restart the session, once the person confirms; resolves to whether it restarted. */
  async restart() {
    const sure = await confirmAction({
      title: "Restart the session",
      message:
        "Its variables are lost for everyone working on this worksheet, and queued runs are cancelled.",
      confirm: "Restart",
    });
    if (!sure) return false;
    try {
      await call("session.restart", { session: this.session });
      return true;
    } catch (error) {
      toast(describeError(error), "error");
      return false;
    }
  }

  /**
   * Clear the saved outputs of `views` (null: of every cell), for everyone: shown cleared here
   * at once, and on every page when the server says so on the feed (`outputs_cleared`).
   */
  async clearOutputs(views) {
    if (!this.editable) return;
    const targets = (views ?? this.cells.views).filter((view) => view.cellType === "code");
    if (views && !targets.length) return;
    this.outputsCleared(targets.map((view) => view.id));
    try {
      const params = { id: this.id };
      if (views) params.cells = targets.map((view) => view.id);
      await call("worksheet.clear_outputs", params);
    } catch (error) {
      toast(describeError(error), "error");
    }
  }

  /** The outputs of cells `ids` were cleared (here, or by anyone: the feed). */
  outputsCleared(ids) {
    for (const id of ids) {
      this.cells.get(id)?.clearOutputs();
      const saved = this.saved.get(id);
      if (saved)
        this.saved.set(id, { ...saved, outputs: [], execution_count: null, run_by: null, run_at: null });
    }
  }

  /** A new code cell after cell `after` (null: at the top), with the keyboard in it. */
  createCell(after) {
    if (!this.editable || !this.doc.synced) return;
    const id = this.doc.insertCell(after);
    this.cells.get(id)?.focus(); // shown at once: the document changed here first
  }

  move(view, delta) {
    if (this.editable) this.doc.moveCell(view.id, delta);
  }

  removeCell(view) {
    if (this.editable) this.doc.deleteCell(view.id); // Ctrl+Z brings it back
  }

  setType(view, type) {
    if (!this.editable) return;
    this.doc.setCellType(view.id, type);
    if (type === "markdown") view.edit(); // made Markdown to be written: its editor stays
  }

  /**
   * Ctrl/Cmd+Z (Ctrl+Y, Ctrl/Cmd+Shift+Z: redo) with no editor focused: this person's last
   * edit, text or cell operation, is undone (editors do the same themselves, with the same
   * undo manager). Text fields and dialogs keep their own.
   */
  keyDown(event) {
    if (!(event.ctrlKey || event.metaKey) || event.altKey) return;
    const key = event.key.toLowerCase();
    if (key !== "z" && key !== "y") return;
    const target = event.target instanceof Element ? event.target : null;
    if (target?.closest(".cm-editor, input, textarea, select, [contenteditable], dialog, .dialog")) return;
    if (!this.editable || !this.doc.synced || !this.el.isConnected) return;
    event.preventDefault();
    if (key === "y" || event.shiftKey) this.doc.redo();
    else this.doc.undo();
  }

  // -- what the kernel asks ------------------------------------------------------------------

  /** A run of `cell` waits for input (`message`, an input_request): from this person? */
  inputRequested(cell, message, live) {
    const username = message.header.username ?? "";
    const mine = username === this.user.username && this.editable;
    const msgId = message.header.msg_id;
    cell.awaitInput({
      msgId,
      prompt: String(message.content.prompt ?? ""),
      password: Boolean(message.content.password),
      username,
      live,
      answer: mine ? (value) => this.answerInput(msgId, value) : null,
    });
  }

  /** Send `value` for input_request `msgId`; resolves to whether the kernel took it. */
  async answerInput(msgId, value) {
    try {
      await call("session.input", { session: this.session, value, input_request: msgId });
      return true;
    } catch (error) {
      toast(describeError(error), "error");
      if (error instanceof NetworkError) return false; // try again
      return true; // the kernel waits no more (answered elsewhere, interrupted)
    }
  }

  /**
   * The `execute_reply` of `cell`'s run carried payloads. Only for the person who ran it,
   * and only as it happens (a reply replayed from before the page opened is history).
   */
  payloads(cell, message, run, live) {
    const ranBy = run.username ?? message.header.username;
    if (!live || ranBy !== this.user.username) return;
    for (const payload of message.content.payload) {
      if (payload?.source === "page") this.help.show(payload.data);
      else if (payload?.source === "set_next_input" && typeof payload.text === "string") {
        this.setNextInput(cell, payload.text, Boolean(payload.replace));
      }
    }
  }

  /** `set_next_input`: the text in a new cell below `cell`, or instead of its text. */
  setNextInput(cell, text, replace) {
    if (!this.editable || !this.doc.synced) return;
    if (replace) {
      const ytext = cell.ytext;
      this.doc.transact(() => {
        ytext.delete(0, ytext.length);
        ytext.insert(0, text);
      });
      return;
    }
    const id = this.doc.insertCell(cell.id, "code", text);
    this.cells.get(id)?.focus();
  }

  // -- who is where -------------------------------------------------------------------------

  /** Others' chips on the cells they are in, and their cursors in those cells' editors. */
  showPeers() {
    const byCell = new Map();
    for (const peer of this.doc.peers()) {
      if (!peer.cell) continue;
      if (!byCell.has(peer.cell)) byCell.set(peer.cell, []);
      byCell.get(peer.cell).push(peer);
    }
    for (const id of new Set([...this.peerCells, ...byCell.keys()])) {
      const view = this.cells.get(id);
      if (!view) continue;
      const peers = byCell.get(id) ?? [];
      const people = new Map(peers.map((peer) => [peer.user.name, peer.user])); // one chip each
      view.setPeople([...people.values()].map((user) => ({ name: String(user.name), color: user.color })));
      view.setPeers(peers.filter((peer) => peer.cursor));
    }
    this.peerCells = new Set(byCell.keys());
  }

  async complete(code, pos) {
    if (!this.editable) return null;
    try {
      const result = await call("session.complete", {
        session: this.session,
        code,
        cursor_pos: toCodePoints(code, pos),
      });
      return {
        from: fromCodePoints(code, result.cursor_start),
        to: fromCodePoints(code, result.cursor_end),
        matches: result.matches,
      };
    } catch (error) {
      toast(describeError(error), "error");
      return null;
    }
  }

  async inspect(code, pos) {
    if (!this.editable) return null;
    try {
      return await call("session.inspect", {
        session: this.session,
        code,
        cursor_pos: toCodePoints(code, pos),
      });
    } catch (error) {
      toast(describeError(error), "error");
      return null;
    }
  }

  async export() {
    try {
      await this.doc.whenSaved(); // with the edits just made
      await exportNotebook(this.id, this.title);
    } catch (error) {
      toast(describeError(error), "error");
    }
  }

  async rename() {
    const title = await askText({
      title: "Rename worksheet",
      label: "Title",
      value: this.title,
      confirm: "Rename",
    });
    if (!title || title === this.title) return;
    try {
      this.setTitle((await call("worksheet.rename", { id: this.id, title })).title);
    } catch (error) {
      toast(describeError(error), "error");
    }
  }

  // -- showing ------------------------------------------------------------------------------

  setTitle(title) {
    this.title = title;
    this.bar.setTitle(title);
  }

  setRole(role) {
    this.role = role;
    this.bar.setRole(role);
    const reason = reasonFor(role, "editor");
    for (const view of this.cells.views) view.setEditable(this.editable, reason);
    this.addButton.disabled = !this.editable;
    this.widgets.setEditable(this.editable);
    this.files.setEditable(this.editable);
    this.addButton.title = this.editable ? "" : reason;
    if (role === "viewer") this.showBanner(VIEWER_NOTE, "info", "viewer");
    else if (this.banner.dataset.kind === "viewer") this.banner.hidden = true;
  }

  showBanner(text, kind, name = kind) {
    this.banner.textContent = text;
    this.banner.className = `banner banner-${kind}`;
    this.banner.dataset.kind = name;
    this.banner.hidden = false;
  }

  focus() {}

  destroy() {
    this.destroyed = true;
    window.removeEventListener("beforeunload", this.onBeforeUnload);
    window.removeEventListener("pagehide", this.onPageHide);
    document.removeEventListener("keydown", this.onKeyDown);
    this.keyboard.destroy();
    this.selection.destroy();
    this.toc.destroy();
    this.find.destroy();
    this.cells.destroy();
    this.nearby.disconnect();
    this.help.destroy();
    this.widgets.destroy();
    const leave = () => {
      this.doc.destroy(); // tells the others this person left, while still subscribed
      this.unsubscribe?.();
    };
    if (!this.doc.saving) leave();
    else Promise.race([this.doc.whenSaved(), delay(LEAVE_WAIT_MS)]).then(leave); // edits in flight
  }
}

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
