/**
 * .ipynb files: exporting a worksheet to a download and importing a file the user picked.
 * The server does the conversion both ways (`worksheet.export`, `worksheet.import`, which
 * validate with nbformat); the browser only moves the JSON between the API and a file.
 */
import { call } from "./api.js";

/** Download worksheet `id` as "<title>.ipynb". */
export async function exportNotebook(id, title) {
  const notebook = await call("worksheet.export", { id });
  const blob = new Blob([JSON.stringify(notebook, null, 1)], { type: "application/x-ipynb+json" });
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = `${safeFileName(title)}.ipynb`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/**
 * Import `file` (a File from an `<input type=file>`) as a new worksheet; resolves to it.
 * Its title is the notebook's own if it has one, else the file's name.
 */
export async function importNotebook(file) {
  let notebook;
  try {
    notebook = JSON.parse(await file.text());
  } catch {
    throw new Error(`${file.name} is not a notebook: it is not JSON`);
  }
  const own = notebook?.metadata?.title;
  const title = typeof own === "string" && own ? own : file.name.replace(/\.ipynb$/i, "");
  return call("worksheet.import", { notebook, title: title.slice(0, 200) || null });
}

function safeFileName(title) {
  return (title || "worksheet").replace(/[\\/:*?"<>|\x00-\x1f]+/g, "_").slice(0, 120);
}
