/**
 * The worksheet's keys, as JupyterLab's: command mode's single letters and chords (`d d`,
 * `0 0`, `i i`), and the keys that work everywhere on the page (the palette, find, saving a
 * checkpoint). Which command a key runs is the command's own `keys` (commands.js); this module
 * only reads key presses and finds the command.
 *
 * Keys in an editor are the editor's (editor.js: Shift+Enter, Alt+Enter, Escape...), except
 * those bound in mode "any", which are read before the editor sees them. Command-mode keys are
 * read when the keyboard is on a cell or on the page itself, never in a text field, a control
 * or a dialog. A chord's second key must come within a second of its first.
 */

const CHORD_MS = 1000;
const FIELDS =
  ".cm-editor, input, textarea, select, button, a[href], iframe, [contenteditable='true'], dialog, .dialog, aside";

/** A key press as the bindings name it: "a", "Shift+J", "Ctrl+Enter", "Ctrl+Shift+C" (Cmd is Ctrl). */
export function keyName(event) {
  const key = event.key.length === 1 ? event.key.toUpperCase() : event.key;
  const parts = [];
  if (event.ctrlKey || event.metaKey) parts.push("Ctrl");
  if (event.altKey) parts.push("Alt");
  if (event.shiftKey && (event.key.length > 1 || /[a-z]/i.test(event.key))) parts.push("Shift");
  // letters are named by their key (Shift+J), others by what they type ("?"), or their name
  const letter = /^Key[A-Z]$/.test(event.code) ? event.code.slice(3) : null;
  parts.push(letter && (parts.length || /[A-Z]/.test(key)) ? letter : key);
  return parts.join("+");
}

export class Keyboard {
  /** `page`: the WorksheetPage; `commands`: the Commands (commands.js). */
  constructor(page, commands) {
    this.page = page;
    this.commands = commands;
    this.pending = null; // {key, at}: the first key of a chord
    this.onCapture = (event) => this.anywhere(event);
    this.onKeyDown = (event) => this.commandMode(event);
    document.addEventListener("keydown", this.onCapture, true);
    document.addEventListener("keydown", this.onKeyDown);
  }

  /** Keys that work everywhere on the page (the palette, find, Ctrl+S), read first. */
  anywhere(event) {
    if (!this.page.el.isConnected || event.isComposing) return;
    const command = this.commands.bound("any", keyName(event));
    if (!command) return;
    event.preventDefault();
    event.stopPropagation();
    this.commands.run(command.id, { fromKey: true });
  }

  /** Command mode: the keyboard is on a cell, or on the page, and nothing else takes keys. */
  commandMode(event) {
    if (event.defaultPrevented || event.isComposing || !this.page.el.isConnected) return;
    if (!this.page.doc.synced) return;
    const target = event.target instanceof Element ? event.target : null;
    if (target && target !== document.body && !this.page.el.contains(target)) return;
    if (target?.closest(FIELDS) || document.querySelector("dialog[open]")) return;
    if (this.page.selection.mode === "edit" && target?.closest(".cm-editor")) return;
    const name = keyName(event);
    if (["Shift", "Control", "Alt", "Meta"].includes(event.key)) return;
    const pending = this.pending;
    this.pending = null;
    if (pending && event.timeStamp - pending.at < CHORD_MS) {
      const chord = this.commands.bound("command", `${pending.key} ${name}`);
      if (chord) {
        event.preventDefault();
        this.commands.run(chord.id, { fromKey: true });
        return;
      }
    }
    const command = this.commands.bound("command", name);
    if (command) {
      event.preventDefault();
      this.commands.run(command.id, { fromKey: true });
      return;
    }
    if (this.commands.startsChord(name)) {
      event.preventDefault();
      this.pending = { key: name, at: event.timeStamp };
    }
  }

  destroy() {
    document.removeEventListener("keydown", this.onCapture, true);
    document.removeEventListener("keydown", this.onKeyDown);
  }
}
