/**
 * Building DOM elements without a framework.
 *
 * The app updates the page incrementally (a cell, an output, a line of text at a time), so it
 * keeps references to the elements it builds instead of re-rendering templates; `h` is the one
 * helper that builds them. `data-testid` attributes are the hooks the browser tests use.
 */

/**
 * A new element: `h("button", {class: "primary", onclick: save}, "Save")`.
 *
 * Attributes whose name starts with "on" become event listeners; `dataset` and `style` take
 * objects; `false`, `null` and `undefined` attributes are left out; `true` sets an empty one.
 * Children may be strings, nodes, or (nested) arrays of them; null children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (name === "style" && typeof value === "object") {
      Object.assign(el.style, value);
    } else if (name === "value" || name === "checked" || name === "disabled") {
      el[name] = value; // properties, so they stay right after the user changes them
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace all children of `el` with `children`. */
export function replaceChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/**
 * Run `fn` once before the next paint, however many times this is called before then.
 *
 * Feed messages can arrive by the thousand (a catch-up after a reconnect, a loop printing
 * lines); coalescing their DOM work per frame keeps the page responsive. A timer backs the
 * animation frame up, because browsers pause animation frames in background tabs, and a tab
 * watching a long run in the background must still keep up.
 */
export function frameScheduler(fn) {
  let pending = false;
  let frame = 0;
  let timer = 0;
  const run = () => {
    if (!pending) return;
    pending = false;
    cancelAnimationFrame(frame);
    clearTimeout(timer);
    fn();
  };
  return () => {
    if (pending) return;
    pending = true;
    frame = requestAnimationFrame(run);
    timer = setTimeout(run, 100);
  };
}
