/**
 * Markdown to safe HTML, in the browser: Markdown cells and `text/markdown` outputs.
 *
 * markdown-it (CommonMark, tables, strikethrough, raw HTML as Jupyter allows it), with math as
 * Jupyter writes it: `$…$` inline and `$$…$$` displayed, typeset by KaTeX. Math is taken out
 * before Markdown reads the text, so `_` and `*` inside it are not emphasis. Images whose URL
 * is `attachment:<name>` show the cell's attachment of that name (a data: URL).
 *
 * The result goes into the app's own page, so it is sanitised strictly by DOMPurify: no
 * scripts, no event handlers, no frames, objects, forms or styles sheets, `javascript:` URLs
 * refused; ids and names are prefixed so they cannot clobber the page's globals. Links open in
 * a new tab without access to this one.
 */
import DOMPurify from "dompurify";
import katex from "katex";
import "katex/dist/katex.min.css";
import MarkdownIt from "markdown-it";

const ATTACHMENT_MIMES = ["image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml"];
const FORBID_TAGS = [
  "style", "link", "meta", "base", "iframe", "frame", "frameset", "object", "embed", "form",
  "input", "button", "textarea", "select", "option", "dialog", "template", "script", "noscript",
]; // prettier-ignore

const md = new MarkdownIt({ html: true, linkify: true });
md.use(math);

const defaultImage = md.renderer.rules.image;
md.renderer.rules.image = (tokens, index, options, env, self) => {
  const token = tokens[index];
  const src = token.attrGet("src") ?? "";
  if (src.startsWith("attachment:")) token.attrSet("src", attachmentUrl(env.attachments, src.slice(11)));
  return defaultImage(tokens, index, options, env, self);
};

/**
 * `source` (Markdown with math) as a sanitised DocumentFragment; `attachments` is the cell's
 * ({name: {mime: base64}}), for `attachment:` images.
 */
export function renderMarkdown(source, { attachments = null } = {}) {
  const html = md.render(String(source), { attachments });
  const fragment = DOMPurify.sanitize(html, {
    RETURN_DOM_FRAGMENT: true,
    FORBID_TAGS,
    ADD_TAGS: ["semantics", "annotation"], // KaTeX's MathML: the TeX, for screen readers
    ADD_ATTR: ["encoding"],
    FORBID_ATTR: ["srcset", "action", "formaction", "ping"],
    ALLOW_DATA_ATTR: false,
    SANITIZE_NAMED_PROPS: true,
  });
  for (const link of fragment.querySelectorAll("a[href]")) {
    link.target = "_blank";
    link.rel = "noopener noreferrer";
  }
  return fragment;
}

function attachmentUrl(attachments, name) {
  let key = name;
  try {
    key = decodeURIComponent(name);
  } catch {
    // not %-encoded: as it is
  }
  const bundle = attachments?.[key] ?? attachments?.[name];
  const mime = bundle && ATTACHMENT_MIMES.find((type) => bundle[type]);
  if (!mime) return "";
  const data = Array.isArray(bundle[mime]) ? bundle[mime].join("") : String(bundle[mime]);
  return `data:${mime};base64,${data.replace(/\s/g, "")}`;
}

// -- math ----------------------------------------------------------------------------------

function typeset(tex, displayMode) {
  return katex.renderToString(tex, { displayMode, throwOnError: false, output: "htmlAndMathml" });
}

/** The markdown-it plugin: `$$…$$` blocks, `$$…$$` and `$…$` inline. */
function math(markdown) {
  markdown.block.ruler.before("fence", "math_block", mathBlock, {
    alt: ["paragraph", "reference", "blockquote", "list"],
  });
  markdown.inline.ruler.before("escape", "math_inline", mathInline);
  markdown.renderer.rules.math_block = (tokens, index) =>
    `<div class="math math-display">${typeset(tokens[index].content, true)}</div>\n`;
  markdown.renderer.rules.math_inline = (tokens, index) => {
    const token = tokens[index];
    const display = token.markup === "$$";
    return display
      ? `<span class="math math-display">${typeset(token.content, true)}</span>`
      : `<span class="math math-inline">${typeset(token.content, false)}</span>`;
  };
}

/** A block starting with `$$` at the start of a line, to the line that ends with `$$`. */
function mathBlock(state, startLine, endLine, silent) {
  let pos = state.bMarks[startLine] + state.tShift[startLine];
  let max = state.eMarks[startLine];
  if (state.sCount[startLine] - state.blkIndent >= 4) return false; // code
  if (pos + 2 > max || state.src.slice(pos, pos + 2) !== "$$") return false;
  pos += 2;
  let first = state.src.slice(pos, max);
  let last = "";
  let line = startLine;
  let found = false;
  if (first.trim().endsWith("$$")) {
    first = first.trim().slice(0, -2); // $$ … $$ on one line
    found = true;
  }
  if (!found) {
    while (++line < endLine) {
      pos = state.bMarks[line] + state.tShift[line];
      max = state.eMarks[line];
      if (pos < max && state.sCount[line] < state.blkIndent) break; // a less indented line
      const text = state.src.slice(pos, max).trimEnd();
      if (text.endsWith("$$")) {
        last = text.slice(0, -2);
        found = true;
        break;
      }
    }
  }
  if (!found) return false;
  if (silent) return true;
  const middle =
    line > startLine + 1 ? state.getLines(startLine + 1, line, state.tShift[startLine], true) : "";
  const content = [first, middle, last].filter((part) => part.trim()).join("\n");
  const token = state.push("math_block", "math", 0);
  token.block = true;
  token.content = content;
  token.markup = "$$";
  token.map = [startLine, line + 1];
  state.line = line + 1;
  return true;
}

/** `$$…$$` (displayed) or `$…$` (inline: no space just inside the dollars, no digit after). */
function mathInline(state, silent) {
  const src = state.src;
  const start = state.pos;
  if (src[start] !== "$") return false;
  const display = src[start + 1] === "$";
  const open = display ? 2 : 1;
  let end = start + open;
  if (!display && (end >= state.posMax || /\s/.test(src[end]))) return false;
  for (;;) {
    end = src.indexOf(display ? "$$" : "$", end);
    if (end < 0 || end + open > state.posMax) return false;
    if (src[end - 1] === "\\") {
      end += 1; // an escaped dollar
      continue;
    }
    if (!display && (/\s/.test(src[end - 1]) || /\d/.test(src[end + 1] ?? ""))) {
      end += 1; // not a closing dollar
      continue;
    }
    break;
  }
  const content = src.slice(start + open, end);
  if (!content.trim()) return false;
  if (!silent) {
    const token = state.push("math_inline", "math", 0);
    token.content = content;
    token.markup = display ? "$$" : "$";
  }
  state.pos = end + open;
  return true;
}
