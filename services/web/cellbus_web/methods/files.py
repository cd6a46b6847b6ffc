"""``files.*``: a worksheet's workspace: list, stat, usage, small text files, folders, moves
and deletes. Large files go by HTTP (``GET``/``PUT /files/{worksheet}/{path}``,
`cellbus_web.files.http`). Paths are relative to the workspace and confined to it
(`cellbus_web.files.confine`)."""

from __future__ import annotations

from cellbus_protocol.roles import Role

from ..backend import backend_of, caller
from ..files import ops
from ..files.access import Opened, announce, blocking, open_workspace
from ..rpc import Api, Call


def register(api: Api) -> None:
    for name, method in (
        ("files.list", files_list), ("files.stat", files_stat), ("files.usage", files_usage),
        ("files.read", files_read), ("files.write", files_write), ("files.mkdir", files_mkdir),
        ("files.move", files_move), ("files.delete", files_delete),
    ):  # fmt: skip
        api.method(name)(method)


async def _open(call: Call, worksheet: str, needs: Role) -> Opened:
    return await open_workspace(backend_of(call), await caller(call), worksheet, needs)


async def _changed(call: Call, opened: Opened, *paths: str) -> None:
    await announce(backend_of(call), await caller(call), opened, list(paths))


async def files_list(call: Call, worksheet: str, path: str = "") -> list[ops.Entry]:
    """The entries of a folder of the worksheet's workspace ("" for the workspace itself),
    by name, dot entries included (clients hide them), at most 10 000 (viewers and up)."""
    opened = await _open(call, worksheet, "viewer")
    return await blocking(ops.list_folder, opened.workspace, path)


async def files_stat(call: Call, worksheet: str, path: str) -> ops.Entry:
    """One entry of the workspace (a link is described, not followed; viewers and up)."""
    opened = await _open(call, worksheet, "viewer")
    return await blocking(ops.stat_path, opened.workspace, path)


async def files_usage(call: Call, worksheet: str) -> ops.Usage:
    """How many bytes the workspace holds and its quota (viewers and up)."""
    opened = await _open(call, worksheet, "viewer")
    used = await blocking(ops.usage, opened.workspace)
    return ops.Usage(used=used, quota=opened.quota)


async def files_read(call: Call, worksheet: str, path: str) -> ops.TextFile:
    """A UTF-8 text file of at most 1 MiB (larger or binary files: the download; viewers
    and up)."""
    opened = await _open(call, worksheet, "viewer")
    return await blocking(ops.read_text, opened.workspace, path)


async def files_write(call: Call, worksheet: str, path: str, text: str) -> ops.Entry:
    """Make or replace a text file of at most 1 MiB (UTF-8) at once, and the folders above
    it that are missing (editors and up; within the quota)."""
    opened = await _open(call, worksheet, "editor")
    entry = await blocking(ops.write_text, opened.workspace, path, text, opened.quota)
    await _changed(call, opened, path)
    return entry


async def files_mkdir(call: Call, worksheet: str, path: str) -> ops.Entry:
    """Make a folder, and those above it that are missing (editors and up)."""
    opened = await _open(call, worksheet, "editor")
    entry = await blocking(ops.make_folder, opened.workspace, path)
    await _changed(call, opened, path)
    return entry


async def files_move(call: Call, worksheet: str, source: str, destination: str) -> ops.Entry:
    """Rename or move a file or folder; refused if the destination exists (editors and
    up)."""
    opened = await _open(call, worksheet, "editor")
    entry = await blocking(ops.move, opened.workspace, source, destination)
    await _changed(call, opened, source, destination)
    return entry


async def files_delete(call: Call, worksheet: str, path: str) -> None:
    """Delete a file, or a folder with everything in it (editors and up)."""
    opened = await _open(call, worksheet, "editor")
    await blocking(ops.delete, opened.workspace, path)
    await _changed(call, opened, path)
