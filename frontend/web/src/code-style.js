/**
 * How code is coloured in the editor: CodeMirror's highlighting with the theme's colours (the
 * --code-* custom properties of styles/base.css), so it follows light and dark without a
 * JavaScript theme of its own. editor.js uses `codeHighlighting` in place of CodeMirror's
 * default style, whose fixed colours are meant for a light background.
 */
import { HighlightStyle, syntaxHighlighting } from "@codemirror/language";
import { tags as t } from "@lezer/highlight";

export const codeStyle = HighlightStyle.define([
  { tag: t.meta, color: "var(--code-meta)" },
  { tag: t.link, textDecoration: "underline" },
  { tag: t.heading, textDecoration: "underline", fontWeight: "bold" },
  { tag: t.emphasis, fontStyle: "italic" },
  { tag: t.strong, fontWeight: "bold" },
  { tag: t.strikethrough, textDecoration: "line-through" },
  { tag: [t.keyword, t.controlKeyword, t.operatorKeyword, t.moduleKeyword], color: "var(--code-keyword)" },
  { tag: [t.atom, t.bool, t.null, t.url, t.contentSeparator, t.labelName], color: "var(--code-atom)" },
  { tag: [t.literal, t.inserted, t.number], color: "var(--code-number)" },
  { tag: [t.string, t.deleted], color: "var(--code-string)" },
  { tag: [t.regexp, t.escape, t.special(t.string)], color: "var(--code-meta)" },
  { tag: t.definition(t.variableName), color: "var(--code-definition)" },
  { tag: t.function(t.definition(t.variableName)), color: "var(--code-definition)" },
  { tag: t.local(t.variableName), color: "var(--code-class)" },
  { tag: [t.typeName, t.namespace, t.className, t.definition(t.className)], color: "var(--code-class)" },
  { tag: [t.special(t.variableName), t.macroName], color: "var(--code-atom)" },
  { tag: t.definition(t.propertyName), color: "var(--code-definition)" },
  { tag: [t.comment, t.lineComment, t.blockComment], color: "var(--code-comment)", fontStyle: "italic" },
  { tag: t.invalid, color: "var(--code-invalid)" },
]);

/** The editor extension: this style, unless the editor has another highlighter. */
export const codeHighlighting = syntaxHighlighting(codeStyle, { fallback: true });
