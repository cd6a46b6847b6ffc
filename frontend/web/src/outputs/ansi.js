/**
 * ANSI escape codes (colours, bold) in stream text, tracebacks and the inspect and help
 * panels, as HTML spans.
 *
 * `ansi_up` escapes the text and writes colours as classes (`ansi-red-fg`, styled in
 * outputs.css from the `--ansi-*` variables, chosen for contrast on `--surface` in the light
 * and the dark theme) rather than inline styles. Its 256 and 24-bit colours (Pygments'
 * highlighting in IPython's signatures and tracebacks: colours picked for one background)
 * would be inline `rgb()` styles that no theme can change, so they are drawn as the nearest
 * of the 16 named colours instead (`ThemedAnsiUp`).
 *
 * A converter keeps state between calls (a colour set in one chunk of a stream applies to the
 * next), so a stream keeps one while it appends.
 */
import { AnsiUp } from "ansi_up";

const HUES = [
  [0, "red"],
  [60, "yellow"],
  [120, "green"],
  [180, "cyan"],
  [240, "blue"],
  [300, "magenta"],
  [360, "red"],
];

/** The named ANSI colour (its class name, `ansi-…`) nearest to `rgb` ([r, g, b], 0-255). */
export function nearestAnsiClass([r, g, b]) {
  const max = Math.max(r, g, b) / 255;
  const min = Math.min(r, g, b) / 255;
  const lightness = (max + min) / 2;
  const chroma = max - min;
  if (chroma < 0.15) {
    // greys: dark ones read as the text's colour, light ones as a quieter grey
    if (lightness < 0.25) return "ansi-black";
    if (lightness < 0.55) return "ansi-bright-black";
    return lightness < 0.85 ? "ansi-white" : "ansi-bright-white";
  }
  let hue;
  const [rn, gn, bn] = [r / 255, g / 255, b / 255];
  if (max === rn) hue = 60 * (((gn - bn) / chroma + 6) % 6);
  else if (max === gn) hue = 60 * ((bn - rn) / chroma + 2);
  else hue = 60 * ((rn - gn) / chroma + 4);
  let name = "red";
  let best = Infinity;
  for (const [center, hueName] of HUES) {
    if (Math.abs(hue - center) < best) {
      best = Math.abs(hue - center);
      name = hueName;
    }
  }
  return lightness > 0.6 ? `ansi-bright-${name}` : `ansi-${name}`;
}

/** ansi_up, with every colour as a class of the 16 (none inline). */
class ThemedAnsiUp extends AnsiUp {
  transform_to_html(fragment) {
    const named = (colour) =>
      colour && colour.class_name === "truecolor"
        ? { ...colour, class_name: nearestAnsiClass(colour.rgb) }
        : colour;
    return super.transform_to_html({ ...fragment, fg: named(fragment.fg), bg: named(fragment.bg) });
  }
}

export function ansiConverter() {
  const converter = new ThemedAnsiUp();
  converter.use_classes = true;
  converter.faintStyle = "font-weight:300"; // not an opacity, which would fade the contrast
  return converter;
}

/** `text` with its ANSI codes as HTML (escaped: safe to assign to innerHTML). */
export function ansiToHtml(text) {
  return ansiConverter().ansi_to_html(text);
}

/**
 * Text as a terminal would show it after carriage returns: a progress bar that rewrites its
 * line with "\r" shows its last state, as in Jupyter.
 */
export function applyCarriageReturns(text) {
  if (!text.includes("\r")) return text;
  return text
    .replace(/\r+\n/g, "\n")
    .split("\n")
    .map((line) => line.slice(line.lastIndexOf("\r") + 1))
    .join("\n");
}
