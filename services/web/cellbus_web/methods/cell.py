"""``cell.*``: editing cells, and running them on their worksheet's session."""

from __future__ import annotations

from typing import Any

import msgspec

from cellbus_protocol import accounts as a
from cellbus_protocol import codec, keys
from cellbus_protocol import messages as m
from cellbus_protocol.envelope import new_message, new_msg_id
from cellbus_protocol.views import CellType

from ..backend import ask_accounts, backend_of, caller
from ..rpc import Api, Call


class Evaluation(msgspec.Struct, kw_only=True):
    msg_id: str
    session: str


def register(api: Api) -> None:
    for name, method in (
        ("cell.create", cell_create), ("cell.update", cell_update), ("cell.move", cell_move),
        ("cell.delete", cell_delete), ("cell.evaluate", cell_evaluate),
    ):  # fmt: skip
        api.method(name)(method)


async def cell_create(
    call: Call,
    worksheet: str,
    source: str = "",
    after: str | None = None,
    cell_type: CellType = "code",
    metadata: dict[str, Any] | None = None,
) -> a.CellView:
    """A new cell just after cell `after` (null: at the top), as one edit of the
    worksheet's document. Editors and owners."""
    request = a.CreateCell(
        worksheet=worksheet, source=source, after=after, cell_type=cell_type,
        metadata=metadata or {},
    )  # fmt: skip
    return await ask_accounts(call, request)


async def cell_update(
    call: Call,
    id: str,
    source: str | None = None,
    version: int | None = None,
    cell_type: CellType | None = None,
    metadata: dict[str, Any] | None = None,
    worksheet: str | None = None,
) -> a.CellView:
    """Change a cell's source, type or metadata (what is given), as one edit of the
    worksheet's document: the source by the smallest text edit, so that someone typing in
    the cell at the same time keeps their keystrokes. With `version` (compare-and-set),
    only if nobody changed the cell since that version; else the error (conflict) holds the
    current cell in ``data``."""
    request = a.UpdateCell(
        id=id, worksheet=worksheet, source=source, cell_type=cell_type, metadata=metadata,
        version=version,
    )  # fmt: skip
    return await ask_accounts(call, request)


async def cell_move(
    call: Call, id: str, after: str | None = None, worksheet: str | None = None
) -> a.CellView:
    """Move a cell to just after cell `after` (null: to the top)."""
    return await ask_accounts(call, a.MoveCell(id=id, after=after, worksheet=worksheet))


async def cell_delete(call: Call, id: str, worksheet: str | None = None) -> None:
    """Delete a cell."""
    await ask_accounts(call, a.DeleteCell(id=id, worksheet=worksheet))


async def cell_evaluate(call: Call, id: str, worksheet: str | None = None) -> Evaluation:
    """Run a cell on its worksheet's session. Returns at once: the outputs arrive on the
    session's feed (their ``parent_header.msg_id`` is the returned `msg_id`) and are saved
    on the cell, whether or not anyone is watching."""
    principal = await caller(call)
    backend = backend_of(call)
    msg_id = new_msg_id()
    started = await ask_accounts(call, a.StartRun(id=id, msg_id=msg_id, worksheet=worksheet))
    session, cell = started.session, started.cell
    msg = new_message(
        # allow_stdin: whoever runs a cell answers its input() (session.input)
        m.ExecuteRequest(code=cell.source, allow_stdin=True), session=session,
        username=principal.user.username, metadata={"cellbus": {"cell_id": cell.id}},
        msg_id=msg_id,
    )  # fmt: skip
    await backend.bus.enqueue(keys.requests(session), codec.encode(msg))
    await backend.ensure_session(session, principal)  # after: see ensure_session
    return Evaluation(msg_id=msg.msg_id, session=session)
