"""``worksheet.*``: worksheets, sharing, and .ipynb export and import."""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from cellbus_protocol import accounts as a
from cellbus_protocol.errors import CellbusError
from cellbus_protocol.roles import Grant

from ..backend import ask_accounts, backend_of, caller
from ..notebooks import Notebook, NotebookError, from_notebook, to_notebook, with_widget_state
from ..rpc import INVALID_PARAMS, Api, Call, RpcError

log = logging.getLogger(__name__)


def register(api: Api) -> None:
    for name, method in (
        ("worksheet.create", worksheet_create), ("worksheet.list", worksheet_list),
        ("worksheet.get", worksheet_get), ("worksheet.rename", worksheet_rename),
        ("worksheet.delete", worksheet_delete), ("worksheet.share", worksheet_share),
        ("worksheet.export", worksheet_export), ("worksheet.import", worksheet_import),
        ("worksheet.checkpoint", worksheet_checkpoint),
        ("worksheet.checkpoints", worksheet_checkpoints),
        ("worksheet.restore_checkpoint", worksheet_restore_checkpoint),
        ("worksheet.delete_checkpoint", worksheet_delete_checkpoint),
        ("worksheet.clear_outputs", worksheet_clear_outputs),
    ):  # fmt: skip
        api.method(name)(method)


class ClearedOutputs(msgspec.Struct, kw_only=True):
    cells: list[str]


async def worksheet_clear_outputs(
    call: Call, id: str, cells: list[str] | None = None
) -> ClearedOutputs:
    """Clear the saved outputs and execution counts of the worksheet's code cells `cells`
    (every code cell if left out; ids not in the worksheet are left out), for everyone: every
    page on the worksheet is told on its feed (``outputs_cleared``). Editors and owners.
    Returns the ids of the cells cleared."""
    cleared = await ask_accounts(call, a.ClearOutputs(worksheet=id, cells=cells))
    return ClearedOutputs(cells=cleared)


async def worksheet_create(call: Call, title: str) -> a.WorksheetView:
    """A new, empty worksheet owned by the caller, with its own session UID."""
    return await ask_accounts(call, a.CreateWorksheet(title=title))


async def worksheet_list(call: Call) -> list[a.WorksheetView]:
    """The caller's worksheets and those shared with them, most recently changed first."""
    return await ask_accounts(call, a.ListWorksheets())


async def worksheet_get(call: Call, id: str) -> a.WorksheetWithCells:
    """A worksheet with its cells in order (each with its saved outputs) and its members."""
    return await ask_accounts(call, a.GetWorksheet(id=id))


async def worksheet_rename(call: Call, id: str, title: str) -> a.WorksheetView:
    """Rename a worksheet (owners only)."""
    return await ask_accounts(call, a.RenameWorksheet(id=id, title=title))


async def worksheet_delete(call: Call, id: str) -> None:
    """Delete a worksheet, its cells and outputs (owners only), and end its session."""
    sheet = await ask_accounts(call, a.GetWorksheetSession(id=id))
    await ask_accounts(call, a.DeleteWorksheet(id=id))
    kernel = backend_of(call).kernel(await caller(call))
    await kernel.end_session_later(sheet.session)  # shut down, or its checkpoint deleted


async def worksheet_share(call: Call, id: str, username: str, role: Grant) -> list[a.MemberView]:
    """Give `username` a role on the worksheet, or take it away with ``none`` (owners only).
    Returns the members."""
    request = a.ShareWorksheet(id=id, username=username, role=role)
    return await ask_accounts(call, request)


async def worksheet_export(call: Call, id: str) -> Notebook:
    """The worksheet as an nbformat 4.5 notebook (a .ipynb file's JSON): its cells with their
    ids, types, metadata, attachments, outputs and execution counts, and the notebook's
    metadata."""
    sheet = await ask_accounts(call, a.GetWorksheet(id=id))
    notebook = to_notebook(sheet)
    with_widget_state(notebook, await _live_widget_state(call, sheet.session))
    return notebook


async def _live_widget_state(call: Call, session: str) -> dict[str, Any]:
    """The widget state of the worksheet's session if a worker hosts it (one that is not
    running has no live widgets: it is not started for this), else empty. The export does
    not fail for it: a session that cannot answer leaves the widgets out."""
    kernel = backend_of(call).kernel(await caller(call))
    try:
        if not (await kernel.session_status(session)).hosted:
            return {}
        reply = await kernel.widget_state(session)
    except CellbusError as exc:
        log.warning("export: no widget state from session %s (%s)", session, exc)
        return {}
    return reply.state if reply.status == "ok" else {}


async def worksheet_import(
    call: Call, notebook: dict[str, Any], title: str | None = None
) -> a.WorksheetView:
    """A new worksheet from an nbformat v4 notebook, kept whole: cell ids, types, metadata,
    attachments, outputs and execution counts, and the notebook's metadata (see
    `from_notebook`). The title defaults to the notebook's own, else "Imported"."""
    try:
        imported = from_notebook(notebook)
    except NotebookError as exc:
        raise RpcError(INVALID_PARAMS, f"notebook: {exc}") from None
    request = a.ImportWorksheet(
        title=title or imported.title or "Imported",
        cells=imported.cells,
        metadata=imported.metadata,
        nbformat_minor=imported.nbformat_minor,
    )
    return await ask_accounts(call, request)


async def worksheet_checkpoint(call: Call, id: str, name: str | None = None) -> a.CheckpointView:
    """Save the worksheet's document as it is now as a named checkpoint (editors and up); the
    name defaults to the time. A worksheet keeps its newest 100: the oldest go."""
    return await ask_accounts(call, a.SaveCheckpoint(id=id, name=name))


async def worksheet_checkpoints(call: Call, id: str) -> list[a.CheckpointView]:
    """The worksheet's checkpoints, newest first (viewers and up)."""
    return await ask_accounts(call, a.ListCheckpoints(id=id))


async def worksheet_restore_checkpoint(
    call: Call, id: str, checkpoint: str, apply: bool = True
) -> a.CheckpointRestored:
    """Make the worksheet's cells the checkpoint's, as one new edit of its document that every
    open page sees (editors and up); saved outputs stay with their cells. With ``apply``
    false, the edit (a Yjs update) is returned for the caller to apply as its own instead."""
    return await ask_accounts(call, a.RestoreCheckpoint(id=id, checkpoint=checkpoint, apply=apply))


async def worksheet_delete_checkpoint(call: Call, id: str, checkpoint: str) -> None:
    """Delete one of the worksheet's checkpoints (editors and up)."""
    await ask_accounts(call, a.DeleteCheckpoint(id=id, checkpoint=checkpoint))
