/**
 * Which cell each execution on the session's feed belongs to, and what each cell's run is
 * doing: the routing of feed messages to cells.
 *
 * Every output names the `execute_request` that caused it (`parent_header.msg_id`). A run
 * started here is known from `cell.evaluate`'s answer; but the feed may bring its first
 * messages before that answer does, and runs started by other people are known only from the
 * cell's `run_msg_id`, which the server records when the run is asked for. So messages of an
 * unknown run wait in order in a buffer until it is resolved: by this page's own pending
 * evaluations, else by reading the worksheet again (`lookup`). A run that belongs to no cell
 * (code sent with `session.execute`, say from the command line) is ignored.
 *
 * Cell states: queued (asked for, not started: from this page's own runs and from
 * `session.info`'s queue), running (`status busy`/`execute_input`), then done, error or
 * aborted (`execute_reply`). A run's outputs start over when it is first seen, as the server
 * clears the saved ones when the run is asked for.
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
   * `cellFor(id)`: the CellView of a cell id, if shown; `lookup()`: resolves to the
   * worksheet's cells (to find runs by their `run_msg_id`).
   */
  constructor({ cellFor, lookup }) {
    this.cellFor = cellFor;
    this.lookup = lookup;
    this.runs = new Map(); // msg_id -> {cellId, seen}
    this.foreign = new Set(); // msg_ids that belong to no cell
    this.buffers = new Map(); // msg_id -> messages waiting for the run to be resolved
    this.evaluations = new Set(); // this page's cell.evaluate calls still unanswered
    this.wanted = new Set(); // other msg_ids to resolve (runs seen queued in session.info)
    this.resolving = null;
  }

  /** Run `msgId` belongs to cell `cellId`; `seen`: its outputs are already shown as they are. */
  known(msgId, cellId, { seen = false } = {}) {
    this.runs.set(msgId, { cellId, seen });
    const waiting = this.buffers.get(msgId);
    this.buffers.delete(msgId);
    for (const message of waiting ?? []) this.apply(this.runs.get(msgId), message);
  }

  /** The cell of run `msgId`, if known. */
  cellOf(msgId) {
    return this.runs.get(msgId)?.cellId;
  }

  /** Track this page's own `cell.evaluate` call (a promise) until it is answered. */
  evaluating(promise) {
    this.evaluations.add(promise);
    promise.finally(() => this.evaluations.delete(promise)).catch(() => {});
  }

  /** Whether `message` belongs to an execution (and so, maybe, to a cell). */
  static isRunMessage(message) {
    return message.parent_header?.msg_type === "execute_request";
  }

  /** Route one feed message of an execution. */
  handle(message) {
    const msgId = message.parent_header.msg_id;
    if (this.foreign.has(msgId)) return;
    const run = this.runs.get(msgId);
    if (run) {
      this.apply(run, message);
      return;
    }
    if (!this.buffers.has(msgId)) this.buffers.set(msgId, []);
    this.buffers.get(msgId).push(message);
    this.resolveSoon();
  }

  apply(run, message) {
    const cell = this.cellFor(run.cellId);
    if (!cell) return; // deleted meanwhile
    const type = message.header.msg_type;
    const content = message.content;
    const start = (type === "status" && content.execution_state === "busy") || type === "execute_input";
    if (!run.seen) {
      run.seen = true;
      if (start || type === "execute_reply") cell.outputs.reset([]); // the run starts over
    }
    if (start) {
      cell.startRun({
        username: message.header.username,
        date: message.header.date,
        count: type === "execute_input" ? content.execution_count : undefined,
      });
    } else if (OUTPUT_TYPES.has(type)) {
      cell.output(type, content);
    } else if (type === "execute_reply") {
      cell.finishRun({ status: content.status, count: content.execution_count, date: message.header.date });
    }
  }

  /** Mark the cells of `session.info`'s queue as queued (others' runs included). */
  showQueue(info) {
    const queued = info.queued ?? [];
    const unknown = queued.filter((q) => !this.runs.has(q.msg_id) && !this.foreign.has(q.msg_id));
    for (const q of queued) {
      const run = this.runs.get(q.msg_id);
      const cell = run && this.cellFor(run.cellId);
      if (cell && !run.seen && cell.state !== "queued") {
        run.seen = true;
        cell.queued(q.username);
      }
    }
    if (unknown.length) {
      for (const q of unknown) this.wanted.add(q.msg_id);
      this.resolveSoon(() => this.showQueue(info));
    }
  }

  /** Resolve the runs in the buffers (and call `then` after), one lookup at a time. */
  resolveSoon(then = null) {
    if (!this.resolving) {
      this.resolving = this.resolve().finally(() => {
        this.resolving = null;
        if (this.buffers.size || this.wanted.size) this.resolveSoon();
      });
    }
    if (then) this.resolving.then(then);
  }

  async resolve() {
    await Promise.allSettled([...this.evaluations]); // our own runs name themselves
    const ids = new Set([...this.buffers.keys(), ...this.wanted].filter((id) => !this.runs.has(id)));
    this.wanted.clear();
    if (!ids.size) return;
    let cells;
    try {
      cells = await this.lookup();
    } catch (error) {
      console.warn("could not resolve runs", error);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      return;
    }
    const byRun = new Map(cells.filter((c) => c.run_msg_id).map((c) => [c.run_msg_id, c.id]));
    for (const msgId of ids) {
      if (byRun.has(msgId)) {
        this.known(msgId, byRun.get(msgId));
      } else {
        this.foreign.add(msgId);
        this.buffers.delete(msgId);
      }
    }
  }
}
