/**
 * A worksheet at `/w/<id>`: its cells, live.
 *
 * The page opens a consistent snapshot of the worksheet (snapshot.js), then follows its
 * session's feed from the snapshot's cursor. Everything anyone does arrives there in one
 * order: cells added, edited, moved and deleted (cells.js applies them), runs with their
 * outputs as they stream (runs.js routes them to cells), the session's state, renames and
 * sharing. What this user does goes to the API; its effects come back on the feed like
 * anyone else's, so every watcher sees the same worksheet.
 *
 * The user's role decides what they may do: viewers watch everything but cannot edit or run,
 * and the controls say so.
 */
import { CODES, call, describeError } from "../api.js";
import { resolveConflict } from "../dialogs/conflict.js";
import { askText, confirmAction } from "../dialogs/dialog.js";
import { openShareDialog } from "../dialogs/share.js";
import { h } from "../dom.js";
import { fromCodePoints, toCodePoints } from "../editor.js";
import { ROLE_RANK } from "../generated.js";
import { exportNotebook } from "../notebooks.js";
import { DisplayRegistry } from "../outputs/area.js";
import { toast } from "../toast.js";
import { CellView } from "./cell.js";
import { CellList } from "./cells.js";
import { RunTracker } from "./runs.js";
import { SheetBar, reasonFor } from "./sheet-bar.js";
import { loadSnapshot } from "./snapshot.js";

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
    this.focusOnArrival = null;
    this.onBeforeUnload = (event) => {
      if (this.cells.views.some((view) => view.sync.dirty)) event.preventDefault(); // unsaved
    };
    window.addEventListener("beforeunload", this.onBeforeUnload);
    this.displays = new DisplayRegistry();
    this.bar = new SheetBar({
      runAll: () => this.runAll(),
      interrupt: () => this.interrupt(),
      restart: () => this.restart(),
      addCell: () => this.createCell(this.cells.at(this.cells.length - 1)?.id ?? null),
      share: () => openShareDialog({ id: this.id, title: this.title }, this.user),
      export: () => this.export(),
      rename: () => this.rename(),
    });
    this.cells = new CellList((cell) => this.cellView(cell));
    this.tracker = new RunTracker({
      cellFor: (cellId) => this.cells.get(cellId),
      onQueue: (waiting) => this.bar.setQueue(waiting),
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
    );
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
    this.setTitle(sheet.title);
    this.setRole(sheet.role);
    this.cells.reset(sheet.cells);
    for (const cell of sheet.cells) {
      if (cell.run_msg_id) this.tracker.known(cell.run_msg_id, cell.id);
    }
    this.bar.setSessionState(info.state);
    this.tracker.showSession(info); // later changes come on the feed (cell_run, busy, reply)
    this.historyCursor = cursor;
    this.rebuild = rebuild;
    this.unsubscribe = this.feed.subscribe(this.session, rebuild.size ? 0 : cursor, {
      onMessage: (message, at) => this.onFeed(message, at),
      onPresence: (users) => this.bar.setPresence(users, this.user.username),
      onError: (frame) => this.onFeedError(frame),
    });
    this.el.dataset.loaded = "true";
  }

  cellView(cell) {
    return new CellView(cell, {
      editable: this.editable,
      readOnlyReason: reasonFor(this.role, "editor"),
      displays: this.displays,
      actions: {
        run: (view, options) => this.run(view, options),
        insertAfter: (view) => this.createCell(view.id),
        move: (view, delta) => this.move(view, delta),
        remove: (view) => this.removeCell(view),
        complete: (code, pos) => this.complete(code, pos),
        inspect: (code, pos) => this.inspect(code, pos),
        resolveConflict: (view, conflict) => resolveConflict(conflict),
      },
    });
  }

  // -- the feed -----------------------------------------------------------------------------

  onFeed(message, cursor) {
    if (cursor <= this.historyCursor) {
      this.replay(message);
      return;
    }
    const type = message.header.msg_type;
    if (type === "status") this.bar.setSessionState(message.content.execution_state, message.content.reason);
    if (RunTracker.isRunMessage(message)) {
      this.tracker.handle(message);
      return;
    }
    const content = message.content;
    switch (type) {
      case "cell_created": {
        const view = this.cells.insert(content.cell, content.after);
        if (content.cell.id === this.focusOnArrival) {
          this.focusOnArrival = null;
          view.focus();
        }
        break;
      }
      case "cell_updated":
        this.cells.get(content.cell.id)?.sync.remote(content.cell, message.header.username);
        break;
      case "cell_moved":
        this.cells.move(content.id, content.after);
        break;
      case "cell_deleted":
        this.cells.remove(content.id);
        break;
      case "worksheet_renamed":
        this.setTitle(content.title);
        break;
      case "worksheet_shared":
        if (content.username === this.user.username && content.role !== "none") this.setRole(content.role);
        break;
      default:
        break;
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
    if (this.replayed.has(msgId)) this.tracker.handle(message);
  }

  /** The feed refused this page for good: access removed, or the worksheet is gone. */
  onFeedError(frame) {
    const removed = frame.code === CODES.FORBIDDEN;
    this.setRole("viewer");
    this.bar.setRole("none");
    this.showBanner(removed ? "Your access to this worksheet was removed." : frame.message, "error");
  }

  // -- what the user does -------------------------------------------------------------------

  async run(view, { advance = false } = {}) {
    if (!this.editable) {
      toast(reasonFor(this.role, "editor"), "error");
      return;
    }
    if (advance) this.cells.at(this.cells.indexOf(view) + 1)?.focus();
    if (!(await view.sync.flush())) return;
    await this.evaluate(view);
  }

  async runAll() {
    const views = [...this.cells.views];
    const saved = await Promise.all(views.map((view) => view.sync.flush()));
    if (saved.includes(false)) return;
    for (const view of views) view.queued(this.user.username);
    for (const [index, view] of views.entries()) {
      if (!(await this.evaluate(view, { alreadyQueued: true }))) {
        for (const rest of views.slice(index + 1)) rest.setState("idle"); // never asked for
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

  async restart() {
    const sure = await confirmAction({
      title: "Restart the session",
      message:
        "Its variables are lost for everyone working on this worksheet, and queued runs are cancelled.",
      confirm: "Restart",
    });
    if (!sure) return;
    try {
      await call("session.restart", { session: this.session });
    } catch (error) {
      toast(describeError(error), "error");
    }
  }

  async createCell(after) {
    try {
      const cell = await call("cell.create", { worksheet: this.id, source: "", after });
      const view = this.cells.get(cell.id);
      if (view)
        view.focus(); // the feed was quicker than the answer
      else this.focusOnArrival = cell.id;
    } catch (error) {
      toast(describeError(error), "error");
    }
  }

  async move(view, delta) {
    const index = this.cells.indexOf(view);
    const target = index + delta;
    if (target < 0 || target >= this.cells.length) return;
    const after = delta < 0 ? (this.cells.at(target - 1)?.id ?? null) : this.cells.at(target).id;
    try {
      await call("cell.move", { id: view.id, after });
    } catch (error) {
      toast(describeError(error), "error");
    }
  }

  async removeCell(view) {
    try {
      await call("cell.delete", { id: view.id });
    } catch (error) {
      toast(describeError(error), "error");
    }
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
      await Promise.all(this.cells.views.map((view) => view.sync.flush())); // with unsaved edits
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
    for (const view of this.cells.views) {
      if (view.sync.dirty) view.sync.flush(); // leaving the page: the save still goes out
    }
    window.removeEventListener("beforeunload", this.onBeforeUnload);
    this.unsubscribe?.();
    this.cells.reset([]);
  }
}
