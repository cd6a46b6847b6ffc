/**
 * Named checkpoints of a worksheet's document, as JupyterLab's "Save and create checkpoint" and
 * "Revert to checkpoint": the server keeps the document's whole state under a name
 * (`worksheet.checkpoint`), lists them (`worksheet.checkpoints`), and restores one as a single
 * new edit of the document (`worksheet.restore_checkpoint`) that every open page sees live.
 *
 * `page` is the WorksheetPage (page.js): its `id` (the worksheet), `doc` (the document, whose
 * edits are sent before a checkpoint is taken) and `editable` (the user's role allows editing).
 */
import { fromBase64 } from "lib0/buffer";
import * as Y from "yjs";

import { call, describeError } from "../api.js";
import { confirmAction, openDialog } from "../dialogs/dialog.js";
import { h } from "../dom.js";
import { toast } from "../toast.js";

const SAVE_WAIT_MS = 10_000; // how long edits in flight may take before the checkpoint is taken anyway

/** The default name: the local time, as "Checkpoint 14:52". */
export function defaultName(now = new Date()) {
  const pad = (n) => String(n).padStart(2, "0");
  return `Checkpoint ${pad(now.getHours())}:${pad(now.getMinutes())}`;
}

/** Edits the user made a moment ago belong in the checkpoint: wait (a while) for the server to have them. */
async function editsSent(page) {
  const doc = page?.doc;
  if (!doc?.saving || typeof doc.whenSaved !== "function") return;
  let timer;
  await Promise.race([
    doc.whenSaved(),
    new Promise((resolve) => (timer = setTimeout(resolve, SAVE_WAIT_MS))),
  ]);
  clearTimeout(timer);
}

/**
 * Save a checkpoint of the document now, named after the time (Ctrl+S). Asks nothing; says
 * "Checkpoint saved" or what went wrong. Resolves to the checkpoint, or null if it failed.
 */
export async function saveCheckpoint(page, name = defaultName()) {
  if (page.editable === false) {
    toast("Only editors can save a checkpoint", "error");
    return null;
  }
  try {
    await editsSent(page);
    const checkpoint = await call("worksheet.checkpoint", { id: page.id, name });
    toast(`Checkpoint saved: ${checkpoint.name}`);
    return checkpoint;
  } catch (error) {
    toast(`The checkpoint was not saved: ${describeError(error)}`, "error");
    return null;
  }
}

/** The worksheet's checkpoints, newest first: [{id, name, created, username}]. Throws on errors. */
export async function listCheckpoints(page) {
  return await call("worksheet.checkpoints", { id: page.id });
}

/**
 * Make the document equal to checkpoint `id`'s cells, as one edit everyone sees (the cells'
 * saved outputs stay). The server returns the edit (a Yjs update) and this page applies it as
 * its own edit, sent as any other: so this person's undo (Ctrl+Z) takes the restore back. A
 * page without a synced document (or an edit too large for one update) has the server make
 * it instead. Resolves to true if it was restored; says so or what went wrong.
 */
export async function restoreCheckpoint(page, id) {
  const doc = page?.doc;
  const local = Boolean(doc?.doc && doc.synced && doc.undoManager);
  try {
    await editsSent(page);
    const result = await call("worksheet.restore_checkpoint", { id: page.id, checkpoint: id, apply: !local });
    if (result.update) {
      doc.undoManager.stopCapturing(); // one undo step of its own
      Y.applyUpdate(doc.doc, fromBase64(result.update), doc.origin);
      doc.undoManager.stopCapturing();
      await editsSent(page);
    }
    toast(result.changed ? "Checkpoint restored" : "The cells are the checkpoint's already");
    return true;
  } catch (error) {
    toast(`The checkpoint was not restored: ${describeError(error)}`, "error");
    return false;
  }
}

/** Delete checkpoint `id`; resolves to true if it was deleted. */
export async function deleteCheckpoint(page, id) {
  try {
    await call("worksheet.delete_checkpoint", { id: page.id, checkpoint: id });
    return true;
  } catch (error) {
    toast(`The checkpoint was not deleted: ${describeError(error)}`, "error");
    return false;
  }
}

function when(created) {
  const date = new Date(created);
  return Number.isNaN(date.getTime()) ? String(created) : date.toLocaleString();
}

/**
 * The checkpoints dialog: a "Save checkpoint" button and the list, newest first, each with
 * Restore and Delete (editors only). Returns openDialog's handle ({dialog, close, result}).
 */
export function openCheckpointsDialog(page) {
  const editable = page.editable !== false;
  const list = h("ul", { class: "checkpoint-list", "data-testid": "checkpoint-list" });
  const status = h("p", { class: "checkpoint-status", "data-testid": "checkpoint-status" }, "Loading…");

  const refresh = async () => {
    let checkpoints;
    try {
      checkpoints = await listCheckpoints(page);
    } catch (error) {
      status.textContent = `The checkpoints could not be listed: ${describeError(error)}`;
      status.hidden = false;
      return;
    }
    status.textContent = "No checkpoints yet.";
    status.hidden = checkpoints.length > 0;
    list.replaceChildren(...checkpoints.map(row));
  };

  const row = (checkpoint) => {
    const restore = h(
      "button",
      {
        type: "button",
        "data-testid": "checkpoint-restore",
        disabled: !editable,
        onclick: async () => {
          const sure = await confirmAction({
            title: "Restore checkpoint",
            message: `Make the worksheet's cells what they were at "${checkpoint.name}"? Everyone sees it, and it can be undone.`,
            confirm: "Restore",
          });
          if (sure && (await restoreCheckpoint(page, checkpoint.id))) handle.close(checkpoint.id);
        },
      },
      "Restore",
    );
    const remove = h(
      "button",
      {
        type: "button",
        class: "button-danger",
        "data-testid": "checkpoint-delete",
        disabled: !editable,
        onclick: async () => {
          remove.disabled = true;
          if (await deleteCheckpoint(page, checkpoint.id)) await refresh();
          else remove.disabled = false;
        },
      },
      "Delete",
    );
    return h(
      "li",
      { class: "checkpoint", "data-testid": "checkpoint", "data-checkpoint": checkpoint.id },
      h("span", { class: "checkpoint-name", "data-testid": "checkpoint-name" }, checkpoint.name),
      " ",
      h("span", { class: "checkpoint-meta" }, `${when(checkpoint.created)} · ${checkpoint.username}`),
      " ",
      restore,
      " ",
      remove,
    );
  };

  const handle = openDialog({
    title: "Checkpoints",
    testid: "checkpoints-dialog",
    wide: true,
    body: [status, list],
    actions: [
      { label: "Close", value: null, testid: "checkpoints-close" },
      ...(editable
        ? [
            {
              label: "Save checkpoint",
              kind: "primary",
              testid: "checkpoint-save",
              value: async () => {
                if (await saveCheckpoint(page)) await refresh();
                return undefined; // the dialog stays open, showing the new checkpoint
              },
            },
          ]
        : []),
    ],
  });
  refresh();
  return handle;
}
