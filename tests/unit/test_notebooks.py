"""Worksheets to and from nbformat v4 notebooks (`cellbus_web.notebooks`): lossless both ways.

The round trips start from real-world-style files (tests/fixtures/notebooks): each is imported
(`from_notebook`), held as a worksheet holds it (the cells and metadata as the accounts service
would return them, every number in metadata and attachments a double, as in the CRDT
document, and the whole worksheet through JSON, as over the bus), exported (`to_notebook`),
and compared with the file field by field: every cell's id, type, source, metadata,
attachments, outputs and execution count, and the notebook's metadata; only
``metadata.cellbus`` may differ, as cellbus owns it. Multi-line strings are compared joined
(nbformat's own `rejoin_lines`), as nbformat reads them. Every export is checked by nbformat
itself (`nbformat.validate` and `nbformat.reads`), with warnings turned into errors. Then each
reason to reject a notebook is tried.
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from pathlib import Path
from typing import Any

import msgspec
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from nbformat.v4.rwbase import rejoin_lines

from cellbus_protocol.accounts import CellView, NotebookCell, WorksheetWithCells
from cellbus_web import notebooks
from cellbus_web.notebooks import ImportedNotebook, NotebookError, from_notebook

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "notebooks"
FIXTURE_NAMES = sorted(path.name for path in FIXTURES.glob("*.ipynb"))
WORKSHEET_ID = "0b6f2b1e-4a64-4c38-9a52-7f0f3a1e2c11"
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5E"
    "rkJggg==\n"
)
NBFORMAT_ID = re.compile(r"[0-9a-f]{8}")  # what nbformat gives a cell that has no id


def load(name: str) -> dict[str, Any]:
    """A fixture as ``worksheet.import`` receives it: the parsed file."""
    parsed: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return parsed


def as_doubles(value: Any) -> Any:
    """`value` with every int a float, as a Y document stores numbers (yjs has no ints)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {key: as_doubles(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_doubles(item) for item in value]
    return value


def held(imported: ImportedNotebook, title: str | None = None) -> WorksheetWithCells:
    """The worksheet ``worksheet.get`` would return after `imported` was stored: the
    document's cells in order (metadata and attachments read back as doubles) with their
    outputs and runs, the notebook's metadata, all through JSON as over the bus."""
    cells = [
        CellView(
            id=cell.id,
            worksheet=WORKSHEET_ID,
            cell_type=cell.cell_type,
            source=cell.source,
            metadata=as_doubles(cell.metadata),
            attachments=as_doubles(cell.attachments),
            version=1,
            outputs=cell.outputs,
            execution_count=cell.execution_count,
            run_by=cell.run_by,
            run_at=cell.run_at,
            run_msg_id=None,
        )
        for cell in imported.cells
    ]
    worksheet = WorksheetWithCells(
        id=WORKSHEET_ID,
        title=title or imported.title or "Imported",
        session="9f" * 16,
        owner="ada",
        role="owner",
        created_at="2026-11-24T00:39:00+00:00",
        updated_at="2026-11-24T00:39:00+00:00",
        cells=cells,
        members=[],
        metadata=as_doubles(imported.metadata),
        nbformat_minor=imported.nbformat_minor,
    )
    return msgspec.json.decode(msgspec.json.encode(worksheet), type=WorksheetWithCells)


def export(worksheet: WorksheetWithCells) -> dict[str, Any]:
    """The JSON ``worksheet.export`` answers with, parsed."""
    exported: dict[str, Any] = json.loads(msgspec.json.encode(notebooks.to_notebook(worksheet)))
    return exported


def joined(notebook: dict[str, Any]) -> dict[str, Any]:
    """`notebook` with its multi-line strings joined, by nbformat's own reader code."""
    node = nbformat.from_dict(copy.deepcopy(notebook))
    rejoin_lines(node)
    plain: dict[str, Any] = json.loads(json.dumps(node))
    return plain


def without_cellbus(metadata: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in metadata.items() if key != "cellbus"}


def canonical(value: Any) -> str:
    """`value` as JSON text: equal only if ints are still ints (``1 == 1.0`` in Python)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def assert_valid(nb: dict[str, Any]) -> None:
    """nbformat accepts `nb` as it is, with no warning (no repaired ids, no fixes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nbformat.validate(nbformat.from_dict(copy.deepcopy(nb)))
        nbformat.validate(copy.deepcopy(nb))
        read = nbformat.reads(json.dumps(nb), as_version=4)
    assert read.nbformat == 4 and read.nbformat_minor == 5
    assert len(read.cells) == len(nb["cells"])


def assert_same_cell(exported: dict[str, Any], original: dict[str, Any]) -> None:
    """`exported` holds all `original` holds (a joined cell), field by field, ids aside."""
    name = exported["id"]
    assert exported["cell_type"] == original["cell_type"], name
    assert exported["source"] == original["source"], name
    assert without_cellbus(exported["metadata"]) == without_cellbus(original["metadata"]), name
    assert exported.get("attachments") == original.get("attachments"), name
    assert exported.get("outputs") == original.get("outputs"), name
    assert exported.get("execution_count") == original.get("execution_count"), name
    assert set(exported) == set(original) | {"id"}, name  # no field lost, none added
    exported_rest = exported | {"id": None, "metadata": without_cellbus(exported["metadata"])}
    original_rest = original | {"id": None, "metadata": without_cellbus(original["metadata"])}
    assert canonical(exported_rest) == canonical(original_rest), name


def round_trip(name: str) -> tuple[dict[str, Any], ImportedNotebook, dict[str, Any]]:
    """The fixture, what importing it gives, and the export of the worksheet holding that."""
    original = load(name)
    imported = from_notebook(copy.deepcopy(original))
    exported = export(held(imported))
    assert_valid(exported)
    return original, imported, exported


# --- round trips ----------------------------------------------------------------------------


def test_the_fixtures_are_there() -> None:
    assert {"report.ipynb", "slides_widgets.ipynb", "legacy_v4_4.ipynb",
            "duplicate_ids.ipynb"} <= set(FIXTURE_NAMES)  # fmt: skip


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_round_trip_keeps_every_cell_field(name: str) -> None:
    original, _, exported = round_trip(name)
    expected = joined(original)
    assert (exported["nbformat"], exported["nbformat_minor"]) == (4, 5)
    assert len(exported["cells"]) == len(expected["cells"])
    for exported_cell, original_cell in zip(exported["cells"], expected["cells"], strict=True):
        assert_same_cell(exported_cell, original_cell)


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_round_trip_keeps_the_notebook_metadata(name: str) -> None:
    original, _, exported = round_trip(name)
    metadata = without_cellbus(original["metadata"])
    assert without_cellbus(exported["metadata"]) == metadata
    assert canonical(without_cellbus(exported["metadata"])) == canonical(metadata)
    assert exported["metadata"]["cellbus"] == {"worksheet": WORKSHEET_ID}


@pytest.mark.parametrize("name", ["report.ipynb", "slides_widgets.ipynb"])
def test_round_trip_keeps_cell_ids(name: str) -> None:
    original, imported, exported = round_trip(name)
    ids = [cell["id"] for cell in original["cells"]]
    assert [cell.id for cell in imported.cells] == ids
    assert [cell["id"] for cell in exported["cells"]] == ids


def test_a_notebook_without_ids_gets_new_ones_kept_by_export() -> None:
    original, imported, exported = round_trip("legacy_v4_4.ipynb")
    assert original["nbformat_minor"] == 4
    assert all("id" not in cell for cell in original["cells"])
    ids = [cell.id for cell in imported.cells]
    assert all(NBFORMAT_ID.fullmatch(cell_id) for cell_id in ids)
    assert len(set(ids)) == len(ids)
    assert [cell["id"] for cell in exported["cells"]] == ids
    assert imported.nbformat_minor == 5  # its cells have ids now


def test_repeated_and_missing_ids_are_repaired_as_nbformat_does() -> None:
    original, imported, exported = round_trip("duplicate_ids.ipynb")
    assert [cell.get("id") for cell in original["cells"]] == ["a1", "a1", None, "b2", "b2", "a1"]
    ids = [cell.id for cell in imported.cells]
    assert (ids[0], ids[3]) == ("a1", "b2")  # the first of each is kept
    for index in (1, 2, 4, 5):
        assert NBFORMAT_ID.fullmatch(ids[index])
    assert len(set(ids)) == len(ids)
    assert [cell["id"] for cell in exported["cells"]] == ids


def test_every_kind_of_cell_metadata_is_kept() -> None:
    """Spelled out, so that a fixture losing a field cannot pass unnoticed."""
    _, imported, exported = round_trip("report.ipynb")
    by_id = {cell["id"]: cell for cell in exported["cells"]}
    assert by_id["parameters"]["metadata"]["tags"] == ["parameters"]
    assert by_id["imports"]["metadata"]["jupyter"] == {"source_hidden": True}
    assert by_id["imports"]["metadata"]["editable"] is False
    assert by_id["plot"]["metadata"]["scrolled"] == "auto"
    assert by_id["json"]["metadata"]["collapsed"] is True
    assert by_id["latex-preamble"]["metadata"] == {"raw_mimetype": "text/latex"}
    assert by_id["rst-note"]["metadata"] == {"format": "text/restructuredtext"}
    assert by_id["raw-with-attachment"]["attachments"]["logo.png"]["image/png"].startswith("iVBO")
    assert by_id["intro"]["attachments"]["image.png"]["image/png"].startswith("iVBO")
    assert "attachment:image.png" in by_id["intro"]["source"]
    assert [output["output_type"] for cell in exported["cells"]
            for output in cell.get("outputs", [])] == [
        "stream", "stream", "display_data", "execute_result", "display_data", "error", "stream",
        "execute_result",
    ]  # fmt: skip
    assert by_id["plot"]["outputs"][0]["metadata"]["image/png"] == {"height": 480, "width": 640}
    assert {cell.cell_type for cell in imported.cells} == {"code", "markdown", "raw"}


def test_widget_state_and_slideshow_metadata_are_kept_with_their_ints() -> None:
    _, imported, exported = round_trip("slides_widgets.ipynb")
    state = exported["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]
    assert state["version_major"] == 2 and type(state["version_major"]) is int
    slider = state["state"]["1f0c4c4d8e9a4d6b9b8f0a1e2c3d4e5f"]["state"]
    assert (slider["value"], type(slider["value"])) == (200, int)
    assert slider["continuous_update"] is True and slider["tabbable"] is None
    opacity = state["state"]["9e8d7c6b5a4f43e2d1c0b9a8f7e6d5c4"]["state"]["opacity"]
    assert opacity == 0.75
    assert [cell["metadata"].get("slideshow", {}).get("slide_type") for cell in exported["cells"]] \
        == ["slide", "subslide", "fragment", "notes", "skip", "-"]  # fmt: skip
    assert imported.metadata["widgets"] == load("slides_widgets.ipynb")["metadata"]["widgets"]


def test_run_details_in_metadata_cellbus_are_taken_and_given_back() -> None:
    original, imported, exported = round_trip("slides_widgets.ipynb")
    (slider,) = [cell for cell in imported.cells if cell.id == "slider"]
    assert (slider.run_by, slider.run_at) == ("ada", "2026-11-24T00:39:56.615339+00:00")
    assert "cellbus" not in slider.metadata
    assert "cellbus" not in imported.metadata  # the worksheet it came from is not this one
    (exported_slider,) = [cell for cell in exported["cells"] if cell["id"] == "slider"]
    (original_slider,) = [cell for cell in original["cells"] if cell["id"] == "slider"]
    assert exported_slider["metadata"]["cellbus"] == original_slider["metadata"]["cellbus"]


def test_import_gives_notebook_cells() -> None:
    imported = from_notebook(load("report.ipynb"))
    assert imported.title == "Quarterly orbit report"
    assert imported.nbformat_minor == 5
    assert imported.cells[1] == NotebookCell(
        id="parameters",
        cell_type="code",
        source='planet = "Earth"\nsamples = 100',
        metadata={"tags": ["parameters"], "papermill": {"duration": 0.01, "status": "completed"}},
        execution_count=1,
    )
    assert imported.cells[8] == NotebookCell(
        id="latex-preamble",
        cell_type="raw",
        source="\\begin{equation}\n  E = mc^2\n\\end{equation}\n",
        metadata={"raw_mimetype": "text/latex"},
    )
    assert imported.cells[11] == NotebookCell(id="empty", cell_type="code", source="")


def test_round_trip_through_a_file_written_by_nbformat() -> None:
    """An export written by nbformat (lists of lines again) imports to the same cells."""
    _, imported, exported = round_trip("report.ipynb")
    written = json.loads(nbformat.writes(nbformat.from_dict(exported)))
    assert isinstance(written["cells"][0]["source"], list)  # really split
    again = from_notebook(written)
    assert again.cells == [
        msgspec.structs.replace(cell, metadata=without_cellbus(cell.metadata))
        for cell in imported.cells
    ]
    assert again.metadata == imported.metadata


# --- export of what cellbus made ------------------------------------------------------------


def make_cell(cell_id: str, source: str, **fields: Any) -> CellView:
    values: dict[str, Any] = {
        "id": cell_id, "worksheet": WORKSHEET_ID, "source": source, "version": 1,
        "outputs": [], "execution_count": None, "run_by": None, "run_at": None,
        "run_msg_id": None,
    }  # fmt: skip
    return msgspec.convert(values | fields, CellView)


def make_worksheet(cells: list[CellView], **fields: Any) -> WorksheetWithCells:
    values: dict[str, Any] = {
        "id": WORKSHEET_ID, "title": "Analysis", "session": "9f" * 16, "owner": "ada",
        "role": "owner", "created_at": "2025-01-02T03:04:05+00:00",
        "updated_at": "2025-01-02T03:05:00+00:00", "members": [], "cells": [],
    }  # fmt: skip
    worksheet = msgspec.convert(values | fields, WorksheetWithCells)
    worksheet.cells = cells
    return worksheet


def test_export_of_a_worksheet_made_in_cellbus() -> None:
    run = {"run_by": "ada", "run_at": "2025-01-02T03:04:30+00:00", "run_msg_id": "m1"}
    stream = {"output_type": "stream", "name": "stdout", "text": "hi\n"}
    worksheet = make_worksheet(
        [
            make_cell("c1", "# Results", cell_type="markdown"),
            make_cell("c2", "print('hi')", outputs=[stream], execution_count=3, **run),
            make_cell("c3", "x = 1", run_by="bob"),
            make_cell("c4", "never run"),
        ]
    )
    nb = export(worksheet)
    assert_valid(nb)
    assert nb["metadata"] == {
        "title": "Analysis",
        "kernelspec": {
            "name": "python3",
            "display_name": "Python 3 (cellbus)",
            "language": "python",
        },
        "language_info": {"name": "python"},
        "cellbus": {"worksheet": WORKSHEET_ID},
    }
    assert nb["cells"] == [
        {"cell_type": "markdown", "id": "c1", "metadata": {}, "source": "# Results"},
        {
            "cell_type": "code",
            "id": "c2",
            "metadata": {"cellbus": {"run_by": "ada", "run_at": "2025-01-02T03:04:30+00:00"}},
            "source": "print('hi')",
            "outputs": [stream],
            "execution_count": 3,
        },
        {"cell_type": "code", "id": "c3", "metadata": {"cellbus": {"run_by": "bob"}},
         "source": "x = 1", "outputs": [], "execution_count": None},
        {"cell_type": "code", "id": "c4", "metadata": {}, "source": "never run",
         "outputs": [], "execution_count": None},
    ]  # fmt: skip


def test_export_of_an_empty_worksheet_is_valid() -> None:
    nb = export(make_worksheet([], title=""))
    assert_valid(nb)
    assert nb["cells"] == []


def test_export_keeps_the_notebook_kernel_and_shows_a_rename() -> None:
    metadata = {"title": "Old name", "kernelspec": {"name": "ir", "display_name": "R"}}
    nb = export(make_worksheet([], title="New name", metadata=metadata))
    assert nb["metadata"] == {
        "title": "New name",
        "kernelspec": {"name": "ir", "display_name": "R"},
        "language_info": {"name": "python"},  # the default: it had none
        "cellbus": {"worksheet": WORKSHEET_ID},
    }


def test_export_leaves_out_what_nbformat_would_reject() -> None:
    """A client can write any JSON in the document's metadata; the export stays valid."""
    worksheet = make_worksheet(
        [
            make_cell(
                "c1",
                "x",
                metadata={"tags": "not a list", "collapsed": "maybe", "scrolled": 1.0,
                          "keep": {"n": 2.0, "f": 2.5}, "cellbus": {"run_by": "mallory"}},
            ),
            make_cell("c1", "same id", cell_type="markdown", metadata={"name": ["x"]}),
            make_cell("not a valid id!", "bad id", cell_type="raw", metadata={"format": 3}),
            make_cell("cell-2", "takes the name a repair would give", cell_type="raw"),
            make_cell(
                "c5",
                "![a](attachment:a.png)",
                cell_type="markdown",
                attachments={"a.png": {"image/png": ["iVBO", "Rw=="]}, "b.txt": "not a bundle"},
            ),
            make_cell("c6", "code with attachments", attachments={"a.png": {"image/png": PNG}}),
            make_cell("c7", "was code", cell_type="markdown", execution_count=3,
                      outputs=[{"output_type": "stream", "name": "stdout", "text": "x"}]),
        ],
        metadata={"kernelspec": {"name": "no display name"}, "orig_nbformat": 3.0,
                  "cellbus": {"worksheet": "another"}, "language_info": {"name": "python"}},
    )  # fmt: skip
    nb = export(worksheet)
    assert_valid(nb)
    assert nb["metadata"]["kernelspec"]["display_name"] == "Python 3 (cellbus)"
    assert (nb["metadata"]["orig_nbformat"], type(nb["metadata"]["orig_nbformat"])) == (3, int)
    assert nb["metadata"]["cellbus"] == {"worksheet": WORKSHEET_ID}
    first, second, third, fourth, fifth, sixth, seventh = nb["cells"]
    assert first["metadata"] == {"keep": {"n": 2, "f": 2.5}}  # scrolled=1 is not valid either
    assert second["id"] not in ("c1", "cell-2") and second["metadata"] == {}
    assert third["id"] not in ("c1", "cell-2") and third["metadata"] == {}
    assert fourth["id"] == "cell-2"
    assert len({cell["id"] for cell in nb["cells"]}) == 7
    assert fifth["attachments"] == {"a.png": {"image/png": "iVBORw=="}}
    assert "attachments" not in sixth
    assert "outputs" not in seventh and "execution_count" not in seventh


def test_cells_with_the_same_metadata_get_the_same_verdict_and_their_own_copy() -> None:
    metadata = {"tags": [1], "keep": [1.0]}
    worksheet = make_worksheet([make_cell(f"c{index}", "x", metadata=metadata) for index in (1, 2)])
    first, second = notebooks.to_notebook(worksheet).cells
    assert first.metadata == second.metadata == {"keep": [1]}
    first.metadata["keep"].append(2)
    assert second.metadata == {"keep": [1]}


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
    nb = export(make_worksheet([make_cell("c1", "f()", outputs=outputs, execution_count=-1)]))
    assert_valid(nb)
    (exported,) = nb["cells"]
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
    worksheet = held(from_notebook(load("report.ipynb")))
    before = msgspec.json.encode(worksheet)
    nb = notebooks.to_notebook(worksheet)
    nb.metadata["language_info"]["codemirror_mode"]["version"] = 4
    for cell in nb.cells:
        cell.metadata["touched"] = True
        if isinstance(cell, notebooks.CodeCell):
            for output in cell.outputs:
                output["touched"] = True
        elif isinstance(cell.attachments, dict):
            for bundle in cell.attachments.values():
                bundle["touched"] = True
    assert msgspec.json.encode(worksheet) == before


def test_the_float_helper_does_what_the_document_does() -> None:
    assert as_doubles({"a": [1, True, None, {"b": 2}], "c": 1.5}) == {
        "a": [1.0, True, None, {"b": 2.0}],
        "c": 1.5,
    }
    assert type(as_doubles({"b": 2})["b"]) is float


# --- import ---------------------------------------------------------------------------------


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
    imported = from_notebook(nb)
    assert imported.nbformat_minor == 5
    assert [(cell.cell_type, cell.source, cell.execution_count) for cell in imported.cells] == [
        ("markdown", "m", None),
        ("code", "c", 2),
    ]


def test_cells_and_outputs_of_a_future_minor_version_are_left_out() -> None:
    nb = written_by_nbformat(new_notebook(cells=[new_code_cell("a"), new_markdown_cell("m")]))
    nb["nbformat_minor"] = 6
    nb["cells"][0]["outputs"] = [{"output_type": "hologram", "data": {}}]
    nb["cells"].insert(1, {"id": "new", "cell_type": "canvas", "metadata": {}})
    imported = from_notebook(nb)
    assert [(cell.cell_type, cell.source, cell.outputs) for cell in imported.cells] == [
        ("code", "a", []),
        ("markdown", "m", []),
    ]
    assert imported.nbformat_minor == 6


def test_the_input_is_untouched_and_no_warning_escapes() -> None:
    nb = load("duplicate_ids.ipynb")
    before = copy.deepcopy(nb)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_notebook(nb)
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


def written_by_nbformat(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """`nb` as a ``.ipynb`` file holds it, parsed: multi-line strings are lists of lines."""
    written: dict[str, Any] = json.loads(nbformat.writes(nb))
    return written


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
        (lambda nb: nb["cells"][0]["metadata"].update(tags="x"), "(at cells/0/metadata/tags)"),
        (lambda nb: nb["cells"][0].update(attachments={}), "(at cells/0)"),  # not on code cells
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
