/**
 * Which cell each execution on the session's feed belongs to, what each cell's run is doing,
 * and how many runs wait in the session's queue: the routing of feed messages to cells.
 *
 * Every message of an execution names its `execute_request` (`parent_header.msg_id`). When a
 * session takes a cell's run into its queue, the kernel announces it on the feed with
 * `cell_run` {cell_id, msg_id, username}, before any other message of that run. So every page,
 * whoever asked for the run, learns its cell from the feed, in the feed's order: no reading of
 * the worksheet, no asking the session. Runs taken before the page's snapshot are known from
 * the cells' `run_msg_id` and from `session.info` (`showSession`, snapshot.js). Messages of an
 * execution known neither way belong to no cell (code sent with `session.execute`, say from the
 * command line) and are ignored.
 *
 * Cell states: queued (`cell_run`, or `session.info`'s queue at load), running (`status
 * busy`/`execute_input`), then done, error or aborted (`execute_reply`). A run's outputs start
 * over when it is first seen, as the server clears the saved ones when the run is asked for.
 * The queue is the executions announced or listed as queued that have neither started nor
 * ended (an aborted one ends with its `execute_reply`).
 *
 * The kernel's requests of people go to the page: `input_request` (the run waits for a line
 * from whoever ran it) to `onInput`, and the `execute_reply`'s payloads (a `page` of help,
 * `set_next_input`) to `onPayloads`, with whether the message is live or replayed from before
 * the page opened. Nothing on the feed says that an input was answered; the run's next
 * message says it goes on, so others' notes that it waits end there.
 */

const OUTPUT_TYPES = new Set([
  "stream",
  "display_data",
  "execute_result",
  "error",
  "update_display_data",
  "clear_output",
]);

export class RunTracker {
  /**
   * `cellFor(id)`: the CellView of a cell id, if shown; `onQueue(waiting)`: told the number
   * of executions waiting in the session's queue whenever it changes; `onInput(cell,
   * message, live)` and `onPayloads(cell, message, run, live)`: see above.
   */
  constructor({ cellFor, onQueue, onInput = () => {}, onPayloads = () => {} }) {
    this.cellFor = cellFor;
    this.onQueue = onQueue;
    this.onInput = onInput;
    this.onPayloads = onPayloads;
    this.runs = new Map(); // msg_id -> {cellId, seen, started}
    this.waiting = new Set(); // msg_ids queued, not started or ended
  }

  /** Run `msgId` belongs to cell `cellId`; `seen`: its outputs are already shown as they are. */
  known(msgId, cellId, { seen = false } = {}) {
    const run = this.runs.get(msgId);
    if (run?.cellId === cellId) run.seen ||= seen;
    else this.runs.set(msgId, { cellId, seen, started: false, username: null });
  }

  /** Whether `message` belongs to an execution (and so, maybe, to a cell). */
  static isRunMessage(message) {
    return message.parent_header?.msg_type === "execute_request";
  }

  /** Route one feed message of an execution; `live`: false for one replayed (page.js). */
  handle(message, { live = true } = {}) {
    const msgId = message.parent_header.msg_id;
    const type = message.header.msg_type;
    if (type === "cell_run") {
      this.known(msgId, message.content.cell_id);
      this.enqueue(msgId);
    } else if (startsRun(message) || type === "execute_reply") {
      this.dequeue(msgId); // also the executions of no cell that were queued at load
    }
    const run = this.runs.get(msgId);
    if (run) this.apply(run, message, live);
  }

  apply(run, message, live) {
    const cell = this.cellFor(run.cellId);
    if (!cell) return; // deleted meanwhile
    const type = message.header.msg_type;
    const content = message.content;
    if (type === "cell_run") {
      run.username = content.username;
      if (!run.started) this.showQueued(run, cell, content.username);
      return;
    }
    if (type === "input_request") {
      this.onInput(cell, message, live);
      return;
    }
    if (cell.awaiting && !cell.inputSticky && type !== "status") cell.endInput(); // answered
    const start = startsRun(message);
    if (!run.seen) {
      run.seen = true;
      if (start || type === "execute_reply") cell.outputs.reset([]); // the run starts over
    }
    if (start) {
      run.started = true;
      run.username = message.header.username || run.username;
      cell.startRun({
        username: message.header.username,
        date: message.header.date,
        count: type === "execute_input" ? content.execution_count : undefined,
      });
    } else if (OUTPUT_TYPES.has(type)) {
      cell.output(type, content);
    } else if (type === "execute_reply") {
      cell.finishRun({ status: content.status, count: content.execution_count, date: message.header.date });
      if (content.payload?.length) this.onPayloads(cell, message, run, live);
    }
  }

  /** The session as `session.info` saw it at the snapshot: its running run and its queue. */
  showSession(info) {
    const running = info.running && this.runs.get(info.running.msg_id);
    if (running) {
      running.started = true;
      this.cellFor(running.cellId)?.startRun({ username: info.running.username, date: info.running.date });
    }
    for (const queued of info.queued ?? []) {
      this.enqueue(queued.msg_id);
      const run = this.runs.get(queued.msg_id);
      const cell = run && this.cellFor(run.cellId);
      if (cell && !run.started) this.showQueued(run, cell, queued.username);
    }
  }

  showQueued(run, cell, username) {
    run.seen = true; // queued() clears the outputs: the run starts over
    if (cell.state !== "queued") cell.queued(username); // else this page's own run, shown already
  }

  enqueue(msgId) {
    if (this.waiting.has(msgId)) return;
    this.waiting.add(msgId);
    this.onQueue(this.waiting.size);
  }

  dequeue(msgId) {
    if (this.waiting.delete(msgId)) this.onQueue(this.waiting.size);
  }
}

/** Whether `message` says its execution began (`status busy` or `execute_input`). */
function startsRun(message) {
  const type = message.header.msg_type;
  return (type === "status" && message.content.execution_state === "busy") || type === "execute_input";
}
