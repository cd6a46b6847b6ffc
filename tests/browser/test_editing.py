"""Editing cells in CodeMirror, and adding, moving and deleting cells."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import expect

from .helpers import Person, cell, cells, editor, sources, type_into, wait_saved


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
    wait_saved(first)
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
    wait_saved(first)
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
    wait_saved(cell(page, 1))
    page.get_by_test_id("add-cell").click()
    expect(cells(page)).to_have_count(4)
    expect(editor(cell(page, 3))).to_be_focused()
    page.keyboard.type("d = 4")
    wait_saved(cell(page, 3))
    assert sources(page) == ["a = 1", "c = 3", "b = 2", "d = 4"]

    cell(page, 3).get_by_test_id("cell-move-up").click()
    expect(editor(cell(page, 2))).to_have_text("d = 4")
    cell(page, 0).get_by_test_id("cell-move-down").click()
    expect(editor(cell(page, 0))).to_have_text("c = 3")
    assert sources(page) == ["c = 3", "a = 1", "d = 4", "b = 2"]

    cell(page, 1).get_by_test_id("cell-delete").click()
    expect(cells(page)).to_have_count(3)
    assert sources(page) == ["c = 3", "d = 4", "b = 2"]
    assert [c["source"] for c in ada.api.cells(sheet["id"])] == sources(page)
    page.reload()  # what the page shows is what the server has
    expect(cells(page)).to_have_count(3)
    assert sources(page) == ["c = 3", "d = 4", "b = 2"]
