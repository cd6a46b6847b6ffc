"""What the files API does to a workspace: blocking calls, run in a thread by their callers.

Every path is walked as `confine` says. Sizes count as the kernel counts them for the quota
(`cellbus_kernel.workspace.scan`): the apparent sizes of everything but folders.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from datetime import UTC, datetime
from typing import Literal

import msgspec

from cellbus_protocol.workspaces import MIB

from ..rpc import CONFLICT, FORBIDDEN, INVALID_PARAMS, NOT_FOUND, TAKEN, TOO_LARGE, RpcError
from .confine import Workspace, explain, open_dir, open_file, parse, refused

MAX_TEXT_BYTES = 1 * MIB
"""The largest file ``files.read`` and ``files.write`` take; larger ones go by the download
and the upload (``GET``/``PUT /files/...``)."""
MAX_LIST = 10_000
"""The most entries ``files.list`` returns of one folder (the first, by name)."""
MAX_SCAN_ENTRIES = 500_000
"""The most entries a measure of the workspace looks at (as the kernel's scan)."""

EntryType = Literal["file", "directory", "link", "other"]


class Entry(msgspec.Struct, kw_only=True):
    """A file, folder, link or special file of a workspace. `size` is a file's or a link's
    size in bytes (0 for a folder); `modified` its modification time, ISO 8601 in UTC."""

    name: str
    path: str
    type: EntryType
    size: int
    modified: str


class TextFile(msgspec.Struct, kw_only=True):
    """A small text file's content (``files.read``)."""

    path: str
    text: str
    size: int
    modified: str


class Usage(msgspec.Struct, kw_only=True):
    """How much a workspace holds and may hold, in bytes (``CELLBUS_WORKSPACE_QUOTA_MB``)."""

    used: int
    quota: int


def entry_type(mode: int) -> EntryType:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "link"
    return "other"


def _entry(name: str, path: str, info: os.stat_result) -> Entry:
    kind = entry_type(info.st_mode)
    modified = datetime.fromtimestamp(info.st_mtime, UTC).isoformat()
    size = 0 if kind == "directory" else info.st_size
    return Entry(name=name, path=path, type=kind, size=size, modified=modified)


def shown_name(name: str) -> str:
    """A name as JSON can carry it (one that is not UTF-8 keeps its bytes as escapes)."""
    return name.encode(errors="surrogateescape").decode(errors="backslashreplace")


def list_folder(ws: Workspace, path: str) -> list[Entry]:
    parts = parse(path)
    with ws.folder(parts) as fd:
        if fd is None:
            if parts:
                raise refused(NOT_FOUND, f"{path}: no such file or folder in the workspace", path)
            return []
        prefix = f"{path}/" if path else ""
        entries = []
        with os.scandir(fd) as listing:
            for item in listing:
                with contextlib.suppress(OSError):  # gone since it was listed
                    info = item.stat(follow_symlinks=False)
                    name = shown_name(item.name)
                    entries.append(_entry(name, prefix + name, info))
    entries.sort(key=lambda e: e.name)
    return entries[:MAX_LIST]


def stat_path(ws: Workspace, path: str) -> Entry:
    if not parse(path):
        with ws.opened(create=False) as top:
            if top is None:
                now = datetime.now(UTC).isoformat()
                return Entry(name="", path="", type="directory", size=0, modified=now)
            return _entry("", "", os.fstat(top))
    with ws.parent(path) as (fd, name):
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            raise explain(fd, name, path, "file") from None
        return _entry(name, path, info)


def usage(ws: Workspace) -> int:
    """The bytes the workspace holds, as the quota counts them."""
    with ws.opened(create=False) as top:
        return 0 if top is None else _measure(top, [0])


def _measure(fd: int, seen: list[int]) -> int:
    used, folders = 0, []
    with os.scandir(fd) as listing:
        for item in listing:
            seen[0] += 1
            if seen[0] > MAX_SCAN_ENTRIES:
                return used
            with contextlib.suppress(OSError):
                info = item.stat(follow_symlinks=False)
                if stat.S_ISDIR(info.st_mode):
                    folders.append(item.name)
                else:
                    used += info.st_size
    for name in folders:
        try:
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        except OSError:
            continue
        try:
            used += _measure(child, seen)
        finally:
            os.close(child)
    return used


def check_quota(ws: Workspace, quota: int, adding: int, path: str) -> None:
    """Refuse (TOO_LARGE) to add `adding` bytes if the workspace would then hold more than
    `quota` (0: no quota, as for the kernel)."""
    if not quota:
        return
    used = usage(ws)
    if used + adding > quota:
        raise quota_error(path, used, quota, adding)


def quota_error(path: str, used: int, quota: int, adding: int) -> RpcError:
    """What a write of `adding` bytes that does not fit is told."""
    message = (
        f"{path}: the workspace is full: {_mib(used)} used of {_mib(quota)}, and this "
        f"needs {_mib(max(adding, 0))} more (CELLBUS_WORKSPACE_QUOTA_MB)"
    )
    return RpcError(TOO_LARGE, message, {"path": path, "used": used, "quota": quota})


def _mib(size: int) -> str:
    return f"{size / MIB:.1f} MiB"


def make_folder(ws: Workspace, path: str) -> Entry:
    """Make a folder (and the folders above it that are missing)."""
    with ws.parent(path, create=True) as (fd, name):
        try:
            os.mkdir(name, 0o777, dir_fd=fd)
        except FileExistsError:
            raise refused(TAKEN, f"{path} exists already", path) from None
        made = open_dir(fd, name, path)
        try:
            ws.adopt(made)
        finally:
            os.close(made)
        return _entry(name, path, os.stat(name, dir_fd=fd, follow_symlinks=False))


def move(ws: Workspace, source: str, destination: str) -> Entry:
    """Rename or move an entry (a link is moved itself); never over an existing one. The
    check and the rename are two calls: code that makes the destination in between has it
    replaced, within its own workspace."""
    with ws.parent(source) as (src_fd, src_name), ws.parent(destination) as (dst_fd, dst_name):
        try:
            os.stat(src_name, dir_fd=src_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise explain(src_fd, src_name, source, "file") from None
        with contextlib.suppress(FileNotFoundError):
            os.stat(dst_name, dir_fd=dst_fd, follow_symlinks=False)
            raise refused(TAKEN, f"{destination} exists already", destination)
        try:
            os.rename(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        except OSError as exc:
            message = f"cannot move {source} to {destination}: {exc.strerror}"
            raise refused(CONFLICT, message, source) from None
        info = os.stat(dst_name, dir_fd=dst_fd, follow_symlinks=False)
        return _entry(dst_name, destination, info)


def delete(ws: Workspace, path: str) -> None:
    """Remove an entry; a folder with all it holds (links inside are removed, not followed)."""
    with ws.parent(path) as (fd, name):
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            raise explain(fd, name, path, "file") from None
        try:
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(name, dir_fd=fd)
            else:
                os.unlink(name, dir_fd=fd)
        except OSError as exc:
            raise refused(FORBIDDEN, f"cannot delete {path}: {exc.strerror}", path) from None


def read_text(ws: Workspace, path: str) -> TextFile:
    with ws.parent(path) as (parent, name):
        fd = open_file(parent, name, path)
    try:
        info = os.fstat(fd)
        if info.st_size > MAX_TEXT_BYTES:
            raise _too_big_for_text(path, info.st_size, "download it: GET /files/...")
        data = os.read(fd, MAX_TEXT_BYTES + 1)
    finally:
        os.close(fd)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        message = f"{path} is not UTF-8 text: download it (GET /files/...)"
        raise refused(INVALID_PARAMS, message, path) from None
    modified = datetime.fromtimestamp(info.st_mtime, UTC).isoformat()
    return TextFile(path=path, text=text, size=len(data), modified=modified)


def _too_big_for_text(path: str, size: int, instead: str) -> RpcError:
    message = (
        f"{path} is {size} bytes; files.read and files.write take up to {MAX_TEXT_BYTES}: {instead}"
    )
    return refused(TOO_LARGE, message, path)


def write_text(ws: Workspace, path: str, text: str, quota: int) -> Entry:
    """Write a small text file whole (made, or replaced at once: readers never see half of
    it), making the folders above it that are missing."""
    data = text.encode()
    if len(data) > MAX_TEXT_BYTES:
        raise _too_big_for_text(path, len(data), "upload it: PUT /files/...")
    with ws.parent(path, create=True) as (fd, name):
        old = existing_file_size(fd, name, path) or 0
        check_quota(ws, quota, len(data) - old, path)
        temporary = f".cellbus-write-{secrets.token_hex(8)}"
        out = open_file(fd, temporary, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            try:
                ws.adopt(out)
                os.write(out, data)
            finally:
                os.close(out)
            os.rename(temporary, name, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=fd)
            raise
        return _entry(name, path, os.stat(name, dir_fd=fd, follow_symlinks=False))


def existing_file_size(fd: int, name: str, path: str) -> int | None:
    """The size of the regular file that a write would replace (None if none); an entry of
    another kind is not replaced (refused, saying what it is)."""
    try:
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise explain(fd, name, path, "file")
    return info.st_size
