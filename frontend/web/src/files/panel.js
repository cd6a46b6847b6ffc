/**
 * The files panel: the worksheet's workspace (the folder its session runs in) beside its cells.
 *
 * A tree of the workspace (`files.list`, one folder at a time as the user opens them; dot
 * entries such as the `.cellbus` environment are hidden), how much of the quota is used
 * (`files.usage`), and for each file a preview (preview.js) and a Download link. Editors also
 * upload (the Upload button, or files dropped on the panel or on a folder in it, with a
 * progress bar each: transfer.js), make folders, rename and delete; viewers get none of those
 * controls. The panel follows the session's feed: a `files_changed` (code wrote files, or
 * someone else changed them) lists the open folders again.
 *
 * Every control is a button or a link, reachable with Tab; folders say whether they are open
 * (aria-expanded); each upload's progress is a <progress> with its file's name as label.
 */
import { call, describeError } from "../api.js";
import { askText, confirmAction } from "../dialogs/dialog.js";
import { h, replaceChildren } from "../dom.js";
import { formatBytes } from "../format.js";
import { toast } from "../toast.js";
import { openPreview } from "./preview.js";
import { fileUrl, upload } from "./transfer.js";

const ICONS = { directory: "▸", file: "", link: "↪", other: "◇" }; // text, not emoji: every font has them
const KIND_NOTES = {
  link: "A symbolic link: never followed, so it cannot be opened here",
  other: "A special file (a pipe, a socket or a device): it cannot be opened here",
};

