/**
 * What the commands do to several cells at once, as edits of the worksheet's document: insert,
 * delete, retype, copy, cut and paste, collapse, and the outputs' scrolling. Each is one
 * transaction of this person's (document.js), so one Ctrl+Z (or `z`) takes it back, and
 * everyone sees it live.
 *
 * Collapsing and scrolling are the cell's metadata, where JupyterLab keeps them
 * (`jupyter.source_hidden`, `jupyter.outputs_hidden`, `scrolled`): they are saved with the
 * worksheet and exported with it. Copied cells are kept in this tab (so they can be pasted in
 * another worksheet opened here), and written to the system clipboard as their text as well.
 */
import * as Y from "yjs";

let clipboard = []; // [{cell_type, source, metadata}]

/** Whether there are copied cells to paste. */
export function hasCopied() {
  return clipboard.length > 0;
}

function plain(value) {
  return value && typeof value.toJSON === "function" ? value.toJSON() : (value ?? {});
}

/** The cells of `views` as plain JSON (type, text, metadata). */
function copiesOf(views) {
  return views.map((view) => ({
    cell_type: view.cellType,
    source: view.ytext.toString(),
    metadata: structuredClone(plain(view.ymap.get("metadata"))),
  }));
}

export function copyCells(views) {
  if (!views.length) return;
  clipboard = copiesOf(views);
  const text = clipboard.map((cell) => cell.source).join("\n\n");
  navigator.clipboard?.writeText(text).catch(() => {}); // not allowed here: the cells stay copied
}

/** Insert `cells` ([{cell_type, source, metadata}]) after cell `after` (null: at the top); their ids. */
export function insertCells(doc, after, cells) {
  const ids = [];
  doc.transact(() => {
    let previous = after;
    for (const cell of cells) {
      previous = doc.insertCell(previous, cell.cell_type, cell.source);
      ids.push(previous);
      const metadata = cell.metadata ?? {};
      if (Object.keys(metadata).length) {
        doc.cells.get(doc.indexOf(previous)).set("metadata", new Y.Map(Object.entries(metadata)));
      }
    }
  });
  return ids;
}

/** Paste what was copied after cell `after` (`before`: before it); the new cells' ids. */
export function pasteCells(doc, view, { before = false } = {}) {
  if (!clipboard.length) return [];
  let after = view?.id ?? null;
  if (before && view) {
    const index = doc.indexOf(view.id);
    after = index > 0 ? doc.cells.get(index - 1).get("id") : null;
  }
  return insertCells(doc, after, clipboard);
}

export function deleteCells(doc, views) {
  doc.transact(() => {
    for (const view of views) doc.deleteCell(view.id);
  });
}

export function cutCells(doc, views) {
  copyCells(views);
  deleteCells(doc, views);
}

export function setCellsType(doc, views, type) {
  doc.transact(() => {
    for (const view of views) doc.setCellType(view.id, type);
  });
}

/** Change the metadata of each of `views`: `change(metadata)` returns the new metadata. */
function editMetadata(doc, views, change) {
  doc.transact(() => {
    for (const view of views) {
      const index = doc.indexOf(view.id);
      if (index < 0) continue;
      const cell = doc.cells.get(index);
      const current = cell.get("metadata");
      const before = plain(current);
      const after = change(structuredClone(before));
      if (JSON.stringify(after) === JSON.stringify(before)) continue;
      if (current instanceof Y.Map) {
        for (const key of current.keys()) if (!(key in after)) current.delete(key);
        for (const [key, value] of Object.entries(after)) {
          if (JSON.stringify(value) !== JSON.stringify(before[key])) current.set(key, value);
        }
      } else {
        cell.set("metadata", new Y.Map(Object.entries(after)));
      }
    }
  });
}

/** Hide or show the inputs (`what` "source") or outputs ("outputs") of `views`. */
export function setHidden(doc, views, what, hidden) {
  const key = what === "source" ? "source_hidden" : "outputs_hidden";
  const targets = what === "outputs" ? views.filter((view) => view.cellType === "code") : views;
  editMetadata(doc, targets, (metadata) => {
    const jupyter = { ...(metadata.jupyter ?? {}) };
    if (hidden) jupyter[key] = true;
    else delete jupyter[key];
    if (Object.keys(jupyter).length) metadata.jupyter = jupyter;
    else delete metadata.jupyter;
    return metadata;
  });
}

/** Whether the cell's input (`what` "source") or outputs are hidden. */
export function isHidden(view, what) {
  const jupyter = view.metadata?.jupyter ?? {};
  return Boolean(what === "source" ? jupyter.source_hidden : jupyter.outputs_hidden);
}

/** Cap the height of `views`' outputs with a scrollbar (`scrolled`), or not. */
export function setScrolled(doc, views, scrolled) {
  const targets = views.filter((view) => view.cellType === "code");
  editMetadata(doc, targets, (metadata) => {
    if (scrolled) metadata.scrolled = true;
    else delete metadata.scrolled;
    return metadata;
  });
}

export function isScrolled(view) {
  return view.metadata?.scrolled === true;
}
