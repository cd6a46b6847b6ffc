/**
 * `text/latex` outputs (IPython's `Math` and `Latex`, sympy's expressions) typeset by KaTeX,
 * the same KaTeX as Markdown's math (markdown.js).
 *
 * As Jupyter's MathJax does, the text is LaTeX with its math delimited: `$…$` and `\(…\)`
 * inline, `$$…$$` and `\[…\]` displayed, and `\begin{equation}`, `align`, `gather`… blocks
 * displayed whole; the text between them is shown as it is. (`Math("x^2")` sends
 * `$\displaystyle x^2$`, sympy `$\displaystyle …$` too.) A formula KaTeX cannot read is shown
 * as its source, in the error colour, with KaTeX's message as its title.
 *
 * KaTeX builds its HTML from the TeX without running or linking anything (`trust` is off:
 * no \href, \url, \htmlClass…), so it goes into the app's page like a Markdown cell's math.
 */
import katex from "katex";
import { h } from "../dom.js";

const ENVIRONMENTS = [
  "equation", "equation*", "align", "align*", "aligned", "gather", "gather*", "gathered",
  "alignat", "alignat*", "multline", "multline*", "eqnarray", "eqnarray*", "split", "cases",
  "matrix", "pmatrix", "bmatrix", "Bmatrix", "vmatrix", "Vmatrix", "array", "CD",
]; // prettier-ignore

/**
 * `source` cut into pieces: {text} or {tex, display}, in order. Escaped dollars (`\$`) are
 * text; a delimiter without its closing one is text too.
 */
export function splitLatex(source) {
  const pieces = [];
  let text = "";
  let i = 0;
  const flush = () => {
    if (text) pieces.push({ text });
    text = "";
  };
  while (i < source.length) {
    const math = mathAt(source, i);
    if (math) {
      flush();
      pieces.push({ tex: math.tex, display: math.display });
      i = math.end;
    } else if (source[i] === "\\" && source[i + 1] === "$") {
      text += "$";
      i += 2;
    } else {
      text += source[i];
      i += 1;
    }
  }
  flush();
  return pieces;
}

/** The formula that starts at `i` of `source`: {tex, display, end}, or null. */
function mathAt(source, i) {
  const delimited = (open, close, display) => {
    if (!source.startsWith(open, i)) return null;
    const end = closing(source, close, i + open.length);
    if (end < 0) return null;
    const tex = source.slice(i + open.length, end);
    return tex.trim() ? { tex, display, end: end + close.length } : null;
  };
  const found =
    delimited("$$", "$$", true) ??
    delimited("\\[", "\\]", true) ??
    delimited("\\(", "\\)", false) ??
    (source[i] === "$" && source[i + 1] !== "$" ? delimited("$", "$", false) : null);
  if (found) return found;
  const begin = /^\\begin\{([a-zA-Z]+\*?)\}/.exec(source.slice(i, i + 40));
  if (begin && ENVIRONMENTS.includes(begin[1])) {
    const close = `\\end{${begin[1]}}`;
    const end = source.indexOf(close, i + begin[0].length);
    if (end >= 0) return { tex: source.slice(i, end + close.length), display: true, end: end + close.length };
  }
  return null;
}

/** Where `close` next occurs from `from`, skipping escaped characters (`\$`). */
function closing(source, close, from) {
  for (let i = from; i <= source.length - close.length; i++) {
    if (source.startsWith(close, i)) return i;
    if (source[i] === "\\") i += 1; // `\$`, `\\`: not a delimiter
  }
  return -1;
}

/** KaTeX's rendering of `tex` into a new element (the source, marked, if it cannot). */
export function typesetElement(tex, display) {
  const el = h("span", { class: display ? "latex-display" : "latex-inline" });
  try {
    katex.render(tex, el, {
      displayMode: display,
      throwOnError: true,
      output: "htmlAndMathml",
      trust: false,
      strict: "ignore",
      maxExpand: 1000,
      maxSize: 50,
    });
  } catch (error) {
    el.classList.add("latex-error");
    el.title = String(error?.message ?? error);
    el.textContent = display ? `$$${tex}$$` : `$${tex}$`;
  }
  return el;
}

/** A `text/latex` output's content: text and typeset formulas. */
export function renderLatex(source) {
  const el = h("div", { class: "latex", "data-testid": "output-latex" });
  for (const piece of splitLatex(String(source))) {
    el.append(piece.text !== undefined ? piece.text : typesetElement(piece.tex, piece.display));
  }
  return el;
}
