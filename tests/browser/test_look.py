"""The look: the light and dark themes, their contrast, and a phone-sized window.

The theme follows the browser's preference (`prefers-color-scheme`, emulated here) unless
someone chooses one in the header; the choice is remembered and is on the page from its first
frame (index.html's blocking theme.js: the app's own module runs later). Every text on the
main screens meets WCAG AA contrast in both themes, as axe-core measures it (injected into
the page: these contexts bypass the app's CSP, which allows no script but the app's). At
375 px wide nothing sticks out of the window, the worksheet's title is readable and every
control can be reached. Each screen is saved in each theme as artifacts/screenshots/look-*.png
(a few of them, cropped, are docs/screenshots/, in the README).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect

from ..support.api import PASSWORD
from ..support.stack import ServicesStack
from .helpers import COOKIE, RUN_TIMEOUT, Api, cell, cells

Theme = Literal["light", "dark"]
THEMES: list[Theme] = ["light", "dark"]
AXE = Path(__file__).resolve().parents[2] / "frontend/web/node_modules/axe-core/axe.min.js"
BACKGROUND = {"light": "rgb(245, 246, 248)", "dark": "rgb(20, 23, 31)"}  # base.css's --bg
TEXT = {"light": "rgb(29, 35, 48)", "dark": "rgb(228, 231, 238)"}  # --text
KEYWORD = {"light": "rgb(138, 31, 168)", "dark": "rgb(214, 160, 255)"}  # --code-keyword
APP_JS = re.compile(r"/assets/app\.js")
DESKTOP = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=375, height=740)

WORKSHEET: tuple[str | dict[str, str], ...] = (
    {
        "cell_type": "markdown",
        "source": "## Orbits\nPeriods of the inner planets, from *Kepler's third law*: "
        "$T^2 \\propto a^3$, so\n$$T = a^{3/2}\\ \\text{years}$$",
    },
    "AU = {'Mercury': 0.387, 'Venus': 0.723, 'Earth': 1.0, 'Mars': 1.524}\n"
    "# a in astronomical units, T in years\n"
    "years = {name: a ** 1.5 for name, a in AU.items()}\n"
    "for name, t in years.items():\n    print(f'{name:8} {t:6.3f} years')",
    "from IPython.display import Markdown\n"
    "Markdown(f\"Mars takes **{years['Mars'] / years['Earth']:.2f}** Earth years\")",
    "round(sum(years.values()), 3)",
)
LONG_LINE = "note = 'a line of code longer than a phone is wide, which scrolls in its editor'"
CSV = "planet,a,T\nMercury,0.387,0.241\nVenus,0.723,0.615\nEarth,1.0,1.0\nMars,1.524,1.881\n"

# The first frame's theme and background, as the page is about to paint it: an init script
# runs before the page's own scripts, and animation frames wait for its render-blocking CSS.
FIRST_FRAME = """
window.firstFrame = new Promise((resolve) => requestAnimationFrame(() => resolve({
  theme: document.documentElement.getAttribute('data-theme'),
  background: getComputedStyle(document.documentElement).backgroundColor,
})));
"""

# axe-core's contrast rule over the page (output frames are sandboxed documents of their own)
CONTRAST = """async () => {
  const result = await axe.run(document, {
    runOnly: {type: 'rule', values: ['color-contrast']},
    iframes: false,
    resultTypes: ['violations'],
  });
  return result.violations.flatMap((rule) => rule.nodes.map((node) =>
    `${node.target.join(' ')}: ${node.any.map((check) => check.message).join('; ')}`));
}"""

# What sticks out of the window on the right. A part inside a scrolling or clipping box
# (an editor's long line, a wide table in its frame) counts only as far as the box shows it.
STICKING_OUT = """() => {
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (!el.getClientRects().length || getComputedStyle(el).visibility === 'hidden') continue;
    const box = el.getBoundingClientRect();
    if (!box.width || !box.height) continue;
    let right = box.right;
    for (let up = el.parentElement; up; up = up.parentElement) {
      if (getComputedStyle(up).overflowX !== 'visible') {
        right = Math.min(right, up.getBoundingClientRect().right);
      }
    }
    if (right > innerWidth + 0.5) {
      out.push(`${el.tagName.toLowerCase()}.${[...el.classList].join('.')}`
        + `[${el.dataset.testid ?? ''}] to ${Math.round(right)} px`);
    }
  }
  return out;
}"""

# Pairs of the shown elements matching `selectors` whose boxes overlap.
OVERLAPS = """(selectors) => {
  const boxes = [];
  for (const selector of selectors) {
    for (const el of document.querySelectorAll(selector)) {
      const box = el.getBoundingClientRect();
      if (el.getClientRects().length && box.width && box.height) boxes.push([selector, box]);
    }
  }
  const pairs = [];
  boxes.forEach(([a, p], i) => boxes.slice(i + 1).forEach(([b, q]) => {
    const apart = p.right <= q.left + 0.5 || q.right <= p.left + 0.5
      || p.bottom <= q.top + 0.5 || q.bottom <= p.top + 0.5;
    if (!apart) pairs.push(`${a} and ${b}`);
  }));
  return pairs;
}"""
HEADER_ITEMS = [".brand", '[data-testid="connection"]', '[data-testid="header-menu-button"]']
SHEET_BAR_ITEMS = [
    '[data-testid="worksheet-title"]', '[data-testid="rename-worksheet"]',
    '[data-testid="my-role"]', ".sheet-status > span:first-child", '[data-testid="session-state"]',
    '[data-testid="session-queue"]', '[data-testid="save-state"]',
    '[data-testid="presence-user"]', ".sheet-tools > button",
]  # fmt: skip
CELL_TOOLS = ["cell-type", "cell-run", "cell-move-up", "cell-insert-below", "cell-delete"]
TOOLS = ["run-all", "interrupt", "restart", "add-cell", "share", "export", "files-toggle"]


@dataclass
class Visitor:
    """A browser context of its own (a theme preference, a window size), signed in or not."""

    url: str
    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)
    api: Api = field(init=False)
    username: str = ""

    def sign_in(self, name: str) -> Api:
        """A new account (through the API), signed in by its cookie in this context."""
        self.username = f"{name}-{uuid.uuid4().hex[:6]}"
        self.api = Api(self.url)
        self.api.call("auth.register", username=self.username, password=PASSWORD)
        login = self.api.call("auth.login", username=self.username, password=PASSWORD)
        self.api.token = login["token"]
        self.context.add_cookies(
            [{"name": COOKIE, "value": login["token"], "url": self.url, "httpOnly": True}]
        )
        return self.api

    def style(self, selector: str, prop: str) -> str:
        value: str = self.page.locator(selector).first.evaluate(
            "(el, prop) => getComputedStyle(el)[prop]", prop
        )
        return value


@pytest.fixture
def visitor(stack: ServicesStack, browser: Browser) -> Iterator[Callable[..., Visitor]]:
    """Makes visitors: ``visitor("dark", PHONE)`` prefers dark colours on a phone-sized window."""
    made: list[Visitor] = []

    def make(theme: Theme = "light", viewport: ViewportSize = DESKTOP) -> Visitor:
        context = browser.new_context(viewport=viewport, color_scheme=theme, bypass_csp=True)
        context.set_default_timeout(15_000)
        someone = Visitor(stack.urls[0], context, context.new_page())
        someone.page.on("pageerror", lambda error: someone.errors.append(str(error)))
        made.append(someone)
        return someone

    yield make
    for someone in made:
        someone.context.close()
    errors = [error for someone in made for error in someone.errors]
    assert not errors, f"the app's scripts failed: {errors}"


def first_frame(theme: Theme) -> dict[str, str]:
    """What FIRST_FRAME sees when `theme` was chosen."""
    return {"theme": theme, "background": BACKGROUND[theme]}


def contrast_failures(page: Page) -> list[str]:
    """Every text on the page below WCAG AA contrast, as axe-core sees it."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.add_script_tag(path=AXE)
    failures: list[str] = page.evaluate(CONTRAST)
    return failures


