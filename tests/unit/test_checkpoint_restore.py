"""Restoring a named checkpoint of a document (`cellbus_accounts.checkpoints`): what one holds,
and the one edit that makes the cells the checkpoint's again. Pure, no servers."""

from __future__ import annotations

import random

from pycrdt import Map

from cellbus_accounts.checkpoints import cells_of, restore, restore_update, state_of
from cellbus_accounts.documents import default_metadata, new_document
from cellbus_accounts.notebook_doc import CellContent, NotebookDoc


def notebook_of(*cells: CellContent) -> NotebookDoc:
    notebook = NotebookDoc()
    notebook.doc.apply_update(new_document(list(cells), default_metadata()))
    return notebook


def replica_of(source: NotebookDoc) -> NotebookDoc:
    replica = NotebookDoc()
    replica.doc.apply_update(source.doc.get_update())
    return replica


def view(notebook: NotebookDoc) -> list[tuple[str, str, str, object]]:
    return [(c.id, c.cell_type, c.source, c.metadata) for c in notebook.read_cells()]


A = CellContent(id="a", source="a = 1", metadata={"tags": ["x"]})
B = CellContent(id="b", cell_type="markdown", source="# B", attachments={"i.png": {"x": "y"}})
C = CellContent(id="c", source="c = 3", execution_count=4)


def test_a_checkpoint_holds_the_cells_and_metadata_not_the_history() -> None:
    notebook = notebook_of(A, B, C)
    for i in range(200):  # much typing, all deleted again: kept in the document's history
        with notebook.doc.transaction():
            notebook.set_source(0, f"value = {i * 7919 % 10007}  # try {i}")
    with notebook.doc.transaction():
        notebook.set_source(0, "a = 1")
    data = state_of(notebook)
    assert cells_of(data) == notebook.read_cells() == [A, B, C]
    assert len(data) < len(notebook.doc.get_update()) / 4


def test_restore_edits_brings_back_deletes_and_reorders_to_the_checkpoints_cells() -> None:
    notebook = notebook_of(A, B, C)
    target = cells_of(state_of(notebook))
    with notebook.doc.transaction():
        notebook.set_source(0, "a = 100")
        notebook.set_metadata(0, {"collapsed": True})
        notebook.delete(1)  # b
        notebook.insert(0, CellContent(id="new", source="added"))
        notebook.move(2, 0)  # c first
        notebook.set_cell_type(0, "raw")
    with notebook.doc.transaction():
        restore(notebook, target)
    assert view(notebook) == view(notebook_of(A, B, C))
    assert notebook.read_cells()[1].attachments == B.attachments  # brought back whole


def test_restore_keeps_the_live_execution_count_of_a_cell_still_there() -> None:
    notebook = notebook_of(A, C)
    target = cells_of(state_of(notebook))
    with notebook.doc.transaction():
        notebook.set_execution_count(1, 9)  # a run since: its outputs are the live ones
    with notebook.doc.transaction():
        restore(notebook, target)
    assert notebook.read_cells()[1].execution_count == 9


def test_restore_drops_malformed_cells_and_repeated_ids() -> None:
    notebook = notebook_of(A, B)
    target = cells_of(state_of(notebook))
    with notebook.doc.transaction():
        notebook.cells.append(Map({"no": "id"}))
        notebook.insert(0, CellContent(id="b", source="a copy"))
    with notebook.doc.transaction():
        restore(notebook, target)
    assert view(notebook) == view(notebook_of(A, B))
    assert len(notebook) == 2


def test_a_restore_keeps_typing_elsewhere_in_a_cell_made_at_the_same_moment() -> None:
    notebook = notebook_of(CellContent(id="a", source="start middle end"))
    target = cells_of(state_of(notebook))
    with notebook.doc.transaction():
        notebook.set_source(0, "start MIDDLE end")
    typist = replica_of(notebook)
    with typist.doc.transaction():
        typist.set_source(0, "start MIDDLE end!")  # at the same moment as the restore
    update = restore_update(notebook.doc.get_update(), target)
    notebook.doc.apply_update(update)
    notebook.doc.apply_update(typist.doc.get_update())
    assert notebook.read_cells()[0].source == "start middle end!"


def test_restore_update_is_the_same_edit_made_on_a_copy_with_a_client_id_of_its_own() -> None:
    rng = random.Random(3)
    for _ in range(20):
        cells = [CellContent(id=f"c{i}", source=f"s{i}") for i in range(rng.randint(0, 6))]
        notebook = notebook_of(*cells)
        target = cells_of(state_of(notebook))
        with notebook.doc.transaction():
            for _ in range(rng.randint(1, 5)):
                choice = rng.random()
                if len(notebook) == 0 or choice < 0.3:
                    new = CellContent(id=f"n{rng.randrange(10**6)}", source="n")
                    notebook.insert(rng.randint(0, len(notebook)), new)
                elif choice < 0.5:
                    notebook.delete(rng.randrange(len(notebook)))
                elif choice < 0.7 and len(notebook) > 1:
                    notebook.move(rng.randrange(len(notebook)), rng.randrange(len(notebook) - 1))
                else:
                    notebook.set_source(rng.randrange(len(notebook)), str(rng.random()))
        live = notebook.doc.get_update()
        update = restore_update(live, target)
        assert bool(update) == (notebook.read_cells() != target)
        made = replica_of(notebook)
        made.doc.apply_update(update)
        assert made.read_cells() == target
        assert restore_update(made.doc.get_update(), target) == b""  # already the checkpoint's
        # the live document takes the edit, then edits on: no clash of ids, both converge
        notebook.doc.apply_update(update)
        with notebook.doc.transaction():
            notebook.insert(0, CellContent(id="after", source="more"))
        made.doc.apply_update(notebook.doc.get_update())
        assert view(made) == view(notebook) and view(made)[0][0] == "after"
