"""The worksheet's commands, from the command palette: clearing outputs (seen on every page),
running all, above, below, restart and run all, collapsing and expanding inputs and outputs,
scrolling long outputs, the table of contents, find and replace (seen on every page), and all
of it reachable on a 375 px wide screen."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest
from playwright.sync_api import Browser, Locator, expect

from .helpers import (
    COOKIE,
    RUN_TIMEOUT,
    Person,
    cell,
    cells,
    editor,
    palette_run,
    rendered,
    run,
    sources,
    wait_saved,
)
from .test_look import contrast_failures

FIND_CURRENT = re.compile(r"\bcell-find-current\b")


def markdown(source: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "source": source}


def stdout(cell_: Locator) -> Locator:
    return cell_.get_by_test_id("output-stdout")


def test_clearing_outputs_clears_them_on_every_page_and_on_the_server(
    person: Callable[..., Person],
) -> None:
    ada, bob = person("ada"), person("bob", web=1)
    sheet = ada.api.worksheet("print('one')", "print('two')", markdown("# Notes"))
    ada.api.call("worksheet.share", id=sheet["id"], username=bob.username, role="editor")
    page, theirs = ada.open(sheet), bob.open(sheet)
    run(cell(page, 0))
    run(cell(page, 1))
    for shown in (page, theirs):
        expect(stdout(cell(shown, 0))).to_have_text("one\n")
        expect(stdout(cell(shown, 1))).to_have_text("two\n")

    editor(cell(page, 0)).click()
    palette_run(page, "clear-outputs")  # the selected cell only
    for shown in (page, theirs):  # live on bob's page too
        expect(stdout(cell(shown, 0))).to_have_count(0)
        expect(cell(shown, 0).get_by_test_id("cell-count")).to_have_text("[ ]")
        expect(stdout(cell(shown, 1))).to_have_text("two\n")
    palette_run(page, "clear-all-outputs")
    for shown in (page, theirs):
        expect(stdout(cell(shown, 1))).to_have_count(0)
        expect(cell(shown, 1).get_by_test_id("cell-run-by")).to_have_text("")
    saved = ada.api.cells(sheet["id"])
    assert [(c.get("outputs"), c.get("execution_count")) for c in saved[:2]] == [([], None)] * 2
    theirs.reload()  # saved so: a page opened afresh shows no outputs
    expect(cells(theirs)).to_have_count(3)
    expect(theirs.get_by_test_id("output-stdout")).to_have_count(0)
    expect(cell(theirs, 0).get_by_test_id("cell-count")).to_have_text("[ ]")


def test_run_all_above_below_and_restart_and_run_all(person: Callable[..., Person]) -> None:
    ada = person("ada")
    sheet = ada.api.worksheet("a = 1", "b = a + 1", "print(b)", "print('after')")
    page = ada.open(sheet)
    editor(cell(page, 0)).click()
    palette_run(page, "run-all")
    expect(stdout(cell(page, 3))).to_have_text("after\n", timeout=RUN_TIMEOUT)
    expect(stdout(cell(page, 2))).to_have_text("2\n")
    expect(cell(page, 3).get_by_test_id("cell-count")).to_have_text("[4]")
    expect(cells(page)).to_have_count(4)

    palette_run(page, "clear-all-outputs")
    expect(page.get_by_test_id("output-stdout")).to_have_count(0)
    editor(cell(page, 2)).click()
    palette_run(page, "run-above")  # the cells above the selected one
    expect(cell(page, 1).get_by_test_id("cell-count")).to_have_text("[6]", timeout=RUN_TIMEOUT)
    expect(cell(page, 0).get_by_test_id("cell-count")).to_have_text("[5]")
    for index in (2, 3):
        expect(cell(page, index)).to_have_attribute("data-state", "idle")
    palette_run(page, "run-below")  # the selected one and those below
    expect(stdout(cell(page, 3))).to_have_text("after\n", timeout=RUN_TIMEOUT)
    expect(stdout(cell(page, 2))).to_have_text("2\n")
    expect(cell(page, 3).get_by_test_id("cell-count")).to_have_text("[8]")

    palette_run(page, "restart-run-all")
    page.get_by_test_id("confirm-dialog").get_by_test_id("confirm-ok").click()
    # a fresh session: its counts start again
    expect(cell(page, 0).get_by_test_id("cell-count")).to_have_text("[1]", timeout=RUN_TIMEOUT)
    expect(cell(page, 3).get_by_test_id("cell-count")).to_have_text("[4]", timeout=RUN_TIMEOUT)
    expect(stdout(cell(page, 2))).to_have_text("2\n")


def test_inputs_and_outputs_collapse_expand_and_scroll(person: Callable[..., Person]) -> None:
    ada, bob = person("ada"), person("bob", web=1)
    sheet = ada.api.worksheet("print('\\n'.join(map(str, range(300))))", "x = 1")
    ada.api.call("worksheet.share", id=sheet["id"], username=bob.username, role="viewer")
    page, theirs = ada.open(sheet), bob.open(sheet)
    long, short = cell(page, 0), cell(page, 1)
    run(long)
    expect(stdout(long)).to_contain_text("299")

    editor(long).click()
    palette_run(page, "toggle-input")
    expect(editor(long)).to_be_hidden()
    expect(long.get_by_test_id("cell-input-collapsed")).to_be_visible()
    expect(editor(short)).to_be_visible()
    expect(editor(cell(theirs, 0))).to_be_hidden()  # kept in the cell's metadata: for everyone
    long.get_by_test_id("cell-input-collapsed").click()  # the bar expands it again
    expect(editor(long)).to_be_visible()
    expect(long.get_by_test_id("cell-input-collapsed")).to_be_hidden()

    palette_run(page, "toggle-outputs")
    expect(long.get_by_test_id("cell-outputs")).to_be_hidden()
    expect(long.get_by_test_id("cell-outputs-collapsed")).to_be_visible()
    palette_run(page, "toggle-outputs")
    expect(stdout(long)).to_be_visible()

    palette_run(page, "collapse-all-inputs")
    for shown in (long, short):
        expect(editor(shown)).to_be_hidden()
    wait_saved(page)  # JupyterLab's metadata, as the server (and an exported notebook) has it
    hidden = {"jupyter": {"source_hidden": True}}
    assert [c["metadata"] for c in ada.api.cells(sheet["id"])] == [hidden, hidden]
    exported = ada.api.call("worksheet.export", id=sheet["id"])
    assert [c["metadata"]["jupyter"] for c in exported["cells"]] == [hidden["jupyter"]] * 2
    palette_run(page, "expand-all-inputs")
    for shown in (long, short):
        expect(editor(shown)).to_be_visible()
    palette_run(page, "collapse-all-outputs")
    expect(long.get_by_test_id("cell-outputs")).to_be_hidden()
    expect(cell(theirs, 0).get_by_test_id("cell-outputs")).to_be_hidden()
    palette_run(page, "expand-all-outputs")
    expect(stdout(long)).to_be_visible()

    outputs = long.get_by_test_id("cell-outputs")
    whole = outputs.evaluate("el => el.clientHeight")
    palette_run(page, "toggle-scrolled")  # long outputs get a scrollbar
    expect(long).to_have_attribute("data-scrolled", "true")
    capped = outputs.evaluate("el => [el.clientHeight, el.scrollHeight]")
    assert capped[0] < 500 < whole and capped[1] > capped[0], (whole, capped)
    palette_run(page, "toggle-scrolled")
    expect(long).to_have_attribute("data-scrolled", "false")
    assert outputs.evaluate("el => el.clientHeight") == whole
    palette_run(page, "scroll-all-outputs")
    expect(long).to_have_attribute("data-scrolled", "true")
    expect(cell(theirs, 0)).to_have_attribute("data-scrolled", "true")
    palette_run(page, "unscroll-all-outputs")
    expect(long).to_have_attribute("data-scrolled", "false")
    wait_saved(page)
    assert all(c["metadata"] == {} for c in ada.api.cells(sheet["id"]))  # all undone


def test_the_table_of_contents_lists_headings_and_scrolls_to_them(
    person: Callable[..., Person],
) -> None:
    ada = person("ada")
    fillers = [f"n{i} = {i}" for i in range(40)]
    sheet = ada.api.worksheet(
        markdown("# Intro\nSome text."),
        markdown("## Details\n```\n# not a heading\n```\nSetext\n------"),
        *fillers,
        markdown("# End *here*"),
    )
    page = ada.open(sheet)
    palette_run(page, "toc")
    panel = page.get_by_test_id("toc-panel")
    expect(panel).to_be_visible()
    entries = panel.get_by_test_id("toc-entry")
    expect(entries).to_have_text(["Intro", "Details", "Setext", "End here"])
    assert entries.evaluate_all("els => els.map(el => el.dataset.level)") == ["1", "2", "2", "1"]
    last = cell(page, len(fillers) + 2)
    expect(rendered(last).locator("h1")).not_to_be_in_viewport()
    entries.nth(3).click()
    expect(rendered(last).locator("h1")).to_be_in_viewport()
    entries.nth(0).click()
    expect(rendered(cell(page, 0)).locator("h1")).to_be_in_viewport()

    last_id = ada.api.cells(sheet["id"])[-1]["id"]  # someone edits a heading: the list follows
    ada.api.call("cell.update", id=last_id, source="# The end\n## Appendix")
    expect(entries).to_have_text(["Intro", "Details", "Setext", "The end", "Appendix"])
    panel.get_by_test_id("toc-close").click()
    expect(panel).to_be_hidden()


def test_find_and_replace_across_the_worksheet_for_everyone(
    person: Callable[..., Person],
) -> None:
    ada, bob = person("ada"), person("bob", web=1)
    sheet = ada.api.worksheet(
        "total = 1\nprint(total)", markdown("The total is *total*"), "Total = 3"
    )
    ada.api.call("worksheet.share", id=sheet["id"], username=bob.username, role="editor")
    page, theirs = ada.open(sheet), bob.open(sheet)
    editor(cell(page, 0)).click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+f")
    panel = page.get_by_test_id("find-panel")
    expect(panel).to_be_visible()
    expect(page.get_by_test_id("find-input")).to_be_focused()
    page.keyboard.type("total")
    count = page.get_by_test_id("find-count")
    expect(count).to_have_text("1 of 5")  # any case, in every cell's text
    page.keyboard.press("Enter")
    expect(count).to_have_text("2 of 5")
    page.get_by_test_id("find-next").click()
    expect(count).to_have_text("3 of 5")
    expect(cell(page, 1)).to_have_class(FIND_CURRENT)
    page.get_by_test_id("find-prev").click()
    expect(count).to_have_text("2 of 5")
    page.get_by_test_id("find-case").check()
    expect(count).to_have_text("1 of 4")

    page.get_by_test_id("replace-input").fill("amount")
    page.get_by_test_id("replace-one").click()  # the match shown
    expect(count).to_have_text("1 of 3")
    assert sources(page)[0] == "amount = 1\nprint(total)"
    page.get_by_test_id("replace-all").click()  # the rest: not "Total", the case matters
    expect(count).to_have_text("No matches")
    expected = ["amount = 1\nprint(amount)", "The amount is *amount*", "Total = 3"]
    assert sources(page) == expected
    for shown in (page, theirs):  # live on bob's page, Markdown rendered again
        expect(editor(cell(shown, 0))).to_have_text("amount = 1print(amount)")
        expect(rendered(cell(shown, 1))).to_have_text("The amount is amount")
    wait_saved(page)
    assert [c["source"] for c in ada.api.cells(sheet["id"])] == expected

    page.keyboard.press("Escape")  # closes the panel: command mode on the last match's cell
    expect(panel).to_be_hidden()
    expect(page.get_by_test_id("worksheet-page")).to_have_attribute("data-mode", "command")
    page.keyboard.press("z")  # undoes Replace all, in one step
    expect(rendered(cell(theirs, 1))).to_have_text("The total is total")
    assert sources(page) == ["amount = 1\nprint(total)", "The total is *total*", "Total = 3"]

    editor(cell(page, 2)).click()  # Ctrl+F in an editor: the worksheet's find, not the editor's
    page.keyboard.press("Control+f")
    expect(panel).to_be_visible()
    expect(page.get_by_test_id("find-input")).to_be_focused()
    expect(page.locator(".cm-search")).to_have_count(0)


def test_every_command_is_reachable_at_375_px(person: Callable[..., Person]) -> None:
    ada = person("ada")
    sheet = ada.api.worksheet("x = 1", markdown("# Title"))
    page = ada.page
    page.set_viewport_size({"width": 375, "height": 740})
    ada.open(sheet)
    button = page.get_by_test_id("commands")
    expect(button).to_be_in_viewport()
    button.click()
    palette = page.get_by_test_id("command-palette")
    expect(palette).to_be_visible()
    items = palette.get_by_test_id("palette-item")
    ids = items.evaluate_all("els => els.map(el => el.dataset.command)")
    wanted = {
        "insert-above", "insert-below", "delete-cells", "to-code", "to-markdown", "to-raw",
        "select-above", "select-below", "extend-above", "extend-below", "copy-cells",
        "cut-cells", "paste-below", "undo-cells", "restart", "interrupt", "run-advance",
        "run-insert", "run-cell", "save-checkpoint", "palette", "shortcuts", "clear-outputs",
        "clear-all-outputs", "run-all", "run-above", "run-below", "restart-run-all",
        "toggle-input", "toggle-outputs", "collapse-all-inputs", "expand-all-inputs",
        "collapse-all-outputs", "expand-all-outputs", "toggle-scrolled", "toc", "find",
    }  # fmt: skip
    assert wanted <= set(ids), wanted - set(ids)
    box = palette.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, box
    items.filter(has_text="Insert a cell below").click()  # tapped: it runs
    expect(cells(page)).to_have_count(3)

    page.get_by_test_id("shortcuts-button").click()
    shortcuts = page.get_by_test_id("shortcuts-panel")
    expect(shortcuts).to_be_visible()
    box = shortcuts.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, box
    shortcuts.get_by_test_id("shortcuts-close").click()
    for command, panel in (("toc", "toc-panel"), ("find", "find-panel")):
        button.click()
        page.get_by_test_id("command-palette").locator(f'[data-command="{command}"]').click()
        expect(page.get_by_test_id(panel)).to_be_visible()
        box = page.get_by_test_id(panel).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, box
        page.get_by_test_id(f"{command}-close").click()  # over the page on a phone: closed
        expect(page.get_by_test_id(panel)).to_be_hidden()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375


def test_select_all_move_duplicate_redo_and_the_shortcuts_from_the_palette(
    person: Callable[..., Person],
) -> None:
    ada = person("ada")
    sheet = ada.api.worksheet("a = 1", "b = 2", "c = 3")
    page = ada.open(sheet)
    editor(cell(page, 1)).click()
    palette_run(page, "move-up")  # the selected cell
    assert sources(page) == ["b = 2", "a = 1", "c = 3"]
    expect(cell(page, 0)).to_be_focused()  # it stays selected, in command mode
    palette_run(page, "move-down")
    assert sources(page) == ["a = 1", "b = 2", "c = 3"]
    palette_run(page, "duplicate-cells")
    expect(cells(page)).to_have_count(4)
    assert sources(page) == ["a = 1", "b = 2", "b = 2", "c = 3"]

    page.keyboard.press("z")  # the duplicate undone...
    expect(cells(page)).to_have_count(3)
    page.keyboard.press("Shift+z")  # ...and redone
    expect(cells(page)).to_have_count(4)
    page.keyboard.press("Control+a")  # every cell selected: one command for all
    expect(page.locator("[data-testid=cell][data-selected=true]")).to_have_count(4)
    page.keyboard.press("r")
    expect(page.locator("[data-testid=cell][data-cell-type=raw]")).to_have_count(4)
    page.keyboard.press("y")
    expect(page.locator("[data-testid=cell][data-cell-type=code]")).to_have_count(4)

    palette_run(page, "shortcuts")
    shortcuts = page.get_by_test_id("shortcuts-panel")
    expect(shortcuts).to_be_visible()
    rows = shortcuts.get_by_test_id("shortcut")
    expect(rows.filter(has_text="Select all cells")).to_contain_text("Ctrl+A")
    expect(rows.filter(has_text="Paste cells above")).to_contain_text("Shift+V")
    shortcuts.get_by_test_id("shortcuts-close").click()
    wait_saved(page)
    assert [c["source"] for c in ada.api.cells(sheet["id"])] == sources(page)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_palette_shortcuts_and_panels_are_readable_in_both_themes(
    person: Callable[..., Person],
    browser: Browser,
    screenshots: Path,
    theme: Literal["light", "dark"],
) -> None:
    ada = person("ada")
    sheet = ada.api.worksheet(markdown("# Intro\n## Part"), "x = 1", "print(x)")
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, color_scheme=theme, bypass_csp=True
    )  # (bypass_csp: axe-core is added to the page by the test)
    context.add_cookies([{"name": COOKIE, "value": ada.api.token or "", "url": ada.url}])
    page = context.new_page()
    try:
        page.goto(f"{ada.url}/w/{sheet['id']}")
        expect(page.get_by_test_id("worksheet-page")).to_have_attribute("data-loaded", "true")
        editor(cell(page, 1)).click()
        page.keyboard.press("Escape")
        page.keyboard.press("Shift+J")  # command mode, two cells selected
        assert contrast_failures(page) == [], f"command mode, {theme}"
        page.keyboard.press("Control+Shift+C")
        expect(page.get_by_test_id("command-palette")).to_be_visible()
        page.keyboard.press("ArrowDown")  # a chosen item
        assert contrast_failures(page) == [], f"the palette, {theme}"
        page.keyboard.press("Escape")
        page.keyboard.press("h")
        expect(page.get_by_test_id("shortcuts-panel")).to_be_visible()
        assert contrast_failures(page) == [], f"the shortcuts, {theme}"
        page.keyboard.press("Escape")
        page.keyboard.press("Control+Shift+C")
        page.locator('[data-testid="palette-item"][data-command="toc"]').click()
        expect(page.get_by_test_id("toc-entry")).to_have_count(2)
        page.keyboard.press("Control+f")
        page.keyboard.type("x")
        expect(page.get_by_test_id("find-count")).to_have_text("1 of 2")
        assert contrast_failures(page) == [], f"the contents and find, {theme}"
        page.screenshot(path=screenshots / f"commands-panels-{theme}.png")
    finally:
        context.close()
