"""A worksheet's document: jupyter_ydoc's YNotebook schema on a pycrdt `Doc`.

The schema is kept exactly (docs/protocol.md, "The worksheet document"), so that a JupyterLab
client could join the same room: root ``meta`` (``nbformat``, ``nbformat_minor``,
``metadata``) and root ``cells``, an array of maps (``id``, ``cell_type``, ``source`` as text,
``metadata``, ``execution_count`` and an always-empty ``outputs`` on code cells,
``attachments`` on markdown and raw cells). Outputs never enter the document.

Editors' clients write to the document directly, and a client is hostile until proven
otherwise: it may leave a cell without an id, put a number where text belongs, or add keys of
its own. So reading never trusts the shape (`read_cell` takes what fits and uses defaults for
the rest) and nothing here raises on a malformed cell. Edits made here (the JSON-RPC cell
methods, imports, a run's execution count) keep the schema.

Yjs numbers are doubles: integral numbers read back as floats, which `integral` turns back
into integers (as jupyter_ydoc's ``cast_all`` does), so a notebook's ``"collapsed": 1``
survives.

pycrdt's text positions count UTF-8 bytes; `set_source` converts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast, get_args

from pycrdt import Array, ArrayEvent, Doc, Map, MapEvent, Text

from cellbus_protocol.views import CellType

NBFORMAT = 4
NBFORMAT_MINOR = 5
CELL_TYPES: tuple[CellType, ...] = get_args(CellType)


def integral(value: Any) -> Any:
    """`value` with every integral float inside it (dicts and lists too) as an int: how a
    JSON value read back from a Yjs document gets its integers back."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [integral(item) for item in value]
    return value


@dataclass(frozen=True)
class CellContent:
    """What the document holds of one cell."""

    id: str
    cell_type: CellType = "code"
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    attachments: dict[str, Any] | None = None
    execution_count: int | None = None


def new_cell_id() -> str:
    """A fresh cell id (nbformat's rule: 1-64 of ``[a-zA-Z0-9_-]``)."""
    return str(uuid.uuid4())


class NotebookDoc:
    """The YNotebook view of a pycrdt `Doc`: reading its cells, and edits in its schema.

    Edits are not wrapped in transactions here: the caller groups them (`Doc.transaction`)
    so that one request is one update.
    """

    def __init__(self, doc: Doc[Any] | None = None) -> None:
        # Without garbage collection: yrs 0.28 (pycrdt 0.14) can encode a collected
        # document so that decoding it panics (seen after concurrent moves and deletes;
        # tests/unit/test_notebook_doc.py). Deleted content is kept as the history is.
        self.doc = doc if doc is not None else Doc(skip_gc=True)
        self.meta: Map[Any] = self.doc.get("meta", type=Map)
        self.cells: Array[Any] = self.doc.get("cells", type=Array)

    # -- reading ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.cells)

    def cell_id(self, index: int) -> str:
        """The id of the cell at `index` ("" for a malformed cell)."""
        cell = self.cells[index]
        if isinstance(cell, Map):
            value = cell.get("id")
            if isinstance(value, str):
                return value
        return ""

    def cell_ids(self) -> list[str]:
        return [self.cell_id(index) for index in range(len(self.cells))]

    def index_of(self, cell_id: str) -> int | None:
        for index in range(len(self.cells)):
            if self.cell_id(index) == cell_id:
                return index
        return None

    def read_cell(self, index: int) -> CellContent:
        cell = self.cells[index]
        if not isinstance(cell, Map):
            return CellContent(id="")
        values = dict(cell.items())
        cell_type = values.get("cell_type")
        source = values.get("source")
        metadata = values.get("metadata")
        attachments = values.get("attachments")
        count = integral(values.get("execution_count"))
        return CellContent(
            id=self.cell_id(index),
            cell_type=cast(CellType, cell_type) if cell_type in CELL_TYPES else "code",
            source=str(source) if isinstance(source, (Text, str)) else "",
            metadata=_plain_dict(metadata),
            attachments=_plain_dict(attachments) if attachments is not None else None,
            execution_count=count if isinstance(count, int) and count >= 0 else None,
        )

    def read_cells(self) -> list[CellContent]:
        """Every cell with an id, in order (a malformed cell without one is not a cell)."""
        cells = (self.read_cell(index) for index in range(len(self.cells)))
        return [cell for cell in cells if cell.id]

    def metadata(self) -> dict[str, Any]:
        return _plain_dict(self.meta.get("metadata"))

    def nbformat_minor(self) -> int:
        minor = integral(self.meta.get("nbformat_minor"))
        return minor if isinstance(minor, int) else NBFORMAT_MINOR

    # -- edits ------------------------------------------------------------------------------
    def initialise(self, metadata: dict[str, Any], nbformat_minor: int = NBFORMAT_MINOR) -> None:
        """A new document's ``meta``: done once, by the service, in its first update (never
        by a client, whose copy of a structure made elsewhere would merge into duplicates)."""
        self.meta["nbformat"] = NBFORMAT
        self.meta["nbformat_minor"] = nbformat_minor
        self.meta["metadata"] = Map(metadata)

    def insert(self, index: int, content: CellContent) -> None:
        self.cells.insert(index, _new_map(content))

    def extend(self, contents: Iterable[CellContent]) -> None:
        self.cells.extend([_new_map(content) for content in contents])

    def set_source(self, index: int, source: str) -> None:
        """Make the cell's text `source` by the smallest edit (one delete and one insert
        around the common prefix and suffix), so concurrent typing elsewhere in the cell
        survives, as it would if a person had typed the change."""
        cell = self.cells[index]
        text = cell.get("source") if isinstance(cell, Map) else None
        if not isinstance(text, Text):
            cell["source"] = Text(source)
            return
        old = str(text)
        if old == source:
            return
        start = 0
        limit = min(len(old), len(source))
        while start < limit and old[start] == source[start]:
            start += 1
        end_old, end_new = len(old), len(source)
        while end_old > start and end_new > start and old[end_old - 1] == source[end_new - 1]:
            end_old -= 1
            end_new -= 1
        at = len(old[:start].encode())
        removed = len(old[start:end_old].encode())
        if removed:
            del text[at : at + removed]
        if end_new > start:
            text.insert(at, source[start:end_new])

    def set_cell_type(self, index: int, cell_type: CellType) -> None:
        """Change the type, with the keys that type has in the schema (a code cell has
        ``execution_count`` and ``outputs``; markdown and raw cells may have attachments)."""
        cell = self.cells[index]
        if not isinstance(cell, Map) or cell.get("cell_type") == cell_type:
            return
        cell["cell_type"] = cell_type
        if cell_type == "code":
            cell["execution_count"] = None
            cell["outputs"] = Array()
            if "attachments" in cell:
                del cell["attachments"]
        else:
            for key in ("execution_count", "outputs"):
                if key in cell:
                    del cell[key]

    def set_metadata(self, index: int, metadata: dict[str, Any]) -> None:
        """Replace the cell's metadata key by key (keys not changed are not touched, so a
        concurrent change of another key survives)."""
        cell = self.cells[index]
        if not isinstance(cell, Map):
            return
        current = cell.get("metadata")
        if not isinstance(current, Map):
            cell["metadata"] = Map(metadata)
            return
        for key in [key for key in current.keys() if key not in metadata]:
            del current[key]
        for key, value in metadata.items():
            if integral(current.get(key)) != value:
                current[key] = value

    def set_execution_count(self, index: int, count: int | None) -> None:
        cell = self.cells[index]
        if isinstance(cell, Map) and cell.get("cell_type") == "code":
            if integral(cell.get("execution_count")) != count:
                cell["execution_count"] = count

    def move(self, index: int, to: int) -> None:
        """Move the cell at `index` so that it ends at `to` (an index among the cells
        without it). Yjs arrays have no move: the cell is deleted and a copy inserted, as
        jupyter_ydoc and JupyterLab do; an edit made to the old copy at the same moment by
        someone else is lost with it."""
        content = self.read_cell(index)
        del self.cells[index]
        self.cells.insert(to, _new_map(content))

    def delete(self, index: int) -> None:
        del self.cells[index]