def check_screen(page: Page, theme: Theme, name: str, screenshots: Path) -> None:
    """The screen in `theme`, with readable text everywhere; saved as look-<name>-<theme>.png."""
    page.mouse.move(1, 1)  # nothing hovered
    page.evaluate("document.activeElement?.blur()")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == BACKGROUND[theme]
    assert contrast_failures(page) == [], f"{name} in the {theme} theme"
    page.screenshot(path=screenshots / f"look-{name}-{theme}.png")


def fits(page: Page) -> None:
    """Nothing to the right of a phone's window, and no sideways scrolling."""
    assert page.evaluate(STICKING_OUT) == []
    assert page.evaluate("document.scrollingElement.scrollWidth") <= PHONE["width"]


def across(page: Page, testid: str) -> None:
    """The first `testid` lies across the window's width, from 0 to 375 px (a control the
    page may need scrolling down to, never sideways)."""
    box = page.get_by_test_id(testid).first.bounding_box()
    assert box is not None and box["width"] > 0, testid
    assert 0 <= box["x"] and box["x"] + box["width"] <= PHONE["width"], (testid, box)


def run_all(page: Page) -> None:
    page.get_by_test_id("run-all").click()
    last = cells(page).last
    expect(last).to_have_attribute("data-state", "done", timeout=RUN_TIMEOUT)


