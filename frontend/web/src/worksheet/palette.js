/**
 * The command palette (Ctrl+Shift+C, or the bar's Commands button) and the keyboard shortcuts
 * panel (`h` in command mode, or from the palette).
 *
 * The palette lists every command (commands.js) with its keys; typing filters it (every word
 * typed must be in the command's label, category or keys), the arrow keys choose and Enter
 * or a click runs the command, on the cells that were selected when it opened. A command this
 * person's role does not allow is listed, disabled. Both are modal dialogs (Escape closes them,
 * and the keyboard goes back where it was).
 */
import { openDialog } from "../dialogs/dialog.js";
import { h } from "../dom.js";
import { showKey } from "./commands.js";

function keysOf(command) {
  const seen = new Set();
  const keys = [];
  for (const [, key] of command.keys) {
    const shown = showKey(key);
    if (!seen.has(shown)) keys.push(shown);
    seen.add(shown);
  }
  return keys;
}

function keyChips(command) {
  return keysOf(command).map((key) => h("kbd", { class: "palette-key" }, key));
}

/** Open the palette over the page; resolves when it closes. */
export function openPalette(commands) {
  const input = h("input", {
    type: "search",
    class: "palette-input",
    placeholder: "Type to filter commands",
    "aria-label": "Filter commands",
    autocomplete: "off",
    "data-testid": "palette-input",
  });
  const list = h("ul", { class: "palette-list", role: "listbox", "data-testid": "palette-list" });
  let shown = [];
  let chosen = 0;

  const runChosen = (command = shown[chosen]) => {
    if (!command || !commands.allowed(command)) return;
    handle.close(command.id);
  };

  const item = (command, index) => {
    const allowed = commands.allowed(command);
    return h(
      "li",
      {
        class: `palette-item${index === chosen ? " palette-chosen" : ""}`,
        role: "option",
        "aria-selected": String(index === chosen),
        "aria-disabled": String(!allowed),
        "data-testid": "palette-item",
        dataset: { command: command.id },
        onmousedown: (event) => event.preventDefault(), // the input keeps the keyboard
        onclick: () => runChosen(command),
      },
      h("span", { class: "palette-category" }, command.category),
      h("span", { class: "palette-label" }, command.label),
      h("span", { class: "palette-keys" }, keyChips(command)),
    );
  };

  const filter = () => {
    const words = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    shown = commands.list.filter((command) => {
      const text =
        `${command.category} ${command.label} ${keysOf(command).join(" ")} ${command.id}`.toLowerCase();
      return words.every((word) => text.includes(word));
    });
    chosen = Math.min(chosen, Math.max(0, shown.length - 1));
    draw();
  };

  const draw = () => {
    list.replaceChildren(...shown.map(item));
    if (!shown.length) list.append(h("li", { class: "palette-empty muted" }, "No command matches"));
    list.children[chosen]?.scrollIntoView({ block: "nearest" });
  };

  input.addEventListener("input", () => {
    chosen = 0;
    filter();
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const delta = event.key === "ArrowDown" ? 1 : -1;
      chosen = (chosen + delta + shown.length) % Math.max(1, shown.length);
      draw();
    } else if (event.key === "Enter") {
      event.preventDefault();
      runChosen();
    }
  });

  const handle = openDialog({
    title: "Commands",
    testid: "command-palette",
    wide: true,
    body: [input, list],
    actions: [{ label: "Close", value: null, testid: "palette-close" }],
  });
  handle.dialog.classList.add("palette");
  filter();
  input.focus();
  return handle.result.then((id) => {
    if (id) commands.run(id);
  });
}

/** The keyboard shortcuts, by mode: every command that has keys. */
export function openShortcuts(commands) {
  const section = (title, mode) => {
    const rows = [];
    for (const command of commands.list) {
      const keys = command.keys.filter(([m]) => m === mode || (mode === "command" && m === "any"));
      if (!keys.length) continue;
      const shown = [...new Set(keys.map(([, key]) => showKey(key)))];
      rows.push(
        h(
          "tr",
          { "data-testid": "shortcut", dataset: { command: command.id } },
          h(
            "td",
            { class: "shortcut-keys" },
            shown.map((key) => h("kbd", { class: "palette-key" }, key)),
          ),
          h("td", null, command.label),
        ),
      );
    }
    return [h("h3", null, title), h("table", { class: "shortcuts-table" }, h("tbody", null, rows))];
  };
  const handle = openDialog({
    title: "Keyboard shortcuts",
    testid: "shortcuts-panel",
    wide: true,
    body: [
      h(
        "p",
        { class: "muted" },
        "Esc leaves a cell's editor for command mode; Enter goes back into it. Ctrl+Shift+C lists every command.",
      ),
      section("Command mode (and everywhere)", "command"),
      section("Edit mode (in a cell's editor)", "edit"),
    ],
    actions: [{ label: "Close", value: null, testid: "shortcuts-close" }],
  });
  handle.dialog.classList.add("shortcuts");
  return handle.result;
}