def _new_map(content: CellContent) -> Map[Any]:
    cell: dict[str, Any] = {
        "id": content.id,
        "cell_type": content.cell_type,
        "source": Text(content.source),
        "metadata": Map(content.metadata),
    }
    if content.cell_type == "code":
        cell["execution_count"] = content.execution_count
        cell["outputs"] = Array()
    elif content.attachments:
        cell["attachments"] = content.attachments
    return Map(cell)


def _plain_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, Map):
        value = value.to_py()
    return integral(value) if isinstance(value, dict) else {}


def changed_cells(doc: NotebookDoc, events: list[Any]) -> tuple[set[str], set[str]]:
    """The ids of the cells that `events` (from ``cells.observe_deep``, read inside the
    callback) changed or added, and of those added: a change inside a cell names its index
    in the path; an insertion into the array carries the new cells. Deleted cells are not
    named."""
    changed: set[str] = set()
    inserted: set[str] = set()
    for event in events:
        path = event.path
        if path and isinstance(path[0], int) and path[0] < len(doc.cells):
            if not _only_run_keys(event):
                changed.add(doc.cell_id(path[0]))
        elif not path and isinstance(event, ArrayEvent):
            for part in getattr(event, "delta", ()):  # (a slot mypy cannot see)
                for value in part.get("insert", ()) if isinstance(part, dict) else ():
                    if isinstance(value, Map) and isinstance(value.get("id"), str):
                        inserted.add(value["id"])
    changed |= inserted
    changed.discard("")
    return changed, inserted


RUN_KEYS = frozenset({"execution_count", "outputs"})
"""A cell's keys that a run changes, not a person: changing them is no edit of the cell."""


def _only_run_keys(event: Any) -> bool:
    """Whether `event` is a change of a cell's own map touching only `RUN_KEYS`."""
    keys = getattr(event, "keys", None) if isinstance(event, MapEvent) else None
    return len(event.path) == 1 and isinstance(keys, dict) and set(keys) <= RUN_KEYS


def repeated_copies(doc: NotebookDoc, ids: set[str]) -> list[int]:
    """The indexes of the cells whose id (among `ids`) an earlier cell already has, last
    first (the order to delete them in).

    Two people moving the same cell at once each delete it and insert a copy (Yjs arrays
    have no move), and both copies survive the merge: the same cell twice, with one id. So
    after an update that inserted cells, the service keeps the first copy of each and
    deletes the others; every replica gets that deletion, so all show the cell once. (A
    change made at that moment to a copy that goes is lost with it.)"""
    seen: set[str] = set()
    repeated = []
    for index in range(len(doc.cells)):
        cell_id = doc.cell_id(index)
        if cell_id in ids:
            if cell_id in seen:
                repeated.append(index)
            seen.add(cell_id)
    return repeated[::-1]
