/**
 * Built on its own into assets/theme.js, a classic (blocking) script in the page's <head>:
 * it sets <html data-theme> from the remembered choice before the body is parsed, so the first
 * paint already has the right colours. The app bundle (main.js) comes later, as a module.
 */
import { applyTheme, storedTheme } from "./theme.js";

applyTheme(storedTheme());
