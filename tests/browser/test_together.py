"""Several people on one worksheet, each in a browser context of their own (and on different
web processes): live edits, runs and presence; typing into one cell at once; cursors and who
is where; undo per person; the API editing beside a browser; viewers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, Request, expect

from .helpers import (
    RUN_TIMEOUT,
    Hold,
    Person,
    cell,
    cells,
    editor,
    run,
    sources,
    type_into,
    wait_saved,
)

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
    wait_saved(theirs)

    run(cell(mine, 0))  # ada runs it; bob sees the run
    expect(cell(theirs, 0)).to_have_attribute("data-state", "done")
    expect(cell(theirs, 0).get_by_test_id("cell-run-by")).to_have_text(f"run by {ada.username}")
    run(cell(theirs, 1))  # bob runs the next; ada sees its output
    expect(cell(mine, 1).get_by_test_id("output-stdout")).to_have_text("42\n")
    expect(cell(mine, 1).get_by_test_id("cell-run-by")).to_have_text(f"run by {bob.username}")
    expect(cell(mine, 1).get_by_test_id("cell-count")).to_have_text("[2]")

    editor(cell(mine, 2)).press("Shift+Enter")  # output streams to bob while it runs (and,
    # the last cell, a new one comes below it)
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
    expect(cells(mine)).to_have_count(3)
    assert sources(mine) == sources(theirs)

    bob.page.goto(bob.url + "/")  # bob leaves the worksheet
    expect(mine.get_by_test_id("presence-user")).to_have_count(1)
    assert presence(mine) == [ada.username]


def shared(ada: Person, bob: Person, *sources: str) -> dict[str, Any]:
    sheet = ada.api.worksheet(*sources)
    ada.api.call("worksheet.share", id=sheet["id"], username=bob.username, role="editor")
    return sheet


def text_of(page: Page, index: int) -> str:
    return sources(page)[index]


def test_two_people_typing_in_one_cell_at_once_both_keep_every_keystroke(
    person: Callable[..., Person], screenshots: Path
) -> None:
    ada, bob = person("ada", web=0), person("bob", web=1)
    sheet = shared(ada, bob, "total = 0")
    hold = Hold(bob.page)  # bob's network stalls while both type: neither sees the other
    mine, theirs = ada.open(sheet), bob.open(sheet)

    hold.hold()
    box = editor(cell(mine, 0))
    box.click()
    box.press("ControlOrMeta+End")
    box.press_sequentially(" + 1  # ada")  # at the end...
    theirs_box = editor(cell(theirs, 0))
    theirs_box.click()
    theirs_box.press("ControlOrMeta+Home")
    theirs_box.press_sequentially("# bob\n")  # ...and at the start, at the same moment
    expect(box).to_have_text("total = 0 + 1  # ada")  # ada does not see bob's yet
    expect(cell(theirs, 0).locator(".cm-line")).to_have_text(["# bob", "total = 0"])
    hold.release()

    both = "# bob\ntotal = 0 + 1  # ada"
    for page in (mine, theirs):  # both texts, merged, on both screens
        expect(cell(page, 0).locator(".cm-line")).to_have_text(["# bob", "total = 0 + 1  # ada"])
        assert text_of(page, 0) == both
    wait_saved(mine)
    wait_saved(theirs)
    assert ada.api.cells(sheet["id"])[0]["source"] == both

    # Interleaved, key by key, in the same line: still every keystroke of each.
    box.press("ControlOrMeta+End")
    theirs_box.press("ControlOrMeta+End")
    for a, b in zip("AAAA", "BBBB", strict=True):
        box.press(a)
        theirs_box.press(b)
    for page in (mine, theirs):
        expect(cell(page, 0).locator(".cm-line").last).to_have_text(re.compile(r"# ada[AB]{8}$"))
    assert text_of(mine, 0) == text_of(theirs, 0)
    assert text_of(mine, 0).count("A") == 4 and text_of(mine, 0).count("B") == 4
    mine.screenshot(path=screenshots / "typing-together.png")


def test_others_cursors_and_who_is_in_which_cell_are_shown_with_names(
    person: Callable[..., Person], screenshots: Path
) -> None:
    ada, bob = person("ada", web=0), person("bob", web=1)
    sheet = shared(ada, bob, "first = 1", "second = 2")
    mine, theirs = ada.open(sheet), bob.open(sheet)

    box = editor(cell(theirs, 0))
    box.click()
    box.press("End")  # bob's cursor at the end of the first cell...
    cursor = cell(mine, 0).get_by_test_id("remote-cursor")
    expect(cursor).to_be_visible()  # ...is drawn in ada's editor, with his name
    expect(cursor).to_have_attribute("data-name", bob.username)
    label = cursor.evaluate("c => getComputedStyle(c, '::after').content")
    assert label == f'"{bob.username}"'
    chip = cell(mine, 0).get_by_test_id("cell-person")  # and a chip on the cell says who
    expect(chip).to_have_text(bob.username)
    expect(cell(mine, 1).get_by_test_id("cell-person")).to_have_count(0)
    expect(editor(cell(mine, 0))).to_have_text("first = 1")  # the name is not in the text
    box.press("Shift+Home")  # his selection is shown too
    selection = cell(mine, 0).locator(".remote-selection")
    expect(selection.first).to_be_visible()
    assert "".join(selection.all_text_contents()) == "first = 1"
    editor(cell(mine, 1)).click()  # ada's cursor, in bob's page
    expect(cell(theirs, 1).get_by_test_id("remote-cursor")).to_have_attribute(
        "data-name", ada.username
    )
    mine.screenshot(path=screenshots / "cursors.png")

    editor(cell(theirs, 1)).click()  # bob goes to the second cell
    expect(cell(mine, 1).get_by_test_id("cell-person")).to_have_text(bob.username)
    expect(cell(mine, 0).get_by_test_id("cell-person")).to_have_count(0)
    expect(cell(mine, 0).get_by_test_id("remote-cursor")).to_have_count(0)

    bob.page.goto(bob.url + "/")  # bob leaves: his chip and cursor go
    expect(cell(mine, 1).get_by_test_id("cell-person")).to_have_count(0)
    expect(mine.get_by_test_id("remote-cursor")).to_have_count(0)


def test_each_persons_ctrl_z_undoes_only_their_own_edits(person: Callable[..., Person]) -> None:
    ada, bob = person("ada", web=0), person("bob", web=1)
    sheet = shared(ada, bob, "x = 1", "y = 2")
    mine, theirs = ada.open(sheet), bob.open(sheet)

    box = editor(cell(mine, 0))
    box.click()
    box.press("ControlOrMeta+End")
    box.press_sequentially(" + 10")  # ada's edit
    expect(editor(cell(theirs, 0))).to_have_text("x = 1 + 10")
    theirs_box = editor(cell(theirs, 0))
    theirs_box.click()
    theirs_box.press("ControlOrMeta+Home")
    theirs_box.press_sequentially("# b\n")  # then bob's, in the same cell
    expect(cell(mine, 0).locator(".cm-line")).to_have_text(["# b", "x = 1 + 10"])

    box.press("ControlOrMeta+z")  # ada undoes: hers goes, bob's stays, on both screens
    for page in (mine, theirs):
        expect(cell(page, 0).locator(".cm-line")).to_have_text(["# b", "x = 1"])
    theirs_box.press("ControlOrMeta+z")  # bob undoes his
    for page in (mine, theirs):
        expect(editor(cell(page, 0))).to_have_text("x = 1")
    box.press("ControlOrMeta+Shift+z")  # ada redoes hers
    for page in (mine, theirs):
        expect(editor(cell(page, 0))).to_have_text("x = 1 + 10")

    cell(theirs, 1).get_by_test_id("cell-delete").click()  # bob deletes a cell
    expect(cells(mine)).to_have_count(1)
    mine.get_by_test_id("worksheet-title").click()  # ada, outside the editors:
    mine.keyboard.press("ControlOrMeta+z")  # her last edit goes, not bob's deletion
    for page in (mine, theirs):
        expect(editor(cell(page, 0))).to_have_text("x = 1")
        expect(cells(page)).to_have_count(1)
    theirs.get_by_test_id("worksheet-title").click()
    theirs.keyboard.press("ControlOrMeta+z")  # bob's undo brings his deleted cell back
    for page in (mine, theirs):
        expect(cells(page)).to_have_count(2)
        expect(editor(cell(page, 1))).to_have_text("y = 2")
    wait_saved(mine)
    wait_saved(theirs)
    assert [c["source"] for c in ada.api.cells(sheet["id"])] == ["x = 1", "y = 2"]


def test_the_api_edits_a_cell_while_a_browser_edits_another(person: Callable[..., Person]) -> None:
    ada, bob = person("ada", web=0), person("bob", web=1)
    sheet = shared(ada, bob, "a = 1", "b = 2")
    mine, theirs = ada.open(sheet), bob.open(sheet)
    ids = [c["id"] for c in ada.api.cells(sheet["id"])]

    box = editor(cell(mine, 0))
    box.click()
    box.press("ControlOrMeta+End")
    box.press_sequentially(" + 1")  # ada types in the first cell...
    bob.api.call("cell.update", id=ids[1], source="b = 'from a script'")  # ...a script, the second
    box.press_sequentially(" + 2")
    created = bob.api.call("cell.create", worksheet=sheet["id"], source="c = 3", after=ids[1])
    box.press_sequentially(" + 3")
    for page in (mine, theirs):  # both see both, and the script's new cell
        expect(cells(page)).to_have_count(3)
        expect(editor(cell(page, 0))).to_have_text("a = 1 + 1 + 2 + 3")
        expect(editor(cell(page, 1))).to_have_text("b = 'from a script'")
        expect(editor(cell(page, 2))).to_have_text("c = 3")
    wait_saved(mine)
    saved = ada.api.cells(sheet["id"])
    assert [c["source"] for c in saved] == ["a = 1 + 1 + 2 + 3", "b = 'from a script'", "c = 3"]
    assert saved[2]["id"] == created["id"]
    bob.api.call("cell.delete", id=ids[1])  # and deletes one: gone from the pages
    for page in (mine, theirs):
        expect(cells(page)).to_have_count(2)
        assert sources(page) == ["a = 1 + 1 + 2 + 3", "c = 3"]


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
    expect(theirs.get_by_test_id("toast")).to_have_count(0)  # the page sent no edit to refuse

    ada.api.call("worksheet.share", id=sheet["id"], username=carol.username, role="editor")
    expect(theirs.get_by_test_id("run-all")).to_be_enabled()  # promoted, live
    expect(theirs.get_by_test_id("worksheet-banner")).to_be_hidden()
    expect(editor(first)).to_have_attribute("contenteditable", "true")
    run(cell(theirs, 1))
    expect(cell(mine, 1).get_by_test_id("cell-run-by")).to_have_text(f"run by {carol.username}")
