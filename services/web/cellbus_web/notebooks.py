"""Worksheets to and from Jupyter notebooks (nbformat v4, the ``.ipynb`` format).

cellbus cells are all code cells; a cell whose first line is ``%%markdown`` (IPython's cell
magic that renders Markdown) is how cellbus holds a Markdown cell. Outputs go both ways through
one canonical shape (`_clean_output`), multi-line strings as one ``str``, so that an imported
output equals what the kernel produced, and an exported one always validates.

Pure functions, no I/O: the caller parses and serialises the JSON, and stores the cells.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any

import msgspec
import nbformat
from nbformat.warnings import DuplicateCellId, MissingIDFieldWarning

from cellbus_protocol.accounts import CellView, WorksheetWithCells

__all__ = [
    "ImportedCell", "ImportedNotebook", "Notebook", "NotebookError", "from_notebook",
    "to_notebook",
]  # fmt: skip

MARKDOWN_MAGIC = "%%markdown"
# nbformat's own rule (its schema's "mimebundle"): only these mimetypes hold any JSON value;
# every other mimetype holds a string (or a list of lines).
_JSON_MIMETYPE = re.compile(r"^application/(.*\+)?json$")
_CELL_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_MAX_MESSAGE = 200


class NotebookError(ValueError):
    """The notebook cannot be imported; the message says why, for the user."""


Output = dict[str, Any]
"""An nbformat output (stream, display_data, execute_result, error) in `_clean_output`'s shape:
its mimebundles hold any JSON, so it stays a dict."""


class KernelSpec(msgspec.Struct, kw_only=True):
    name: str = "python3"
    display_name: str = "Python 3 (cellbus)"
    language: str = "python"


class LanguageInfo(msgspec.Struct, kw_only=True):
    name: str = "python"


class WorksheetRef(msgspec.Struct, kw_only=True):
    worksheet: str  # the id of the worksheet the notebook was exported from


class NotebookMetadata(msgspec.Struct, kw_only=True):
    kernelspec: KernelSpec = msgspec.field(default_factory=KernelSpec)
    language_info: LanguageInfo = msgspec.field(default_factory=LanguageInfo)
    title: str
    cellbus: WorksheetRef


class CodeCell(msgspec.Struct, kw_only=True, tag_field="cell_type", tag="code"):
    id: str
    metadata: dict[str, Any]  # {"cellbus": {"run_by": ..., "run_at": ...}} where they are set
    source: str
    outputs: list[Output]
    execution_count: int | None


class MarkdownCell(msgspec.Struct, kw_only=True, tag_field="cell_type", tag="markdown"):
    id: str
    metadata: dict[str, Any]
    source: str


class Notebook(msgspec.Struct, kw_only=True):
    """An nbformat 4.5 notebook as `to_notebook` makes it: encoded, the JSON of an ``.ipynb``
    file (each cell's ``cell_type`` is its tag)."""

    nbformat: int = 4
    nbformat_minor: int = 5
    metadata: NotebookMetadata
    cells: list[CodeCell | MarkdownCell]


@dataclass(frozen=True)
class ImportedCell:
    source: str
    outputs: list[dict[str, Any]]
    execution_count: int | None


@dataclass(frozen=True)
class ImportedNotebook:
    title: str | None  # from metadata.title if present, else None
    cells: list[ImportedCell]


def to_notebook(worksheet: WorksheetWithCells) -> Notebook:
    """The worksheet (as ``worksheet.get`` returns it) as an nbformat 4.5 notebook.

    A ``%%markdown`` cell becomes a markdown cell, without outputs. Who ran a code cell, and
    when, goes in its ``metadata.cellbus`` (only what is set), as nbformat has no place for it.
    Outputs are copies: nothing in the notebook is shared with `worksheet`.
    """
    metadata = NotebookMetadata(title=worksheet.title, cellbus=WorksheetRef(worksheet=worksheet.id))
    cells = [_export_cell(cell, index) for index, cell in enumerate(worksheet.cells)]
    return Notebook(metadata=metadata, cells=cells)


def _export_cell(cell: CellView, index: int) -> CodeCell | MarkdownCell:
    cell_id = cell.id
    if not _CELL_ID.fullmatch(cell_id):  # cellbus ids are UUIDs; this keeps the export valid
        cell_id = f"cell-{index}"
    first_line, _, rest = cell.source.partition("\n")
    if first_line.rstrip() == MARKDOWN_MAGIC:
        return MarkdownCell(id=cell_id, metadata={}, source=rest)
    run = {key: value for key, value in (("run_by", cell.run_by), ("run_at", cell.run_at))
           if value is not None}  # fmt: skip
    # A deep copy that does not recurse in Python: the outputs' values are shared otherwise.
    outputs = (_clean_output(output) for output in msgspec.to_builtins(cell.outputs))
    return CodeCell(
        id=cell_id,
        metadata={"cellbus": run} if run else {},
        source=cell.source,
        outputs=[output for output in outputs if output is not None],
        execution_count=_count(cell.execution_count),
    )


def from_notebook(notebook: Any, *, max_cells: int = 10_000) -> ImportedNotebook:
    """The cells of `notebook` (a parsed ``.ipynb``: any nbformat 4 minor) for a worksheet.

    Raises NotebookError if it is not a valid nbformat 4 notebook (checked by nbformat's own
    schema, `nbformat.validate`) or has more than `max_cells` cells. Cell ids are not kept
    (cellbus gives its cells new ones); a 4.5 notebook with missing or repeated ids is still
    accepted, as Jupyter accepts it. Code cells keep their outputs and execution count.
    Markdown cells become ``%%markdown`` cells; so do raw cells, as cellbus has no raw cells
    and this at least keeps their text. Attachments (images pasted into markdown and raw
    cells) and cell metadata are dropped: cellbus has nowhere to keep them. Cell and output
    types newer than nbformat 4.5 are left out. The input is not modified.
    """
    notebook = _checked(notebook, max_cells)
    cells = []
    for cell in notebook["cells"]:
        source = _text(cell.get("source"))  # a cell type from the future may have none
        if cell["cell_type"] == "code":
            outputs = (_clean_output(output) for output in cell["outputs"])
            kept = [output for output in outputs if output is not None]
            cells.append(ImportedCell(source, kept, _count(cell["execution_count"])))
        elif cell["cell_type"] in ("markdown", "raw"):
            cells.append(ImportedCell(f"{MARKDOWN_MAGIC}\n{source}", [], None))
    title = notebook["metadata"].get("title")
    return ImportedNotebook(title if isinstance(title, str) and title else None, cells)


def _checked(notebook: Any, max_cells: int) -> dict[str, Any]:
    """A validated copy of `notebook` (`nbformat.validate` repairs cell ids in place).

    First what `nbformat.validate` assumes (else a TypeError or KeyError, not a reason) and
    the cell limit (before the cost of validating). Its warnings on ids are silenced: unused.
    """
    if not isinstance(notebook, dict):
        raise NotebookError("not a notebook: it is not a JSON object")
    major, minor = notebook.get("nbformat"), notebook.get("nbformat_minor")
    if not _is_int(major):
        raise NotebookError("not a notebook: it has no nbformat version number")
    if major != 4:
        raise NotebookError(f"nbformat {major} is not supported: save it as version 4")
    if not _is_int(minor):
        raise NotebookError("not a notebook: it has no nbformat_minor version number")
    cells = notebook.get("cells")
    if not isinstance(cells, list) or not all(isinstance(cell, dict) for cell in cells):
        raise NotebookError("not a notebook: its cells must be a list of JSON objects")
    if len(cells) > max_cells:
        raise NotebookError(f"too many cells ({len(cells)}; the limit is {max_cells})")
    if any(not isinstance(cell.get("id", ""), str) for cell in cells):
        raise NotebookError("not a valid notebook: a cell id is not a string")
    copied: dict[str, Any] = msgspec.to_builtins(notebook)  # a deep copy, not recursive in Python
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingIDFieldWarning)
        warnings.simplefilter("ignore", DuplicateCellId)
        try:
            nbformat.validate(copied)
        except nbformat.ValidationError as error:
            raise NotebookError(_summary(error)) from None
    return copied


