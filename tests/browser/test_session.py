"""The session: run all, the queue, interrupt, restart, a dead process, and completion and
docstrings from the live namespace."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page, expect

from .helpers import RUN_TIMEOUT, Person, cell, editor, run, sources, type_into

RECORD_STATES = """el => { window.sessionStates = [];
  new MutationObserver(() => window.sessionStates.push(el.dataset.state))
    .observe(el, {attributes: true, attributeFilter: ['data-state']}); }"""


def session_states(page: Page) -> list[str]:
    states: list[str] = page.evaluate("window.sessionStates")
    return states


def test_run_all_queue_interrupt_and_restart(person: Callable[..., Person]) -> None:
    ada = person("ada")
    page = ada.open(ada.api.worksheet(
        "a = 20", "b = a + 1", "print(a + b)",
        "import time\nprint('sleeping', flush=True)\ntime.sleep(60)", "print('never')",
    ))  # fmt: skip
    session = page.get_by_test_id("session-state")
    session.evaluate(RECORD_STATES)
    page.get_by_test_id("run-all").click()
    expect(cell(page, 3).get_by_test_id("output-stdout")).to_have_text(
        "sleeping\n", timeout=RUN_TIMEOUT
    )
    for i, count in enumerate(["[1]", "[2]", "[3]"]):
        expect(cell(page, i)).to_have_attribute("data-state", "done")
        expect(cell(page, i).get_by_test_id("cell-count")).to_have_text(count)
    expect(cell(page, 2).get_by_test_id("output-stdout")).to_have_text("41\n")
    expect(cell(page, 3)).to_have_attribute("data-state", "running")
    expect(cell(page, 4)).to_have_attribute("data-state", "queued")
    expect(page.get_by_test_id("session-queue")).to_have_text("1 waiting")
    expect(session).to_have_attribute("data-state", "busy")

    page.get_by_test_id("interrupt").click()
    expect(cell(page, 3)).to_have_attribute("data-state", "error")
    expect(cell(page, 3).get_by_test_id("output-error")).to_have_attribute(
        "data-ename", "KeyboardInterrupt"
    )
    expect(cell(page, 4)).to_have_attribute("data-state", "aborted")  # the queue behind it
    expect(cell(page, 4).get_by_test_id("output")).to_have_count(0)
    expect(page.get_by_test_id("session-queue")).to_have_text("")
    expect(session).to_have_attribute("data-state", "idle")

    page.get_by_test_id("restart").click()
    page.get_by_test_id("confirm-ok").click()
    expect(session).to_have_attribute("data-state", "idle")
    type_into(cell(page, 4), "print(a)")
    run(cell(page, 4), "error")
    expect(cell(page, 4).get_by_test_id("output-error")).to_have_attribute(
        "data-ename", "NameError"
    )
    expect(cell(page, 4).get_by_test_id("cell-count")).to_have_text("[1]")  # counts start over
    assert "restarting" in session_states(page)

    # Its process dies: the bar says so, and why (a session_state on the feed).
    type_into(cell(page, 4), "import os; os._exit(3)")
    run(cell(page, 4), "error")
    expect(session).to_have_attribute("data-state", "dead")
    expect(session).to_have_text("dead")
    expect(session).to_have_attribute("title", "The session process exited with code 3.")


def test_tab_completes_from_the_session_and_shift_tab_shows_the_docstring(
    person: Callable[..., Person],
) -> None:
    ada = person("ada")
    page = ada.open(ada.api.worksheet("import math", ""))
    run(cell(page, 0))
    second = cell(page, 1)
    type_into(second, "math.fl")
    editor(second).press("Tab")  # one match: it is inserted
    expect(editor(second)).to_have_text("math.floor")

    editor(second).press("Enter")
    editor(second).press_sequentially("math.co")
    editor(second).press("Tab")  # several: they are listed
    options = page.locator(".cm-tooltip-autocomplete li")
    expect(options.filter(has_text="cosh")).to_have_count(1)
    expect(options.filter(has_text="copysign")).to_have_count(1)
    options.filter(has_text="cosh").click()
    assert sources(page)[1] == "math.floor\nmath.cosh"

    editor(second).press("ArrowUp")
    editor(second).press("End")
    editor(second).press("Shift+Tab")
    inspector = second.get_by_test_id("cell-inspector")
    expect(inspector).to_contain_text("Return the floor of x")
    editor(second).press("Escape")
    expect(inspector).to_be_hidden()

    editor(second).press("Home")
    editor(second).press("Tab")  # at the start of a line Tab indents
    assert sources(page)[1] == "    math.floor\nmath.cosh"