export class FilesPanel {
  /** The panel of `worksheet` (its id); `toggle` is the button that opens and closes it. */
  constructor(worksheet) {
    this.worksheet = worksheet;
    this.editable = false;
    this.expanded = new Set([""]); // folders shown open ("" is the workspace)
    this.listings = new Map(); // folder -> its entries, as files.list gave them
    this.stale = true; // something changed while the panel was closed
    this.loading = null;
    this.again = false;
    this.toggle = h(
      "button",
      {
        type: "button",
        class: "files-toggle",
        "aria-expanded": "false",
        "aria-controls": "files-panel",
        "data-testid": "files-toggle",
        title: "The worksheet's files",
        onclick: () => this.setOpen(this.el.hidden),
      },
      "Files",
    );
    this.picker = h("input", {
      type: "file",
      multiple: true,
      hidden: true,
      "data-testid": "files-picker",
      onchange: () => {
        this.uploadAll([...this.picker.files], "");
        this.picker.value = "";
      },
    });
    this.writeTools = h(
      "div",
      { class: "files-tools" },
      h(
        "button",
        { type: "button", "data-testid": "files-upload", onclick: () => this.picker.click() },
        "⇪ Upload",
      ),
      h(
        "button",
        { type: "button", "data-testid": "files-new-folder", onclick: () => this.newFolder("") },
        "+ Folder",
      ),
      this.picker,
    );
    this.usage = h("span", { class: "files-usage muted", "data-testid": "files-usage" });
    this.tree = h("ul", { class: "files-tree", "data-testid": "files-tree", "aria-label": "Files" });
    this.empty = h("p", { class: "files-empty muted", hidden: true }, "No files yet.");
    this.uploads = h("ul", {
      class: "files-uploads",
      "aria-label": "Uploads",
      "data-testid": "files-uploads",
    });
    this.el = h(
      "aside",
      {
        class: "files-panel",
        id: "files-panel",
        hidden: true,
        "aria-label": "Files",
        "data-testid": "files-panel",
      },
      h(
        "div",
        { class: "files-header" },
        h("span", { class: "files-title" }, "Files"),
        this.usage,
        h(
          "button",
          {
            type: "button",
            class: "icon-button",
            title: "Close the files",
            "aria-label": "Close the files",
            "data-testid": "files-close",
            onclick: () => this.setOpen(false),
          },
          "✕",
        ),
      ),
      this.writeTools,
      this.uploads,
      h("div", { class: "files-body" }, this.tree, this.empty),
      h("p", { class: "files-drop-hint muted" }, "Drop files here to upload them"),
    );
    this.el.addEventListener("dragover", (event) => this.dragOver(event));
    this.el.addEventListener("dragleave", (event) => {
      if (!this.el.contains(event.relatedTarget)) this.markDrop(null, false);
    });
    this.el.addEventListener("drop", (event) => this.drop(event));
    this.el.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !event.defaultPrevented) this.setOpen(false); // back to the cells
    });
    this.setEditable(false);
  }

  setOpen(open) {
    this.el.hidden = !open;
    this.toggle.setAttribute("aria-expanded", String(open));
    this.el.parentElement?.classList.toggle("files-open", open); // the page makes room
    if (open && this.stale) this.refresh();
    if (open) (this.tree.querySelector(".files-name") ?? this.el.querySelector("button"))?.focus();
    else this.toggle.focus();
  }

  setEditable(editable) {
    this.editable = editable;
    this.writeTools.hidden = !editable;
    this.el.classList.toggle("files-readonly", !editable);
    this.render();
  }

  /** A `files_changed` came on the feed: list again what is shown (or later, when opened). */
  changed() {
    this.stale = true;
    if (!this.el.hidden) this.refresh();
  }

  /** List every open folder again, and the usage; one listing at a time, the last wins. */
  async refresh() {
    if (this.loading) {
      this.again = true;
      return this.loading;
    }
    this.stale = false;
    this.loading = this.load();
    try {
      await this.loading;
    } finally {
      this.loading = null;
    }
    if (this.again) {
      this.again = false;
      await this.refresh();
    }
  }

  async load() {
    const folders = [...this.expanded];
    const [usage, ...listings] = await Promise.all([
      call("files.usage", { worksheet: this.worksheet }).catch(() => null),
      ...folders.map((path) =>
        call("files.list", { worksheet: this.worksheet, path }).catch((error) => ({ error })),
      ),
    ]);
    for (const [index, path] of folders.entries()) {
      const listing = listings[index];
      if (Array.isArray(listing)) this.listings.set(path, listing);
      else if (listing?.entries) this.listings.set(path, listing.entries);
      else if (path === "") toast(describeError(listing.error), "error");
      else this.expanded.delete(path); // gone, or no longer a folder
    }
    if (usage) {
      this.usage.textContent = `${formatBytes(usage.used)} of ${formatBytes(usage.quota)}`;
      this.usage.title = "Space used in this worksheet's workspace, of its quota";
    }
    this.render();
  }

  // -- the tree -----------------------------------------------------------------------------

  render() {
    const focused = document.activeElement;
    const again = this.el.contains(focused)
      ? [focused.closest("[data-path]")?.dataset.path, focused.dataset.action]
      : null;
    replaceChildren(this.tree, this.rows(""));
    this.empty.hidden = (this.listings.get("") ?? []).some(visible) || !this.listings.has("");
    if (again?.[0] !== undefined) {
      const row = this.tree.querySelector(`[data-path="${CSS.escape(again[0])}"]`);
      row?.querySelector(`[data-action="${again[1]}"]`)?.focus();
    }
  }

  rows(folder) {
    const entries = (this.listings.get(folder) ?? []).filter(visible).sort(byKindThenName);
    return entries.map((entry) => this.row(entry));
  }

  row(entry) {
    const isFolder = entry.type === "directory";
    const open = isFolder && this.expanded.has(entry.path) && this.listings.has(entry.path);
    const name = h(
      "button",
      {
        type: "button",
        class: "files-name",
        "data-action": "open",
        "aria-expanded": isFolder ? String(open) : null,
        title: KIND_NOTES[entry.type] ?? (isFolder ? "Open or close this folder" : "Preview"),
        disabled: entry.type === "link" || entry.type === "other",
        onclick: () => (isFolder ? this.toggleFolder(entry.path) : openPreview(this.worksheet, entry)),
      },
      h(
        "span",
        { class: "files-icon", "aria-hidden": "true" },
        isFolder && open ? "▾" : (ICONS[entry.type] ?? "◇"),
      ),
      h("span", { class: "files-label" }, entry.name),
    );
    const tools = [];
    if (entry.type === "file") {
      tools.push(
        h(
          "a",
          {
            class: "icon-button files-download",
            href: fileUrl(this.worksheet, entry.path),
            download: entry.name,
            title: `Download ${entry.name}`,
            "aria-label": `Download ${entry.name}`,
            "data-action": "download",
            "data-testid": "file-download",
          },
          "↓",
        ),
      );
    }
    if (this.editable) {
      tools.push(
        this.tool("✎", `Rename ${entry.name}`, "rename", () => this.rename(entry)),
        this.tool("✕", `Delete ${entry.name}`, "delete", () => this.remove(entry)),
      );
    }
    return h(
      "li",
      {
        class: `files-entry files-${entry.type}`,
        "data-testid": "file-entry",
        dataset: { path: entry.path, type: entry.type, name: entry.name },
      },
      h(
        "div",
        { class: "files-row" },
        name,
        h("span", { class: "files-size muted" }, entry.type === "file" ? formatBytes(entry.size) : ""),
        h("span", { class: "files-row-tools" }, tools),
      ),
      open ? h("ul", { class: "files-tree", "aria-label": entry.name }, this.rows(entry.path)) : null,
    );
  }

  tool(icon, label, action, onclick) {
    return h(
      "button",
      {
        type: "button",
        class: "icon-button",
        title: label,
        "aria-label": label,
        "data-action": action,
        onclick,
      },
      icon,
    );
  }

  async toggleFolder(path) {
    if (this.expanded.has(path) && this.listings.has(path)) {
      this.expanded.delete(path);
      this.render();
      return;
    }
    this.expanded.add(path);
    await this.refresh();
  }

  // -- what editors do ----------------------------------------------------------------------

  async newFolder(parent) {
    const name = await askText({ title: "New folder", label: "Name", confirm: "Create" });
    if (!name) return;
    await this.act(() => call("files.mkdir", { worksheet: this.worksheet, path: join(parent, name) }));
  }

  async rename(entry) {
    const name = await askText({
      title: `Rename ${entry.name}`,
      label: "New name",
      value: entry.name,
      confirm: "Rename",
    });
    if (!name || name === entry.name) return;
    const destination = join(parentOf(entry.path), name);
    await this.act(() => call("files.move", { worksheet: this.worksheet, source: entry.path, destination }));
  }

  async remove(entry) {
    const folder = entry.type === "directory";
    const sure = await confirmAction({
      title: `Delete ${entry.name}`,
      message: folder
        ? `The folder ${entry.path} and everything in it are deleted, for everyone.`
        : `${entry.path} is deleted, for everyone.`,
      confirm: "Delete",
    });
    if (!sure) return;
    await this.act(() => call("files.delete", { worksheet: this.worksheet, path: entry.path }));
  }

  /** Do `operation`; list again (the feed's files_changed will too, but this page is first). */
  async act(operation) {
    try {
      await operation();
    } catch (error) {
      toast(describeError(error), "error");
    }
    await this.refresh();
  }

  // -- uploads ------------------------------------------------------------------------------

  dragOver(event) {
    if (!event.dataTransfer?.types?.includes("Files")) return;
    event.preventDefault(); // the browser must not open the file instead of this page
    if (!this.editable) {
      event.dataTransfer.dropEffect = "none"; // a viewer's drop does nothing
      return;
    }
    event.dataTransfer.dropEffect = "copy";
    this.markDrop(this.dropFolder(event.target));
  }

  drop(event) {
    if (!this.editable || !event.dataTransfer?.files?.length) return;
    event.preventDefault();
    const folder = this.dropFolder(event.target);
    this.markDrop(null, false);
    const items = [...event.dataTransfer.items];
    const folders = items
      .filter((item) => item.webkitGetAsEntry?.()?.isDirectory)
      .map((item) => item.getAsFile());
    if (folders.length)
      toast("Folders are not uploaded: make the folder here, then drop its files in it", "error");
    const files = [...event.dataTransfer.files].filter((file) => !folders.some((f) => f?.name === file.name));
    this.uploadAll(files, folder?.dataset.path ?? "");
  }

  /** The folder a drop on `target` goes into: the folder row it is on, else null (the top). */
  dropFolder(target) {
    const row = target instanceof Element ? target.closest(".files-entry") : null;
    if (!row) return null;
    if (row.dataset.type === "directory") return row;
    return row.parentElement.closest(".files-entry"); // a file's row: its folder
  }

  /** Show where a drop would go: `folder`'s row, else the top (dropping); or nowhere. */
  markDrop(folder, dropping = true) {
    this.el.classList.toggle("files-dropping", dropping);
    for (const row of this.tree.querySelectorAll(".files-drop-target"))
      row.classList.remove("files-drop-target");
    folder?.classList.add("files-drop-target");
  }

  /** Upload `files` into `folder`, once the user agreed to replace any already there. */
  async uploadAll(files, folder) {
    if (!files.length) return;
    const there = new Set((this.listings.get(folder) ?? []).map((entry) => entry.name));
    const replaced = files.filter((file) => there.has(file.name)).map((file) => file.name);
    if (replaced.length) {
      const sure = await confirmAction({
        title: replaced.length === 1 ? `Replace ${replaced[0]}?` : `Replace ${replaced.length} files?`,
        message: `${replaced.join(", ")} ${replaced.length === 1 ? "is" : "are"} there already: the upload replaces ${replaced.length === 1 ? "it" : "them"}, for everyone.`,
        confirm: "Replace",
      });
      if (!sure) return;
    }
    for (const file of files) this.uploadOne(file, join(folder, file.name));
  }

  async uploadOne(file, path) {
    const controller = new AbortController();
    const bar = h("progress", { max: file.size || 1, value: 0, "aria-label": `Uploading ${path}` });
    const status = h("span", { class: "files-upload-status muted", "data-testid": "upload-status" }, "0%");
    const cancel = h(
      "button",
      {
        type: "button",
        class: "icon-button",
        title: `Cancel the upload of ${path}`,
        "aria-label": `Cancel the upload of ${path}`,
        onclick: () => controller.abort(),
      },
      "✕",
    );
    const item = h(
      "li",
      { class: "files-upload", "data-testid": "file-upload", dataset: { path, state: "sending" } },
      h("span", { class: "files-upload-name" }, path),
      bar,
      status,
      cancel,
    );
    this.uploads.append(item);
    const started = performance.now();
    try {
      await upload(this.worksheet, path, file, {
        signal: controller.signal,
        onProgress: (sent, total) => {
          bar.value = sent;
          const seconds = (performance.now() - started) / 1000;
          const rate = seconds > 0.5 ? `, ${formatBytes(sent / seconds)}/s` : "";
          status.textContent = `${Math.floor((100 * sent) / (total || 1))}%${rate}`;
        },
      });
      item.remove();
    } catch (error) {
      item.dataset.state = "failed";
      status.textContent = controller.signal.aborted ? "cancelled" : error.message;
      status.classList.replace("muted", "files-error");
      cancel.title = "Dismiss";
      cancel.setAttribute("aria-label", "Dismiss");
      cancel.onclick = () => item.remove();
      if (!controller.signal.aborted) toast(`${path} was not uploaded: ${error.message}`, "error");
    }
    await this.refresh();
  }
}

function visible(entry) {
  return !entry.name.startsWith("."); // the .cellbus environment and the user's own dot files
}

function byKindThenName(a, b) {
  const folder = (entry) => (entry.type === "directory" ? 0 : 1);
  return folder(a) - folder(b) || a.name.localeCompare(b.name, undefined, { numeric: true });
}

function join(folder, name) {
  return folder ? `${folder}/${name}` : name;
}

function parentOf(path) {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "" : path.slice(0, slash);
}
