/**
 * Modal dialogs on the native `<dialog>` element: focus is trapped and Escape cancels, as the
 * browser does it. `openDialog` resolves to the value of the button pressed (null: cancelled).
 */
import { h } from "../dom.js";

/**
 * Show a dialog. `body` is a node (or nodes); `actions` are buttons, each {label, value,
 * kind: "primary" | "danger" | undefined, testid}. A button whose value is a function is
 * awaited instead, and the dialog closes with what it returns unless that is `undefined`.
 * With `cancellable: false`, Escape does nothing: the user must press a button.
 */
export function openDialog({ title, body, actions, testid = "dialog", wide = false, cancellable = true }) {
  const dialog = h("dialog", { class: `dialog${wide ? " dialog-wide" : ""}`, "data-testid": testid });
  let settle;
  const result = new Promise((resolve) => (settle = resolve));
  const close = (value) => {
    if (!dialog.open) return;
    dialog.close();
    dialog.remove();
    settle(value);
  };
  const buttons = actions.map((action) =>
    h(
      "button",
      {
        type: "button",
        class: action.kind ? `button-${action.kind}` : "",
        "data-testid": action.testid,
        onclick: async () => {
          if (typeof action.value !== "function") return close(action.value);
          const value = await action.value();
          if (value !== undefined) close(value);
        },
      },
      action.label,
    ),
  );
  dialog.append(
    h("h2", { class: "dialog-title" }, title),
    h("div", { class: "dialog-body" }, body),
    h("div", { class: "dialog-actions" }, buttons),
  );
  dialog.addEventListener("cancel", (event) => {
    event.preventDefault(); // Escape: cancel, unless a choice must be made
    if (cancellable) close(null);
  });
  document.body.append(dialog);
  dialog.showModal();
  return { dialog, close, result };
}

/** Ask for one line of text; resolves to it (trimmed), or null if cancelled. */
export function askText({ title, label, value = "", confirm = "OK", testid = "ask-dialog" }) {
  const input = h("input", { type: "text", value, "data-testid": "ask-input", "aria-label": label });
  const form = h("form", { class: "form-row" }, h("label", {}, label, input));
  const { close, result } = openDialog({
    title,
    testid,
    body: form,
    actions: [
      { label: "Cancel", value: null, testid: "ask-cancel" },
      { label: confirm, kind: "primary", value: () => input.value.trim() || undefined, testid: "ask-ok" },
    ],
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.value.trim()) close(input.value.trim());
  });
  input.select();
  return result;
}

/** Ask whether to go ahead; resolves to true or false. */
export async function confirmAction({ title, message, confirm, testid = "confirm-dialog" }) {
  const { result } = openDialog({
    title,
    testid,
    body: h("p", {}, message),
    actions: [
      { label: "Cancel", value: false, testid: "confirm-cancel" },
      { label: confirm, kind: "danger", value: true, testid: "confirm-ok" },
    ],
  });
  return Boolean(await result);
}
