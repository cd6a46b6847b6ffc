/**
 * `application/json` outputs (IPython's `JSON`) as a tree whose objects and arrays collapse
 * and expand, by mouse or keyboard (the WAI-ARIA tree pattern):
 *   ↓ ↑          the next, previous visible node      Home End   the first, last
 *   →            expand; on an expanded node, its first child
 *   ←            collapse; on a collapsed or leaf node, its parent
 *   Enter Space  expand or collapse
 * One node is in the tab order at a time (roving tabindex).
 *
 * The root is expanded and the rest collapsed, unless the output's metadata says
 * `{"expanded": true}` (IPython's `JSON(..., expanded=True)`), which expands everything; its
 * `root` names the root (IPython's default "root"). A node's children are built when it is
 * first expanded, CHUNK at a time (a "more" node adds the next ones), so a JSON of a million
 * items costs what is shown. Values are text nodes: nothing of the data is ever HTML.
 */
import { h } from "../dom.js";

const CHUNK = 200;

/** The tree of `value` (any JSON); `metadata`: the output's metadata for application/json. */
export function jsonTree(value, metadata = {}) {
  const tree = h("ul", {
    class: "json-tree",
    role: "tree",
    "aria-label": "JSON",
    "data-testid": "output-json",
  });
  const expandAll = Boolean(metadata?.expanded);
  const rootName = typeof metadata?.root === "string" ? metadata.root : "root";
  const root = node(rootName, value, { expandAll, isRoot: true });
  root.tabIndex = 0;
  tree.append(root);
  if (isContainer(value)) setExpanded(root, true, expandAll);
  tree.addEventListener("keydown", (event) => onKey(tree, event));
  tree.addEventListener("click", (event) => onClick(tree, event));
  return tree;
}

function isContainer(value) {
  return value !== null && typeof value === "object";
}

function entriesOf(value) {
  return Array.isArray(value) ? value.map((item, index) => [index, item]) : Object.entries(value);
}

/** One node: its line (toggle, key, value or summary) and, for a container, its group. */
function node(key, value, { expandAll = false, isRoot = false, inArray = false } = {}) {
  const container = isContainer(value);
  const keyText = isRoot || inArray ? String(key) : JSON.stringify(String(key));
  const line = h(
    "span",
    { class: "json-line" },
    h("span", { class: "json-toggle", "aria-hidden": "true" }, container ? "▸" : ""),
    h("span", { class: isRoot || inArray ? "json-key json-index" : "json-key" }, keyText),
    ": ",
    container ? h("span", { class: "json-summary" }, summary(value)) : primitive(value),
  );
  const item = h(
    "li",
    {
      class: "json-node",
      role: "treeitem",
      tabindex: "-1",
      "data-testid": "json-node",
      dataset: { key: keyText },
    },
    line,
  );
  if (container) {
    item.setAttribute("aria-expanded", "false");
    item.jsonValue = value;
    item.jsonExpandAll = expandAll;
    if (expandAll) setExpanded(item, true, true);
  }
  return item;
}

function summary(value) {
  const count = Array.isArray(value) ? value.length : Object.keys(value).length;
  if (Array.isArray(value)) return `[…] ${count} ${count === 1 ? "item" : "items"}`;
  return `{…} ${count} ${count === 1 ? "key" : "keys"}`;
}

function primitive(value) {
  if (typeof value === "string") return h("span", { class: "json-string" }, JSON.stringify(value));
  if (typeof value === "number") return h("span", { class: "json-number" }, String(value));
  if (typeof value === "boolean") return h("span", { class: "json-boolean" }, String(value));
  if (value === null) return h("span", { class: "json-null" }, "null");
  return h("span", { class: "json-null" }, String(value)); // not JSON (undefined): as text
}

/** Expand or collapse the container node `item` (its children built the first time). */
function setExpanded(item, expanded, expandAll = false) {
  if (!item.hasAttribute("aria-expanded")) return;
  item.setAttribute("aria-expanded", String(expanded));
  item.querySelector(":scope > .json-line > .json-toggle").textContent = expanded ? "▾" : "▸";
  let group = item.querySelector(":scope > [role='group']");
  if (expanded && !group) {
    group = h("ul", { role: "group" });
    item.append(group);
    addChildren(group, entriesOf(item.jsonValue), Array.isArray(item.jsonValue), 0, expandAll);
  }
  if (group) group.hidden = !expanded;
}

function addChildren(group, entries, inArray, from, expandAll) {
  const to = Math.min(entries.length, from + CHUNK);
  for (let i = from; i < to; i++) {
    const [key, value] = entries[i];
    group.append(node(key, value, { inArray, expandAll }));
  }
  if (to < entries.length) {
    const more = h(
      "li",
      { class: "json-node json-more-item", role: "treeitem", tabindex: "-1", "data-testid": "json-more" },
      h("span", { class: "json-line json-summary" }, `… ${entries.length - to} more`),
    );
    more.jsonMore = () => {
      more.remove();
      addChildren(group, entries, inArray, to, expandAll);
    };
    group.append(more);
  }
}

function visibleNodes(tree) {
  return [...tree.querySelectorAll("[role='treeitem']")].filter(
    (item) => !item.parentElement.closest("[role='group'][hidden]"),
  );
}

function focusNode(tree, item) {
  if (!item) return;
  for (const other of tree.querySelectorAll("[role='treeitem'][tabindex='0']")) other.tabIndex = -1;
  item.tabIndex = 0;
  item.focus();
}

function activate(tree, item) {
  if (item.jsonMore) {
    const previous = item.previousElementSibling;
    item.jsonMore();
    focusNode(tree, previous?.nextElementSibling ?? previous);
  } else if (item.hasAttribute("aria-expanded")) {
    setExpanded(item, item.getAttribute("aria-expanded") !== "true");
  }
}

function onClick(tree, event) {
  const item = event.target.closest("[role='treeitem']");
  if (!item || !tree.contains(item)) return;
  if (window.getSelection()?.toString()) return; // selecting text to copy, not toggling
  activate(tree, item);
  focusNode(tree, item);
}

function onKey(tree, event) {
  const item = event.target.closest("[role='treeitem']");
  if (!item || event.altKey || event.ctrlKey || event.metaKey) return;
  const nodes = visibleNodes(tree);
  const index = nodes.indexOf(item);
  const expanded = item.getAttribute("aria-expanded");
  const parent = item.parentElement.closest("[role='treeitem']");
  switch (event.key) {
    case "ArrowDown":
      focusNode(tree, nodes[index + 1]);
      break;
    case "ArrowUp":
      focusNode(tree, nodes[index - 1]);
      break;
    case "Home":
      focusNode(tree, nodes[0]);
      break;
    case "End":
      focusNode(tree, nodes.at(-1));
      break;
    case "ArrowRight":
      if (expanded === "false") setExpanded(item, true);
      else if (expanded === "true")
        focusNode(tree, item.querySelector(":scope > [role='group'] > [role='treeitem']"));
      break;
    case "ArrowLeft":
      if (expanded === "true") setExpanded(item, false);
      else if (parent && tree.contains(parent)) focusNode(tree, parent);
      break;
    case "Enter":
    case " ":
      activate(tree, item);
      break;
    default:
      return;
  }
  event.preventDefault();
  event.stopPropagation(); // the page's command-mode keys must not see these
}
