/**
 * One cell on the page: its editor, its outputs, and what is known of its last run.
 *
 * The cell shows its run's state (queued, running, done, error, aborted), its execution
 * count, who ran it and how long it took; its toolbar runs, moves, inserts after and deletes
 * it. Editing and saving are `CellSync`'s; outputs are `OutputArea`'s; which feed messages
 * belong to this cell is decided by the worksheet's `RunTracker`, which calls `startRun`,
 * `output` and `finishRun` here.
 */
import { h } from "../dom.js";
import { formatDuration, formatTime } from "../format.js";
import { createEditor } from "../editor.js";
import { OutputArea } from "../outputs/area.js";
import { ansiToHtml } from "../outputs/ansi.js";
import { CellSync } from "./cell-sync.js";

const STATE_LABELS = {
  idle: "",
  queued: "queued",
  running: "running",
  done: "done",
  error: "error",
  aborted: "aborted",
};
const SAVE_LABELS = {
  saved: "",
  unsaved: "unsaved",
  saving: "saving…",
  conflict: "conflict",
  error: "not saved",
};

export class CellView {
  /**
   * `cell`: the cell as the API returns it; `editable`: whether this user may change it (if
   * not, `readOnlyReason` says why); `actions`: the worksheet page's handlers
   * {run, insertAfter, move, remove, complete, inspect, resolveConflict}.
   */
  constructor(cell, { editable, readOnlyReason = "", displays, actions }) {
    this.id = cell.id;
    this.actions = actions;
    this.state = "idle";
    this.started = null; // Date the current run started
    this.ticker = 0;

    this.count = h("span", { class: "cell-count", "data-testid": "cell-count" });
    this.stateLabel = h("span", { class: "cell-state", "data-testid": "cell-state" });
    this.runBy = h("span", { class: "cell-run-by", "data-testid": "cell-run-by" });
    this.duration = h("span", { class: "cell-duration", "data-testid": "cell-duration" });
    this.runAt = h("span", { class: "cell-run-at muted" });
    this.saveState = h("span", { class: "cell-save-state", "data-testid": "cell-save-state" });
    this.inspector = h("div", { class: "cell-inspector", hidden: true, "data-testid": "cell-inspector" });
    this.outputs = new OutputArea(displays);
    const editorHost = h("div", { class: "cell-editor", "data-testid": "cell-editor" });
    this.buttons = {
      run: this.button("▶", "Run this cell (Shift+Enter)", "cell-run", () =>
        actions.run(this, { advance: false }),
      ),
      up: this.button("↑", "Move up", "cell-move-up", () => actions.move(this, -1)),
      down: this.button("↓", "Move down", "cell-move-down", () => actions.move(this, 1)),
      insert: this.button("+", "Insert a cell below", "cell-insert-below", () => actions.insertAfter(this)),
      remove: this.button("✕", "Delete this cell", "cell-delete", () => actions.remove(this)),
    };
    this.el = h(
      "section",
      { class: "cell", "data-testid": "cell", dataset: { cellId: cell.id, state: "idle" } },
      h("div", { class: "cell-gutter" }, this.count, this.stateLabel),
      h(
        "div",
        { class: "cell-main" },
        editorHost,
        this.inspector,
        this.outputs.el,
        h(
          "div",
          { class: "cell-footer" },
          this.runBy,
          this.duration,
          this.runAt,
          this.saveState,
          h("div", { class: "cell-tools" }, Object.values(this.buttons)),
        ),
      ),
    );

    this.editor = createEditor({
      parent: editorHost,
      doc: cell.source,
      editable,
      onChange: () => this.sync.changed(),
      onRun: (options) => actions.run(this, options),
      complete: (code, pos) => actions.complete(code, pos),
      inspect: (code, pos) => this.inspect(code, pos),
      onEscape: () => this.closeInspector(),
      onFocus: () => this.el.classList.add("cell-focused"),
    });
    editorHost.addEventListener("focusout", () => this.el.classList.remove("cell-focused"));
    this.sync = new CellSync({
      cell,
      editor: this.editor,
      onState: (state, message) => this.showSaveState(state, message),
      resolveConflict: (conflict) => actions.resolveConflict(this, conflict),
    });

    this.outputs.reset(cell.outputs);
    this.showCount(cell.execution_count);
    if (cell.run_by) this.showRunBy(cell.run_by);
    if (cell.run_at) this.runAt.textContent = formatTime(cell.run_at);
    this.setEditable(editable, readOnlyReason);
  }

