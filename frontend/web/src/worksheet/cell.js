/**
 * One cell on the page: a cell of the worksheet's document (a Y.Map), its editor, its outputs,
 * what is known of its last run, and who else is in it.
 *
 * Code cells show their run's state (queued, running, done, error, aborted), their execution
 * count, who ran them and how long it took. Markdown cells show their text rendered in the
 * browser (markdown.js: math, attachments, sanitised), and their editor on double-click or
 * Enter; Shift+Enter (or ▶) shows the rendering again. Raw cells are plain text, never run,
 * labelled with their format (metadata `raw_mimetype` or `format`). The toolbar runs, moves,
 * inserts after, deletes and changes the type of the cell: the worksheet page turns each into
 * an edit of the document. Outputs are `OutputArea`'s; which feed messages belong to the cell
 * is decided by the worksheet's `RunTracker`, which calls `startRun`, `output` and `finishRun`.
 *
 * The cell follows its Y.Map: its type, execution count, metadata and attachments as anyone
 * changes them (a collapsed input or outputs, and outputs scrolled, are metadata, as in
 * JupyterLab: `jupyter.source_hidden`, `jupyter.outputs_hidden`, `scrolled`); its text is
 * bound to the editor (editor.js). In command mode (selection.js) the cell's element itself
 * has the keyboard (`focusCell`). When the cell is moved, a copy of
 * the Y.Map takes its place, and `bind` follows the copy.
 */
import * as Y from "yjs";

import { frameScheduler, h, replaceChildren } from "../dom.js";
import { createEditor } from "../editor.js";
import { formatDuration, formatTime } from "../format.js";
import { renderMarkdown } from "../markdown.js";
import { ansiToHtml } from "../outputs/ansi.js";
import { OutputArea } from "../outputs/area.js";

const STATE_LABELS = {
  idle: "",
  queued: "queued",
  running: "running",
  done: "done",
  error: "error",
  aborted: "aborted",
};
const TYPES = { code: "Code", markdown: "Markdown", raw: "Raw" };

export class CellView {
  /**
   * `ymap`: the cell in the document; `saved`: the cell as `worksheet.get` returned it (its
   * outputs and last run), or null; `saving`: whether it has edits the server has not
   * acknowledged yet; `editable`: whether this user may change it (if not,
   * `readOnlyReason` says why); `displays` and `widgets`: the worksheet's DisplayRegistry and
   * WidgetHub, shared by its cells' outputs; `undoManager`: the worksheet's, for this person's edits;
   * `actions`: the worksheet page's handlers {run, insertAfter, move, remove, setType,
   * complete, inspect, focused, cursor, commandMode, unfold}.
   */
  constructor(
    ymap,
    {
      saved = null,
      saving = false,
      editable,
      readOnlyReason = "",
      displays,
      widgets = null,
      undoManager,
      actions,
    },
  ) {
    this.ymap = ymap;
    this.id = ymap.get("id");
    this.cellType = typeOf(ymap);
    this.actions = actions;
    this.state = "idle";
    this.started = null; // Date the current run started
    this.ticker = 0;
    this.editing = false; // a Markdown cell showing its editor rather than its rendering

    this.count = h("span", { class: "cell-count", "data-testid": "cell-count" });
    this.stateLabel = h("span", { class: "cell-state", "data-testid": "cell-state" });
    this.runBy = h("span", { class: "cell-run-by", "data-testid": "cell-run-by" });
    this.duration = h("span", { class: "cell-duration", "data-testid": "cell-duration" });
    this.runAt = h("span", { class: "cell-run-at muted" });
    this.saveState = h("span", { class: "cell-save-state", "data-testid": "cell-save-state" });
    this.people = h("ul", { class: "cell-people", "data-testid": "cell-people", "aria-label": "Here now" });
    this.rawFormat = h("div", { class: "raw-format", "data-testid": "raw-cell", hidden: true });
    this.rendered = h("div", {
      class: "markdown markdown-cell",
      "data-testid": "markdown-rendered",
      tabindex: "0",
      title: "Double-click or Enter to edit",
      hidden: true,
      ondblclick: () => this.edit(),
      onkeydown: (event) => this.renderedKey(event),
      onfocus: () => actions.focused(this),
    });
    this.inspector = h("div", { class: "cell-inspector", hidden: true, "data-testid": "cell-inspector" });
    this.outputs = new OutputArea(displays, widgets);
    this.stdin = h("div", { class: "cell-stdin", hidden: true, "data-testid": "cell-stdin" });
    this.awaiting = null; // the input_request's msg_id while the run waits for input
    this.editorHost = h("div", { class: "cell-editor", "data-testid": "cell-editor" });
    // A collapsed input or outputs (metadata jupyter.source_hidden, outputs_hidden) show a bar
    this.inputFold = this.fold("input", () => actions.unfold(this, "source"));
    this.outputsFold = this.fold("outputs", () => actions.unfold(this, "outputs"));
    this.typeSelect = h(
      "select",
      {
        class: "cell-type",
        "data-testid": "cell-type",
        "aria-label": "Cell type",
        title: "Cell type",
        onchange: () => actions.setType(this, this.typeSelect.value),
      },
      Object.entries(TYPES).map(([value, label]) => h("option", { value }, label)),
    );
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
      { class: "cell", "data-testid": "cell", dataset: { cellId: this.id, state: "idle" } },
      h("div", { class: "cell-gutter" }, this.count, this.stateLabel),
      h(
        "div",
        { class: "cell-main" },
        this.rawFormat,
        this.inputFold,
        this.editorHost,
        this.rendered,
        this.inspector,
        this.outputsFold,
        this.outputs.el,
        this.stdin,
        h(
          "div",
          { class: "cell-footer" },
          this.people,
          this.runBy,
          this.duration,
          this.runAt,
          this.saveState,
          h("div", { class: "cell-tools" }, this.typeSelect, Object.values(this.buttons)),
        ),
      ),
    );

