"""The feed survives its web process restarting mid-run: the page says it is disconnected,
reconnects by itself, resumes from its cursor, and shows every line once; typing through the
restart loses no keystroke."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import expect

from ..support.stack import ServicesStack
from .helpers import RUN_TIMEOUT, Person, cell, editor, wait_saved

PHASES = """import os, time
def wait(gate):
    while not os.path.exists(gate):
        time.sleep(0.02)
for i in range(100):
    print(i, flush=True)
wait({first!r})
for i in range(100, 200):
    print(i, flush=True)
    time.sleep(0.01)
wait({second!r})
for i in range(200, 300):
    print(i, flush=True)"""

RECORD_CONNECTION = """el => { window.connectionStates = [];
  new MutationObserver(() => window.connectionStates.push(el.dataset.state))
    .observe(el, {attributes: true, attributeFilter: ['data-state']}); }"""


def test_a_web_restart_mid_run_loses_and_repeats_nothing(
    stack: ServicesStack, person: Callable[..., Person], tmp_path: Path
) -> None:
    ada = person("ada", web=0)
    first, second = tmp_path / "first", tmp_path / "second"
    page = ada.open(ada.api.worksheet(PHASES.format(first=str(first), second=str(second))))
    running = cell(page, 0)
    connection = page.get_by_test_id("connection")
    connection.evaluate(RECORD_CONNECTION)
    editor(running).press("Shift+Enter")
    stdout = running.get_by_test_id("output-stdout")
    expect(stdout).to_contain_text("\n99\n", timeout=RUN_TIMEOUT)

    first.touch()  # lines 100-199 come out over a second or two, while...
    stack.restart_web(0)  # ...the page's web process stops (SIGTERM) and starts again
    expect(connection).to_have_attribute("data-state", "open", timeout=RUN_TIMEOUT)
    expect(connection).to_have_attribute("data-drops", "1")
    assert "reconnecting" in page.evaluate("window.connectionStates")
    expect(running).to_have_attribute("data-state", "running")  # still mid-run
    second.touch()
    expect(running).to_have_attribute("data-state", "done", timeout=RUN_TIMEOUT)
    expect(stdout).to_have_text("".join(f"{i}\n" for i in range(300)))
    expect(running.get_by_test_id("cell-count")).to_have_text("[1]")


def test_a_page_opened_mid_run_shows_the_run_so_far_once_then_the_rest(
    person: Callable[..., Person], tmp_path: Path
) -> None:
    ada, bob = person("ada", web=0), person("bob", web=1)
    gate = tmp_path / "gate"
    code = (
        "import os, time\nfor i in range(50):\n    print(i, flush=True)\n"
        f"while not os.path.exists({str(gate)!r}):\n    time.sleep(0.02)\nprint('after')"
    )
    sheet = ada.api.worksheet(code)
    ada.api.call("worksheet.share", id=sheet["id"], username=bob.username, role="viewer")
    page = ada.open(sheet)
    editor(cell(page, 0)).press("Shift+Enter")
    expect(cell(page, 0).get_by_test_id("output-stdout")).to_contain_text("\n49\n")

    late = bob.open(sheet)  # opens while the cell runs: saved outputs and the feed overlap
    watched = cell(late, 0)
    expect(watched).to_have_attribute("data-state", "running")
    expect(watched.get_by_test_id("cell-run-by")).to_have_text(f"run by {ada.username}")
    stdout = watched.get_by_test_id("output-stdout")
    expect(stdout).to_have_text("".join(f"{i}\n" for i in range(50)))
    gate.touch()
    expect(watched).to_have_attribute("data-state", "done")
    expect(stdout).to_have_text("".join(f"{i}\n" for i in range(50)) + "after\n")
    expect(watched.get_by_test_id("output-stdout")).to_have_count(1)


def test_typing_through_a_web_restart_loses_no_keystroke(
    stack: ServicesStack, person: Callable[..., Person]
) -> None:
    ada, bob = person("ada", web=0), person("bob", web=1)
    sheet = ada.api.worksheet("")
    ada.api.call("worksheet.share", id=sheet["id"], username=bob.username, role="editor")
    page, theirs = ada.open(sheet), bob.open(sheet)
    connection = page.get_by_test_id("connection")
    box = editor(cell(page, 0))
    box.click()
    box.press_sequentially("before = 1\n")
    stack.restart_web(0)  # ada's web process stops and starts again...
    box.press_sequentially("during = 2\n")  # ...while she goes on typing
    expect(connection).to_have_attribute("data-state", "open", timeout=RUN_TIMEOUT)
    expect(connection).to_have_attribute("data-drops", "1")
    box.press_sequentially("after = 3")
    wait_saved(page)  # every edit acknowledged, those made while away too
    lines = ["before = 1", "during = 2", "after = 3"]
    expect(cell(theirs, 0).locator(".cm-line")).to_have_text(lines)
    assert ada.api.cells(sheet["id"])[0]["source"] == "\n".join(lines)
    page.reload()  # what the server has
    expect(cell(page, 0).locator(".cm-line")).to_have_text(lines)
