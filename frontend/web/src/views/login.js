/**
 * The login page, shown to anyone not signed in, whatever the URL: logging in, or creating an
 * account (which then logs in). After it the app carries on to the page that was asked for,
 * so a worksheet link sent to a collaborator works even if they had to sign in first.
 */
import { call, describeError } from "../api.js";
import { h } from "../dom.js";

export class LoginPage {
  constructor({ onSignedIn }) {
    this.onSignedIn = onSignedIn;
    this.mode = "login";
    this.username = h("input", {
      name: "username",
      autocomplete: "username",
      required: true,
      "data-testid": "login-username",
    });
    this.password = h("input", {
      name: "password",
      type: "password",
      autocomplete: "current-password",
      required: true,
      minlength: 8,
      "data-testid": "login-password",
    });
    this.error = h("p", { class: "form-error", role: "alert", "data-testid": "login-error" });
    this.submit = h("button", { type: "submit", class: "button-primary", "data-testid": "login-submit" });
    this.switcher = h("button", {
      type: "button",
      class: "link-button",
      "data-testid": "login-switch",
      onclick: () => this.setMode(this.mode === "login" ? "register" : "login"),
    });
    this.title = h("h1", {});
    this.hint = h("p", { class: "muted" });
    const form = h(
      "form",
      { class: "login-form", onsubmit: (e) => this.send(e) },
      this.title,
      h("label", {}, "Username", this.username),
      h("label", {}, "Password", this.password),
      this.hint,
      this.error,
      this.submit,
      h("p", { class: "login-switch" }, this.switcher),
    );
    this.el = h(
      "main",
      { class: "login-page", "data-testid": "login-page" },
      h("div", { class: "login-brand" }, h("span", { class: "brand-mark" }, "◆"), " cellbus"),
      h("p", { class: "login-tagline" }, "Python worksheets that several people edit and run together."),
      form,
    );
    this.setMode("login");
  }

  setMode(mode) {
    this.mode = mode;
    const login = mode === "login";
    this.title.textContent = login ? "Log in" : "Create an account";
    this.submit.textContent = login ? "Log in" : "Create account";
    this.switcher.textContent = login ? "No account yet? Create one" : "Have an account? Log in";
    this.hint.textContent = login
      ? ""
      : "2 to 32 letters, digits, '.', '_' or '-'; a password of at least 8 characters, " +
        "not your username and not a common one.";
    this.password.autocomplete = login ? "current-password" : "new-password";
    this.error.textContent = "";
    this.el.dataset.mode = mode;
  }

  async send(event) {
    event.preventDefault();
    const username = this.username.value.trim();
    const password = this.password.value;
    this.error.textContent = "";
    this.submit.disabled = true;
    try {
      if (this.mode === "register") await call("auth.register", { username, password });
      const result = await call("auth.login", { username, password, label: "browser" });
      this.onSignedIn(result.user);
    } catch (error) {
      this.error.textContent = describeError(error);
    } finally {
      this.submit.disabled = false;
    }
  }

  focus() {
    this.username.focus();
  }

  destroy() {}
}