def open_worksheet(page: Page, url: str, sheet: dict[str, Any]) -> None:
    page.goto(f"{url}/w/{sheet['id']}")
    expect(page.get_by_test_id("worksheet-page")).to_have_attribute("data-loaded", "true")
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")


def test_dark_mode_follows_the_browser_preference(visitor: Callable[..., Visitor]) -> None:
    someone = visitor("dark")
    page = someone.page
    page.goto(someone.url + "/")
    expect(page.get_by_test_id("login-page")).to_be_visible()
    assert page.evaluate("document.documentElement.hasAttribute('data-theme')") is False
    assert someone.style("body", "backgroundColor") == BACKGROUND["dark"]
    assert someone.style("body", "color") == TEXT["dark"]
    assert someone.style("html", "colorScheme") == "dark"  # the browser's own controls too

    page.emulate_media(color_scheme="light")  # the system changes: the page follows at once
    assert someone.style("body", "backgroundColor") == BACKGROUND["light"]
    assert someone.style("html", "colorScheme") == "light"

    page.emulate_media(color_scheme="dark")
    ada = someone.sign_in("ada")
    sheet = ada.worksheet("import math\nfor k in range(3):\n    print(math.tau * k)")
    open_worksheet(page, someone.url, sheet)
    cell(page, 0).click()  # its CodeMirror editor, highlighted in the theme's colours
    keyword = cell(page, 0).locator(".cm-line span", has_text="import").first
    expect(keyword).to_be_visible()
    assert keyword.evaluate("el => getComputedStyle(el).color") == KEYWORD["dark"]
    page.emulate_media(color_scheme="light")
    assert keyword.evaluate("el => getComputedStyle(el).color") == KEYWORD["light"]


