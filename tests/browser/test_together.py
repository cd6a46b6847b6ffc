"""Several people on one worksheet, each in a browser context of their own (and on different
web processes): live edits, runs and presence; edit conflicts; viewers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, Request, Route, expect

from .helpers import RUN_TIMEOUT, Person, cell, cells, editor, run, sources, type_into, wait_saved

GATED = """import os, time
print("working", flush=True)
while not os.path.exists({gate!r}):
    time.sleep(0.02)
print("finished")"""


def rpc_methods(page: Page) -> list[str]:
    """The JSON-RPC methods `page` calls from now on (a batch's each), as they are sent."""
    methods: list[str] = []

    def seen(request: Request) -> None:
        if request.url.endswith("/rpc") and request.post_data:
            body = json.loads(request.post_data)
            methods.extend(call["method"] for call in (body if isinstance(body, list) else [body]))

    page.on("request", seen)
    return methods


def presence(page: Page) -> list[str]:
    users: list[str] = page.get_by_test_id("presence-user").evaluate_all(
        "users => users.map(u => u.dataset.username)"
    )
    return users


def test_two_people_see_each_others_edits_runs_and_presence_live(
    person: Callable[..., Person], tmp_path: Path, screenshots: Path
) -> None:
    ada, bob = person("ada", web=0), person("bob", web=1)
    gate = tmp_path / "gate"
    sheet = ada.api.worksheet("x = 1", GATED.format(gate=str(gate)))
    ada.api.call("worksheet.share", id=sheet["id"], username=bob.username, role="editor")
    mine, theirs = ada.open(sheet), bob.open(sheet)
    asked = rpc_methods(mine)  # what ada's page asks the server from here on
    both = sorted([ada.username, bob.username])
    expect(mine.get_by_test_id("presence-user")).to_have_count(2)
    assert presence(mine) == both
    expect(theirs.get_by_test_id("presence-user")).to_have_count(2)

    cell(mine, 0).get_by_test_id("cell-insert-below").click()  # ada adds a cell...
    expect(cells(theirs)).to_have_count(3)  # ...bob sees it at once
    expect(editor(cell(mine, 1))).to_be_focused()
    mine.keyboard.type("print(x + 1)")
    expect(editor(cell(theirs, 1))).to_have_text("print(x + 1)")  # and what she types
    type_into(cell(theirs, 0), "x = 41")  # bob edits the first cell
    expect(editor(cell(mine, 0))).to_have_text("x = 41")
    wait_saved(cell(theirs, 0))

    run(cell(mine, 0))  # ada runs it; bob sees the run
    expect(cell(theirs, 0)).to_have_attribute("data-state", "done")
    expect(cell(theirs, 0).get_by_test_id("cell-run-by")).to_have_text(f"run by {ada.username}")
    run(cell(theirs, 1))  # bob runs the next; ada sees its output
    expect(cell(mine, 1).get_by_test_id("output-stdout")).to_have_text("42\n")
    expect(cell(mine, 1).get_by_test_id("cell-run-by")).to_have_text(f"run by {bob.username}")
    expect(cell(mine, 1).get_by_test_id("cell-count")).to_have_text("[2]")

    editor(cell(mine, 2)).press("Shift+Enter")  # output streams to bob while it runs
    expect(cell(theirs, 2).get_by_test_id("output-stdout")).to_have_text(
        "working\n", timeout=RUN_TIMEOUT
    )
    expect(cell(theirs, 2)).to_have_attribute("data-state", "running")
    expect(theirs.get_by_test_id("session-state")).to_have_attribute("data-state", "busy")
    cell(theirs, 0).get_by_test_id("cell-run").click()  # bob queues a run behind it...
    expect(cell(mine, 0)).to_have_attribute("data-state", "queued")  # ...and ada sees the queue
    expect(cell(mine, 0).get_by_test_id("cell-run-by")).to_have_text(f"run by {bob.username}")
    expect(mine.get_by_test_id("session-queue")).to_have_text("1 waiting")
    mine.set_viewport_size({"width": 1280, "height": 720})
    mine.screenshot(path=screenshots / "two-people.png")
    # Who ran what, the queue and the outputs all came on the feed: ada's page neither read
    # the worksheet again nor asked the session.
    assert "worksheet.get" not in asked and "session.info" not in asked, asked
    ada.open(sheet)  # opened now, the page reads the queue once and shows the same
    expect(cell(mine, 2)).to_have_attribute("data-state", "running")
    expect(cell(mine, 2).get_by_test_id("output-stdout")).to_have_text("working\n")
    expect(cell(mine, 0)).to_have_attribute("data-state", "queued")
    expect(cell(mine, 0).get_by_test_id("cell-run-by")).to_have_text(f"run by {bob.username}")
    expect(mine.get_by_test_id("session-queue")).to_have_text("1 waiting")
    gate.touch()
    expect(cell(mine, 0)).to_have_attribute("data-state", "done")
    expect(cell(mine, 0).get_by_test_id("cell-count")).to_have_text("[4]")
    expect(mine.get_by_test_id("session-queue")).to_have_text("")
    expect(cell(theirs, 2).get_by_test_id("output-stdout")).to_have_text("working\nfinished\n")
    expect(cell(theirs, 2)).to_have_attribute("data-state", "done")

    cell(mine, 1).get_by_test_id("cell-move-up").click()  # ada moves a cell; bob sees it move
    expect(editor(cell(theirs, 0))).to_have_text("print(x + 1)")
    assert sources(theirs)[:2] == ["print(x + 1)", "x = 41"]
    cell(theirs, 1).get_by_test_id("cell-delete").click()  # bob deletes one; ada sees it go
    expect(cells(mine)).to_have_count(2)
    assert sources(mine) == sources(theirs)

    bob.page.goto(bob.url + "/")  # bob leaves the worksheet
    expect(mine.get_by_test_id("presence-user")).to_have_count(1)
    assert presence(mine) == [ada.username]


def hold_cell_updates(page: Page) -> list[Route]:
    """Hold this page's `cell.update` calls (as a slow network would) until released."""
    held: list[Route] = []

    def route(request: Route) -> None:
        if '"cell.update"' in (request.request.post_data or ""):
            held.append(request)
        else:
            request.continue_()

    page.route("**/rpc", route)
    return held


def test_an_edit_conflict_shows_both_versions_and_applies_the_choice(
    person: Callable[..., Person], screenshots: Path
) -> None:
    ada, bob = person("ada", web=0), person("bob", web=1)
    sheet = ada.api.worksheet("value = 1")
    ada.api.call("worksheet.share", id=sheet["id"], username=bob.username, role="editor")
    mine, theirs = ada.open(sheet), bob.open(sheet)

    for choice in ("keep", "use"):
        held = hold_cell_updates(theirs)
        type_into(cell(theirs, 0), f"value = 'bob {choice}'")  # bob's save is slow to arrive...
        expect(cell(theirs, 0).get_by_test_id("cell-save-state")).to_have_attribute(
            "data-state", "saving"
        )
        type_into(cell(mine, 0), f"value = 'ada {choice}'")  # ...ada saves first
        wait_saved(cell(mine, 0))
        # bob's page does not overwrite his unsaved text with hers
        expect(editor(cell(theirs, 0))).to_have_text(f"value = 'bob {choice}'")
        held[0].continue_()  # bob's save arrives, on a stale version
        theirs.unroute("**/rpc")
        dialog = theirs.get_by_test_id("conflict-dialog")
        expect(dialog).to_be_visible()
        expect(dialog.get_by_test_id("conflict-theirs")).to_have_text(f"value = 'ada {choice}'")
        expect(dialog.get_by_test_id("conflict-mine")).to_have_text(f"value = 'bob {choice}'")
        expect(dialog).to_contain_text(ada.username)
        if choice == "keep":
            theirs.screenshot(path=screenshots / "conflict.png")
            theirs.keyboard.press("Escape")  # no way out but a choice
            expect(dialog).to_be_visible()
            dialog.get_by_test_id("conflict-keep-mine").click()
            winner = "value = 'bob keep'"
        else:
            dialog.get_by_test_id("conflict-use-theirs").click()
            winner = "value = 'ada use'"
        expect(dialog).to_be_hidden()
        wait_saved(cell(theirs, 0))
        expect(editor(cell(theirs, 0))).to_have_text(winner)
        expect(editor(cell(mine, 0))).to_have_text(winner)
        assert ada.api.cells(sheet["id"])[0]["source"] == winner


def test_a_viewer_watches_live_but_cannot_edit_or_run(
    person: Callable[..., Person], screenshots: Path
) -> None:
    ada, carol = person("ada"), person("carol", web=1)
    sheet = ada.api.worksheet("print('from ada')", "z = 3")
    ada.api.call("worksheet.share", id=sheet["id"], username=carol.username, role="viewer")
    mine, theirs = ada.open(sheet), carol.open(sheet)

    expect(theirs.get_by_test_id("worksheet-banner")).to_contain_text("viewer")
    expect(theirs.get_by_test_id("my-role")).to_have_text("viewer")
    for control in ("run-all", "interrupt", "restart", "add-cell", "share", "rename-worksheet"):
        button = theirs.get_by_test_id(control)
        expect(button).to_be_disabled()
        expect(button).to_have_attribute("title", re.compile("viewer"))
    expect(theirs.get_by_test_id("export")).to_be_enabled()  # a viewer may take a copy
    first = cell(theirs, 0)
    for control in ("cell-run", "cell-delete", "cell-move-down", "cell-insert-below"):
        expect(first.get_by_test_id(control)).to_be_disabled()
        expect(first.get_by_test_id(control)).to_have_attribute("title", re.compile("viewer"))
    expect(editor(first)).to_have_attribute("contenteditable", "false")
    editor(first).click()
    theirs.keyboard.type("hacked")
    theirs.keyboard.press("Shift+Enter")
    expect(editor(first)).to_have_text("print('from ada')")

    run(cell(mine, 0))  # the viewer still sees everything live
    expect(first.get_by_test_id("output-stdout")).to_have_text("from ada\n")
    expect(first.get_by_test_id("cell-run-by")).to_have_text(f"run by {ada.username}")
    theirs.screenshot(path=screenshots / "viewer.png")
    assert ada.api.cells(sheet["id"])[0]["source"] == "print('from ada')"

    ada.api.call("worksheet.share", id=sheet["id"], username=carol.username, role="editor")
    expect(theirs.get_by_test_id("run-all")).to_be_enabled()  # promoted, live
    expect(theirs.get_by_test_id("worksheet-banner")).to_be_hidden()
    expect(editor(first)).to_have_attribute("contenteditable", "true")
    run(cell(theirs, 1))
    expect(cell(mine, 1).get_by_test_id("cell-run-by")).to_have_text(f"run by {carol.username}")
