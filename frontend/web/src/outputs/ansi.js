/**
 * ANSI escape codes (colours, bold) in stream text and tracebacks, as HTML spans.
 *
 * `ansi_up` escapes the text and writes colours as classes (`ansi-red-fg`, styled in
 * outputs.css) rather than inline styles. A converter keeps state between calls (a colour set
 * in one chunk of a stream applies to the next), so a stream keeps one while it appends.
 */
import { AnsiUp } from "ansi_up";

export function ansiConverter() {
  const converter = new AnsiUp();
  converter.use_classes = true;
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
