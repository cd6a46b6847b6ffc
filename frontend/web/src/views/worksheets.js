/**
 * The worksheet list at `/`: the user's own worksheets and those shared with them, newest
 * change first; creating one, importing a .ipynb file, and (for owners) renaming, sharing,
 * exporting and deleting.
 */
import { call, describeError } from "../api.js";
import { askText, confirmAction } from "../dialogs/dialog.js";
import { openShareDialog } from "../dialogs/share.js";
import { h, replaceChildren } from "../dom.js";
import { formatTime } from "../format.js";
import { exportNotebook, importNotebook } from "../notebooks.js";
import { worksheetPath } from "../router.js";
import { toast } from "../toast.js";

const OWNER_ONLY = "Only the worksheet's owners can do this";

export class WorksheetsPage {
  constructor({ user, navigate, sessions }) {
    this.user = user;
    this.navigate = navigate;
    this.sessions = sessions; // worksheet id -> session, for the worksheet page
    this.title = h("input", {
      placeholder: "Title of a new worksheet",
      maxlength: 200,
      "data-testid": "new-worksheet-title",
      "aria-label": "Title of a new worksheet",
    });
    this.fileInput = h("input", {
      type: "file",
      accept: ".ipynb,application/json",
      hidden: true,
      "data-testid": "import-file",
      onchange: () => this.importFile(),
    });
    this.list = h("div", { class: "worksheet-list", "data-testid": "worksheet-list" });
    this.el = h(
      "main",
      { class: "list-page", "data-testid": "worksheets-page" },
      h(
        "div",
        { class: "list-head" },
        h("h1", {}, "Worksheets"),
        h(
          "form",
          { class: "new-worksheet", onsubmit: (e) => this.create(e) },
          this.title,
          h(
            "button",
            { type: "submit", class: "button-primary", "data-testid": "new-worksheet" },
            "New worksheet",
          ),
          h(
            "button",
            { type: "button", "data-testid": "import-notebook", onclick: () => this.fileInput.click() },
            "Import .ipynb",
          ),
          this.fileInput,
        ),
      ),
      this.list,
    );
    this.load();
  }

  async load() {
    try {
      this.show(await call("worksheet.list"));
    } catch (error) {
      replaceChildren(this.list, h("p", { class: "form-error" }, describeError(error)));
    }
  }

  show(sheets) {
    for (const sheet of sheets) this.sessions.set(sheet.id, sheet.session);
    if (!sheets.length) {
      replaceChildren(
        this.list,
        h(
          "p",
          { class: "empty", "data-testid": "no-worksheets" },
          "No worksheets yet. Create one above, or import a Jupyter notebook.",
        ),
      );
      return;
    }
    replaceChildren(
      this.list,
      h(
        "table",
        { class: "worksheets" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Title", "Your role", "Owner", "Changed", ""].map((t) => h("th", {}, t)),
          ),
        ),
        h(
          "tbody",
          {},
          sheets.map((sheet) => this.row(sheet)),
        ),
      ),
    );
  }

  row(sheet) {
    const owner = sheet.role === "owner";
    const action = (label, testid, fn, { danger = false, ownerOnly = true } = {}) =>
      h(
        "button",
        {
          type: "button",
          class: `button-small${danger ? " button-danger-quiet" : ""}`,
          "data-testid": testid,
          disabled: ownerOnly && !owner,
          title: ownerOnly && !owner ? OWNER_ONLY : label,
          onclick: () => fn(sheet),
        },
        label,
      );
    return h(
      "tr",
      { "data-testid": "worksheet-row", dataset: { id: sheet.id, title: sheet.title } },
      h(
        "td",
        { class: "worksheet-title-cell" },
        h(
          "a",
          { href: worksheetPath(sheet.id), "data-link": true, "data-testid": "worksheet-link" },
          sheet.title,
        ),
      ),
      h(
        "td",
        {},
        h("span", { class: `role-badge role-${sheet.role}`, "data-testid": "worksheet-role" }, sheet.role),
      ),
      // data-label: what a value is where the table shows as cards (a narrow screen: pages.css)
      h("td", { "data-label": "Owner" }, sheet.owner === this.user.username ? "you" : sheet.owner),
      h("td", { class: "muted", "data-label": "Changed" }, formatTime(sheet.updated_at)),
      h(
        "td",
        { class: "row-actions" },
        action("Rename", "rename-worksheet", (s) => this.rename(s)),
        action("Share", "share-worksheet", (s) => openShareDialog(s, this.user)),
        action("Export", "export-worksheet", (s) => this.export(s), { ownerOnly: false }),
        action("Delete", "delete-worksheet", (s) => this.remove(s), { danger: true }),
      ),
    );
  }

  async create(event) {
    event.preventDefault();
    const title = this.title.value.trim() || "Untitled";
    try {
      const sheet = await call("worksheet.create", { title });
      await call("cell.create", { worksheet: sheet.id, source: "", after: null });
      this.navigate(worksheetPath(sheet.id));
    } catch (error) {
      toast(describeError(error), "error");
    }
  }

  async importFile() {
    const file = this.fileInput.files[0];
    this.fileInput.value = "";
    if (!file) return;
    try {
      const sheet = await importNotebook(file);
      toast(`Imported “${sheet.title}”`);
      this.navigate(worksheetPath(sheet.id));
    } catch (error) {
      toast(describeError(error), "error");
    }
  }

  async rename(sheet) {
    const title = await askText({
      title: "Rename worksheet",
      label: "Title",
      value: sheet.title,
      confirm: "Rename",
    });
    if (!title || title === sheet.title) return;
    try {
      await call("worksheet.rename", { id: sheet.id, title });
      await this.load();
    } catch (error) {
      toast(describeError(error), "error");
    }
  }

  async export(sheet) {
    try {
      await exportNotebook(sheet.id, sheet.title);
    } catch (error) {
      toast(describeError(error), "error");
    }
  }

  async remove(sheet) {
    const sure = await confirmAction({
      title: "Delete worksheet",
      message: `Delete “${sheet.title}”, its cells and their outputs for everyone it is shared with? This cannot be undone.`,
      confirm: "Delete",
    });
    if (!sure) return;
    try {
      await call("worksheet.delete", { id: sheet.id });
      await this.load();
    } catch (error) {
      toast(describeError(error), "error");
    }
  }

  focus() {}

  destroy() {}
}
