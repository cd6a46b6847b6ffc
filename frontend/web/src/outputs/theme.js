/**
 * The app's theme, for the sandboxed output frames, which are documents of their own and
 * cannot read the app's styles.
 *
 * The theme is what base.css shows: dark under `<html data-theme="dark">`, or under
 * `prefers-color-scheme: dark` unless `data-theme="light"` (src/theme.js chooses). A frame
 * gets the theme's name and the palette's colours (base.css's variables and outputs.css's
 * `--ansi-*`) when it is made (its URL's `?theme=`, so its first paint is right) and in a
 * `theme` message when it is ready and whenever the theme changes (the preference, or the
 * page's `data-theme`, `class` or `style` on <html>). Nothing in them is secret: they are the
 * app's stylesheet's values.
 */

/** The variables a frame takes from the app (each as `--name` in the frame). */
export const THEME_VARIABLES = [
  "--bg", "--surface", "--surface-2", "--text", "--muted", "--border", "--border-strong",
  "--accent", "--danger", "--mono", "--sans",
  "--ansi-black", "--ansi-red", "--ansi-green", "--ansi-yellow", "--ansi-blue",
  "--ansi-magenta", "--ansi-cyan", "--ansi-white",
]; // prettier-ignore

/** "dark" or "light": the theme the page shows now (as base.css chooses its palette). */
export function currentTheme() {
  const stated = document.documentElement.dataset.theme;
  if (stated === "dark" || stated === "light") return stated;
  return window.matchMedia?.("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

/** The message that gives a frame the page's theme. */
export function themeMessage() {
  const style = getComputedStyle(document.documentElement);
  const colors = {};
  for (const name of THEME_VARIABLES) {
    const value = style.getPropertyValue(name).trim();
    if (value) colors[name] = value;
  }
  return { cellbus: "theme", theme: currentTheme(), colorScheme: style.colorScheme || "normal", colors };
}

const listeners = new Set();
let watching = false;
let last = "";

/** Call `listener()` whenever the theme (or its palette) changes; returns an unsubscribe. */
export function onThemeChange(listener) {
  listeners.add(listener);
  if (!watching) watch();
  return () => listeners.delete(listener);
}

function watch() {
  watching = true;
  last = JSON.stringify(themeMessage());
  const check = () => {
    const now = JSON.stringify(themeMessage());
    if (now === last) return;
    last = now;
    for (const listener of listeners) listener();
  };
  window.matchMedia?.("(prefers-color-scheme: dark)").addEventListener("change", check);
  new MutationObserver(check).observe(document.documentElement, {
    attributes: true,
    attributeFilter: ["data-theme", "class", "style"],
  });
}