  button(label, title, testid, onclick) {
    return h(
      "button",
      {
        type: "button",
        class: "icon-button",
        title,
        "aria-label": title,
        "data-testid": testid,
        dataset: { title },
        onclick,
      },
      label,
    );
  }

  /** Viewers see the cell but cannot change or run it; the buttons say why. */
  setEditable(editable, reason = "") {
    this.editor.setEditable(editable);
    for (const button of Object.values(this.buttons)) {
      button.disabled = !editable;
      button.title = editable ? button.dataset.title : reason;
    }
    this.el.classList.toggle("cell-readonly", !editable);
  }

  // -- runs ---------------------------------------------------------------------------------

  /** This user asked to run the cell; it waits in the session's queue. */
  queued(username) {
    this.outputs.reset([]);
    this.closeInspector();
    this.showRunBy(username);
    this.duration.textContent = "";
    this.runAt.textContent = "";
    this.setState("queued");
  }

  /** The run began (`status busy` or `execute_input`), as `username`, at `date`. */
  startRun({ username, date, count }) {
    if (count !== undefined) this.showCount(count, true);
    if (this.state === "running") return;
    this.started = parseDate(date) ?? new Date();
    this.showRunBy(username);
    this.runAt.textContent = formatTime(this.started.toISOString());
    this.setState("running");
    clearInterval(this.ticker);
    const tick = () => (this.duration.textContent = formatDuration(Date.now() - this.started.getTime()));
    tick();
    this.ticker = setInterval(tick, 1000);
  }

  /** An output message of the run. */
  output(msgType, content) {
    this.outputs.handle(msgType, content);
  }

  /** The run's `execute_reply`: status ok, error or aborted. */
  finishRun({ status, count, date }) {
    clearInterval(this.ticker);
    this.showCount(count);
    const ended = parseDate(date);
    if (this.started && ended) this.duration.textContent = formatDuration(ended - this.started);
    else if (status === "aborted") this.duration.textContent = "";
    this.started = null;
    this.setState(status === "ok" ? "done" : status === "aborted" ? "aborted" : "error");
  }

  setState(state) {
    this.state = state;
    this.el.dataset.state = state;
    this.stateLabel.textContent = STATE_LABELS[state] ?? state;
    if (state === "running") this.count.textContent = "[*]";
  }

  showCount(count, running = false) {
    this.count.textContent = running ? "[*]" : `[${count ?? " "}]`;
    if (count !== null && count !== undefined) this.el.dataset.count = String(count);
  }

  showRunBy(username) {
    this.runBy.textContent = username ? `run by ${username}` : "";
    this.runBy.dataset.username = username ?? "";
  }

  // -- editing ------------------------------------------------------------------------------

  showSaveState(state, message = "") {
    this.saveState.textContent = SAVE_LABELS[state] ?? state;
    this.saveState.dataset.state = state;
    this.saveState.title = message;
  }

  async inspect(code, pos) {
    const result = await this.actions.inspect(code, pos);
    if (!result) return;
    const pre = h("pre", { class: "inspector-text", "data-testid": "inspector-text" });
    pre.innerHTML = ansiToHtml(
      result.found ? (result.data["text/plain"] ?? "") : "Nothing is known of this name.",
    );
    const close = h(
      "button",
      {
        type: "button",
        class: "icon-button",
        title: "Close (Escape)",
        "data-testid": "inspector-close",
        onclick: () => this.closeInspector(),
      },
      "✕",
    );
    this.inspector.replaceChildren(close, pre);
    this.inspector.hidden = false;
  }

  closeInspector() {
    this.inspector.hidden = true;
    this.inspector.replaceChildren();
  }

  focus() {
    this.editor.focus();
    this.el.scrollIntoView({ block: "nearest" });
  }

  destroy() {
    clearInterval(this.ticker);
    this.sync.destroy();
    this.outputs.clear();
    this.editor.destroy();
  }
}

/** The server's times have microseconds ("...20.851860Z"); Date wants milliseconds. */
function parseDate(iso) {
  if (!iso) return null;
  const date = new Date(iso.replace(/(\.\d{3})\d+/, "$1"));
  return Number.isNaN(date.getTime()) ? null : date;
}
