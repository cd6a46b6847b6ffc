"""What the kernel sends back in a run's reply: IPython's pager (`len?`) opens the help panel,
not the cell's outputs; `set_next_input` puts text in a new cell below, or in the cell."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import expect

from .helpers import Person, cell, cells, run, sources


def test_len_question_mark_opens_the_help_panel_and_leaves_the_outputs_empty(
    person: Callable[..., Person], screenshots: Path
) -> None:
    ada, bob = person("ada"), person("bob", web=1)
    sheet = ada.api.worksheet("len?", "print('after')")
    ada.api.call("worksheet.share", id=sheet["id"], username=bob.username, role="editor")
    page, theirs = ada.open(sheet), bob.open(sheet)
    asked = cell(page, 0)
    run(asked)

    panel = page.get_by_test_id("help-panel")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text("Return the number of items in a container.")
    expect(panel.locator("[class*='ansi-']").first).to_have_text("Signature:")  # in colour
    expect(asked.get_by_test_id("output")).to_have_count(0)
    expect(cell(theirs, 0)).to_have_attribute("data-state", "done")  # bob did not ask:
    expect(theirs.get_by_test_id("help-panel")).to_be_hidden()  # no help for him
    page.screenshot(path=screenshots / "help.png")

    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    run(cell(page, 1))
    expect(cell(page, 1).get_by_test_id("output-stdout")).to_have_text("after\n")
    expect(panel).to_be_hidden()

    # Saved: the second cell's output shows on a page opened afresh (it was saved after the
    # first cell's run), and the help is in neither cell.
    again = ada.open(sheet)
    expect(cell(again, 1).get_by_test_id("output-stdout")).to_have_text("after\n")
    expect(cell(again, 0).get_by_test_id("output")).to_have_count(0)
    expect(again.get_by_test_id("help-panel")).to_be_hidden()


def test_set_next_input_adds_a_cell_below_or_replaces_the_text(
    person: Callable[..., Person],
) -> None:
    ada = person("ada")
    page = ada.open(
        ada.api.worksheet(
            "get_ipython().set_next_input('x = 42')",
            "get_ipython().set_next_input('y = 1', replace=True)",
        )
    )
    run(cell(page, 0))
    expect(cells(page)).to_have_count(3)
    run(cell(page, 2))  # the last cell: Shift+Enter adds an empty one below it too
    expect(cell(page, 2).get_by_test_id("cell-input")).to_have_text("y = 1")
    assert sources(page) == [
        "get_ipython().set_next_input('x = 42')",
        "x = 42",
        "y = 1",
        "",
    ]
