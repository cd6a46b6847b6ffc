/**
 * The app shell: who is signed in, the header, the feed connection, and which page shows.
 *
 * On start the app asks the server who the user is (`auth.whoami`, by the session cookie);
 * without a user every URL shows the login page, and after logging in the app carries on to
 * the URL that was asked for. A signed-in page holds one `FeedConnection` for all its
 * subscriptions, and the header shows its state: "Live", or "Disconnected, reconnecting"
 * while the socket is down (it comes back by itself). The header also holds the theme's choice
 * (theme.js) and, on a narrow screen, puts it and the user's box in a menu (the ☰ button).
 */
import { call, describeError, onUnauthenticated } from "./api.js";
import { h } from "./dom.js";
import { FeedConnection } from "./feed.js";
import { installRouter, parseRoute } from "./router.js";
import { THEMES, chooseTheme, onThemeStored, storedTheme } from "./theme.js";
import { toast } from "./toast.js";
import { LoginPage } from "./views/login.js";
import { WorksheetsPage } from "./views/worksheets.js";
import { WorksheetPage } from "./worksheet/page.js";

const CONNECTION_LABELS = {
  connecting: "Connecting…",
  syncing: "Catching up…", // back, following the feeds again (feed.js); then "Live"
  open: "Live",
  reconnecting: "Disconnected · reconnecting…",
  closed: "Offline",
};

export class App {
  constructor(root) {
    this.root = root;
    this.user = null;
    this.feed = null;
    this.page = null;
    this.sessions = new Map(); // worksheet id -> session, from the list: saves a read on opening
    this.connection = h("span", {
      class: "connection",
      "data-testid": "connection",
      hidden: true,
      role: "status",
      "aria-live": "polite",
    });
    this.userName = h("span", { class: "user-name", "data-testid": "user-name" });
    this.logoutButton = h(
      "button",
      { type: "button", class: "button-quiet", "data-testid": "logout", onclick: () => this.logout() },
      "Log out",
    );
    this.userBox = h("div", { class: "user-box", hidden: true }, this.userName, this.logoutButton);
    this.themeSelect = h(
      "select",
      {
        class: "theme-select",
        "aria-label": "Theme",
        title: "Theme",
        "data-testid": "theme-select",
        onchange: () => chooseTheme(this.themeSelect.value),
      },
      Object.entries(THEMES).map(([value, label]) => h("option", { value }, label)),
    );
    this.themeSelect.value = storedTheme();
    onThemeStored((theme) => (this.themeSelect.value = theme)); // chosen in another tab
    // On a narrow screen (styles/shell.css) the menu is a panel under the ☰ button
    this.menu = h(
      "div",
      { class: "header-menu", id: "header-menu", "data-testid": "header-menu" },
      this.themeSelect,
      this.userBox,
    );
    this.menuButton = h(
      "button",
      {
        type: "button",
        class: "header-menu-button",
        "aria-label": "Menu",
        "aria-controls": "header-menu",
        "aria-expanded": "false",
        title: "Menu",
        "data-testid": "header-menu-button",
        onclick: () => this.openMenu(this.menuButton.getAttribute("aria-expanded") !== "true"),
      },
      "☰",
    );
    this.header = h(
      "header",
      { class: "app-header" },
      h(
        "a",
        { href: "/", "data-link": true, class: "brand", "data-testid": "home" },
        h("span", { class: "brand-mark" }, "◆"),
        " cellbus",
      ),
      h("div", { class: "header-right" }, this.connection, this.menuButton, this.menu),
    );
    document.addEventListener("click", (event) => {
      if (!this.menuButton.contains(event.target) && !this.menu.contains(event.target)) this.openMenu(false);
    });
    this.header.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || !this.header.classList.contains("header-menu-open")) return;
      this.openMenu(false);
      this.menuButton.focus();
    });
    this.content = h("div", { class: "app-content" });
    root.replaceChildren(this.header, this.content);
  }

  async start() {
    installRouter(
      (path) => this.navigate(path),
      () => this.route(),
    );
    onUnauthenticated(() => this.signedOut());
    try {
      this.user = await call("auth.whoami");
    } catch {
      this.user = null; // not signed in (or the server is away: the login page says so)
    }
    if (this.user) this.signedIn(this.user);
    this.route();
  }

  /** Open or close the header's menu (a narrow screen's; on a wide one it is always shown). */
  openMenu(open) {
    this.header.classList.toggle("header-menu-open", open);
    this.menuButton.setAttribute("aria-expanded", String(open));
  }

  navigate(path) {
    if (path !== location.pathname) history.pushState({}, "", path);
    this.route();
  }

  route() {
    this.openMenu(false);
    this.page?.destroy();
    let page;
    if (!this.user) {
      page = new LoginPage({
        onSignedIn: (user) => {
          this.signedIn(user);
          this.route();
        },
      });
      document.title = "Log in · cellbus";
    } else {
      const route = parseRoute(location.pathname);
      if (route.name === "worksheet") {
        page = new WorksheetPage({
          id: route.id,
          user: this.user,
          feed: this.feed,
          session: this.sessions.get(route.id),
        });
      } else {
        page = new WorksheetsPage({
          user: this.user,
          navigate: (path) => this.navigate(path),
          sessions: this.sessions,
        });
        document.title = "Worksheets · cellbus";
      }
    }
    this.page = page;
    this.content.replaceChildren(page.el);
    page.focus();
  }

  signedIn(user) {
    this.user = user;
    this.userName.textContent = user.username;
    this.userBox.hidden = false;
    this.feed?.close();
    this.feed = new FeedConnection({
      onState: (state, info) => this.showConnection(state, info),
      onRevoked: () => this.signedOut(),
      // a restarted server lost what the page shows (docs/protocol.md, "Epochs"): open it afresh
      onReset: () => this.route(),
    });
  }

  async logout() {
    try {
      await call("auth.logout");
    } catch (error) {
      toast(describeError(error), "error");
      return;
    }
    this.signedOut();
  }

  /** The user is signed out (here, in another tab, or their session expired). */
  signedOut() {
    if (!this.user) return;
    this.user = null;
    this.feed?.close();
    this.feed = null;
    this.userBox.hidden = true;
    this.connection.hidden = true;
    this.route();
  }

  showConnection(state, { drops = 0 } = {}) {
    this.connection.hidden = state === "closed";
    this.connection.textContent = CONNECTION_LABELS[state] ?? state;
    this.connection.dataset.state = state;
    this.connection.dataset.drops = String(drops);
    this.connection.title = drops
      ? `The connection dropped ${drops} time(s) and came back; nothing was lost.`
      : "";
  }
}
