/**
 * A look at a file without downloading it: images as pictures, CSV (and TSV) as a table, text
 * as text, in a dialog with the file's Download link.
 *
 * Only the head of a file is fetched (`readHead`, PREVIEW_BYTES; images up to IMAGE_BYTES), so
 * a preview of a 10 GB log costs a fraction of a second. Nothing of a user's file runs: an image
 * is shown by an <img> from a blob (images run no scripts, SVG included, when shown that
 * way), text is text nodes, and the server sends every file as an attachment with a sandboxing
 * CSP besides.
 */
import { openDialog } from "../dialogs/dialog.js";
import { h } from "../dom.js";
import { formatBytes } from "../format.js";
import { fileUrl, readHead } from "./transfer.js";

const PREVIEW_BYTES = 256 * 1024;
const IMAGE_BYTES = 20 * 1024 * 1024;
const TABLE_ROWS = 200;
const IMAGE_TYPES = {
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  bmp: "image/bmp",
  ico: "image/x-icon",
  svg: "image/svg+xml",
};
const DELIMITERS = { csv: ",", tsv: "\t" };

/** What kind of preview `name` gets: "image", "table" or "text". */
export function previewKind(name) {
  const ext = extension(name);
  if (ext in IMAGE_TYPES) return "image";
  if (ext in DELIMITERS) return "table";
  return "text";
}

/** Show a preview of `entry` (a `files.list` entry) of `worksheet`'s workspace. */
export function openPreview(worksheet, entry) {
  const body = h("div", { class: "files-preview", "data-testid": "file-preview", "aria-busy": "true" });
  body.append(h("p", { class: "muted" }, "Loading…"));
  const download = h(
    "a",
    {
      class: "files-download-button",
      href: fileUrl(worksheet, entry.path),
      download: entry.name,
      "data-testid": "preview-download",
    },
    "Download",
  );
  let objectUrl = null;
  const { result } = openDialog({
    title: entry.path,
    body: [
      body,
      h(
        "p",
        { class: "files-preview-actions" },
        download,
        h("span", { class: "muted" }, formatBytes(entry.size)),
      ),
    ],
    testid: "preview-dialog",
    wide: true,
    actions: [{ label: "Close", value: null, testid: "preview-close" }],
  });
  result.then(() => objectUrl && URL.revokeObjectURL(objectUrl));
  fill(worksheet, entry, (url) => (objectUrl = url))
    .then((nodes) => body.replaceChildren(...nodes))
    .catch((error) => body.replaceChildren(h("p", { class: "files-error" }, `No preview: ${error.message}`)))
    .finally(() => body.removeAttribute("aria-busy"));
}

async function fill(worksheet, entry, keepUrl) {
  const kind = previewKind(entry.name);
  if (kind === "image") {
    if (entry.size > IMAGE_BYTES)
      return [note(`An image of ${formatBytes(entry.size)}: download it to see it.`)];
    const { bytes } = await readHead(worksheet, entry.path, IMAGE_BYTES);
    const url = keepUrl(URL.createObjectURL(new Blob([bytes], { type: IMAGE_TYPES[extension(entry.name)] })));
    return [h("img", { class: "files-image", src: url, alt: entry.name, "data-testid": "preview-image" })];
  }
  const { bytes, complete } = await readHead(worksheet, entry.path, PREVIEW_BYTES);
  if (bytes.subarray(0, 8192).includes(0)) return [note("A binary file: no preview. Download it instead.")];
  let text = new TextDecoder("utf-8").decode(bytes);
  if (!complete) text = text.slice(0, text.lastIndexOf("\n") + 1 || text.length); // whole lines
  const cut = complete ? [] : [note(`The first ${formatBytes(bytes.length)} of ${formatBytes(entry.size)}.`)];
  if (kind === "table") return [...table(text, DELIMITERS[extension(entry.name)]), ...cut];
  return [h("pre", { class: "files-text", "data-testid": "preview-text" }, text), ...cut];
}

function table(text, delimiter) {
  const rows = parseDelimited(text, delimiter, TABLE_ROWS + 1);
  if (!rows.length) return [note("An empty table.")];
  const [head, ...rest] = rows;
  const more = rest.length > TABLE_ROWS ? [note(`The first ${TABLE_ROWS} rows.`)] : [];
  return [
    h(
      "div",
      { class: "files-table-wrap" },
      h(
        "table",
        { class: "files-table", "data-testid": "preview-table" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            head.map((cell) => h("th", { scope: "col" }, cell)),
          ),
        ),
        h(
          "tbody",
          {},
          rest.slice(0, TABLE_ROWS).map((row) =>
            h(
              "tr",
              {},
              row.map((cell) => h("td", {}, cell)),
            ),
          ),
        ),
      ),
    ),
    ...more,
  ];
}

/**
 * Rows of delimited text as RFC 4180 has them: fields in double quotes may hold the delimiter,
 * newlines and doubled quotes. At most `limit` rows; a last line without its end is kept.
 */
export function parseDelimited(text, delimiter, limit = Infinity) {
  const rows = [];
  let row = [];
  let field = "";
  let quoted = false;
  let i = 0;
  const endRow = () => {
    row.push(field);
    rows.push(row);
    row = [];
    field = "";
  };
  while (i < text.length && rows.length < limit) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i += 2;
        continue;
      }
      if (c === '"') quoted = false;
      else field += c;
      i += 1;
    } else if (c === '"' && field === "") {
      quoted = true;
      i += 1;
    } else if (c === delimiter) {
      row.push(field);
      field = "";
      i += 1;
    } else if (c === "\n" || c === "\r") {
      endRow();
      i += c === "\r" && text[i + 1] === "\n" ? 2 : 1;
    } else {
      field += c;
      i += 1;
    }
  }
  if ((field !== "" || row.length) && rows.length < limit) endRow();
  return rows;
}

function note(text) {
  return h("p", { class: "muted files-note" }, text);
}

function extension(name) {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : "";
}