    // The editor is made when the cell comes near the screen (`materialize`, called by the
    // page), or when someone needs it: until then the text is shown as plain lines, so a
    // worksheet of a thousand cells opens without a thousand editors measuring themselves.
    this.undoManager = undoManager;
    this.ytext = sourceOf(ymap);
    this.editor = null;
    this.peers = [];
    this.plain = h("div", { class: "cm-content cell-plain", "data-testid": "cell-input" });
    this.plainHost = h(
      "div",
      {
        class: "cm-editor cell-plain-editor",
        onmousedown: (event) => this.materializeAt(event),
      },
      h("div", { class: "cm-scroller" }, this.plain),
    );
    this.editorHost.append(this.plainHost);
    this.showPlainSoon = frameScheduler(() => this.showPlain());
    this.showPlain();
    this.editorHost.addEventListener("focusout", () => this.el.classList.remove("cell-focused"));
    this.editable = editable;
    this.renderSoon = frameScheduler(() => this.render());
    this.observer = (events) => this.changed(events);
    this.ymap.observeDeep(this.observer);

    this.outputs.reset(saved?.outputs ?? []);
    this.showCount(saved?.execution_count ?? ymap.get("execution_count"));
    if (saved?.run_by) this.showRunBy(saved.run_by);
    if (saved?.run_at) this.runAt.textContent = formatTime(saved.run_at);
    this.showType();
    this.showSaveState(saving ? "saving" : "saved");
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

  /** The bar a collapsed input or outputs show instead; a click expands them. */
  fold(what, onclick) {
    return h(
      "button",
      {
        type: "button",
        class: `cell-fold cell-fold-${what}`,
        title: `Show the ${what}`,
        "data-testid": `cell-${what}-collapsed`,
        onclick,
      },
      `··· ${what} hidden`,
    );
  }

  /** Viewers see the cell but cannot change or run it; the controls say why. */
  setEditable(editable, reason = "") {
    this.editable = editable;
    this.editor?.setEditable(editable);
    for (const control of [...Object.values(this.buttons), this.typeSelect]) {
      control.disabled = !editable;
      control.title = editable ? (control.dataset.title ?? "Cell type") : reason;
    }
    this.el.classList.toggle("cell-readonly", !editable);
  }

  // -- the document -------------------------------------------------------------------------

