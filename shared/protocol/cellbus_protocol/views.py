"""The records of the accounts service as clients see them: what its requests return.

Apart from the requests (`accounts`) so that the feed messages that carry a record
(`messages.CellCreated`, `messages.CellUpdated`) can name its type: `accounts` uses `codec`,
which uses `messages`, so `messages` cannot import from `accounts`.
"""

from __future__ import annotations

from typing import Any

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


class CellView(msgspec.Struct, kw_only=True):
    id: str
    worksheet: str
    source: str
    version: int
    outputs: list[dict[str, Any]]
    execution_count: int | None
    run_by: str | None
    run_at: str | None
    run_msg_id: str | None


class MemberView(msgspec.Struct, kw_only=True):
    username: str
    role: Role


class WorksheetWithCells(WorksheetView, kw_only=True):
    cells: list[CellView]
    members: list[MemberView]


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
