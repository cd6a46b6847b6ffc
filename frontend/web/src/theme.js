/**
 * The colour theme: light, dark, or the system's (the browser's `prefers-color-scheme`), as
 * chosen in the header (shell.js) and remembered in localStorage. Only a choice is stored:
 * following the system stores nothing.
 *
 * The theme is an attribute of <html>, `data-theme="light"` or `"dark"`, absent to follow the
 * system; styles/base.css defines the colours for each. theme-boot.js, a classic script in the
 * page's <head> (static/index.html), sets it before the first paint, so a dark page never
 * flashes light while the app loads (the CSP allows no inline script, hence a file).
 */
export const THEME_KEY = "cellbus.theme";

/** The choices, with their labels. */
export const THEMES = { system: "System theme", light: "Light", dark: "Dark" };

/** The remembered choice: "light", "dark" or "system". */
export function storedTheme() {
  let value = null;
  try {
    value = localStorage.getItem(THEME_KEY);
  } catch {
    // storage is off (a private window's policy): follow the system
  }
  return value === "light" || value === "dark" ? value : "system";
}

/** Show `theme` ("light", "dark", or "system" to follow the browser). */
export function applyTheme(theme, root = document.documentElement) {
  if (theme === "light" || theme === "dark") root.dataset.theme = theme;
  else delete root.dataset.theme;
}

/** Show `theme` and remember it (following the system forgets the choice). */
export function chooseTheme(theme) {
  try {
    if (theme === "light" || theme === "dark") localStorage.setItem(THEME_KEY, theme);
    else localStorage.removeItem(THEME_KEY);
  } catch {
    // not remembered, but shown
  }
  applyTheme(theme);
}

/** "light" or "dark": what the page shows now, whichever way it was chosen. */
export function effectiveTheme() {
  const chosen = document.documentElement.dataset.theme;
  if (chosen === "light" || chosen === "dark") return chosen;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

/** Call `fn(theme)` when the choice changes in another tab of this site (and show it here). */
export function onThemeStored(fn) {
  window.addEventListener("storage", (event) => {
    if (event.key !== THEME_KEY && event.key !== null) return;
    const theme = storedTheme();
    applyTheme(theme);
    fn(theme);
  });
}