  /** Follow `ymap` instead: the cell was moved, and this copy of it took its place. */
  bind(ymap) {
    if (ymap === this.ymap) return;
    this.ymap.unobserveDeep(this.observer);
    this.ymap = ymap;
    this.ymap.observeDeep(this.observer);
    this.ytext = sourceOf(ymap);
    this.editor?.rebind(this.ytext);
    this.showPlainSoon();
    this.showType();
  }

  changed(events) {
    const source = this.ymap.get("source");
    for (const event of events) {
      if (event.target === source) {
        if (this.cellType === "markdown") this.renderSoon();
        if (!this.editor) this.showPlainSoon();
        continue;
      }
      if (event.target === this.ymap) {
        const keys = event.keysChanged ?? new Set();
        if (keys.has("source")) {
          this.ytext = sourceOf(this.ymap); // replaced: follow it
          this.editor?.rebind(this.ytext);
          this.showPlainSoon();
        }
        if (keys.has("execution_count") && this.state !== "running") {
          this.showCount(this.ymap.get("execution_count"));
        }
      }
      this.showType(); // the type, metadata or attachments may have changed
    }
  }

  get attachments() {
    return plain(this.ymap.get("attachments")) ?? null;
  }

  get metadata() {
    return plain(this.ymap.get("metadata")) ?? {};
  }

  showType() {
    const type = typeOf(this.ymap);
    const changed = type !== this.cellType;
    this.cellType = type;
    this.el.dataset.cellType = type;
    this.typeSelect.value = type;
    this.editor?.setCellType(type);
    const raw = type === "raw";
    this.rawFormat.hidden = !raw;
    if (raw) {
      const format = this.metadata.raw_mimetype ?? this.metadata.format ?? "";
      this.rawFormat.textContent = format ? `Raw · ${format}` : "Raw";
      this.rawFormat.dataset.format = format;
    }
    this.buttons.run.hidden = raw;
    this.count.hidden = type !== "code";
    this.outputs.el.hidden = type !== "code";
    if (changed && type === "markdown") this.editing = this.editorHost.contains(document.activeElement);
    if (changed && this.near && type !== "markdown") this.materialize();
    this.showMode();
    this.showFolds();
  }

  /** Collapsed input or outputs, and outputs scrolled, as the cell's metadata says. */
  showFolds() {
    const metadata = this.metadata;
    const jupyter = metadata.jupyter ?? {};
    const code = this.cellType === "code";
    this.el.classList.toggle("cell-input-hidden", Boolean(jupyter.source_hidden));
    this.el.classList.toggle("cell-outputs-hidden", code && Boolean(jupyter.outputs_hidden));
    this.el.classList.toggle("cell-outputs-scrolled", code && metadata.scrolled === true);
    this.el.dataset.inputHidden = String(Boolean(jupyter.source_hidden));
    this.el.dataset.outputsHidden = String(code && Boolean(jupyter.outputs_hidden));
    this.el.dataset.scrolled = String(code && metadata.scrolled === true);
  }

  /** A Markdown cell shows its rendering, or its editor while someone here edits it. */
  showMode() {
    const rendered = this.cellType === "markdown" && !this.editing;
    this.editorHost.hidden = rendered;
    this.rendered.hidden = !rendered;
    if (rendered) this.render();
  }

  render() {
    if (this.cellType !== "markdown" || this.rendered.hidden) return;
    const source = this.ytext.toString();
    if (!source.trim()) {
      replaceChildren(this.rendered, h("p", { class: "muted" }, "Empty Markdown cell: double-click to edit"));
      return;
    }
    replaceChildren(this.rendered, renderMarkdown(source, { attachments: this.attachments }));
  }

  /** Show a Markdown cell's editor, focused (double-click, Enter). */
  edit() {
    if (this.cellType !== "markdown") return;
    this.editing = true;
    this.showMode();
    this.materialize().focus();
  }

  /** Show a Markdown cell rendered (Shift+Enter, ▶). */
  showRendered() {
    if (this.cellType !== "markdown") return;
    this.editing = false;
    this.showMode();
  }

  renderedKey(event) {
    if (event.key === "Enter" && !event.shiftKey && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      if (this.editable) this.edit();
    }
  }

