/**
 * The live progress of a parallel map (`cellbus.parallel.map`): the bundle's
 * `application/vnd.cellbus.parallel+json` ({label, done, total, workers, state, note,
 * dashboard}), drawn by the app itself: a bar, "parallel.map: 12/40 tasks on 2 workers", the
 * state, the note, and a link to the session's Dask dashboard through the web service.
 *
 * The kernel sends one display_data and then update_display_data as tasks finish; `update`
 * changes the same elements in place (no flicker, the link keeps its focus).
 *
 * Everything in the bundle comes from user code: text goes in as text, and the link is made
 * only from a path of the web service's dashboard proxy (`/parallel/<session>/dashboard/...`),
 * never from an arbitrary URL.
 */
import { h } from "../dom.js";

export const PARALLEL_MIME = "application/vnd.cellbus.parallel+json";

const STATES = new Set(["running", "done", "failed", "cancelled"]);
const DASHBOARD = /^\/parallel\/[A-Za-z0-9_-]{1,64}\/dashboard(\/[^\\?#\s]*)?$/;

/** The dashboard's path if it is one of the proxy's (no `..`, no other host), else null. */
export function dashboardPath(value) {
  if (typeof value !== "string" || !DASHBOARD.test(value)) return null;
  if (value.split("/").some((segment) => segment === "." || segment === ".." || /%2e/i.test(segment))) {
    return null;
  }
  return value;
}

function count(value) {
  const n = Number(value);
  return Number.isFinite(n) && n >= 0 ? Math.floor(n) : 0;
}

/** The bundle's value, checked: numbers are counts, the state one of the known ones. */
function progressOf(value) {
  const v = value && typeof value === "object" ? value : {};
  const total = count(v.total);
  return {
    label: typeof v.label === "string" && v.label ? v.label : "parallel.map",
    done: Math.min(count(v.done), total),
    total,
    workers: count(v.workers),
    state: STATES.has(v.state) ? v.state : "running",
    note: typeof v.note === "string" ? v.note : "",
    dashboard: dashboardPath(v.dashboard),
  };
}

export class ParallelView {
  constructor(value) {
    this.bar = h("div", { class: "parallel-bar-fill" });
    this.track = h(
      "div",
      {
        class: "parallel-bar",
        role: "progressbar",
        "aria-valuemin": "0",
        "data-testid": "parallel-bar",
      },
      this.bar,
    );
    this.summary = h("span", { class: "parallel-summary", "data-testid": "parallel-summary" });
    this.state = h("span", { class: "parallel-state", "data-testid": "parallel-state" });
    this.note = h("div", { class: "parallel-note", "data-testid": "parallel-note" });
    this.link = h(
      "a",
      {
        class: "parallel-dashboard",
        target: "_blank",
        rel: "noopener noreferrer",
        "data-testid": "parallel-dashboard",
      },
      "Dask dashboard",
    );
    this.el = h(
      "div",
      { class: "output output-parallel", "data-testid": "output", dataset: { mime: PARALLEL_MIME } },
      h(
        "div",
        { class: "parallel" },
        this.track,
        h("div", { class: "parallel-line" }, this.summary, this.state, this.link),
        this.note,
      ),
    );
    this.update(value);
  }

  /** Show `value` (an update_display_data's bundle value) in the same elements. */
  update(value) {
    const p = progressOf(value);
    const max = Math.max(p.total, 1);
    this.track.setAttribute("aria-valuemax", String(max));
    this.track.setAttribute("aria-valuenow", String(p.done));
    this.track.setAttribute("aria-label", `${p.label} progress`);
    this.track.dataset.state = p.state;
    this.bar.style.width = `${(100 * p.done) / max}%`;
    const workers = `${p.workers} worker${p.workers === 1 ? "" : "s"}`;
    this.summary.textContent = `${p.label}: ${p.done}/${p.total} tasks on ${workers}`;
    this.state.textContent = p.state;
    this.state.dataset.state = p.state;
    this.note.textContent = p.note;
    this.note.hidden = !p.note;
    if (p.dashboard) {
      this.link.setAttribute("href", p.dashboard);
      this.link.hidden = false;
    } else {
      this.link.removeAttribute("href");
      this.link.hidden = true;
    }
  }
}
