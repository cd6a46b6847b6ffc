/**
 * Saving a cell's source, and never losing anyone's text when two people edit it at once.
 *
 * Edits are optimistic: `cell.update` names the version the edit was made on, and the server
 * refuses it (conflict, with the current cell) if someone saved another version meanwhile.
 * So:
 * - what the user types is saved a moment after they stop typing (and before a run); a save
 *   that fails because the server is away (a web process restarting) is tried again;
 * - another user's edit (`cell_updated` on the feed) replaces the text only if this user has
 *   nothing unsaved; otherwise their text stays, and saving it meets the conflict;
 * - a conflict is shown to the user with both versions (dialogs/conflict.js), and what they
 *   choose is applied: their text saved over the current version, or the other version
 *   taken. Nothing is overwritten without someone choosing.
 */
import { CODES, NetworkError, call, describeError } from "../api.js";

const SAVE_AFTER_MS = 500;
const RETRY_AFTER_MS = 2000; // the server is away (restarting, say): try again by itself

export class CellSync {
  /**
   * `cell`: {id, source, version}; `editor`: {text, setText}; `onState(state)` is told
   * "saved", "unsaved", "saving", "conflict" or "error"; `resolveConflict({mine, theirs, by})`
   * resolves to "mine" or "theirs".
   */
  constructor({ cell, editor, onState, resolveConflict }) {
    this.id = cell.id;
    this.version = cell.version;
    this.saved = cell.source; // the text of `version`, as the server has it
    this.editor = editor;
    this.onState = onState;
    this.resolveConflict = resolveConflict;
    this.authors = new Map(); // version -> who saved it (from the feed)
    this.timer = 0;
    this.saving = null;
    this.waiting = null; // a remote version held back while this user's text is unsaved
  }

  get dirty() {
    return this.editor.text !== this.saved;
  }

  /** The user changed the text: save it soon. */
  changed() {
    clearTimeout(this.timer);
    if (!this.dirty) {
      this.onState("saved");
      return;
    }
    this.onState("unsaved");
    this.timer = setTimeout(() => this.flush(), SAVE_AFTER_MS);
  }

  /** Save now; resolves to true once the server has exactly the editor's text. */
  async flush() {
    clearTimeout(this.timer);
    for (;;) {
      if (this.saving) {
        if (!(await this.saving)) return false;
        continue;
      }
      if (!this.dirty) return true;
      this.saving = this.save();
      const ok = await this.saving;
      this.saving = null;
      this.applyWaiting();
      if (!ok) return false;
    }
  }

  async save() {
    const source = this.editor.text;
    this.onState("saving");
    try {
      const cell = await call("cell.update", { id: this.id, source, version: this.version });
      this.accept(cell);
      this.onState(this.dirty ? "unsaved" : "saved");
      return true;
    } catch (error) {
      if (error.code === CODES.CONFLICT && error.data) return this.conflict(error.data);
      this.onState("error", describeError(error));
      if (error instanceof NetworkError || error.code === CODES.UNAVAILABLE) {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.flush(), RETRY_AFTER_MS);
      }
      return false;
    }
  }

  async conflict(theirs) {
    this.onState("conflict");
    const by = this.authors.get(theirs.version) ?? "someone else";
    const choice = await this.resolveConflict({ mine: this.editor.text, theirs, by });
    this.accept(theirs);
    if (choice === "theirs") this.editor.setText(theirs.source);
    // "mine": the text is now unsaved against their version; `flush` saves it over theirs
    this.onState(this.dirty ? "unsaved" : "saved");
    return true;
  }

  /** Another user's edit arrived on the feed (`username` made it). */
  remote(cell, username) {
    if (username) this.authors.set(cell.version, username);
    if (cell.version <= this.version) return; // ours, or older than what we have
    if (this.saving || this.dirty) {
      this.waiting = cell;
      return;
    }
    this.accept(cell);
    this.editor.setText(cell.source);
  }

  applyWaiting() {
    const cell = this.waiting;
    this.waiting = null;
    if (cell && cell.version > this.version) this.remote(cell);
  }

  accept(cell) {
    this.version = cell.version;
    this.saved = cell.source;
  }

  destroy() {
    clearTimeout(this.timer);
  }
}
