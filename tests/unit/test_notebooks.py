"""Worksheets to and from nbformat v4 notebooks (`cellbus_web.notebooks`).

Every exported notebook is checked by nbformat itself (`nbformat.validate` and
`nbformat.reads`), with warnings turned into errors; a worksheet survives export and import
with its sources, outputs and execution counts; a notebook written by nbformat's own API (lists
of lines and all) imports; and each reason to reject a notebook is tried.
"""

from __future__ import annotations

import copy
import json
import uuid
import warnings
from typing import Any

import msgspec
import nbformat
import pytest
from nbformat.v4 import (
    new_code_cell,
    new_markdown_cell,
    new_notebook,
    new_output,
    new_raw_cell,
)

from cellbus_protocol.accounts import WorksheetWithCells
from cellbus_web import notebooks
from cellbus_web.notebooks import (
    ImportedCell,
    ImportedNotebook,
    NotebookError,
    from_notebook,
)

PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5E"
    "rkJggg==\n"
)
WORKSHEET_ID = "0b6f2b1e-4a64-4c38-9a52-7f0f3a1e2c11"


def to_notebook(worksheet: dict[str, Any]) -> dict[str, Any]:
    """The JSON ``worksheet.export`` answers with for `worksheet`, written as the JSON
    ``worksheet.get`` answers with."""
    exported = notebooks.to_notebook(msgspec.convert(worksheet, WorksheetWithCells))
    notebook: dict[str, Any] = msgspec.to_builtins(exported)
    return notebook


def make_cell(
    source: str, outputs: list[dict[str, Any]] | None = None, count: int | None = None, **run: str
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "worksheet": WORKSHEET_ID,
        "source": source,
        "version": 1,
        "outputs": outputs or [],
        "execution_count": count,
        "run_by": run.get("run_by"),
        "run_at": run.get("run_at"),
        "run_msg_id": run.get("run_msg_id"),
    }


def make_worksheet(cells: list[dict[str, Any]], title: str = "Analysis") -> dict[str, Any]:
    return {
        "id": WORKSHEET_ID,
        "title": title,
        "session": "9f" * 16,
        "owner": "ada",
        "role": "owner",
        "created_at": "2025-01-02T03:04:05+00:00",
        "updated_at": "2025-01-02T03:05:00+00:00",
        "members": [],
        "cells": cells,
    }


def full_worksheet() -> dict[str, Any]:
    """A worksheet with every kind of cell and output cellbus saves."""
    run = {"run_by": "ada", "run_at": "2025-01-02T03:04:30+00:00", "run_msg_id": "m1"}
    return make_worksheet(
        [
            make_cell("%%markdown\n# Results\n\nSome *text*.\n"),
            make_cell(
                "print('hi')\nprint('there', file=sys.stderr)\n1 / 0",
                [
                    {"output_type": "stream", "name": "stdout", "text": "hi\nmore\n"},
                    {"output_type": "stream", "name": "stderr", "text": "there\n"},
                    {
                        "output_type": "error",
                        "ename": "ZeroDivisionError",
                        "evalue": "division by zero",
                        "traceback": ["\x1b[31mTraceback\x1b[0m", "ZeroDivisionError: ..."],
                    },
                ],
                3,
                **run,
            ),
            make_cell(
                "plt.plot([1, 2])",
                [
                    {
                        "output_type": "display_data",
                        "data": {"image/png": PNG, "text/plain": "<Figure size 640x480>"},
                        "metadata": {"image/png": {"width": 640, "height": 480}},
                    }
                ],
                4,
                run_by="bob",
            ),
            make_cell(
                "{'a': [1, 2]}",
                [
                    {
                        "output_type": "execute_result",
                        "data": {
                            "text/plain": "{'a': [1,\n  2]}",
                            "text/html": "<b>a</b>\n<i>b</i>",
                            "application/json": {"a": [1, 2]},
                            "application/vnd.custom+json": [1, "x", None],
                        },
                        "metadata": {},
                        "execution_count": 5,
                    }
                ],
                5,
                **run,
            ),
            make_cell("x = 1  # never run"),
        ]
    )