  /** "saving": this person's edits of the cell are on their way; "saved": all committed. */
  showSaveState(state) {
    this.saveState.dataset.state = state;
    this.saveState.textContent = state === "saving" ? "saving…" : "";
  }

  /** Who else is in this cell: [{name, color}]. */
  setPeople(people) {
    const key = people.map(({ name, color }) => `${name}\u0000${color}`).join("\u0001");
    if (key === this.peopleKey) return; // (cursors move often; who is here, less)
    this.peopleKey = key;
    replaceChildren(
      this.people,
      people.map(({ name, color }) =>
        h(
          "li",
          {
            class: "cell-person",
            style: { background: color },
            title: `${name} is here`,
            "data-testid": "cell-person",
            dataset: { username: name },
          },
          name,
        ),
      ),
    );
    // the cell's outline in the colour of (the first of) those in it, seen from afar
    this.el.classList.toggle("cell-shared", people.length > 0);
    if (people.length) this.el.style.setProperty("--peer-colour", people[0].color);
  }

  /** Others' cursors in this cell's text. */
  setPeers(peers) {
    this.peers = peers;
    this.editor?.setPeers(peers);
  }

  // -- the editor ---------------------------------------------------------------------------

  /** The cell came near the screen: its editor is made, unless it shows a rendering. */
  nearScreen() {
    this.near = true;
    if (this.cellType !== "markdown" || this.editing) this.materialize();
  }

  /** The cell's editor, made now if it was not yet; returns it. */
  materialize() {
    if (this.editor) return this.editor;
    const actions = this.actions;
    this.plainHost.remove();
    this.editor = createEditor({
      parent: this.editorHost,
      ytext: this.ytext,
      undoManager: this.undoManager,
      cellType: this.cellType,
      editable: this.editable,
      onRun: (options) => actions.run(this, options),
      complete: (code, pos) => actions.complete(code, pos),
      inspect: (code, pos) => this.inspect(code, pos),
      onEscape: () => this.closeInspector(),
      onCommandMode: () => actions.commandMode(this),
      onFocus: () => {
        this.el.classList.add("cell-focused");
        actions.focused(this);
      },
      onCursor: (cursor) => actions.cursor(this, cursor),
    });
    if (this.peers.length) this.editor.setPeers(this.peers);
    return this.editor;
  }

  /** Clicked before its editor was made: make it, with the cursor where the click was. */
  materializeAt(event) {
    event.preventDefault();
    const { x, y } = { x: event.clientX, y: event.clientY };
    const view = this.materialize().view;
    view.focus();
    const pos = view.posAtCoords({ x, y });
    if (pos !== null) view.dispatch({ selection: { anchor: pos } });
  }

  /** The text as plain lines, until the editor is made. */
  showPlain() {
    if (this.editor) return;
    const lines = this.ytext.toString().split("\n");
    replaceChildren(
      this.plain,
      lines.map((line) => h("div", { class: "cm-line" }, line || h("br"))),
    );
  }

  // -- runs ---------------------------------------------------------------------------------

  /** This user asked to run the cell; it waits in the session's queue. */
  queued(username) {
    this.outputs.reset([]);
    this.endInput();
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
    this.endInput();
    this.showCount(count);
    const ended = parseDate(date);
    if (this.started && ended) this.duration.textContent = formatDuration(ended - this.started);
    else if (status === "aborted") this.duration.textContent = "";
    this.started = null;
    this.setState(status === "ok" ? "done" : status === "aborted" ? "aborted" : "error");
  }

