/**
 * The bar above a worksheet's cells: its title, the user's role, the session's state and
 * queue, who else is watching, whether this person's edits are saved, and the worksheet's commands (run all, interrupt, restart,
 * add a cell, share, export, and the command palette with every other command, and the
 * keyboard shortcuts). Commands the user's role does not allow are disabled, and their
 * tooltip says why.
 */
import { h, replaceChildren } from "../dom.js";
import { ROLE_RANK } from "../generated.js";

/** Every state a feed message announces (`stateOf`, feed.js), and `session.info`'s "stopped". */
const SESSION_LABELS = {
  stopped: "not started",
  starting: "starting",
  idle: "idle",
  busy: "busy",
  restarting: "restarting",
  dead: "dead",
  hibernated: "hibernated",
  restoring: "restoring",
};

export class SheetBar {
  /** `commands`: {runAll, interrupt, restart, addCell, share, export, rename, palette, shortcuts}. */
  constructor(commands) {
    this.title = h("h1", { class: "sheet-title", "data-testid": "worksheet-title" });
    this.renameButton = h(
      "button",
      {
        type: "button",
        class: "icon-button",
        title: "Rename",
        "aria-label": "Rename",
        "data-testid": "rename-worksheet",
        onclick: commands.rename,
      },
      "✎",
    );
    this.role = h("span", { class: "role-badge", "data-testid": "my-role" });
    this.session = h("span", { class: "session-state", "data-testid": "session-state" });
    this.queue = h("span", { class: "session-queue muted", "data-testid": "session-queue" });
    this.presence = h("ul", { class: "presence", "data-testid": "presence", "aria-label": "Watching now" });
    this.saveState = h("span", {
      class: "save-state muted",
      "data-testid": "save-state",
      role: "status",
      dataset: { state: "saved" },
    });
    const button = (label, testid, onclick, { kind = "", needs = "editor", title = label } = {}) =>
      h(
        "button",
        {
          type: "button",
          class: kind ? `button-${kind}` : "",
          "data-testid": testid,
          onclick,
          "aria-label": title,
          dataset: { needs, title },
        },
        label,
      );
    this.buttons = [
      button("▶▶ Run all", "run-all", commands.runAll),
      button("■ Interrupt", "interrupt", commands.interrupt),
      button("↻ Restart", "restart", commands.restart),
      button("+ Cell", "add-cell", commands.addCell),
      button("Share", "share", commands.share, { needs: "owner" }),
      button("Export .ipynb", "export", commands.export, { needs: "viewer" }),
      button("⌘ Commands", "commands", commands.palette, {
        needs: "viewer",
        title: "Every command (Ctrl+Shift+C)",
      }),
      button("?", "shortcuts-button", commands.shortcuts, {
        needs: "viewer",
        title: "Keyboard shortcuts (H)",
      }),
    ];
    this.el = h(
      "header",
      { class: "sheet-bar", "data-testid": "sheet-bar" },
      h("div", { class: "sheet-heading" }, this.title, this.renameButton, this.role),
      h(
        "div",
        { class: "sheet-status" },
        h("span", { class: "muted" }, "Session"),
        this.session,
        this.queue,
        this.saveState,
        this.presence,
      ),
      h("div", { class: "sheet-tools" }, this.buttons),
    );
    this.setSessionState("stopped");
    this.setSaveState("saved");
  }

  setTitle(title) {
    this.title.textContent = title;
    document.title = `${title} · cellbus`;
  }

  /** Enable what `role` allows; disabled buttons get the reason as their tooltip. */
  setRole(role) {
    this.role.textContent = role;
    this.role.className = `role-badge role-${role}`;
    for (const button of [...this.buttons, this.renameButton]) {
      const needs = button.dataset.needs ?? "owner";
      const allowed = (ROLE_RANK[role] ?? 0) >= ROLE_RANK[needs];
      button.disabled = !allowed;
      button.title = allowed ? (button.dataset.title ?? button.title) : reasonFor(role, needs);
    }
  }

  setSessionState(state, reason = "") {
    this.session.textContent = SESSION_LABELS[state] ?? state;
    this.session.dataset.state = state;
    this.session.title = reason;
  }

  /** "saving": edits sent, not yet committed by the server; "saved": all of them are. */
  setSaveState(state) {
    this.saveState.dataset.state = state;
    this.saveState.textContent = state === "saving" ? "Saving…" : "Saved";
    this.saveState.title =
      state === "saving"
        ? "Your latest edits are on their way to the server"
        : "The server has all your edits";
  }

  setQueue(waiting) {
    this.queue.textContent = waiting ? `${waiting} waiting` : "";
  }

  setPresence(users, me) {
    replaceChildren(
      this.presence,
      users.map((username) =>
        h(
          "li",
          {
            class: `presence-user${username === me ? " presence-me" : ""}`,
            title: username === me ? `${username} (you)` : username,
            "data-testid": "presence-user",
            dataset: { username },
          },
          h(
            "span",
            { class: "avatar", style: { background: colourOf(username) } },
            username.slice(0, 1).toUpperCase(),
          ),
          h("span", { class: "presence-name" }, username),
        ),
      ),
    );
  }
}

/** Why a user with `role` may not do something that `needs` a higher role. */
export function reasonFor(role, needs) {
  if (role === "viewer") {
    const what = needs === "owner" ? "do this" : "edit and run it";
    return `You are a viewer of this worksheet: you can watch it, but only editors and owners can ${what}.`;
  }
  return "Only the worksheet's owners can do this.";
}

/**
 * A stable colour per username, so a person keeps their colour on every page and every cursor
 * (`alpha` below 1: the light shade of their selections).
 */
export function colourOf(username, alpha = 1) {
  let hash = 0;
  for (const char of username) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
  // opaque: dark enough for white text on it (4.5:1, WCAG AA) whatever the hue
  return alpha < 1 ? `hsl(${hash % 360} 55% 45% / ${alpha})` : `hsl(${hash % 360} 55% 30%)`;
}
