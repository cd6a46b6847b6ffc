/**
 * ipywidgets' `Output` widget (and so `interact`, which shows its function's output in one):
 * outputs that go inside a widget instead of under the cell.
 *
 * As in Jupyter, the kernel does not send such outputs to the widget: it sets the widget's
 * `msg_id` to the request it runs in (an execution, or the comm message that runs an
 * `interact` callback), and the frontend shows that request's outputs in the widget, not under
 * a cell. JupyterLab also writes them back into the widget's `outputs` (one update per page);
 * here every page follows the same feed, so each one puts them into the widget's state itself
 * and nothing is sent back. The server does not save them under the cell either (saver.py).
 */

/** The output messages an Output widget takes (nbformat's output types, and clearing). */
const CAPTURED = new Set(["stream", "display_data", "execute_result", "error", "clear_output"]);

export class OutputCapture {
  constructor() {
    this.byRequest = new Map(); // msg_id of a request -> Set of the comm ids showing its outputs
    this.requestOf = new Map(); // comm id -> the msg_id it shows
    this.clearBeforeNext = new Set(); // comm ids with a clear_output(wait=True) to apply
  }

  /** Comm `commId`'s state was updated with `state`: does it show a request's outputs now? */
  follow(commId, state) {
    if (!state || typeof state.msg_id !== "string") return;
    this.forget(commId);
    if (!state.msg_id) return;
    this.requestOf.set(commId, state.msg_id);
    if (!this.byRequest.has(state.msg_id)) this.byRequest.set(state.msg_id, new Set());
    this.byRequest.get(state.msg_id).add(commId);
  }

  forget(commId) {
    const msgId = this.requestOf.get(commId);
    this.requestOf.delete(commId);
    this.byRequest.get(msgId)?.delete(commId);
    if (this.byRequest.get(msgId)?.size === 0) this.byRequest.delete(msgId);
  }

  clear() {
    this.byRequest.clear();
    this.requestOf.clear();
    this.clearBeforeNext.clear();
  }

  /** The comm ids of the Output widgets that show `message`, if it is an output. */
  capturers(message) {
    if (!CAPTURED.has(message.header.msg_type)) return [];
    return [...(this.byRequest.get(message.parent_header?.msg_id) ?? [])];
  }

  /** Comm `commId`'s `outputs` (nbformat dicts) with `message` taken in: a new list. */
  take(commId, outputs, message) {
    const type = message.header.msg_type;
    const content = message.content ?? {};
    if (type === "clear_output") {
      if (content.wait) this.clearBeforeNext.add(commId);
      return content.wait ? outputs : [];
    }
    let list = Array.isArray(outputs) ? outputs : [];
    if (this.clearBeforeNext.delete(commId)) list = [];
    const last = list.at(-1);
    if (type === "stream" && last?.output_type === "stream" && last.name === content.name) {
      return [...list.slice(0, -1), { ...last, text: `${last.text}${content.text}` }];
    }
    return [...list, toOutput(type, content)];
  }
}

function toOutput(type, content) {
  switch (type) {
    case "stream":
      return { output_type: "stream", name: content.name, text: String(content.text ?? "") };
    case "error":
      return {
        output_type: "error",
        ename: content.ename,
        evalue: content.evalue,
        traceback: content.traceback ?? [],
      };
    case "execute_result":
      return {
        output_type: "execute_result",
        data: content.data ?? {},
        metadata: content.metadata ?? {},
        execution_count: content.execution_count ?? null,
      };
    default:
      return { output_type: "display_data", data: content.data ?? {}, metadata: content.metadata ?? {} };
  }
}
