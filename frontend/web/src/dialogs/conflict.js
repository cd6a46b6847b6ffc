/**
 * The edit conflict: someone else saved a cell while this user was editing it. Both versions
 * are shown side by side; the user keeps theirs (saved over the other) or takes the other.
 * The dialog cannot be dismissed without a choice, so no text is dropped silently.
 */
import { h } from "../dom.js";
import { openDialog } from "./dialog.js";

/** Resolves to "mine" or "theirs". */
export async function resolveConflict({ mine, theirs, by }) {
  const pane = (title, text, testid) =>
    h(
      "section",
      { class: "conflict-pane" },
      h("h3", {}, title),
      h("pre", { class: "conflict-text", "data-testid": testid }, text || " "),
    );
  const { result } = openDialog({
    title: "This cell was changed by someone else",
    testid: "conflict-dialog",
    wide: true,
    cancellable: false,
    body: [
      h(
        "p",
        {},
        `${by} saved a new version of this cell while you were editing it. Choose which one to keep; `,
        "the other is replaced.",
      ),
      h(
        "div",
        { class: "conflict-panes" },
        pane(`Their version (${by}, version ${theirs.version})`, theirs.source, "conflict-theirs"),
        pane("Your version", mine, "conflict-mine"),
      ),
    ],
    actions: [
      { label: "Use their version", value: "theirs", testid: "conflict-use-theirs" },
      { label: "Keep my version", value: "mine", kind: "primary", testid: "conflict-keep-mine" },
    ],
  });
  return result;
}