def _summary(error: nbformat.ValidationError) -> str:
    """nbformat's reason on one line, where it is, and no more than `_MAX_MESSAGE` chars."""
    message = " ".join(str(getattr(error, "message", error)).split())
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    path = "/".join(str(part) for part in getattr(error, "absolute_path", None) or ())
    return f"not a valid notebook: {message}" + (f" (at {path})" if path else "")


def _clean_output(output: Any) -> dict[str, Any] | None:
    """`output` in the canonical shape nbformat validates, or None if it has no place there.

    Only the keys nbformat allows are kept; text (stream text, error fields, values of all but
    JSON mimetypes) becomes one ``str``. Values of JSON mimetypes are kept as they are.
    """
    if not isinstance(output, dict):
        return None
    kind = output.get("output_type")
    if kind == "stream":
        return {
            "output_type": kind,
            "name": _text(output.get("name")),
            "text": _text(output.get("text")),
        }
    if kind in ("display_data", "execute_result"):
        data, metadata = output.get("data"), output.get("metadata")
        data = data if isinstance(data, dict) else {}
        cleaned = {
            "output_type": kind,
            "data": {
                str(mime): value if _JSON_MIMETYPE.match(str(mime)) else _text(value)
                for mime, value in data.items()
            },
            "metadata": metadata if isinstance(metadata, dict) else {},
        }
        if kind == "execute_result":
            cleaned["execution_count"] = _count(output.get("execution_count"))
        return cleaned
    if kind == "error":
        traceback = output.get("traceback")
        return {
            "output_type": kind,
            "ename": _text(output.get("ename")),
            "evalue": _text(output.get("evalue")),
            "traceback": [
                _text(line) for line in (traceback if isinstance(traceback, list) else [])
            ],
        }
    return None


def _text(value: Any) -> str:
    """nbformat's multi-line string (a str, or a list of lines) as one str."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "".join(value)
    return "" if value is None else msgspec.json.encode(value).decode()


def _count(value: Any) -> int | None:
    return value if _is_int(value) and value >= 0 else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