def test_the_theme_chosen_in_the_header_is_remembered_from_the_first_frame(
    visitor: Callable[..., Visitor],
) -> None:
    someone = visitor("light")
    someone.sign_in("ada")
    page = someone.page
    page.add_init_script(FIRST_FRAME)
    page.goto(someone.url + "/")
    expect(page.get_by_test_id("worksheets-page")).to_be_visible()
    choice = page.get_by_test_id("theme-select")
    expect(choice).to_have_value("system")
    assert someone.style("body", "backgroundColor") == BACKGROUND["light"]
    other_tab = someone.context.new_page()
    other_tab.goto(someone.url + "/")
    expect(other_tab.get_by_test_id("worksheets-page")).to_be_visible()

    choice.select_option("dark")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    assert someone.style("body", "backgroundColor") == BACKGROUND["dark"]
    assert someone.style("html", "colorScheme") == "dark"
    assert page.evaluate("localStorage.getItem('cellbus.theme')") == "dark"
    expect(other_tab.locator("html")).to_have_attribute("data-theme", "dark")  # it follows
    expect(other_tab.get_by_test_id("theme-select")).to_have_value("dark")
    other_tab.close()

    page.reload()  # remembered, and dark from the first frame: no light flash
    assert page.evaluate("window.firstFrame") == first_frame("dark")
    expect(page.get_by_test_id("worksheets-page")).to_be_visible()
    expect(choice).to_have_value("dark")

    # Set by index.html's theme script, not by the app: without the app, the page is dark too
    page.route(APP_JS, lambda route: route.abort())
    page.reload()
    assert page.evaluate("window.firstFrame") == first_frame("dark")
    assert page.get_by_test_id("worksheets-page").count() == 0  # the app did not run
    page.unroute(APP_JS)

    page.reload()
    choice.select_option("system")  # forgets the choice: the system's theme, light here
    expect(page.locator("html")).not_to_have_attribute("data-theme", "dark")
    assert page.evaluate("document.documentElement.hasAttribute('data-theme')") is False
    assert page.evaluate("localStorage.getItem('cellbus.theme')") is None
    assert someone.style("body", "backgroundColor") == BACKGROUND["light"]

    page.emulate_media(color_scheme="dark")  # the system's theme, now dark
    assert someone.style("body", "backgroundColor") == BACKGROUND["dark"]
    choice.select_option("light")  # chosen: light on a dark system
    assert someone.style("body", "backgroundColor") == BACKGROUND["light"]
    page.reload()
    assert page.evaluate("window.firstFrame") == first_frame("light")
    expect(choice).to_have_value("light")


@pytest.mark.parametrize("theme", THEMES)
def test_the_main_screens_are_readable_in_both_themes(
    visitor: Callable[..., Visitor], screenshots: Path, theme: Theme
) -> None:
    someone = visitor(theme)
    page = someone.page
    page.goto(someone.url + "/")
    expect(page.get_by_test_id("login-page")).to_be_visible()
    check_screen(page, theme, "login", screenshots)
    page.get_by_test_id("login-switch").click()  # the form to create an account, and its hint
    page.get_by_test_id("login-username").fill("x")
    page.get_by_test_id("login-password").fill("a passphrase long enough")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("login-error")).not_to_be_empty()
    check_screen(page, theme, "register", screenshots)

    ada = someone.sign_in("ada")
    sheet = ada.worksheet(*WORKSHEET, title="Kepler's third law")
    ada.call("files.write", worksheet=sheet["id"], path="data/planets.csv", text=CSV)
    ada.call("files.write", worksheet=sheet["id"], path="notes.md", text="# Notes\n")
    bob = Api(someone.url)  # someone else's worksheet, shared with ada: another role's badge
    bob_name = f"bob-{uuid.uuid4().hex[:6]}"
    bob.call("auth.register", username=bob_name, password=PASSWORD)
    bob.token = bob.call("auth.login", username=bob_name, password=PASSWORD)["token"]
    shared = bob.worksheet("1 + 1", title="Shared with ada")
    bob.call("worksheet.share", id=shared["id"], username=someone.username, role="viewer")
    page.goto(someone.url + "/")
    expect(page.get_by_test_id("worksheet-row")).to_have_count(2)
    check_screen(page, theme, "worksheet-list", screenshots)
    row = page.get_by_test_id("worksheet-row").filter(has_text="Kepler")
    row.get_by_test_id("share-worksheet").click()  # a dialog
    expect(page.get_by_test_id("share-members")).to_contain_text(someone.username)
    check_screen(page, theme, "share", screenshots)
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("share-dialog")).to_have_count(0)

    open_worksheet(page, someone.url, sheet)
    run_all(page)
    expect(page.get_by_test_id("markdown-rendered").locator(".katex").first).to_be_visible()
    expect(cell(page, 2).get_by_test_id("output-markdown")).to_contain_text("Earth years")
    check_screen(page, theme, "worksheet", screenshots)

    page.get_by_test_id("files-toggle").click()
    panel = page.get_by_test_id("files-panel")
    expect(panel.get_by_test_id("file-entry")).to_have_count(2)  # data/ and notes.md
    check_screen(page, theme, "files", screenshots)


