"""A worksheet of 200 cells and a cell that prints 100,000 lines: the page keeps up and stays
usable (it is not timed: what is checked is that it works while it happens)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nbformat
from playwright.sync_api import expect

from .helpers import RUN_TIMEOUT, Person, cell, cells, editor, type_into, wait_saved

FLOOD = """import os, time
for i in range(100_000):
    print(f"line {{i}}")
while not os.path.exists({gate!r}):
    time.sleep(0.02)
print("the end")"""


def test_200_cells_and_100000_lines_stay_usable(
    person: Callable[..., Person], tmp_path: Path
) -> None:
    ada = person("ada")
    gate = tmp_path / "gate"
    sources = [FLOOD.format(gate=str(gate))] + [f"x{i} = {i} * 2" for i in range(1, 200)]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    sheet = ada.api.call("worksheet.import", notebook=notebook, title="Big")
    page = ada.open(sheet)
    expect(cells(page)).to_have_count(200)

    flood = cell(page, 0)
    editor(flood).press("Shift+Enter")
    stdout = flood.get_by_test_id("output-stdout")
    expect(stdout).to_contain_text("line 99999\n", timeout=RUN_TIMEOUT)
    expect(flood).to_have_attribute("data-state", "running")
    notice = flood.get_by_test_id("stream-truncated")
    expect(notice).to_have_text("Showing the last 5,000 of 100,000 lines. Show all")
    assert stdout.evaluate("pre => pre.textContent.split('\\n').length") <= 5001

    last = cell(page, 199)  # meanwhile, typing in another cell works
    last.scroll_into_view_if_needed()
    type_into(last, "total = sum(range(10))")
    wait_saved(page)
    assert ada.api.cells(sheet["id"])[199]["source"] == "total = sum(range(10))"
    editor(last).press("Shift+Enter")
    expect(last).to_have_attribute("data-state", "queued")  # behind the flood

    gate.touch()
    expect(flood).to_have_attribute("data-state", "done", timeout=RUN_TIMEOUT)
    expect(last).to_have_attribute("data-state", "done", timeout=RUN_TIMEOUT)
    expect(notice).to_contain_text("of 100,001 lines")
    expect(stdout).to_contain_text("line 99999\nthe end\n")
    flood.get_by_test_id("stream-show-all").click()
    expect(notice).to_be_hidden()
    expect(stdout).to_contain_text("line 0\nline 1\n")
    assert stdout.evaluate("pre => pre.textContent.split('\\n').length") == 100_002
