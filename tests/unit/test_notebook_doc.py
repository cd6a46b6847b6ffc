"""The YNotebook schema on pycrdt as the accounts service reads and edits it
(`cellbus_accounts.notebook_doc`): pure, no servers."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from pycrdt import Array, Doc, Map, Text

from cellbus_accounts.notebook_doc import (
    CellContent,
    NotebookDoc,
    changed_cells,
    integral,
    repeated_copies,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "documents"


def synced(source: NotebookDoc) -> NotebookDoc:
    """Another replica with everything `source` has."""
    replica = NotebookDoc()
    replica.doc.apply_update(source.doc.get_update())
    return replica


def notebook_with(*sources: str) -> NotebookDoc:
    notebook = NotebookDoc()
    with notebook.doc.transaction():
        notebook.initialise({"kernelspec": {"name": "python3"}})
        notebook.extend(CellContent(id=f"c{i}", source=s) for i, s in enumerate(sources))
    return notebook


def test_a_sources_change_is_the_smallest_edit_so_concurrent_typing_survives() -> None:
    ada = notebook_with("naïve 😀 text")
    bob = synced(ada)
    with bob.doc.transaction():  # bob types at the end meanwhile
        text = bob.cells[0]["source"]
        text.insert(len(text), "!")
    with ada.doc.transaction():  # the API replaces the word in the middle
        ada.set_source(0, "naïve 🙂 text")
    ada.doc.apply_update(bob.doc.get_update(ada.doc.get_state()))
    bob.doc.apply_update(ada.doc.get_update(bob.doc.get_state()))
    assert ada.read_cell(0).source == bob.read_cell(0).source == "naïve 🙂 text!"


def test_metadata_changes_key_by_key_and_numbers_come_back_as_integers() -> None:
    notebook = notebook_with("x")
    with notebook.doc.transaction():
        notebook.set_metadata(0, {"tags": ["parameters"], "collapsed": True, "n": 3})
    other = synced(notebook)
    with other.doc.transaction():
        other.cells[0]["metadata"]["scrolled"] = False
    with notebook.doc.transaction():
        notebook.set_metadata(0, {"tags": ["parameters"], "n": 4})
    notebook.doc.apply_update(other.doc.get_update(notebook.doc.get_state()))
    assert notebook.read_cell(0).metadata == {"tags": ["parameters"], "n": 4, "scrolled": False}
    assert isinstance(notebook.read_cell(0).metadata["n"], int)
    assert integral({"a": [1.0, 2.5, {"b": 3.0}]}) == {"a": [1, 2.5, {"b": 3}]}


def test_a_type_change_gives_the_cell_the_keys_of_its_new_type() -> None:
    notebook = notebook_with("# Title")
    with notebook.doc.transaction():
        notebook.set_cell_type(0, "markdown")
    cell = notebook.cells[0]
    assert (cell["cell_type"], "outputs" in cell, "execution_count" in cell) == (
        "markdown", False, False,
    )  # fmt: skip
    with notebook.doc.transaction():
        notebook.set_cell_type(0, "code")
    assert notebook.read_cell(0) == CellContent(id="c0", source="# Title")


def test_moving_keeps_the_cell_and_two_concurrent_moves_leave_one_copy_after_repair() -> None:
    ada = notebook_with("a", "b", "c")
    bob = synced(ada)
    with ada.doc.transaction():
        ada.move(0, 2)
    with bob.doc.transaction():
        bob.move(0, 1)
    events: list[Any] = []
    subscription = ada.cells.observe_deep(events.extend)
    ada.doc.apply_update(bob.doc.get_update(ada.doc.get_state()))
    ada.cells.unobserve(subscription)
    assert sorted(ada.cell_ids()) == ["c0", "c0", "c1", "c2"]  # both copies survive the merge
    _, inserted = changed_cells(ada, events)
    with ada.doc.transaction():
        assert inserted == {"c0"}
        for index in repeated_copies(ada, inserted):
            ada.delete(index)
    assert sorted(ada.cell_ids()) == ["c0", "c1", "c2"]
    assert ada.read_cell(ada.cell_ids().index("c0")).source == "a"


def test_reading_a_document_outside_the_schema_takes_what_fits() -> None:
    notebook = NotebookDoc()
    with notebook.doc.transaction():
        notebook.cells.append(Map({"cell_type": "code", "source": Text("no id")}))
        notebook.cells.append(Map({"id": "x", "cell_type": "sql", "source": 7, "metadata": "m"}))
        notebook.cells.append("not a cell")
        notebook.meta["metadata"] = "not a map"
    assert notebook.read_cells() == [CellContent(id="x", cell_type="code", source="")]
    assert notebook.metadata() == {}
    assert notebook.nbformat_minor() == 5


def test_a_document_that_went_through_concurrent_moves_encodes_to_something_decodable() -> None:
    """A real history (10 clients' random edits, reconnects, concurrent moves) after which
    yrs 0.28, with garbage collection, encoded the document so that decoding it panicked;
    `NotebookDoc` keeps deleted content instead, and its encoding decodes anywhere."""
    updates = [
        base64.b64decode(u) for u in json.loads((FIXTURES / "yrs-gc-panic.json").read_text())
    ]
    notebook = NotebookDoc()
    for update in updates:
        notebook.doc.apply_update(update)
    fresh: Doc[Any]
    for fresh in (Doc(), Doc(skip_gc=True)):
        fresh.apply_update(notebook.doc.get_update())
        assert NotebookDoc(fresh).read_cells() == notebook.read_cells()
    assert len(notebook.read_cells()) > 3
    assert isinstance(notebook.cells, Array)