@pytest.mark.parametrize("theme", THEMES)
def test_a_phone_sized_window(
    visitor: Callable[..., Visitor], screenshots: Path, theme: Theme
) -> None:
    someone = visitor(theme, PHONE)
    page = someone.page
    page.goto(someone.url + "/")
    expect(page.get_by_test_id("login-page")).to_be_visible()
    fits(page)
    page.screenshot(path=screenshots / f"look-phone-login-{theme}.png")

    ada = someone.sign_in("ada")
    title = "Orbital periods of the inner planets, measured and computed"
    sheet = ada.worksheet(*WORKSHEET, LONG_LINE, title=title)
    ada.worksheet("1 + 1", title="A second worksheet")
    ada.call("files.write", worksheet=sheet["id"], path="data/planets.csv", text=CSV)
    page.goto(someone.url + "/")
    expect(page.get_by_test_id("worksheet-row")).to_have_count(2)
    expect(page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
    fits(page)
    assert page.evaluate(OVERLAPS, HEADER_ITEMS) == []
    for testid in ["rename-worksheet", "share-worksheet", "export-worksheet", "delete-worksheet"]:
        across(page, testid)
    page.screenshot(path=screenshots / f"look-phone-worksheet-list-{theme}.png")

    # The theme and the user's box are in the header's menu
    expect(page.get_by_test_id("logout")).to_be_hidden()
    page.get_by_test_id("header-menu-button").click()
    for testid in ["theme-select", "user-name", "logout"]:
        expect(page.get_by_test_id(testid)).to_be_in_viewport()
    fits(page)
    page.screenshot(path=screenshots / f"look-phone-menu-{theme}.png")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("logout")).to_be_hidden()
    expect(page.get_by_test_id("header-menu-button")).to_be_focused()

    page.get_by_test_id("worksheet-link").filter(has_text=title).click()
    expect(page.get_by_test_id("worksheet-page")).to_have_attribute("data-loaded", "true")
    run_all(page)
    expect(cell(page, 2).get_by_test_id("output-markdown")).to_contain_text("Earth years")
    page.evaluate("document.activeElement?.blur(); window.scrollTo(0, 0)")
    heading = page.get_by_test_id("worksheet-title")
    expect(heading).to_have_text(title)
    box = heading.bounding_box()
    assert box is not None and box["width"] > 100 and box["x"] >= 0
    fits(page)
    assert page.evaluate(OVERLAPS, HEADER_ITEMS + SHEET_BAR_ITEMS) == []
    for testid in TOOLS + CELL_TOOLS:
        across(page, testid)
    page.screenshot(path=screenshots / f"look-phone-worksheet-{theme}.png")

    page.get_by_test_id("files-toggle").click()
    panel = page.get_by_test_id("files-panel")
    expect(panel.get_by_test_id("file-entry")).to_have_count(1)  # data/
    panel_box = panel.bounding_box()
    assert panel_box is not None and panel_box["x"] >= 0
    fits(page)
    page.screenshot(path=screenshots / f"look-phone-files-{theme}.png")
