"""Importing a .ipynb file into a new worksheet, and exporting one as a valid notebook."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import nbformat
from playwright.sync_api import expect

from .helpers import Person, cell, cells, eventually, rendered, run, sources


def test_import_a_notebook_run_it_and_export_it(
    person: Callable[..., Person], tmp_path: Path
) -> None:
    ada = person("ada")
    result = nbformat.v4.new_output("execute_result", {"text/plain": "45"}, execution_count=7)
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# Imported\nFrom a file, where $x^2$ is math."),
            nbformat.v4.new_code_cell(
                "total = sum(range(10))\ntotal",
                execution_count=7,
                outputs=[result],
            ),
            nbformat.v4.new_code_cell("print(total * 2)"),
            nbformat.v4.new_raw_cell("Title\n=====", metadata={"raw_mimetype": "text/x-rst"}),
        ]
    )
    path = tmp_path / "analysis.ipynb"
    path.write_text(nbformat.writes(notebook))
    page = ada.page
    page.goto(ada.url + "/")
    with page.expect_file_chooser() as chooser:
        page.get_by_test_id("import-notebook").click()
    chooser.value.set_files(path)
    expect(page.get_by_test_id("worksheet-title")).to_have_text("analysis")
    expect(cells(page)).to_have_count(4)
    expect(rendered(cell(page, 0)).locator("h1")).to_have_text("Imported")  # a Markdown cell
    expect(rendered(cell(page, 0)).locator(".katex")).to_have_count(1)
    expect(cell(page, 3).get_by_test_id("raw-cell")).to_contain_text("text/x-rst")  # raw
    assert sources(page)[1:] == [
        "total = sum(range(10))\ntotal",
        "print(total * 2)",
        "Title\n=====",
    ]
    expect(cell(page, 1).get_by_test_id("output-text")).to_have_text("45")  # saved outputs
    expect(cell(page, 1).get_by_test_id("cell-count")).to_have_text("[7]")
    run(cell(page, 1))
    run(cell(page, 2))
    expect(cell(page, 2).get_by_test_id("output-stdout")).to_have_text("90\n")

    sheet = page.url.rsplit("/", 1)[-1]
    eventually(lambda: ada.api.cells(sheet)[2]["outputs"])  # saved by the server from the feed
    with page.expect_download() as download:
        page.get_by_test_id("export").click()
    assert download.value.suggested_filename == "analysis.ipynb"
    exported = download.value.path().read_text()
    parsed = nbformat.reads(exported, as_version=4)
    nbformat.validate(parsed)
    assert [c.cell_type for c in parsed.cells] == ["markdown", "code", "code", "raw"]
    assert [c.id for c in parsed.cells] == [c.id for c in notebook.cells]  # ids kept
    assert parsed.cells[3].metadata["raw_mimetype"] == "text/x-rst"
    assert parsed.cells[0].source == "# Imported\nFrom a file, where $x^2$ is math."
    outputs = json.loads(exported)["cells"][2]["outputs"]
    assert outputs == [{"output_type": "stream", "name": "stdout", "text": "90\n"}]


def test_a_file_that_is_not_a_notebook_is_refused(
    person: Callable[..., Person], tmp_path: Path
) -> None:
    ada = person("ada")
    path = tmp_path / "broken.ipynb"
    path.write_text('{"cells": "no"}')
    page = ada.page
    page.goto(ada.url + "/")
    with page.expect_file_chooser() as chooser:
        page.get_by_test_id("import-notebook").click()
    chooser.value.set_files(path)
    expect(page.get_by_test_id("toast")).to_contain_text("notebook")
    expect(page.get_by_test_id("no-worksheets")).to_be_visible()
