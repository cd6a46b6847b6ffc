"""An open page across ``cellbus serve`` killed with SIGKILL and started again (issue 18).

The page says "Live" only once it follows its feeds again ("syncing" in between), the run the
kill cut off ends (``WorkerLost``) instead of staying "running", the variables are back, and a
rename, a new cell and a run after the restart show on the open page without a reload. A page
whose server no longer has what it saw (a new epoch that cannot vouch for its cursor) is
opened afresh by itself, then "Live".

These tests run their own one program (``OneProgramStack``, the in-process bus kept in the
data folder), not the package's services stack: the program is what is killed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, WebSocketRoute, expect

from cellbus_protocol import keys

from ..support.one_program import Program, started_program
from .conftest import FRONTEND
from .helpers import RUN_TIMEOUT, Person, cell, cells, editor, eventually, register, run

RECORD_CONNECTION = """el => { window.connectionStates = [];
  new MutationObserver(() => window.connectionStates.push(el.dataset.state))
    .observe(el, {attributes: true, attributeFilter: ['data-state']}); }"""


def written(program: Program, sql: str, *params: object) -> None:
    """Wait until the program has committed what `sql` (a count) finds (its log if not)."""
    try:
        eventually(lambda: program.committed(sql, *params), timeout=30)
    except AssertionError:
        log = program.stack.program.log_text()[-6000:]
        raise AssertionError(f"not committed in 30 s: {sql} {params}; its log:\n{log}") from None


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Program]:
    if not FRONTEND.is_file():
        pytest.fail("the browser app is not built: run `make frontend` (make test does)")
    with started_program(tmp_path_factory, "restart-browser") as program:
        yield program


@pytest.fixture
def ada(program: Program, browser: Browser) -> Iterator[Person]:
    someone = register(program.url, "ada", browser)
    yield someone
    someone.close()
    assert not someone.errors, f"the app's scripts failed: {someone.errors}"


def connection_states(page: Page) -> list[str]:
    states: list[str] = page.evaluate("window.connectionStates")
    return states


def test_a_killed_program_comes_back_and_the_open_page_catches_up(
    program: Program, ada: Person
) -> None:
    sheet = ada.api.worksheet("x = 41\nwords = ['kept']", "import time; time.sleep(600)")
    session = sheet["session"]
    page = ada.open(sheet)
    first, cut = cell(page, 0), cell(page, 1)
    run(first)
    # its variables are checkpointed before the next run keeps the session busy (a checkpoint
    # waits for the session to idle)
    written(program, "SELECT count(*) FROM blobs WHERE name = ?", keys.checkpoint(session))
    editor(cut).press("Shift+Enter")
    expect(cut).to_have_attribute("data-state", "running", timeout=RUN_TIMEOUT)
    # what the page has seen is written, as it is a moment later (then the kill)
    seen = ada.api.call("feed.cursor", session=session)["cursor"]
    written(program,
        "SELECT count(*) FROM feed_entries WHERE feed = ? AND seq >= ?",
        keys.feed(session), seen,
    )  # fmt: skip
    written(program, "SELECT count(*) FROM queue_pending WHERE queue = ?", keys.requests(session))
    connection = page.get_by_test_id("connection")
    connection.evaluate(RECORD_CONNECTION)
    page.evaluate("window.samePage = true")

    program.kill()
    expect(connection).to_have_attribute("data-state", "reconnecting")
    program.start()
    expect(connection).to_have_attribute("data-state", "open", timeout=RUN_TIMEOUT)
    states = connection_states(page)
    assert states[-2:] == ["syncing", "open"], states  # not "Live" before it follows again
    assert page.evaluate("window.samePage"), "the page was reloaded"
    expect(connection).to_have_text("Live")

    # the run the kill cut off ends, and says why
    expect(cut).to_have_attribute("data-state", "error", timeout=RUN_TIMEOUT)
    expect(cut.get_by_test_id("output-error")).to_have_attribute("data-ename", "WorkerLost")

    # after the restart: a rename, a new cell and a run appear on the open page
    ada.api.call("worksheet.rename", id=sheet["id"], title="Remembered")
    expect(page.get_by_test_id("worksheet-title")).to_have_text("Remembered")
    known = ada.api.cells(sheet["id"])  # (Shift+Enter on the last cell may have added one)
    expect(cells(page)).to_have_count(len(known))
    cut_id = known[1]["id"]
    made = ada.api.call(
        "cell.create", worksheet=sheet["id"], source="print(x + 1, *words)", after=cut_id
    )
    expect(cells(page)).to_have_count(len(known) + 1)
    added = page.locator(f'[data-testid="cell"][data-cell-id="{made["id"]}"]')
    ada.api.call("cell.evaluate", id=made["id"], worksheet=sheet["id"])  # run by the API
    expect(added).to_have_attribute("data-state", "done", timeout=RUN_TIMEOUT)
    expect(added.get_by_test_id("output-stdout")).to_have_text("42 kept\n")
    assert page.evaluate("window.samePage"), "the page was reloaded"


class ForgetfulServer:
    """Routes the page's feed socket; once `forget()` is called, its socket is dropped and
    every subscribe with a cursor names an epoch no server has: as a page finds a server that
    restarted and lost the messages it saw."""

    def __init__(self, page: Page) -> None:
        self.forgetting = False
        self.sockets: list[WebSocketRoute] = []
        self.resets = 0
        page.route_web_socket("**/ws", self._route)

    def _route(self, ws: WebSocketRoute) -> None:
        self.sockets.append(ws)
        server = ws.connect_to_server()
        ws.on_message(lambda message: server.send(self._outgoing(message)))
        server.on_message(lambda message: ws.send(self._incoming(message)))

    def _outgoing(self, message: str | bytes) -> str | bytes:
        if not self.forgetting or not isinstance(message, str):
            return message
        frame: dict[str, Any] = json.loads(message)
        if frame.get("op") == "subscribe" and frame.get("epoch"):
            frame["epoch"] = "a server that forgot"
            return json.dumps(frame)
        return message

    def _incoming(self, message: str | bytes) -> str | bytes:
        if isinstance(message, str) and '"reset":true' in message.replace(" ", ""):
            self.resets += 1
            self.forgetting = False  # the page opened afresh subscribes with the new epoch
        return message

    def forget(self) -> None:
        self.forgetting = True
        self.sockets[-1].close()


def test_a_page_whose_server_lost_what_it_saw_opens_afresh(program: Program, ada: Person) -> None:
    forgetful = ForgetfulServer(ada.page)
    sheet = ada.api.worksheet("y = 6 * 7", "print(y)")
    page = ada.open(sheet)
    run(cell(page, 0))
    connection = page.get_by_test_id("connection")
    connection.evaluate(RECORD_CONNECTION)

    forgetful.forget()
    expect(connection).to_have_attribute("data-state", "open", timeout=RUN_TIMEOUT)
    assert forgetful.resets == 1
    states = connection_states(page)
    assert "syncing" in states and states[-1] == "open", states
    expect(page.get_by_test_id("worksheet-page")).to_have_attribute("data-loaded", "true")
    # what it shows was read afresh, and it follows the feed again
    ada.api.call("worksheet.rename", id=sheet["id"], title="Opened afresh")
    expect(page.get_by_test_id("worksheet-title")).to_have_text("Opened afresh")
    run(cell(page, 1))
    expect(cell(page, 1).get_by_test_id("output-stdout")).to_have_text("42\n")
