"""The browser workloads (issue 15): two people typing into one notebook, and opening a
notebook of 1,000 cells, on cellbus and on JupyterLab with jupyter-collaboration.

Both run in Debian's Chromium (``/usr/bin/chromium``), driven by Playwright's async API: one
browser process for both systems, each person a browser context of their own (separate
cookies, as on two computers). What is timed is timed in the pages, with the pages' own
clocks (`CLOCK_OFFSET` says how two pages' clocks are put on one).

A `Side` is a system as its users meet it in the browser: `CellbusSide` (``cellbus serve``'s
app, two registered users sharing a worksheet) and `JupyterLabSide` (``jupyter lab`` with a
token: each browser context that logs in with it is given an anonymous identity of its own,
so the two people are two users to jupyter-collaboration too).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

from playwright.async_api import (
    Browser,
    BrowserContext,
    CDPSession,
    Page,
    ViewportSize,
    async_playwright,
)

from . import measure
from .jupyter import JupyterLabSystem
from .systems import PASSWORD, ROOT, CellbusClient, CellbusSystem

CHROMIUM = "/usr/bin/chromium"
# Chromium's own background traffic is refused by this machine's closed network (as in
# tests/browser/conftest.py).
CHROMIUM_ARGS = [
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-quic", "--disable-features=Translate,MediaRouter",
]  # fmt: skip
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}
OPEN_TIMEOUT = 120_000  # ms: a page to show a notebook
TYPED_BASE = "# typed: "  # the cell's text before the first keystroke (a comment: no brackets)
ALPHABET = "abcdefghijklmnopqrstuvwxyz "


APP = ROOT / "frontend" / "web" / "dist" / "assets" / "app.js"


def app_build() -> dict[str, str]:
    """Which build of cellbus's browser app the pages ran (``make frontend`` builds it from
    the working tree, which the commit alone does not name)."""
    try:
        data = APP.read_bytes()
    except OSError:
        return {"app.js": "missing"}
    built = datetime.datetime.fromtimestamp(APP.stat().st_mtime, datetime.UTC)
    return {
        "app.js_sha256": hashlib.sha256(data).hexdigest()[:16],
        "app.js_built_at": built.isoformat(timespec="seconds"),
    }


def cell_sources(n: int) -> list[str]:
    """The sources of an `n`-cell notebook: one short line each, every one different."""
    return [f"x{i} = {i} * 2" for i in range(n)]


def notebook(sources: list[str]) -> dict[str, Any]:
    """An nbformat 4.5 notebook of code cells holding `sources`, for Python 3."""
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "cells": [
            {
                "cell_type": "code",
                "id": f"cell-{i}",
                "metadata": {},
                "source": source,
                "outputs": [],
                "execution_count": None,
            }
            for i, source in enumerate(sources)
        ],
    }


def typed_text(n: int, start: int = 0) -> str:
    """`n` characters to type: letters and spaces, nothing an editor completes or closes."""
    return "".join(ALPHABET[(start + i) % len(ALPHABET)] for i in range(n))


# -- what runs in the pages ----------------------------------------------------------------

# The text of a CodeMirror 6 editor (its `.cm-content`) as the person reads it: its lines'
# text, without widgets (a placeholder, another person's cursor and name), which CodeMirror
# marks contenteditable=false.
TEXT_OF = """
const benchTextOf = (content) => {
  const lines = [];
  for (const line of content.querySelectorAll(".cm-line")) {
    let text = "";
    const walker = document.createTreeWalker(line, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const owner = node.parentElement.closest("[contenteditable]");
      if (owner === content || owner === null) text += node.data;
    }
    lines.push(text);
  }
  return lines.join("\\n");
};
"""

# The offset of this page's clock (timeOrigin + now, in ms since the epoch, from the
# monotonic clock of its own renderer process) from Date.now() (the system's wall clock,
# the same in every process, in whole ms): sampled just after Date.now() ticks, the least of
# 20 ticks. Two pages' times minus their offsets are on one clock to about 0.1 ms.
CLOCK_OFFSET = """() => {
  const offsets = [];
  let last = Date.now();
  while (offsets.length < 20) {
    const wall = Date.now();
    const now = performance.timeOrigin + performance.now();
    if (wall !== last) { offsets.push(now - wall); last = wall; }
  }
  return Math.min(...offsets);
}"""

# The sender: the time of every key's keydown, as the page first sees it (capture phase).
SEND = """() => {
  window.__benchSent = [];
  if (!window.__benchSending) {
    window.__benchSending = true;
    window.addEventListener("keydown", (event) => {
      const now = performance.timeOrigin + performance.now();
      if (event.key.length === 1) window.__benchSent.push(now);
    }, true);
  }
}"""

# The receiver: on every change of the page's DOM, the text of the first editor of
# `selector`; each time it has changed, [time, length].
RECEIVE = (
    """(selector) => {"""
    + TEXT_OF
    + """
  const read = () => {
    const content = document.querySelector(selector);
    return content ? benchTextOf(content) : "";
  };
  window.__benchObserver?.disconnect();
  const seen = window.__benchSeen = [];
  let last = read();
  window.__benchObserver = new MutationObserver(() => {
    const now = performance.timeOrigin + performance.now();
    const text = read();
    if (text !== last) { last = text; seen.push([now, text.length]); }
  });
  window.__benchObserver.observe(
    document.body, {subtree: true, childList: true, characterData: true});
  return last;
}"""
)

# Every page's WebSockets: when the page sent each frame, and when each frame reached the
# page's scripts (a listener added before the app's own), for the keystrokes' breakdown.
WEBSOCKETS = """(() => {
  if (window.top !== window) return;
  window.__benchWsSent = [];
  window.__benchWsReceived = [];
  const now = () => performance.timeOrigin + performance.now();
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    window.__benchWsSent.push(now());
    return send.call(this, data);
  };
  window.WebSocket = class extends WebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", () => window.__benchWsReceived.push(now()));
    }
  };
})();"""
RESET_WEBSOCKETS = "() => { window.__benchWsSent = []; window.__benchWsReceived = []; }"

FIRST_TEXT = "(selector) => {" + TEXT_OF + "return benchTextOf(document.querySelector(selector));}"
ALL_TEXTS = (
    "(selector) => {"
    + TEXT_OF
    + "return [...document.querySelectorAll(selector)].map(benchTextOf);}"
)


def open_watch(selector: str, sources: list[str]) -> str:
    """An init script: from the page's start, at every animation frame, whether the page has
    the first cell's editor with its text, and all `len(sources)` editors with the last one's;
    the first frame of each, in ms since the navigation started (``window.__benchOpen``).
    Also every long task of the page (a task of the main thread over 50 ms: the page does
    not answer the person meanwhile), as [start, duration]."""
    spec = json.dumps({"selector": selector, "count": len(sources), "first": sources[0],
                       "last": sources[-1]})  # fmt: skip
    return (
        "(spec => { if (window.top !== window) return;"
        + TEXT_OF
        + """
  const state = window.__benchOpen = {first: null, all: null, longTasks: []};
  new PerformanceObserver((list) => {
    for (const task of list.getEntries()) state.longTasks.push([task.startTime, task.duration]);
  }).observe({type: "longtask", buffered: true});
  const check = () => {
    const editors = document.querySelectorAll(spec.selector);
    const now = performance.now();
    if (state.first === null && editors.length > 0 && benchTextOf(editors[0]) === spec.first) {
      state.first = now;
    }
    if (editors.length === spec.count && benchTextOf(editors[spec.count - 1]) === spec.last
        && benchTextOf(editors[0]) === spec.first) {
      state.all = now;
      return;
    }
    requestAnimationFrame(check);
  };
  requestAnimationFrame(check);
})("""
        + spec
        + ");"
    )


# -- the systems in the browser ------------------------------------------------------------


class Side(Protocol):
    """A system as two people in Chromium use it."""

    name: str
    editors: str  # a CSS selector for every cell's editor (`.cm-content`) of a notebook page
    people: list[BrowserContext]  # two, signed in

    async def setup(self, browser: Browser) -> None:
        """Two people, each with a browser context signed in as themselves."""

    async def shared_notebook(self, sources: list[str]) -> str:
        """A new notebook holding `sources`, which both people may edit; its handle."""

    async def new_notebook(self, sources: list[str]) -> str:
        """A new notebook holding `sources`, that nobody has open; its handle."""

    def url(self, handle: str) -> str:
        """Where a notebook's page is (a new one for every page where it matters)."""

    async def opened(self, page: Page) -> None:
        """Wait until a page opened at `url` shows its notebook and is connected."""

    async def after_open(self) -> None:
        """Clear up after a notebook was opened (untimed)."""

    def server_pids(self) -> list[int]:
        """The server's processes that relay an edit (not its kernels)."""

    async def close(self) -> None: ...


async def new_context(browser: Browser) -> BrowserContext:
    context = await browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(30_000)
    return context


class CellbusSide:
    """cellbus's browser app, served by the bench's ``cellbus serve``: two users registered
    through the API, each context with its session cookie; a notebook is a worksheet made
    with ``worksheet.import`` and shared with the second user as an editor."""

    name = "cellbus"
    editors = '[data-testid="cell"] [data-testid="cell-input"]'
    cookie = "cellbus_session"

    def __init__(self, system: CellbusSystem) -> None:
        assert system.client is not None, "cellbus is not started"
        self.system = system
        self.base = system.client.url
        self.clients: list[CellbusClient] = []
        self.usernames: list[str] = []
        self.people: list[BrowserContext] = []

    async def setup(self, browser: Browser) -> None:
        for _ in range(2):
            client = CellbusClient(self.base)
            username = f"bench-{uuid.uuid4().hex[:8]}"
            await client.call("auth.register", username=username, password=PASSWORD)
            login = await client.call("auth.login", username=username, password=PASSWORD)
            client.token = login["token"]
            context = await new_context(browser)
            await context.add_cookies(
                [{"name": self.cookie, "value": client.token, "url": self.base, "httpOnly": True}]
            )
            self.clients.append(client)
            self.usernames.append(username)
            self.people.append(context)

    async def new_notebook(self, sources: list[str]) -> str:
        sheet = await self.clients[0].call(
            "worksheet.import", notebook=notebook(sources), title="bench"
        )
        ident: str = sheet["id"]
        return ident

    async def shared_notebook(self, sources: list[str]) -> str:
        ident = await self.new_notebook(sources)
        await self.clients[0].call(
            "worksheet.share", id=ident, username=self.usernames[1], role="editor"
        )
        return ident

    def url(self, handle: str) -> str:
        return f"{self.base}/w/{handle}"

    async def opened(self, page: Page) -> None:
        await page.wait_for_selector(
            '[data-testid="worksheet-page"][data-loaded="true"]', timeout=OPEN_TIMEOUT
        )
        await page.wait_for_selector('[data-testid="connection"][data-state="open"]')

    async def after_open(self) -> None:
        pass

    def server_pids(self) -> list[int]:
        return [self.system.process.pid] if self.system.process is not None else []

    async def close(self) -> None:
        for context in self.people:
            await context.close()
        for client in self.clients:
            await client.close()


class JupyterLabSide:
    """JupyterLab with jupyter-collaboration: each context logs in with the token (and gets
    an anonymous identity of its own); a notebook is a file in the server's root, opened at
    ``/lab/workspaces/<new>/tree/<file>``. Opening a notebook starts its kernel (JupyterLab
    does, for a notebook with a kernelspec): `after_open` shuts them down."""

    editors = ".jp-Notebook .jp-Cell .jp-InputArea-editor .cm-content"

    def __init__(self, system: JupyterLabSystem) -> None:
        self.name = system.name
        self.system = system
        self.people: list[BrowserContext] = []
        self.identities: list[str] = []

    async def setup(self, browser: Browser) -> None:
        for _ in range(2):
            context = await new_context(browser)
            page = await context.new_page()
            await page.goto(f"{self.system.url}/api/me?token={self.system.token}")
            await page.close()
            response = await context.request.get(f"{self.system.url}/api/me")  # the cookie
            me = await response.json()
            self.identities.append(me["identity"]["username"])
            self.people.append(context)

    async def new_notebook(self, sources: list[str]) -> str:
        name = f"bench-{uuid.uuid4().hex[:8]}.ipynb"
        await asyncio.to_thread(self.system.write_notebook, name, notebook(sources))
        return name

    async def shared_notebook(self, sources: list[str]) -> str:
        return await self.new_notebook(sources)

    def url(self, handle: str) -> str:
        return self.system.page_url(handle)

    async def opened(self, page: Page) -> None:
        await page.wait_for_selector(self.editors, timeout=OPEN_TIMEOUT)

    async def after_open(self) -> None:
        await self.system.shutdown_kernels()

    def server_pids(self) -> list[int]:
        return [self.system.process.pid] if self.system.process is not None else []

    async def close(self) -> None:
        for context in self.people:
            await context.close()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(f"no {CHROMIUM} (`make browser` installs it)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


# -- the two measurements ------------------------------------------------------------------


class Typing:
    """Two people with one notebook open, its first cell holding `TYPED_BASE`: the first
    types into that cell, the second's page watches it."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self.typed = 0
        self.sender: Page | None = None
        self.receiver: Page | None = None
        self.devtools: list[CDPSession] = []  # each page's, for its main thread's busy time

    async def open(self) -> None:
        handle = await self.side.shared_notebook([TYPED_BASE])
        pages = []
        for context in self.side.people:
            page = await context.new_page()
            await page.add_init_script(WEBSOCKETS)
            await page.goto(self.side.url(handle))
            await self.side.opened(page)
            pages.append(page)
        self.sender, self.receiver = pages
        for page in pages:
            session = await page.context.new_cdp_session(page)
            await session.send("Performance.enable")
            self.devtools.append(session)
        first = self.side.editors
        for page in pages:
            await page.wait_for_function(
                "([selector, text]) => {" + TEXT_OF + "const e = document.querySelector(selector);"
                " return e !== null && benchTextOf(e) === text; }",
                arg=[first, TYPED_BASE],
                timeout=OPEN_TIMEOUT,
            )
        await self.sender.evaluate(SEND)

    async def type(self, n: int, interval: float, settle_timeout: float = 60.0) -> dict[str, Any]:
        """Type `n` characters at the end of the cell, one every `interval` seconds; the
        latency of each (seconds), from its keydown in the sender's page to the first change
        of the receiver's editor that shows it."""
        sender, receiver = self.sender, self.receiver
        assert sender is not None and receiver is not None
        editors = self.side.editors
        before = await receiver.evaluate(RECEIVE, editors)
        mine = await sender.evaluate(FIRST_TEXT, editors)
        if before != mine:
            raise RuntimeError(f"the two pages differ before typing: {mine!r} / {before!r}")
        offsets = [await page.evaluate(CLOCK_OFFSET) for page in (sender, receiver)]
        await sender.evaluate(SEND)
        for page in (sender, receiver):
            await page.evaluate(RESET_WEBSOCKETS)
        busy = [await self.busy(session) for session in self.devtools]
        server_cpu = measure.cpu_seconds(self.side.server_pids())
        await sender.locator(editors).first.click()
        await sender.keyboard.press("End")
        text = typed_text(n, self.typed)
        started = time.perf_counter()
        for i, char in enumerate(text):
            await sender.keyboard.type(char)
            delay = started + (i + 1) * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        self.typed += n
        expected = before + text
        try:
            await receiver.wait_for_function(
                f"(selector) => {{ {TEXT_OF} return benchTextOf(document.querySelector(selector))"
                f".length >= {len(expected)}; }}",
                arg=editors,
                polling=50,
                timeout=settle_timeout * 1000,
            )
        except Exception:
            now = await receiver.evaluate(FIRST_TEXT, editors)
            raise RuntimeError(
                f"{self.side.name}: the other page did not get the keystrokes in "
                f"{settle_timeout:.0f} s: it shows {now!r}, not {expected!r}"
            ) from None
        server_cpu = measure.cpu_seconds(self.side.server_pids()) - server_cpu
        busy = [
            await self.busy(session) - b for session, b in zip(self.devtools, busy, strict=True)
        ]
        sent: list[float] = await sender.evaluate("window.__benchSent")
        seen: list[list[float]] = await receiver.evaluate("window.__benchSeen")
        shown = await receiver.evaluate(FIRST_TEXT, editors)
        if len(sent) != n or shown != expected:
            raise RuntimeError(
                f"{self.side.name}: {len(sent)} keydowns of {n}; the other page shows "
                f"{shown!r}, not {expected!r}"
            )
        ws_sent: list[float] = await sender.evaluate("window.__benchWsSent")
        ws_received: list[float] = await receiver.evaluate("window.__benchWsReceived")
        latencies = []
        parts: dict[str, list[float]] = {"typist": [], "between": [], "watcher": []}
        for k, at in enumerate(sent, start=1):
            length = len(before) + k
            arrived = next(t for t, shown_length in seen if shown_length >= length)
            latency = (arrived - offsets[1]) - (at - offsets[0])
            latencies.append(latency / 1000)
            out = next((t for t in ws_sent if t >= at), None)
            into = next((t for t in reversed(ws_received) if t <= arrived), None)
            if out is not None and into is not None:
                typist, watcher = out - at, arrived - into
                parts["typist"].append(typist / 1000)
                parts["watcher"].append(watcher / 1000)
                parts["between"].append((latency - typist - watcher) / 1000)
        return {
            "latencies": latencies,
            "parts": parts,
            "updates": len(seen),
            "clock_skew_ms": offsets[1] - offsets[0],
            "cpu_s": {"server": server_cpu, "typist_page": busy[0], "watcher_page": busy[1]},
            "typing_s": time.perf_counter() - started,
        }

    @staticmethod
    async def busy(session: CDPSession) -> float:
        """The seconds the page's main thread has spent running tasks (DevTools'
        ``TaskDuration``): its scripts, style, layout and paint."""
        metrics = (await session.send("Performance.getMetrics"))["metrics"]
        return float(next(m["value"] for m in metrics if m["name"] == "TaskDuration"))

    async def close(self) -> None:
        for page in (self.sender, self.receiver):
            if page is not None:
                await page.close()


QUIET_MS = 1000  # the page has settled: no long task for this long after the last cell shows
SETTLED = f"""() => {{
  const s = window.__benchOpen;
  if (!s || s.all === null) return false;
  const end = Math.max(s.all, ...s.longTasks.map(([start, duration]) => start + duration));
  return performance.now() - end > {QUIET_MS};
}}"""


async def open_notebook(side: Side, sources: list[str]) -> dict[str, float]:
    """A new page opening a notebook of `sources` that nobody has open (made untimed before):
    the ms from the navigation's start until the page shows the first cell, until it has
    every cell's editor with its source, and until its main thread is free after that (the
    end of its last long task, when none came for `QUIET_MS`). Checked afterwards: every
    cell's text."""
    handle = await side.new_notebook(sources)
    page = await side.people[0].new_page()
    try:
        await page.add_init_script(open_watch(side.editors, sources))
        await page.goto(side.url(handle), wait_until="commit")
        await page.wait_for_function(SETTLED, polling=100, timeout=OPEN_TIMEOUT)
        state = await page.evaluate("window.__benchOpen")
        texts = await page.evaluate(ALL_TEXTS, side.editors)
        if texts != sources:
            wrong = [i for i, (a, b) in enumerate(zip(texts, sources, strict=False)) if a != b]
            raise RuntimeError(
                f"{side.name}: {len(texts)} cells shown of {len(sources)}; cells that show "
                f"another text: {wrong[:10]}"
            )
    finally:
        await page.close()
        await side.after_open()
    ends = [start + duration for start, duration in state["longTasks"]]
    return {
        "first_cell_ms": float(state["first"]),
        "all_cells_ms": float(state["all"]),
        "settled_ms": max([float(state["all"]), *ends]),
        "long_tasks_ms": sum(duration for _, duration in state["longTasks"]),
    }