def assert_valid(nb: dict[str, Any]) -> None:
    """nbformat accepts `nb` as it is, with no warning (no repaired ids, no fixes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nbformat.validate(nbformat.from_dict(nb))
        nbformat.validate(nb)
        read = nbformat.reads(json.dumps(nb), as_version=4)
    assert read.nbformat == 4 and read.nbformat_minor == 5
    assert len(read.cells) == len(nb["cells"])


def written_by_nbformat(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """`nb` as a ``.ipynb`` file holds it, parsed: multi-line strings are lists of lines."""
    written: dict[str, Any] = json.loads(nbformat.writes(nb))
    return written


# --- export ---------------------------------------------------------------------------------


def test_export_is_a_valid_notebook() -> None:
    assert_valid(to_notebook(full_worksheet()))


def test_export_of_an_empty_worksheet_is_valid() -> None:
    nb = to_notebook(make_worksheet([], title=""))
    assert_valid(nb)
    assert nb["cells"] == []


def test_export_metadata() -> None:
    nb = to_notebook(full_worksheet())
    assert (nb["nbformat"], nb["nbformat_minor"]) == (4, 5)
    assert nb["metadata"] == {
        "kernelspec": {
            "name": "python3",
            "display_name": "Python 3 (cellbus)",
            "language": "python",
        },
        "language_info": {"name": "python"},
        "title": "Analysis",
        "cellbus": {"worksheet": WORKSHEET_ID},
    }


def test_export_cells() -> None:
    worksheet = full_worksheet()
    markdown, errored, plot, result, never_run = to_notebook(worksheet)["cells"]
    assert [c["id"] for c in (markdown, errored, plot, result, never_run)] == [
        c["id"] for c in worksheet["cells"]
    ]
    assert markdown == {
        "id": worksheet["cells"][0]["id"],
        "cell_type": "markdown",
        "metadata": {},
        "source": "# Results\n\nSome *text*.\n",
    }
    assert errored["cell_type"] == "code"
    assert errored["source"] == worksheet["cells"][1]["source"]
    assert errored["outputs"] == worksheet["cells"][1]["outputs"]
    assert errored["execution_count"] == 3
    assert errored["metadata"] == {
        "cellbus": {"run_by": "ada", "run_at": "2025-01-02T03:04:30+00:00"}
    }
    assert plot["metadata"] == {"cellbus": {"run_by": "bob"}}  # only what is set
    assert result["outputs"] == worksheet["cells"][3]["outputs"]
    assert never_run == {
        "id": worksheet["cells"][4]["id"],
        "cell_type": "code",
        "metadata": {},
        "source": "x = 1  # never run",
        "outputs": [],
        "execution_count": None,
    }


def test_a_markdown_cell_loses_its_outputs_and_a_bare_magic_is_empty() -> None:
    worksheet = make_worksheet(
        [
            make_cell("%%markdown", [{"output_type": "stream", "name": "stdout", "text": "x"}], 1),
            make_cell("%%markdown  \r\n*a*"),
            make_cell("%%markdownish\nx"),
            make_cell("# %%markdown\nx"),
        ]
    )
    nb = to_notebook(worksheet)
    assert_valid(nb)
    assert [(c["cell_type"], c["source"]) for c in nb["cells"]] == [
        ("markdown", ""),
        ("markdown", "*a*"),
        ("code", "%%markdownish\nx"),
        ("code", "# %%markdown\nx"),
    ]
    assert "outputs" not in nb["cells"][0]


def test_export_makes_odd_outputs_valid() -> None:
    """Outputs saved in a shape nbformat allows or not, all exported as valid nbformat."""
    outputs: list[dict[str, Any]] = [
        {"output_type": "stream", "name": "stdout", "text": ["a\n", "b\n"], "extra": 1},
        {
            "output_type": "display_data",
            "data": {"text/plain": ["x\n", "y"], "text/csv": 42, "text/html": None},
            "metadata": None,
            "transient": {"display_id": "d1"},
        },
        {"output_type": "execute_result", "data": {}, "metadata": {}, "execution_count": True},
        {"output_type": "error", "ename": "E", "evalue": None, "traceback": "not a list"},
        {"output_type": "update_display_data", "data": {}, "metadata": {}},
    ]
    cell = make_cell("f()", outputs, count=-1) | {"id": "not a valid id!"}
    nb = to_notebook(make_worksheet([cell]))
    assert_valid(nb)
    (exported,) = nb["cells"]
    assert exported["id"] == "cell-0"
    assert exported["execution_count"] is None
    assert exported["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "a\nb\n"},
        {
            "output_type": "display_data",
            "data": {"text/plain": "x\ny", "text/csv": "42", "text/html": ""},
            "metadata": {},
        },
        {"output_type": "execute_result", "data": {}, "metadata": {}, "execution_count": None},
        {"output_type": "error", "ename": "E", "evalue": "", "traceback": []},
    ]


def test_export_shares_nothing_with_the_worksheet() -> None:
    worksheet = full_worksheet()
    before = copy.deepcopy(worksheet)
    nb = to_notebook(worksheet)
    nb["cells"][3]["outputs"][0]["data"]["application/json"]["a"].append(3)
    nb["cells"][2]["outputs"][0]["metadata"]["image/png"]["width"] = 1
    assert worksheet == before


# --- round trip -----------------------------------------------------------------------------


def test_round_trip_keeps_sources_outputs_and_counts() -> None:
    worksheet = full_worksheet()
    imported = from_notebook(json.loads(json.dumps(to_notebook(worksheet))))
    assert imported.title == "Analysis"
    assert imported.cells == [
        ImportedCell(c["source"], c["outputs"], c["execution_count"]) for c in worksheet["cells"]
    ]


def test_round_trip_through_an_ipynb_file_written_by_nbformat() -> None:
    """nbformat writes multi-line strings as lists of lines; import joins them back."""
    worksheet = full_worksheet()
    ipynb = written_by_nbformat(nbformat.from_dict(to_notebook(worksheet)))
    assert isinstance(ipynb["cells"][1]["outputs"][0]["text"], list)  # really split
    imported = from_notebook(ipynb)
    assert imported.cells == [
        ImportedCell(c["source"], c["outputs"], c["execution_count"]) for c in worksheet["cells"]
    ]


def test_round_trip_from_a_notebook() -> None:
    ipynb = to_notebook(make_worksheet([]))
    ipynb["cells"] = [
        new_markdown_cell("# Title"),
        new_code_cell("print(1)", execution_count=1, outputs=[]),
    ]
    imported = from_notebook(json.loads(json.dumps(ipynb)))
    back = to_notebook(
        make_worksheet([make_cell(c.source, c.outputs, c.execution_count) for c in imported.cells])
    )
    assert [(c["cell_type"], c["source"]) for c in back["cells"]] == [
        ("markdown", "# Title"),
        ("code", "print(1)"),
    ]


# --- import ---------------------------------------------------------------------------------


def test_import_a_notebook_made_with_nbformat() -> None:
    nb = new_notebook(
        metadata={"title": "From Jupyter", "kernelspec": {"name": "python3", "display_name": "P"}},
        cells=[
            new_markdown_cell("# Heading\n\nText."),
            new_code_cell(
                "import sys\nprint('a')\nprint('b')",
                execution_count=1,
                outputs=[
                    new_output("stream", name="stdout", text="a\nb\n"),
                    new_output("display_data", data={"image/png": PNG, "text/plain": "<img>"}),
                    new_output(
                        "execute_result",
                        data={"text/plain": "1\n2", "application/json": {"k": ["v"]}},
                        execution_count=1,
                    ),
                    new_output(
                        "error", ename="KeyError", evalue="'x'", traceback=["line 1", "line 2"]
                    ),
                ],
            ),
            new_code_cell("pass"),
            new_raw_cell("raw text\n"),
        ],
    )
    imported = from_notebook(written_by_nbformat(nb))
    assert imported == ImportedNotebook(
        title="From Jupyter",
        cells=[
            ImportedCell("%%markdown\n# Heading\n\nText.", [], None),
            ImportedCell(
                "import sys\nprint('a')\nprint('b')",
                [
                    {"output_type": "stream", "name": "stdout", "text": "a\nb\n"},
                    {
                        "output_type": "display_data",
                        "data": {"image/png": PNG, "text/plain": "<img>"},
                        "metadata": {},
                    },
                    {
                        "output_type": "execute_result",
                        "data": {"text/plain": "1\n2", "application/json": {"k": ["v"]}},
                        "metadata": {},
                        "execution_count": 1,
                    },
                    {
                        "output_type": "error",
                        "ename": "KeyError",
                        "evalue": "'x'",
                        "traceback": ["line 1", "line 2"],
                    },
                ],
                1,
            ),
            ImportedCell("pass", [], None),
            ImportedCell("%%markdown\nraw text\n", [], None),
        ],
    )


def test_lists_of_lines_are_joined_except_json_values() -> None:
    nb = written_by_nbformat(new_notebook())
    nb["cells"] = [
        {
            "id": "c1",
            "cell_type": "code",
            "metadata": {},
            "source": ["a = 1\n", "b = 2"],
            "execution_count": 7,
            "outputs": [
                {"output_type": "stream", "name": "stderr", "text": ["w", "arn\n"]},
                {
                    "output_type": "execute_result",
                    "execution_count": 7,
                    "metadata": {"isolated": True},
                    "data": {
                        "text/plain": ["x\n", "y"],
                        "image/svg+xml": ["<svg>\n", "</svg>"],
                        "application/json": ["stays", "a list"],
                        "application/vnd.vegalite.v5+json": {"mark": "bar"},
                    },
                },
            ],
        },
        {"id": "c2", "cell_type": "markdown", "metadata": {}, "source": ["# A\n", "b"]},
    ]
    (code, markdown) = from_notebook(nb).cells
    assert code.source == "a = 1\nb = 2"
    assert code.execution_count == 7
    assert code.outputs == [
        {"output_type": "stream", "name": "stderr", "text": "warn\n"},
        {
            "output_type": "execute_result",
            "data": {
                "text/plain": "x\ny",
                "image/svg+xml": "<svg>\n</svg>",
                "application/json": ["stays", "a list"],
                "application/vnd.vegalite.v5+json": {"mark": "bar"},
            },
            "metadata": {"isolated": True},
            "execution_count": 7,
        },
    ]
    assert markdown == ImportedCell("%%markdown\n# A\nb", [], None)


def test_attachments_are_dropped() -> None:
    cell = new_markdown_cell("![x](attachment:x.png)", attachments={"x.png": {"image/png": PNG}})
    imported = from_notebook(written_by_nbformat(new_notebook(cells=[cell])))
    assert imported.cells == [ImportedCell("%%markdown\n![x](attachment:x.png)", [], None)]


@pytest.mark.parametrize("minor", [0, 1, 2, 3, 4, 5])
def test_every_v4_minor_is_accepted(minor: int) -> None:
    cells: list[dict[str, Any]] = [
        {"cell_type": "markdown", "metadata": {}, "source": "m"},
        {"cell_type": "code", "metadata": {}, "source": "c", "outputs": [], "execution_count": 2},
    ]
    if minor == 5:
        for index, cell in enumerate(cells):
            cell["id"] = f"id{index}"
    nb = {"nbformat": 4, "nbformat_minor": minor, "metadata": {}, "cells": cells}
    assert from_notebook(nb) == ImportedNotebook(
        None, [ImportedCell("%%markdown\nm", [], None), ImportedCell("c", [], 2)]
    )


def test_cells_and_outputs_of_a_future_minor_version_are_left_out() -> None:
    nb = written_by_nbformat(new_notebook(cells=[new_code_cell("a"), new_markdown_cell("m")]))
    nb["nbformat_minor"] = 6
    nb["cells"][0]["outputs"] = [{"output_type": "hologram", "data": {}}]
    nb["cells"].insert(1, {"id": "new", "cell_type": "canvas", "metadata": {}})
    imported = from_notebook(nb)
    assert imported.cells == [ImportedCell("a", [], None), ImportedCell("%%markdown\nm", [], None)]


def test_missing_and_repeated_cell_ids_are_accepted_and_the_input_is_untouched() -> None:
    nb = written_by_nbformat(new_notebook(cells=[new_code_cell("a"), new_code_cell("b")]))
    nb["cells"].append(dict(nb["cells"][0]))  # a repeated id
    del nb["cells"][1]["id"]
    before = copy.deepcopy(nb)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        imported = from_notebook(nb)
    assert [cell.source for cell in imported.cells] == ["a", "b", "a"]
    assert nb == before


def test_the_title_is_taken_only_if_it_is_a_nonempty_string() -> None:
    nb = written_by_nbformat(new_notebook())
    assert from_notebook(nb).title is None
    nb["metadata"]["title"] = ""
    assert from_notebook(nb).title is None
    nb["nbformat_minor"] = 1  # before 4.2 the schema does not say what title is
    nb["metadata"]["title"] = ["x"]
    assert from_notebook(nb).title is None


def test_as_many_cells_as_the_limit_is_accepted() -> None:
    nb = written_by_nbformat(new_notebook(cells=[new_code_cell(str(i)) for i in range(3)]))
    assert len(from_notebook(nb, max_cells=3).cells) == 3


# --- rejections -----------------------------------------------------------------------------


def reject(notebook: Any, **options: int) -> str:
    with pytest.raises(NotebookError) as raised:
        from_notebook(notebook, **options)
    message = str(raised.value)
    assert "\n" not in message
    return message


def valid() -> dict[str, Any]:
    return written_by_nbformat(
        new_notebook(
            cells=[new_code_cell("x", outputs=[new_output("stream", name="stdout", text="x")])]
        )
    )


@pytest.mark.parametrize("notebook", [None, [], "{}", 4, True])
def test_reject_what_is_not_an_object(notebook: Any) -> None:
    assert reject(notebook) == "not a notebook: it is not a JSON object"


@pytest.mark.parametrize("version", [None, "4", 4.0, True])
def test_reject_without_a_version_number(version: Any) -> None:
    nb = valid() | {"nbformat": version}
    assert reject(nb) == "not a notebook: it has no nbformat version number"
    del nb["nbformat"]
    assert reject(nb) == "not a notebook: it has no nbformat version number"


def test_reject_nbformat_3() -> None:
    nb = {"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": []}
    assert reject(nb) == "nbformat 3 is not supported: save it as version 4"
    assert reject(valid() | {"nbformat": 5}) == "nbformat 5 is not supported: save it as version 4"


@pytest.mark.parametrize("minor", [None, "5", 5.0, False])
def test_reject_without_a_minor_version_number(minor: Any) -> None:
    message = "not a notebook: it has no nbformat_minor version number"
    assert reject(valid() | {"nbformat_minor": minor}) == message


def test_reject_a_minor_version_nbformat_does_not_know() -> None:
    assert reject(valid() | {"nbformat_minor": -1}).startswith("not a valid notebook: No schema")


@pytest.mark.parametrize("cells", [None, {}, "cells", [["not", "a", "cell"]], [1]])
def test_reject_cells_that_are_not_a_list_of_objects(cells: Any) -> None:
    nb = valid() | {"cells": cells}
    assert reject(nb) == "not a notebook: its cells must be a list of JSON objects"


def test_reject_too_many_cells() -> None:
    nb = written_by_nbformat(new_notebook(cells=[new_code_cell(str(i)) for i in range(4)]))
    assert reject(nb, max_cells=3) == "too many cells (4; the limit is 3)"


def test_reject_a_cell_id_that_is_not_a_string() -> None:
    nb = valid()
    nb["cells"][0]["id"] = ["unhashable"]
    assert reject(nb) == "not a valid notebook: a cell id is not a string"


def test_reject_a_schema_error_in_one_line_saying_where() -> None:
    nb = valid()
    nb["cells"][0]["outputs"][0]["text"] = 5
    assert reject(nb) == (
        "not a valid notebook: 5 is not valid under any of the given schemas"
        " (at cells/0/outputs/0/text)"
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda nb: nb.pop("metadata"), "'metadata' is a required property"),
        (lambda nb: nb["cells"][0].update(cell_type="sql"), "(at cells/0)"),
        (lambda nb: nb["cells"][0].update(extra=1), "'extra' was unexpected"),
        (lambda nb: nb["cells"][0].update(id="no spaces allowed"), "does not match"),
        (lambda nb: nb["cells"][0]["outputs"][0].update(output_type="x"), "(at cells/0/outputs/0)"),
        (lambda nb: nb["cells"][0].pop("execution_count"), "'execution_count' is a required"),
        (lambda nb: nb["metadata"].update(kernelspec={"name": "py"}), "'display_name' is a"),
    ],
)
def test_reject_what_nbformat_finds_invalid(change: Any, expected: str) -> None:
    nb = valid()
    change(nb)
    message = reject(nb)
    assert message.startswith("not a valid notebook: ")
    assert expected in message


def test_a_long_schema_error_is_cut_short() -> None:
    nb = valid()
    nb["cells"][0]["source"] = {"line\n" * 10_000: 1}
    message = reject(nb)
    assert len(message) < 300
    assert message.endswith("... (at cells/0/source)")
