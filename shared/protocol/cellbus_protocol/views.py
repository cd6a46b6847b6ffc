"""The records of the accounts service as clients see them: what its requests return.

Apart from the requests (`accounts`) so that a feed message could carry a record and name its
type: `accounts` uses `codec`, which uses `messages`, so `messages` cannot import from
`accounts`.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from .roles import Role


class UserView(msgspec.Struct, kw_only=True):
    id: str
    username: str
    is_admin: bool
    created_at: str


class TokenView(msgspec.Struct, kw_only=True):
    id: str
    label: str
    created_at: str
    expires_at: str
    revoked: bool


class LoginResult(msgspec.Struct, kw_only=True):
    token: str  # shown once; only its hash is stored
    user: UserView


class WorksheetView(msgspec.Struct, kw_only=True):
    id: str
    title: str
    session: str
    owner: str
    role: Role
    created_at: str
    updated_at: str


CellType = Literal["code", "markdown", "raw"]
"""nbformat's cell types: the `cell_type` of a cell in a worksheet's document."""


class CellView(msgspec.Struct, kw_only=True):
    """A cell as its worksheet's document holds it (id, type, source, metadata,
    attachments), with what the accounts service keeps beside the document: its version (the
    number of committed updates that changed it), its saved outputs and its last run."""

    id: str
    worksheet: str
    cell_type: CellType = "code"
    source: str
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    attachments: dict[str, Any] | None = None
    version: int
    outputs: list[dict[str, Any]]
    execution_count: int | None
    run_by: str | None
    run_at: str | None
    run_msg_id: str | None


class NotebookCell(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A cell as an nbformat 4.5 notebook holds it, outputs included: what an import gives
    the accounts service. `metadata` is the cell's metadata without ``cellbus`` (who ran it
    and when: `run_by`, `run_at`)."""

    id: str
    cell_type: CellType
    source: str
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    attachments: dict[str, Any] | None = None
    outputs: list[dict[str, Any]] = msgspec.field(default_factory=list)
    execution_count: int | None = None
    run_by: str | None = None
    run_at: str | None = None


class MemberView(msgspec.Struct, kw_only=True):
    username: str
    role: Role


class WorksheetWithCells(WorksheetView, kw_only=True):
    cells: list[CellView]  # in the document's order
    members: list[MemberView]
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)  # the notebook's
    nbformat_minor: int = 5


class WorksheetSession(msgspec.Struct, kw_only=True):
    """A worksheet's session and the actor's role on it: what a feed subscription needs,
    without the cells and their outputs."""

    worksheet: str
    session: str
    role: Role


class RunStarted(msgspec.Struct, kw_only=True):
    """The cell whose run started, and its worksheet's session: where to send the request."""

    cell: CellView
    session: str


class DocState(msgspec.Struct, kw_only=True):
    """The Yjs sync step 2 from the server: what a client at some state vector lacks
    (`update`), and the server's state vector (so the client can send what the server lacks)."""

    update: bytes
    state_vector: bytes


class DocAck(msgspec.Struct, kw_only=True):
    """A document update was committed (`seq`: its number in the worksheet's history)."""

    seq: int
