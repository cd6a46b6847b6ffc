/**
 * A cell's outputs: built from the outputs saved on the cell (nbformat) when a worksheet
 * opens, then grown from feed messages as the cell runs.
 *
 * Jupyter's rules, as the server's saver applies them (so what a page shows live is what it
 * shows after a reload): consecutive stream messages of one name merge into one output;
 * `clear_output` empties the area now, or with `wait` just before the next output arrives;
 * `update_display_data` replaces the data of every output shown with that display id, in any
 * cell of the worksheet (the `DisplayRegistry` is shared by the worksheet's cells).
 */
import { h } from "../dom.js";
import { ansiToHtml } from "./ansi.js";
import { mimeView } from "./mime.js";
import { StreamView } from "./stream.js";

/** Which outputs show which display id, across a worksheet. */
export class DisplayRegistry {
  constructor() {
    this.items = new Map(); // display id -> Set of items {output, view}
  }

  add(displayId, item) {
    if (!this.items.has(displayId)) this.items.set(displayId, new Set());
    this.items.get(displayId).add(item);
  }

  remove(displayId, item) {
    this.items.get(displayId)?.delete(item);
  }

  update(displayId, data, metadata) {
    for (const item of this.items.get(displayId) ?? []) {
      item.output.data = data;
      item.output.metadata = metadata;
      item.view.update(data, metadata);
    }
  }
}

export class OutputArea {
  /** `displays`: the worksheet's DisplayRegistry; `widgets`: its WidgetHub (or null). */
  constructor(displays, widgets = null) {
    this.displays = displays;
    this.widgets = widgets;
    this.items = []; // {output, view, displayId}
    this.clearBeforeNext = false;
    this.el = h("div", { class: "outputs", "data-testid": "cell-outputs" });
  }

  /** Show `outputs` (nbformat dicts, as saved on a cell) instead of what is shown. */
  reset(outputs = []) {
    this.clear();
    this.clearBeforeNext = false;
    for (const output of outputs) this.add(output);
  }

  clear() {
    for (const item of this.items) {
      if (item.displayId) this.displays.remove(item.displayId, item);
      item.view.destroy?.();
    }
    this.items = [];
    this.el.replaceChildren();
  }

  /** Apply one feed message of this cell's run (`msgType`, `content`). */
  handle(msgType, content) {
    switch (msgType) {
      case "stream":
        return this.add({ output_type: "stream", name: content.name, text: content.text });
      case "display_data":
        return this.add(
          { output_type: "display_data", data: content.data, metadata: content.metadata ?? {} },
          content.transient?.display_id,
        );
      case "execute_result":
        return this.add({
          output_type: "execute_result",
          data: content.data,
          metadata: content.metadata ?? {},
          execution_count: content.execution_count,
        });
      case "error":
        return this.add({
          output_type: "error",
          ename: content.ename,
          evalue: content.evalue,
          traceback: content.traceback ?? [],
        });
      case "update_display_data":
        return this.displays.update(content.transient?.display_id, content.data, content.metadata ?? {});
      case "clear_output":
        if (content.wait) this.clearBeforeNext = true;
        else this.clear();
        return undefined;
      default:
        return undefined;
    }
  }

  add(output, displayId) {
    if (this.clearBeforeNext) {
      this.clear();
      this.clearBeforeNext = false;
    }
    const last = this.items.at(-1);
    if (
      output.output_type === "stream" &&
      last?.output.output_type === "stream" &&
      last.output.name === output.name
    ) {
      last.view.append(output.text);
      return;
    }
    const item = { output, view: outputView(output, this.widgets), displayId };
    this.items.push(item);
    this.el.append(item.view.el);
    if (displayId) this.displays.add(displayId, item);
  }
}

function outputView(output, widgets) {
  switch (output.output_type) {
    case "stream":
      return new StreamView(output.name, textOf(output.text));
    case "error":
      return errorView(output);
    case "display_data":
    case "execute_result":
      return mimeView(output.data ?? {}, output.metadata ?? {}, widgets);
    default:
      return { el: h("div", { class: "output muted" }, `(${output.output_type})`) };
  }
}

function errorView(output) {
  const pre = h("pre", { class: "output-error-text" });
  const traceback = output.traceback?.length
    ? output.traceback.join("\n")
    : `${output.ename}: ${output.evalue}`;
  pre.innerHTML = ansiToHtml(traceback);
  const el = h(
    "div",
    { class: "output output-error", "data-testid": "output-error", dataset: { ename: output.ename ?? "" } },
    pre,
  );
  return { el };
}

/** nbformat's multi-line strings may be a list of lines. */
function textOf(value) {
  return Array.isArray(value) ? value.join("") : String(value ?? "");
}
