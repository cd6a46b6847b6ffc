"""What the browser tests do, as a person would: open pages, type into cells, run them.

Assertions wait for what the user sees (Playwright's `expect`), never for time to pass.
Setting up data the test is not about (users, worksheets, cells) goes through the API, which
is quicker; what a test is about goes through the page.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from playwright.sync_api import Browser, BrowserContext, Locator, Page, WebSocketRoute, expect

from ..support.api import PASSWORD, ApiError

T = TypeVar("T")
COOKIE = "cellbus_session"
RUN_TIMEOUT = 30_000  # ms: a cell's run, a session start
expect.set_options(timeout=10_000)


class Api:
    """A person's synchronous JSON-RPC client (bearer token), for setting up data."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url
        self.token = token

    def call(self, method: str, **params: Any) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + "/rpc", body.encode(), headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            reply = json.load(response)
        if "error" in reply:
            error = reply["error"]
            raise ApiError(error["code"], error["message"], error.get("data"))
        return reply["result"]

    def worksheet(
        self, *sources: str | dict[str, Any], title: str = "Test sheet"
    ) -> dict[str, Any]:
        """A new worksheet holding cells with `sources`, in order: code cells, or cells given
        as the params of `cell.create` (say ``{"cell_type": "markdown", "source": "# Hi"}``)."""
        sheet: dict[str, Any] = self.call("worksheet.create", title=title)
        after = None
        for source in sources:
            params = source if isinstance(source, dict) else {"source": source}
            created = self.call("cell.create", worksheet=sheet["id"], after=after, **params)
            after = created["id"]
        return sheet

    def cells(self, worksheet: str) -> list[dict[str, Any]]:
        cells: list[dict[str, Any]] = self.call("worksheet.get", id=worksheet)["cells"]
        return cells


@dataclass
class Person:
    """Someone with an account, a browser context of their own and a page in it."""

    username: str
    url: str
    api: Api
    context: BrowserContext
    page: Page
    errors: list[str]  # uncaught errors in the page's scripts: a test fails if there are any

    def open(self, worksheet: dict[str, Any] | str) -> Page:
        """Go to a worksheet's page and wait until it shows its cells."""
        ident = worksheet if isinstance(worksheet, str) else worksheet["id"]
        self.page.goto(f"{self.url}/w/{ident}")
        expect(self.page.get_by_test_id("worksheet-page")).to_have_attribute("data-loaded", "true")
        expect(self.page.get_by_test_id("connection")).to_have_attribute("data-state", "open")
        return self.page

    def close(self) -> None:
        self.context.close()


def register(url: str, name: str, browser: Browser) -> Person:
    """A new account (through the API) and a browser context signed in with its cookie."""
    username = f"{name}-{uuid.uuid4().hex[:6]}"
    api = Api(url)
    api.call("auth.register", username=username, password=PASSWORD)
    api.token = api.call("auth.login", username=username, password=PASSWORD)["token"]
    context = new_context(browser)
    context.add_cookies([{"name": COOKIE, "value": api.token, "url": url, "httpOnly": True}])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"{error.name}: {error.message}"))
    return Person(username, url, api, context, page, errors)


def new_context(browser: Browser) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(15_000)
    return context


# -- cells ----------------------------------------------------------------------------------


def cells(page: Page) -> Locator:
    return page.get_by_test_id("cell")


def cell(page: Page, index: int) -> Locator:
    return cells(page).nth(index)


def editor(cell_: Locator) -> Locator:
    return cell_.get_by_test_id("cell-input")


def type_into(cell_: Locator, text: str, *, replace: bool = True) -> None:
    """Type `text` into a cell as a person would (key by key: the editor sees real input)."""
    box = editor(cell_)
    box.click()
    if replace:
        box.press("ControlOrMeta+a")
        box.press("Delete")
    box.press_sequentially(text)


def paste_into(cell_: Locator, text: str) -> None:
    """Put `text` in a cell at once (as pasting does), replacing what is there."""
    box = editor(cell_)
    box.click()
    box.press("ControlOrMeta+a")
    box.page.keyboard.insert_text(text)


def run(cell_: Locator, state: str = "done") -> None:
    """Run a cell with Shift+Enter and wait until it reaches `state`."""
    editor(cell_).press("Shift+Enter")
    expect(cell_).to_have_attribute("data-state", state, timeout=RUN_TIMEOUT)


def sources(page: Page) -> list[str]:
    """The text of every cell on the page, in order (short cells: CodeMirror puts only the
    lines in view into the page)."""
    texts: list[str] = editor(cells(page)).evaluate_all(
        """inputs => inputs.map(input => [...input.querySelectorAll('.cm-line')].map(line =>
             [...line.childNodes].filter(n => !n.classList?.contains('cm-placeholder'))
               .map(n => n.textContent).join('')).join('\\n'))"""
    )
    return texts


def wait_saved(page: Page) -> None:
    """Until the server has committed every edit made on `page` (its document's updates are
    acknowledged), as the worksheet's bar says."""
    expect(page.get_by_test_id("save-state")).to_have_attribute("data-state", "saved")


def rendered(cell_: Locator) -> Locator:
    """A Markdown cell's rendering."""
    return cell_.get_by_test_id("markdown-rendered")


class Hold:
    """Holds a page's WebSocket frames, both ways, while `held` (as a network that stalls
    would), and lets them through in order on `release()`: what a page does meanwhile is
    concurrent with what everyone else does. Install before the page opens its socket."""

    def __init__(self, page: Page) -> None:
        self.held = False
        self.queue: list[Callable[[], None]] = []
        page.route_web_socket("**/ws", self._route)

    def _route(self, ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        ws.on_message(lambda message: self._pass(lambda: server.send(message)))
        server.on_message(lambda message: self._pass(lambda: ws.send(message)))

    def _pass(self, send: Callable[[], None]) -> None:
        if self.held:
            self.queue.append(send)
        else:
            send()

    def hold(self) -> None:
        self.held = True

    def release(self) -> None:
        self.held = False
        for send in self.queue:
            send()
        self.queue.clear()


def eventually(check: Callable[[], T], timeout: float = 10.0) -> T:
    """Poll `check` (on the server's state, not the page's) until it returns something true.

    For what no page shows the moment it happens, such as the server saving a run's outputs
    just after the feed has shown them: polled, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{check.__doc__ or check} did not happen in {timeout} s")
        time.sleep(0.05)
    return result


def palette_run(page: Page, command: str) -> None:
    """Open the palette (Ctrl+Shift+C) and click `command` (its id)."""
    page.keyboard.press("Control+Shift+C")
    palette = page.get_by_test_id("command-palette")
    expect(palette).to_be_visible()
    palette.locator(f'[data-testid="palette-item"][data-command="{command}"]').click()
    expect(palette).to_be_hidden()
