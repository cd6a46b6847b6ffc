/**
 * Sharing a worksheet: its members with their roles, and giving someone a role (viewer:
 * watches; editor: also edits and runs; owner: also renames, shares and deletes) or taking
 * it away. Only owners open it; the server checks again.
 */
import { call, describeError } from "../api.js";
import { h, replaceChildren } from "../dom.js";
import { openDialog } from "./dialog.js";

const ROLES = ["viewer", "editor", "owner"];

/** Open the share dialog of worksheet `sheet` ({id, title}); `me` is the signed-in user. */
export async function openShareDialog(sheet, me) {
  const members = h("ul", { class: "members", "data-testid": "share-members" });
  const error = h("p", { class: "form-error", role: "alert", "data-testid": "share-error" });
  const username = h("input", {
    list: "share-users",
    placeholder: "username",
    "data-testid": "share-username",
    "aria-label": "Username",
  });
  const role = h(
    "select",
    { "data-testid": "share-role", "aria-label": "Role" },
    ROLES.map((r) => h("option", { value: r, selected: r === "editor" }, r)),
  );
  const users = h("datalist", { id: "share-users" });

  const show = (list) => {
    replaceChildren(
      members,
      list.map((member) =>
        h(
          "li",
          { "data-testid": "share-member", dataset: { username: member.username, role: member.role } },
          h("span", { class: "member-name" }, member.username),
          h("span", { class: `role-badge role-${member.role}` }, member.role),
          member.username === me.username
            ? h("span", { class: "muted" }, "(you)")
            : h(
                "button",
                {
                  type: "button",
                  class: "link-button",
                  "data-testid": "share-remove",
                  onclick: () => share(member.username, "none"),
                },
                "remove",
              ),
        ),
      ),
    );
  };
  const share = async (name, newRole) => {
    error.textContent = "";
    try {
      show(await call("worksheet.share", { id: sheet.id, username: name, role: newRole }));
      username.value = "";
    } catch (exc) {
      error.textContent = describeError(exc);
    }
  };
  const form = h(
    "form",
    {
      class: "share-form",
      onsubmit: (event) => {
        event.preventDefault();
        if (username.value.trim()) share(username.value.trim(), role.value);
      },
    },
    username,
    role,
    h("button", { type: "submit", class: "button-primary", "data-testid": "share-submit" }, "Share"),
  );

  const dialog = openDialog({
    title: `Share “${sheet.title}”`,
    testid: "share-dialog",
    body: [form, users, error, h("h3", {}, "Members"), members],
    actions: [{ label: "Done", value: true, testid: "share-done" }],
  });
  username.focus();
  try {
    const [full, all] = await Promise.all([call("worksheet.get", { id: sheet.id }), call("user.list")]);
    show(full.members);
    replaceChildren(
      users,
      all.filter((u) => u.username !== me.username).map((u) => h("option", { value: u.username })),
    );
  } catch (exc) {
    error.textContent = describeError(exc);
  }
  return dialog.result;
}