  /**
   * The run waits for a line of input (`input()`, or `getpass()` when `password`), from
   * `username`. `answer(value)` is given when this person is the one asked: they get a box
   * (Enter sends; `answer` resolves to whether the kernel took it); everyone else a note.
   * `live`: false for a request replayed from before the page opened.
   */
  awaitInput({ msgId, prompt, password, username, answer = null, live = true }) {
    this.awaiting = msgId;
    // A box stays until answered or the run ends; a note, or a box for a request replayed
    // from before the page opened, ends with the run's next message too (runs.js).
    this.inputSticky = Boolean(answer) && live;
    const promptText = h("span", { class: "stdin-prompt" }, prompt);
    if (!answer) {
      replaceChildren(
        this.stdin,
        h(
          "div",
          { class: "stdin-waiting muted", "data-testid": "stdin-waiting", dataset: { username } },
          `The session waits for input from ${username}`,
          prompt ? h("span", null, ": ", promptText) : null,
        ),
      );
      this.stdin.hidden = false;
      return;
    }
    const input = h("input", {
      class: "stdin-input",
      type: password ? "password" : "text",
      autocomplete: "off",
      spellcheck: "false",
      "aria-label": prompt || "Input",
      "data-testid": "stdin-input",
    });
    let echoed = false;
    input.addEventListener("keydown", async (event) => {
      if (event.key !== "Enter" || event.isComposing) return;
      event.preventDefault();
      const value = input.value;
      input.disabled = true;
      if (!echoed) {
        // What was typed, shown at once where the run's next output follows, as JupyterLab
        // shows it; not saved with the outputs, nor seen by others: the kernel echoes
        // nothing. A password is not shown.
        echoed = true;
        const shown = password ? "········" : value;
        this.outputs.add({ output_type: "stream", name: "stdin", text: `${prompt}${shown}\n` });
      }
      const taken = await answer(value);
      if (this.awaiting !== msgId) return; // the run went on meanwhile (its next request)
      if (taken) this.endInput();
      else {
        input.disabled = false; // not sent: try again
        input.focus();
      }
    });
    replaceChildren(this.stdin, h("label", { class: "stdin-box" }, promptText, input));
    this.stdin.hidden = false;
    input.focus({ preventScroll: true });
  }

  /** The wait for input is over (answered, or the run went on or ended). */
  endInput() {
    this.awaiting = null;
    this.inputSticky = false;
    this.stdin.hidden = true;
    this.stdin.replaceChildren();
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

  /** Close the docstring; whether it was open. */
  closeInspector() {
    const open = !this.inspector.hidden;
    this.inspector.hidden = true;
    this.inspector.replaceChildren();
    return open;
  }

  /** The outputs were cleared (by this person or anyone): the cell looks as if never run. */
  clearOutputs() {
    this.outputs.reset([]);
    if (this.state === "queued" || this.state === "running") return; // its outputs go on coming
    this.showCount(null);
    delete this.el.dataset.count;
    this.showRunBy(null);
    this.duration.textContent = "";
    this.runAt.textContent = "";
    this.setState("idle");
  }

  /** The keyboard on the cell itself (command mode): its keys are the worksheet's commands. */
  focusCell() {
    this.el.tabIndex = -1;
    this.el.focus({ preventScroll: true });
    this.el.scrollIntoView({ block: "nearest" });
  }

  /** Put the keyboard here: the editor, or a rendered Markdown cell (Enter then edits it). */
  focus() {
    if (this.cellType === "markdown" && !this.editing) this.rendered.focus();
    else this.materialize().focus();
    this.el.scrollIntoView({ block: "nearest" });
  }

  destroy() {
    this.actions.forget?.(this);
    clearInterval(this.ticker);
    this.ymap.unobserveDeep(this.observer);
    this.outputs.clear();
    this.editor?.destroy();
  }
}

function typeOf(ymap) {
  const type = ymap.get("cell_type");
  return type === "markdown" || type === "raw" ? type : "code";
}

/** The cell's text (a cell written without one shows an empty text, in a document of its own). */
function sourceOf(ymap) {
  const source = ymap.get("source");
  if (source instanceof Y.Text) return source;
  const text = new Y.Doc().getText("source");
  text.insert(0, typeof source === "string" ? source : "");
  return text;
}

/** A value of the document as plain JSON (a Y.Map or Y.Array, or JSON already). */
function plain(value) {
  return value && typeof value.toJSON === "function" ? value.toJSON() : value;
}

/** The server's times have microseconds ("...20.851860Z"); Date wants milliseconds. */
function parseDate(iso) {
  if (!iso) return null;
  const date = new Date(iso.replace(/(\.\d{3})\d+/, "$1"));
  return Number.isNaN(date.getTime()) ? null : date;
}
