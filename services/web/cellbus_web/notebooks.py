"""Worksheets to and from Jupyter notebooks (nbformat v4, the ``.ipynb`` format), losslessly.

A worksheet's document is a notebook in jupyter_ydoc's YNotebook schema (docs/protocol.md, "The
worksheet document"): cell ids, types (code, markdown, raw), sources, metadata and attachments,
and the notebook's metadata. Import keeps all of it, and the outputs and execution counts the
accounts service keeps beside the document, so that exporting an imported notebook gives the
file back: the same cells with the same ids, metadata, attachments, outputs and counts, and the
same notebook metadata. Only ``metadata.cellbus`` differs, as cellbus owns it (who ran a cell
and when; which worksheet a notebook came from). Multi-line strings (a list of lines in a
file) become one ``str``, which nbformat reads as the same text.

Outputs and attachments go both ways through one canonical shape (`_clean_output`,
`_clean_bundle`), so that an imported output equals what the kernel produced and an exported
one always validates. The document stores numbers as doubles, so an export turns integral
floats in metadata and attachments back into ints (as jupyter_ydoc's ``cast_all`` does), and
drops the metadata values nbformat's schema rejects (a client can write any JSON there):
every export passes `nbformat.validate`.

Pure functions, no I/O: the caller parses and serialises the JSON, and stores the cells.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import nbformat
from nbformat.corpus.words import generate_corpus_id
from nbformat.validator import get_validator
from nbformat.warnings import DuplicateCellId, MissingIDFieldWarning

from cellbus_protocol.accounts import CellView, NotebookCell, WorksheetWithCells

__all__ = [
    "WIDGET_STATE_MIME", "CodeCell", "ImportedNotebook", "MarkdownCell", "Notebook",
    "NotebookError", "RawCell", "from_notebook", "to_notebook", "with_widget_state",
]  # fmt: skip

NBFORMAT_MINOR = 5
"""The minor version of every export, and the least of every import: the first with cell ids,
which cellbus needs (a cell method names its cell by id)."""

# nbformat's own rule (its schema's "mimebundle"): only these mimetypes hold any JSON value;
# every other mimetype holds a string (or a list of lines).
_JSON_MIMETYPE = re.compile(r"^application/(.*\+)?json$")
_CELL_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # nbformat 4.5's pattern and length
_MAX_MESSAGE = 200
_CELLBUS = "cellbus"  # the metadata key cellbus owns, in the notebook's and in each cell's
_DEFAULT_KERNELSPEC = {
    "name": "python3",
    "display_name": "Python 3 (cellbus)",
    "language": "python",
}
_DEFAULT_LANGUAGE_INFO = {"name": "python"}
MetadataPlace = Literal["notebook", "code", "markdown", "raw"]
"""Whose metadata: the notebook's, or a cell's of that type (nbformat's schema differs)."""
# Where nbformat 4.5's schema says what metadata may hold: `_MetadataChecker` checks against it.
_METADATA_SCHEMA: dict[MetadataPlace, dict[str, str]] = {
    "notebook": {"$ref": "#/properties/metadata"},
    "code": {"$ref": "#/definitions/code_cell/properties/metadata"},
    "markdown": {"$ref": "#/definitions/markdown_cell/properties/metadata"},
    "raw": {"$ref": "#/definitions/raw_cell/properties/metadata"},
}
# Beyond 2**53 a double is not an exact integer: it stays a float (as in the accounts service).
_MAX_INT = 2**53


class NotebookError(ValueError):
    """The notebook cannot be imported; the message says why, for the user."""


Output = dict[str, Any]
"""An nbformat output (stream, display_data, execute_result, error) in `_clean_output`'s shape:
its mimebundles hold any JSON, so it stays a dict."""

Metadata = dict[str, Any]
"""Notebook or cell metadata: open-ended JSON (nbformat's schema names a few keys, e.g.
``kernelspec``, ``tags``, ``jupyter``, and allows any other), so it stays a dict."""


class CodeCell(msgspec.Struct, kw_only=True, tag_field="cell_type", tag="code"):
    id: str
    metadata: Metadata  # with {"cellbus": {"run_by": ..., "run_at": ...}} where they are set
    source: str
    outputs: list[Output]
    execution_count: int | None


class MarkdownCell(msgspec.Struct, kw_only=True, tag_field="cell_type", tag="markdown"):
    id: str
    metadata: Metadata
    source: str
    # name -> mimebundle (images pasted in the cell); absent where the cell has none
    attachments: dict[str, dict[str, Any]] | msgspec.UnsetType = msgspec.UNSET


class RawCell(msgspec.Struct, kw_only=True, tag_field="cell_type", tag="raw"):
    id: str
    metadata: Metadata  # "format" / "raw_mimetype": what nbconvert renders it as
    source: str
    attachments: dict[str, dict[str, Any]] | msgspec.UnsetType = msgspec.UNSET


class Notebook(msgspec.Struct, kw_only=True):
    """An nbformat 4.5 notebook as `to_notebook` makes it: encoded, the JSON of an ``.ipynb``
    file (each cell's ``cell_type`` is its tag)."""

    nbformat: int = 4
    nbformat_minor: int = NBFORMAT_MINOR
    metadata: Metadata  # kernelspec, language_info, widgets, ..., cellbus: {"worksheet": id}
    cells: list[CodeCell | MarkdownCell | RawCell]


WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
"""The key of a notebook's ``metadata.widgets`` under which widget managers (JupyterLab,
nbconvert, voila) find the saved state of its widgets."""


def with_widget_state(notebook: Notebook, state: dict[str, Any]) -> None:
    """Save the live session's widget state (ipywidgets' manager state: ``version_major``,
    ``version_minor``, ``state``) in the notebook, as JupyterLab's "save widget state"
    does; a session without widgets (`state` empty) leaves the metadata as it was."""
    if state.get("state"):
        notebook.metadata["widgets"] = {WIDGET_STATE_MIME: state}


@dataclass(frozen=True)
class ImportedNotebook:
    """What `from_notebook` finds in a notebook: what ``worksheet.import`` stores."""

    title: str | None  # metadata.title if it is a non-empty string, else None
    metadata: Metadata  # the notebook's metadata, whole, without "cellbus"
    nbformat_minor: int  # the notebook's own, at least NBFORMAT_MINOR: every cell has an id
    cells: list[NotebookCell]


# --- export ---------------------------------------------------------------------------------


def to_notebook(worksheet: WorksheetWithCells) -> Notebook:
    """The worksheet (as ``worksheet.get`` returns it) as an nbformat 4.5 notebook.

    Each cell keeps its id, type, source and metadata; markdown and raw cells their
    attachments, code cells their outputs and execution count (other types have none in
    nbformat, so what a cell held before its type changed is left out). Who ran a code cell,
    and when, goes in its ``metadata.cellbus`` (only what is set), as nbformat has no place
    for it. The notebook's metadata is the worksheet's, with ``cellbus: {"worksheet": id}``;
    a default kernelspec and language_info where it has none; its title is the worksheet's
    where it has a title (so a rename shows) or no metadata at all (a worksheet made in
    cellbus). What nbformat would reject is repaired or left out: an id that is not a valid
    nbformat id or is repeated gets a new one, metadata values its schema rejects are dropped.
    Everything is a copy: nothing in the notebook is shared with `worksheet`.
    """
    claimed = {cell.id for cell in worksheet.cells}
    used: set[str] = set()
    checker = _MetadataChecker()
    cells = [_export_cell(cell, _export_id(cell.id, index, claimed, used), checker)
             for index, cell in enumerate(worksheet.cells)]  # fmt: skip
    return Notebook(metadata=_export_metadata(worksheet, checker), cells=cells)


def _export_metadata(worksheet: WorksheetWithCells, checker: _MetadataChecker) -> Metadata:
    metadata = checker.valid(worksheet.metadata, "notebook")
    if "title" in metadata or not worksheet.metadata:
        metadata["title"] = worksheet.title
    metadata.setdefault("kernelspec", dict(_DEFAULT_KERNELSPEC))
    metadata.setdefault("language_info", dict(_DEFAULT_LANGUAGE_INFO))
    metadata[_CELLBUS] = {"worksheet": worksheet.id}
    return metadata


def _export_id(cell_id: str, index: int, claimed: set[str], used: set[str]) -> str:
    """`cell_id`, or if nbformat would reject it (not its pattern, or an earlier cell's) a new
    one, ``cell-<index>``, that no cell of the worksheet has. `used` gains it."""
    if not _CELL_ID.fullmatch(cell_id) or cell_id in used:
        cell_id, suffix = f"cell-{index}", 0
        while cell_id in claimed or cell_id in used:
            suffix += 1
            cell_id = f"cell-{index}-{suffix}"
    used.add(cell_id)
    return cell_id


def _export_cell(
    cell: CellView, cell_id: str, checker: _MetadataChecker
) -> CodeCell | MarkdownCell | RawCell:
    metadata = checker.valid(cell.metadata, cell.cell_type)
    if cell.cell_type == "code":
        run = {key: value for key, value in (("run_by", cell.run_by), ("run_at", cell.run_at))
               if value is not None}  # fmt: skip
        if run:
            metadata[_CELLBUS] = run
        # A deep copy that does not recurse in Python: the outputs' values are shared otherwise.
        outputs = (_clean_output(output) for output in msgspec.to_builtins(cell.outputs))
        return CodeCell(
            id=cell_id,
            metadata=metadata,
            source=cell.source,
            outputs=[output for output in outputs if output is not None],
            execution_count=_count(cell.execution_count),
        )
    attachments: dict[str, dict[str, Any]] | msgspec.UnsetType = msgspec.UNSET
    if cell.attachments is not None:
        attachments = _clean_attachments(_integral(cell.attachments))
    kind = MarkdownCell if cell.cell_type == "markdown" else RawCell
    return kind(id=cell_id, metadata=metadata, source=cell.source, attachments=attachments)


class _MetadataChecker:
    """Metadata as an export holds it: integral floats as ints, without ``cellbus`` and
    without the keys whose values nbformat's schema rejects there (e.g. ``tags`` not a list of
    strings, a ``kernelspec`` without ``display_name``): a client can write any JSON in a
    document's metadata, and an export must stay valid. The schema allows any other key.

    One per export: it remembers its verdicts by the metadata's JSON, as cells often share
    their metadata and the schema check (jsonschema's) is the slow part of an export.
    """

    def __init__(self) -> None:
        self._validator: Any = get_validator(4, NBFORMAT_MINOR, name="jsonschema")
        self._invalid: dict[tuple[str, bytes], set[Any]] = {}

    def valid(self, metadata: Metadata, where: MetadataPlace) -> Metadata:
        """A deep copy of `metadata`, as an export holds it."""
        encoded = msgspec.json.encode(metadata)
        copied: Metadata = _INTEGRAL.decode(encoded)
        copied.pop(_CELLBUS, None)
        if not copied:  # nothing to check: the common case, and quick
            return copied
        invalid = self._invalid.get((where, encoded))
        if invalid is None:
            errors = self._validator.iter_errors(copied, _METADATA_SCHEMA[where])
            # Each error is under the key whose value the schema rejects: metadata is a dict.
            invalid = {error.absolute_path[0] for error in errors if error.absolute_path}
            self._invalid[where, encoded] = invalid
        for key in invalid:
            del copied[key]
        return copied


def _integral(value: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `value` (JSON) with integral floats as ints.

    The document stores numbers as doubles (yjs has no integers), so a ``1`` imported comes
    back ``1.0``; like jupyter_ydoc's ``cast_all``, this restores it. Through JSON: a copy
    that does not recurse in Python, however deep the value.
    """
    copied: dict[str, Any] = _INTEGRAL.decode(msgspec.json.encode(value))
    return copied


def _int_if_integral(text: str) -> int | float:
    number = float(text)
    return int(number) if number.is_integer() and abs(number) < _MAX_INT else number


_INTEGRAL = msgspec.json.Decoder(dict[str, Any], float_hook=_int_if_integral)


# --- import ---------------------------------------------------------------------------------


def from_notebook(notebook: Any, *, max_cells: int = 10_000) -> ImportedNotebook:
    """The cells and metadata of `notebook` (a parsed ``.ipynb``: any nbformat 4 minor) for a
    worksheet.

    Raises NotebookError if it is not a valid nbformat 4 notebook (checked by nbformat's own
    schema, `nbformat.validate`) or has more than `max_cells` cells. Every cell keeps its id,
    type (code, markdown, raw), source (one ``str``) and metadata, whole; markdown and raw
    cells their attachments; code cells their outputs and execution count. A 4.0-4.4 notebook
    has no cell ids: its cells get new ones; a 4.5 notebook with missing or repeated ids is
    repaired as nbformat repairs it (the first of repeated ids is kept, the others and the
    missing ones get new ids), as Jupyter accepts it. ``metadata.cellbus`` is cellbus's: a
    code cell's ``run_by`` and ``run_at`` there become the cell's; the key is dropped from
    every cell's metadata and from the notebook's. Cell and output types newer than nbformat
    4.5 are left out. The input is not modified.
    """
    checked = _checked(notebook, max_cells)
    taken = {cell["id"] for cell in checked["cells"] if "id" in cell}
    cells = []
    for cell in checked["cells"]:
        kind = cell["cell_type"]
        if kind not in ("code", "markdown", "raw"):
            continue
        cell_id = cell["id"] if "id" in cell else _new_id(taken)
        metadata: Metadata = cell["metadata"]
        ours = metadata.pop(_CELLBUS, None)
        source = _text(cell.get("source"))
        if kind == "code":
            outputs = (_clean_output(output) for output in cell["outputs"])
            cells.append(
                NotebookCell(
                    id=cell_id,
                    cell_type="code",
                    source=source,
                    metadata=metadata,
                    outputs=[output for output in outputs if output is not None],
                    execution_count=_count(cell["execution_count"]),
                    run_by=_run_detail(ours, "run_by"),
                    run_at=_run_detail(ours, "run_at"),
                )
            )
        else:
            attachments = cell.get("attachments")
            cells.append(
                NotebookCell(
                    id=cell_id,
                    cell_type="markdown" if kind == "markdown" else "raw",
                    source=source,
                    metadata=metadata,
                    attachments=None if attachments is None else _clean_attachments(attachments),
                )
            )
    metadata = checked["metadata"]
    metadata.pop(_CELLBUS, None)
    title = metadata.get("title")
    return ImportedNotebook(
        title=title if isinstance(title, str) and title else None,
        metadata=metadata,
        nbformat_minor=max(checked["nbformat_minor"], NBFORMAT_MINOR),
        cells=cells,
    )


def _new_id(taken: set[str]) -> str:
    """A new cell id as nbformat makes them (8 hex digits), not in `taken`, which gains it."""
    cell_id = str(generate_corpus_id())  # unannotated in nbformat
    while cell_id in taken:
        cell_id = str(generate_corpus_id())
    taken.add(cell_id)
    return cell_id


def _run_detail(ours: Any, key: str) -> str | None:
    """``metadata.cellbus[key]`` of an exported code cell, if it is there and a string."""
    value = ours.get(key) if isinstance(ours, dict) else None
    return value if isinstance(value, str) else None


def _checked(notebook: Any, max_cells: int) -> dict[str, Any]:
    """A validated copy of `notebook` (`nbformat.validate` repairs cell ids in place).

    First what `nbformat.validate` assumes (else a TypeError or KeyError, not a reason) and
    the cell limit (before the cost of validating). Its warnings on ids are silenced: the
    repair is what an import wants.
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


# --- both ways ------------------------------------------------------------------------------


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
        cleaned = {
            "output_type": kind,
            "data": _clean_bundle(data if isinstance(data, dict) else {}),
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


def _clean_attachments(attachments: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A cell's attachments (file name -> mimebundle) in the shape nbformat validates, as
    `_clean_output` does for outputs; an attachment that is not a mimebundle is left out."""
    return {
        str(name): _clean_bundle(bundle)
        for name, bundle in attachments.items()
        if isinstance(bundle, dict)
    }


def _clean_bundle(bundle: dict[Any, Any]) -> dict[str, Any]:
    """A mimebundle with each value of a mimetype that is not JSON as one ``str``."""
    return {
        str(mime): value if _JSON_MIMETYPE.match(str(mime)) else _text(value)
        for mime, value in bundle.items()
    }


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
