"""The keyboard, as in JupyterLab: edit and command mode, command mode's keys (a, b, d d, m, y,
r, j/k and arrows, Shift to extend, c/x/v, z, 0 0, i i, h), Shift/Alt/Ctrl+Enter, Ctrl+S and
the command palette's key."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Locator, Page, Response, expect

from .helpers import (
    RUN_TIMEOUT,
    Person,
    cell,
    cells,
    editor,
    rendered,
    run,
    sources,
    type_into,
    wait_saved,
)

ACTIVE = re.compile(r"\bcell-active\b")


def mode(page: Page) -> Locator:
    return page.get_by_test_id("worksheet-page")


def command_mode_on(page: Page, index: int) -> None:
    """The keyboard is on cell `index` in command mode (focused, outlined)."""
    expect(mode(page)).to_have_attribute("data-mode", "command")
    expect(cell(page, index)).to_be_focused()
    expect(cell(page, index)).to_have_class(ACTIVE)


def selected(page: Page) -> list[bool]:
    flags: list[str] = cells(page).evaluate_all("els => els.map(el => el.dataset.selected)")
    return [flag == "true" for flag in flags]


def test_escape_and_enter_switch_modes_and_letters_edit_cells(
    person: Callable[..., Person],
) -> None:
    ada = person("ada")
    sheet = ada.api.worksheet("x = 1", "y = 2")
    page = ada.open(sheet)
    editor(cell(page, 0)).click()
    expect(mode(page)).to_have_attribute("data-mode", "edit")
    page.keyboard.press("Escape")  # out of the editor: the cell stays selected
    command_mode_on(page, 0)
    page.keyboard.press("b")  # a cell below, selected, still in command mode
    expect(cells(page)).to_have_count(3)
    command_mode_on(page, 1)
    assert sources(page) == ["x = 1", "", "y = 2"]  # no "b" typed anywhere
    page.keyboard.press("a")  # and one above it
    expect(cells(page)).to_have_count(4)
    command_mode_on(page, 1)
    page.keyboard.press("d")
    page.keyboard.press("d")  # d d deletes it; the next cell is selected
    expect(cells(page)).to_have_count(3)
    command_mode_on(page, 1)

    page.keyboard.press("m")
    expect(cell(page, 1)).to_have_attribute("data-cell-type", "markdown")
    command_mode_on(page, 1)  # retyped, not opened for editing
    page.keyboard.press("r")
    expect(cell(page, 1)).to_have_attribute("data-cell-type", "raw")
    page.keyboard.press("y")
    expect(cell(page, 1)).to_have_attribute("data-cell-type", "code")
    page.keyboard.press("Enter")  # into the editor
    expect(editor(cell(page, 1))).to_be_focused()
    expect(mode(page)).to_have_attribute("data-mode", "edit")
    page.keyboard.type("z = 3")
    assert sources(page) == ["x = 1", "z = 3", "y = 2"]

    page.keyboard.press("Escape")
    command_mode_on(page, 1)
    page.keyboard.press("d")
    page.keyboard.press("d")
    expect(cells(page)).to_have_count(2)
    page.keyboard.press("z")  # undoes the deletion, with the text
    expect(cells(page)).to_have_count(3)
    assert sources(page) == ["x = 1", "z = 3", "y = 2"]
    page.keyboard.press("d")  # a lone d, then another key: no chord, nothing deleted
    page.keyboard.press("j")
    expect(cells(page)).to_have_count(3)
    wait_saved(page)
    saved = ada.api.cells(sheet["id"])
    assert [(c["cell_type"], c["source"]) for c in saved] == [
        ("code", "x = 1"), ("code", "z = 3"), ("code", "y = 2"),
    ]  # fmt: skip


def test_arrows_move_shift_extends_and_cells_are_copied_cut_and_pasted(
    person: Callable[..., Person],
) -> None:
    ada, bob = person("ada"), person("bob")
    sheet = ada.api.worksheet("a = 1", "b = 2", "c = 3", "d = 4")
    ada.api.call("worksheet.share", id=sheet["id"], username=bob.username, role="viewer")
    page, theirs = ada.open(sheet), bob.open(sheet)
    editor(cell(page, 0)).click()
    page.keyboard.press("Escape")
    page.keyboard.press("j")
    command_mode_on(page, 1)
    page.keyboard.press("ArrowDown")
    command_mode_on(page, 2)
    page.keyboard.press("k")
    command_mode_on(page, 1)
    page.keyboard.press("ArrowUp")
    command_mode_on(page, 0)
    page.keyboard.press("ArrowUp")  # the first stays the first
    command_mode_on(page, 0)

    page.keyboard.press("Shift+J")
    command_mode_on(page, 1)
    assert selected(page) == [True, True, False, False]
    page.keyboard.press("Shift+ArrowDown")
    assert selected(page) == [True, True, True, False]
    page.keyboard.press("Shift+K")
    assert selected(page) == [True, True, False, False]
    page.keyboard.press("Shift+ArrowUp")
    page.keyboard.press("Shift+ArrowDown")
    assert selected(page) == [True, True, False, False]
    expect(cell(page, 0)).to_have_class(re.compile(r"\bcell-selected\b"))

    page.keyboard.press("c")  # the two cells copied
    page.keyboard.press("j")  # one cell selected again: c = 3
    assert selected(page) == [False, False, True, False]
    page.keyboard.press("v")  # pasted below it
    expect(cells(page)).to_have_count(6)
    assert sources(page) == ["a = 1", "b = 2", "c = 3", "a = 1", "b = 2", "d = 4"]
    assert selected(page) == [False, False, False, True, True, False]  # what was pasted
    page.keyboard.press("x")  # cut
    expect(cells(page)).to_have_count(4)
    assert sources(page) == ["a = 1", "b = 2", "c = 3", "d = 4"]
    command_mode_on(page, 3)  # the cell after them
    page.keyboard.press("v")  # pasted after d = 4
    page.keyboard.press("Shift+v")  # and again, above the selected (last pasted) cell
    expect(cells(page)).to_have_count(8)
    expected = ["a = 1", "b = 2", "c = 3", "d = 4", "a = 1", "a = 1", "b = 2", "b = 2"]
    assert sources(page) == expected
    expect(cells(theirs)).to_have_count(8)  # everyone sees it live
    assert sources(theirs) == expected

    # A viewer moves about in command mode; keys that would change the worksheet do nothing.
    editor(cell(theirs, 0)).click()
    theirs.keyboard.press("Escape")
    theirs.keyboard.press("j")
    command_mode_on(theirs, 1)
    for key in ("d", "d", "b", "x", "m"):
        theirs.keyboard.press(key)
    expect(cells(theirs)).to_have_count(8)
    expect(cell(theirs, 1)).to_have_attribute("data-cell-type", "code")
    expect(theirs.get_by_test_id("toast")).to_have_count(0)


def test_shift_alt_and_ctrl_enter_run_as_in_jupyterlab(person: Callable[..., Person]) -> None:
    ada = person("ada")
    sheet = ada.api.worksheet("1 + 1")
    page = ada.open(sheet)
    run(cell(page, 0))  # Shift+Enter on the last cell: run, and a new cell to type in
    expect(cell(page, 0).get_by_test_id("output-text")).to_have_text("2")
    expect(cells(page)).to_have_count(2)
    expect(editor(cell(page, 1))).to_be_focused()
    page.keyboard.type("x = 5")
    page.keyboard.press("Alt+Enter")  # run, and insert a cell below
    expect(cells(page)).to_have_count(3)
    expect(editor(cell(page, 2))).to_be_focused()
    expect(cell(page, 1)).to_have_attribute("data-state", "done", timeout=RUN_TIMEOUT)
    page.keyboard.type("x * 2")
    page.keyboard.press("Control+Enter")  # run in place
    expect(cell(page, 2).get_by_test_id("output-text")).to_have_text("10", timeout=RUN_TIMEOUT)
    expect(cells(page)).to_have_count(3)
    expect(editor(cell(page, 2))).to_be_focused()

    # In command mode: Shift+Enter runs the selected cell and selects the next one
    type_into(cell(page, 1), "x = 6")
    page.keyboard.press("Escape")
    page.keyboard.press("Shift+Enter")
    command_mode_on(page, 2)
    expect(cell(page, 1)).to_have_attribute("data-state", "done", timeout=RUN_TIMEOUT)
    page.keyboard.press("Control+Enter")  # runs the selected cell, staying on it
    expect(cell(page, 2).get_by_test_id("output-text")).to_have_text("12", timeout=RUN_TIMEOUT)
    command_mode_on(page, 2)
    page.keyboard.press("Alt+Enter")  # run and insert below, into the new cell's editor
    expect(cells(page)).to_have_count(4)
    expect(editor(cell(page, 3))).to_be_focused()

    # A Markdown cell at the end: Shift+Enter shows it and adds a cell
    page.keyboard.press("Escape")
    page.keyboard.press("m")
    page.keyboard.press("Enter")
    page.keyboard.type("# Done")
    page.keyboard.press("Shift+Enter")
    expect(rendered(cell(page, 3)).locator("h1")).to_have_text("Done")
    expect(cells(page)).to_have_count(5)
    expect(editor(cell(page, 4))).to_be_focused()


def test_i_i_interrupts_and_0_0_restarts(person: Callable[..., Person]) -> None:
    ada = person("ada")
    sheet = ada.api.worksheet("x = 41", "import time\ntime.sleep(120)", "x")
    page = ada.open(sheet)
    run(cell(page, 0))
    editor(cell(page, 1)).click()
    page.keyboard.press("Control+Enter")
    expect(cell(page, 1)).to_have_attribute("data-state", "running", timeout=RUN_TIMEOUT)
    page.keyboard.press("Escape")
    command_mode_on(page, 1)
    page.keyboard.press("i")
    page.keyboard.press("i")
    expect(cell(page, 1).get_by_test_id("output-error")).to_have_attribute(
        "data-ename", "KeyboardInterrupt", timeout=RUN_TIMEOUT
    )
    page.keyboard.press("0")
    page.keyboard.press("0")
    dialog = page.get_by_test_id("confirm-dialog")
    expect(dialog).to_be_visible()
    with page.expect_response(is_restart, timeout=RUN_TIMEOUT) as restarted:
        dialog.get_by_test_id("confirm-ok").click()
    assert restarted.value.ok and "error" not in restarted.value.json()
    editor(cell(page, 2)).click()
    page.keyboard.press("Control+Enter")  # x is gone with the restart
    expect(cell(page, 2).get_by_test_id("output-error")).to_have_attribute(
        "data-ename", "NameError", timeout=RUN_TIMEOUT
    )


def is_restart(response: Response) -> bool:
    return response.url.endswith("/rpc") and "session.restart" in (response.request.post_data or "")


def test_ctrl_s_saves_a_checkpoint_in_either_mode(person: Callable[..., Person]) -> None:
    ada = person("ada")
    sheet = ada.api.worksheet("a = 1")
    page = ada.open(sheet)
    editor(cell(page, 0)).click()
    page.keyboard.press("Control+s")  # in the editor
    expect(page.get_by_test_id("toast").first).to_contain_text("Checkpoint saved")
    page.keyboard.press("Escape")
    page.keyboard.press("Control+s")  # in command mode
    expect(page.get_by_test_id("toast").filter(has_text="Checkpoint saved")).to_have_count(2)
    listed = ada.api.call("worksheet.checkpoints", id=sheet["id"])
    checkpoints = listed["checkpoints"] if isinstance(listed, dict) else listed
    assert len(checkpoints) == 2
    page.keyboard.press("Control+Shift+C")  # and they are listed from the palette
    page.get_by_test_id("command-palette").locator('[data-command="checkpoints"]').click()
    expect(page.get_by_test_id("checkpoints-dialog").get_by_test_id("checkpoint")).to_have_count(2)
    page.get_by_test_id("checkpoints-close").click()
    assert sources(page) == ["a = 1"]  # no "s" typed


def test_the_palette_and_the_shortcuts_open_from_keys(person: Callable[..., Person]) -> None:
    ada = person("ada")
    sheet = ada.api.worksheet("print('hi')")
    page = ada.open(sheet)
    run(cell(page, 0))
    expect(cell(page, 0).get_by_test_id("output-stdout")).to_have_text("hi\n")
    editor(cell(page, 0)).click()
    page.keyboard.press("Control+Shift+C")  # from the editor
    palette = page.get_by_test_id("command-palette")
    expect(palette).to_be_visible()
    expect(page.get_by_test_id("palette-input")).to_be_focused()
    items = palette.get_by_test_id("palette-item")
    expect(items.filter(has_text="Insert a cell below")).to_contain_text("B")
    expect(items.filter(has_text="Delete the selected cells")).to_contain_text("D, D")
    expect(items.filter(has_text="Command palette")).to_contain_text("Ctrl+Shift+C")
    page.keyboard.type("clear outputs selected")
    expect(items).to_have_count(1)
    page.keyboard.press("Enter")  # runs it on the cell the keyboard was in
    expect(palette).to_be_hidden()
    expect(cell(page, 0).get_by_test_id("output-stdout")).to_have_count(0)

    page.keyboard.press("Escape")
    page.keyboard.press("h")  # the shortcuts, from command mode
    shortcuts = page.get_by_test_id("shortcuts-panel")
    expect(shortcuts).to_be_visible()
    rows = shortcuts.get_by_test_id("shortcut")
    expect(rows.filter(has_text="Delete the selected cells")).to_contain_text("D, D")
    expect(rows.filter(has_text="Interrupt the session")).to_contain_text("I, I")
    expect(rows.filter(has_text="Restart the session").first).to_contain_text("0, 0")
    expect(rows.filter(has_text="Leave the editor")).to_contain_text("Escape")
    page.keyboard.press("Escape")
    expect(shortcuts).to_be_hidden()
    assert sources(page) == ["print('hi')", ""]  # nothing typed into cells
