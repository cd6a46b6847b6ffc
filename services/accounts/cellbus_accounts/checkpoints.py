"""Named checkpoints of a worksheet's document: what one holds, and restoring it.

A checkpoint holds the document's cells and notebook metadata as of a moment, encoded as one
Yjs update of a fresh document holding just that (`state_of`): the content, not the history
(the live document keeps every deleted character, so its own encoding grows with editing;
this one is the size of the cells). It is only ever read (`cells_of`), never merged into the
live document.

Restoring is an edit of the live document like any other, never a rewrite of its history:
`restore` makes the cells equal to the checkpoint's with the fewest changes it can (cells
still there are edited in place, with `NotebookDoc.set_source`'s smallest text edit, so
typing elsewhere in them at the same moment survives; cells deleted since come back with
their ids, so their saved outputs, which live beside the document by cell id, come back
too; cells added since go). The handlers run it in one transaction (`Documents.edit`): one
update, on the feed, that every open page applies. `restore_update` makes the same edit on a
copy instead and returns it, for a client that applies it as its own (the browser does, so
that the person's undo can take it back).
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Map, merge_updates

from .documents import new_document
from .notebook_doc import CellContent, NotebookDoc


def state_of(notebook: NotebookDoc) -> bytes:
    """The checkpoint of `notebook` as it is: its cells and metadata, as one Yjs update."""
    return new_document(notebook.read_cells(), notebook.metadata(), notebook.nbformat_minor())


def cells_of(data: bytes) -> list[CellContent]:
    """The cells a checkpoint holds, in order (each id once: the first cell with it)."""
    notebook = NotebookDoc()
    notebook.doc.apply_update(data)
    seen: set[str] = set()
    cells = []
    for cell in notebook.read_cells():
        if cell.id not in seen:
            seen.add(cell.id)
            cells.append(cell)
    return cells


def restore(notebook: NotebookDoc, target: list[CellContent]) -> None:
    """Make `notebook`'s cells `target` (ids unique), in the caller's transaction. Execution
    counts stay as the live cells have them (they go with the outputs, kept by cell id);
    a cell brought back takes the checkpoint's."""
    wanted = {cell.id for cell in target}
    seen: set[str] = set()
    doomed = []
    for index, cell_id in enumerate(notebook.cell_ids()):
        if cell_id not in wanted or cell_id in seen:  # (malformed cells have no id: "")
            doomed.append(index)
        seen.add(cell_id)
    for index in reversed(doomed):
        notebook.delete(index)
    # Now every cell left is wanted, once: put each in its place, then make it the same.
    for index, cell in enumerate(target):
        if index < len(notebook) and notebook.cell_id(index) == cell.id:
            _same(notebook, index, cell)
            continue
        found = notebook.index_of(cell.id)  # after `index`: the ones before are in place
        if found is None:
            notebook.insert(index, cell)
        else:
            notebook.move(found, index)
            _same(notebook, index, cell)
    while len(notebook) > len(target):  # (none: every cell left is in `target`)
        notebook.delete(len(notebook) - 1)


def _same(notebook: NotebookDoc, index: int, cell: CellContent) -> None:
    """Make the cell at `index` (which has `cell`'s id) hold `cell`'s type, text, metadata
    and attachments, touching only what differs."""
    notebook.set_cell_type(index, cell.cell_type)
    notebook.set_source(index, cell.source)
    notebook.set_metadata(index, cell.metadata)
    live = notebook.cells[index]
    if cell.cell_type != "code" and isinstance(live, Map):
        attachments: Any = live.get("attachments")
        current = attachments.to_py() if isinstance(attachments, Map) else attachments
        if cell.attachments and current != cell.attachments:
            live["attachments"] = cell.attachments
        elif not cell.attachments and "attachments" in live:
            del live["attachments"]


def restore_update(state: bytes, target: list[CellContent]) -> bytes:
    """The update that `restore` would make to the document whose whole state is `state`,
    made on a copy (with a client id of its own, so it never clashes with the live
    document's): an edit for a client to apply as its own. b"" if it changes nothing."""
    copy = NotebookDoc(Doc(skip_gc=True))
    copy.doc.apply_update(state)
    made: list[bytes] = []
    subscription = copy.doc.observe(lambda event: made.append(event.update))
    try:
        with copy.doc.transaction():
            restore(copy, target)
    finally:
        copy.doc.unobserve(subscription)
    return made[0] if len(made) == 1 else merge_updates(*made) if made else b""
