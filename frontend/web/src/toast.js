/**
 * Short messages at the bottom of the page: an action that failed, a notebook exported.
 * Errors stay until dismissed; the rest leave by themselves.
 */
import { h } from "./dom.js";

const INFO_MS = 4000;
let area = null;

export function toast(message, kind = "info") {
  if (!area) {
    area = h("div", { class: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(area);
  }
  const close = h("button", { class: "toast-close", "aria-label": "Dismiss" }, "×");
  const el = h("div", { class: `toast toast-${kind}`, "data-testid": "toast" }, message, close);
  close.addEventListener("click", () => el.remove());
  area.append(el);
  if (kind !== "error") setTimeout(() => el.remove(), INFO_MS);
  return el;
}
