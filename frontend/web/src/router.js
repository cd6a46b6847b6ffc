/**
 * The app's URLs: `/` (the worksheet list, or the login page) and `/w/<worksheet id>` (one
 * worksheet, so it can be bookmarked and sent to a collaborator). The server serves the same
 * index.html at both; the app reads `location.pathname` and draws the page.
 */

/** What `path` shows: {name: "list"} or {name: "worksheet", id}. */
export function parseRoute(path) {
  const match = /^\/w\/([^/]+)\/?$/.exec(path);
  if (match) return { name: "worksheet", id: decodeURIComponent(match[1]) };
  return { name: "list" };
}

export function worksheetPath(id) {
  return `/w/${encodeURIComponent(id)}`;
}

/**
 * Follow in-app links without reloading: clicks on `<a data-link>` call `navigate(path)`;
 * the browser's back and forward buttons call `onRoute()`.
 */
export function installRouter(navigate, onRoute) {
  document.addEventListener("click", (event) => {
    const link = event.target.closest?.("a[data-link]");
    if (!link || event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return; // new tab
    event.preventDefault();
    navigate(link.getAttribute("href"));
  });
  window.addEventListener("popstate", () => onRoute());
}
