"""Editing cells in CodeMirror; adding, moving, deleting and retyping cells; undo."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import expect

from .helpers import Person, cell, cells, editor, rendered, sources, type_into, wait_saved


def test_the_editor_highlights_python_matches_brackets_undoes_and_saves(
    person: Callable[..., Person],
) -> None:
    ada = person("ada")
    sheet = ada.api.worksheet("")
    page = ada.open(sheet)
    first = cell(page, 0)
    type_into(first, "def area(r):\nreturn 3.14 * r ** 2")
    assert sources(page) == ["def area(r):\n    return 3.14 * r ** 2"]  # auto-indented
    keyword = first.locator(".cm-line span", has_text="def").first
    plain = first.locator(".cm-line").first
    assert keyword.evaluate("e => getComputedStyle(e).color") != plain.evaluate(
        "e => getComputedStyle(e).color"
    ), "keywords are highlighted"
    wait_saved(page)
    assert ada.api.cells(sheet["id"])[0]["source"] == "def area(r):\n    return 3.14 * r ** 2"

    box = editor(first)
    box.press("ControlOrMeta+End")
    box.press("Enter")
    box.press("Backspace")
    box.press_sequentially("print(area(2")  # brackets close themselves
    assert sources(page)[0].endswith("print(area(2))")
    expect(first.locator(".cm-matchingBracket")).to_have_count(2)
    for _ in range(5):  # typing pauses make undo steps; how many depends on the typing speed
        if "print" not in sources(page)[0]:
            break
        box.press("ControlOrMeta+z")
    assert sources(page) == ["def area(r):\n    return 3.14 * r ** 2"]
    box.press("Control+y")  # redo
    assert "print(" in sources(page)[0]
    box.press("ControlOrMeta+z")
    wait_saved(page)
    assert ada.api.cells(sheet["id"])[0]["source"] == "def area(r):\n    return 3.14 * r ** 2"


def test_cells_are_added_moved_and_deleted(person: Callable[..., Person]) -> None:
    ada = person("ada")
    sheet = ada.api.worksheet("a = 1", "b = 2")
    page = ada.open(sheet)
    expect(cells(page)).to_have_count(2)

    cell(page, 0).get_by_test_id("cell-insert-below").click()
    expect(cells(page)).to_have_count(3)
    expect(editor(cell(page, 1))).to_be_focused()  # the new cell, ready to type in
    page.keyboard.type("c = 3")
    page.get_by_test_id("add-cell").click()
    expect(cells(page)).to_have_count(4)
    expect(editor(cell(page, 3))).to_be_focused()
    page.keyboard.type("d = 4")
    assert sources(page) == ["a = 1", "c = 3", "b = 2", "d = 4"]

    cell(page, 3).get_by_test_id("cell-move-up").click()
    expect(editor(cell(page, 2))).to_have_text("d = 4")
    cell(page, 0).get_by_test_id("cell-move-down").click()
    expect(editor(cell(page, 0))).to_have_text("c = 3")
    assert sources(page) == ["c = 3", "a = 1", "d = 4", "b = 2"]

    cell(page, 1).get_by_test_id("cell-delete").click()
    expect(cells(page)).to_have_count(3)
    assert sources(page) == ["c = 3", "d = 4", "b = 2"]
    wait_saved(page)
    assert [c["source"] for c in ada.api.cells(sheet["id"])] == sources(page)
    page.reload()  # what the page shows is what the server has
    expect(cells(page)).to_have_count(3)
    assert sources(page) == ["c = 3", "d = 4", "b = 2"]


def test_ctrl_z_outside_the_editors_undoes_only_what_this_person_did(
    person: Callable[..., Person],
) -> None:
    ada = person("ada")
    sheet = ada.api.worksheet("a = 1", "b = 2", "c = 3")  # written through the API, not here
    page = ada.open(sheet)
    expect(cells(page)).to_have_count(3)
    page.get_by_test_id("worksheet-title").click()  # no editor focused
    for _ in range(3):  # nothing of this person's to undo: no cell is emptied or deleted
        page.keyboard.press("ControlOrMeta+z")
    expect(cells(page)).to_have_count(3)
    assert sources(page) == ["a = 1", "b = 2", "c = 3"]

    cell(page, 1).get_by_test_id("cell-delete").click()  # a cell operation of hers...
    expect(cells(page)).to_have_count(2)
    page.get_by_test_id("worksheet-title").click()
    page.keyboard.press("ControlOrMeta+z")  # ...undone, with the cell's text
    expect(cells(page)).to_have_count(3)
    assert sources(page) == ["a = 1", "b = 2", "c = 3"]
    page.keyboard.press("ControlOrMeta+Shift+z")  # redone
    expect(cells(page)).to_have_count(2)
    page.keyboard.press("ControlOrMeta+z")
    expect(cells(page)).to_have_count(3)

    cell(page, 2).get_by_test_id("cell-move-up").click()
    expect(editor(cell(page, 1))).to_have_text("c = 3")
    page.get_by_test_id("worksheet-title").click()
    page.keyboard.press("ControlOrMeta+z")  # the move, undone
    expect(editor(cell(page, 1))).to_have_text("b = 2")
    assert sources(page) == ["a = 1", "b = 2", "c = 3"]
    wait_saved(page)
    assert [c["source"] for c in ada.api.cells(sheet["id"])] == ["a = 1", "b = 2", "c = 3"]


def test_a_cell_changes_type(person: Callable[..., Person]) -> None:
    ada = person("ada")
    sheet = ada.api.worksheet("")
    page = ada.open(sheet)
    first = cell(page, 0)
    first.get_by_test_id("cell-type").select_option("markdown")
    expect(first).to_have_attribute("data-cell-type", "markdown")
    expect(editor(first)).to_be_visible()  # still being edited: she just made it Markdown
    type_into(first, "# Notes\nSome *words*.")
    editor(first).press("Shift+Enter")  # shown; on the last cell, a new cell below as well
    expect(rendered(first).locator("h1")).to_have_text("Notes")
    expect(cells(page)).to_have_count(2)
    expect(rendered(first).locator("em")).to_have_text("words")
    expect(editor(first)).to_be_hidden()
    wait_saved(page)
    saved = ada.api.cells(sheet["id"])[0]
    assert (saved["cell_type"], saved["source"]) == ("markdown", "# Notes\nSome *words*.")

    first.get_by_test_id("cell-type").select_option("raw")
    expect(first.get_by_test_id("raw-cell")).to_be_visible()
    assert sources(page)[0] == "# Notes\nSome *words*."  # as it is
    first.get_by_test_id("cell-type").select_option("code")
    expect(first).to_have_attribute("data-cell-type", "code")
    wait_saved(page)
    assert ada.api.cells(sheet["id"])[0]["cell_type"] == "code"
