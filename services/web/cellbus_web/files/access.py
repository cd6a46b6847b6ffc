"""Who may touch a worksheet's files, and telling the worksheet's watchers what changed.

Every files operation (a JSON-RPC method or an HTTP transfer) starts with `open_workspace`:
the worksheet's session and the caller's role on it come from the accounts service in one
query (``worksheet.session``, not remembered, so a role taken away stops the next transfer),
and the role must allow the operation: viewers list, stat, read and download; editors also
write, upload, make folders, move and delete.

After a change, `announce` asks the accounts service to publish ``files_changed`` on the
session's feed: the web service may not write to feeds (its Redis user has no such grant).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from cellbus_protocol import accounts as a
from cellbus_protocol.errors import CellbusError
from cellbus_protocol.roles import Role, role_allows, too_low
from cellbus_protocol.workspaces import MIB, workspaces_root

from ..auth import Principal
from ..backend import Backend
from ..rpc import FORBIDDEN, RpcError
from .confine import Workspace

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")


@dataclass(frozen=True)
class Opened:
    """A worksheet's workspace, for a caller whose role allows what they asked."""

    workspace: Workspace
    worksheet: str
    role: Role
    quota: int  # bytes
    max_upload: int  # bytes


async def open_workspace(
    backend: Backend, principal: Principal, worksheet: str, needs: Role
) -> Opened:
    """The worksheet's workspace if the caller's role is at least `needs`; else FORBIDDEN
    (not found, if they may not see the worksheet at all: the accounts service's answer)."""
    sheet = await backend.accounts.call(
        a.GetWorksheetSession(id=worksheet, actor=principal.user.id)
    )
    if not role_allows(sheet.role, needs):
        raise RpcError(FORBIDDEN, too_low(sheet.role, needs))
    settings = backend.settings
    root = workspaces_root(settings.workspaces_dir)
    return Opened(
        workspace=Workspace(root, sheet.session),
        worksheet=sheet.worksheet,
        role=sheet.role,
        quota=settings.workspace_quota_mb * MIB,
        max_upload=settings.max_upload_mb * MIB,
    )


async def blocking(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a file system call in a thread: a slow volume must not stall the event loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def announce(
    backend: Backend, principal: Principal, opened: Opened, paths: list[str]
) -> None:
    """Have ``files_changed`` published on the worksheet's feed. The change is made whatever
    happens here: a failure is logged, and watchers see it at their next listing."""
    request = a.AnnounceFilesChanged(
        worksheet=opened.worksheet, paths=paths, actor=principal.user.id
    )
    try:
        await backend.accounts.call(request)
    except CellbusError as exc:
        log.warning("files_changed on worksheet %s not announced: %s", opened.worksheet, exc)
