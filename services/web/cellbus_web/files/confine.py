"""A user's path inside a workspace, walked without ever leaving it.

User code may plant a symbolic link, a FIFO or a device node in its workspace at any moment,
even between two system calls of ours, so no path is ever resolved (``realpath``) and then
opened: every operation starts from a descriptor of the workspace and opens one component at
a time relative to the one before (``dir_fd``), with ``O_NOFOLLOW``, so a component that is a
link fails to open instead of being followed. What reaches a caller is therefore always the
workspace's own entry, whatever was swapped in meanwhile.

Refused, each with an error naming the path: an absolute path, an empty component (``a//b``,
a trailing ``/``), ``.`` and ``..``, a NUL character, a name longer than the file system's
(255 bytes), a symbolic link anywhere (never followed), and anything that is neither a regular
file nor a folder (FIFOs, sockets, devices). The last component of a move or a delete may be
a link or a special file: it is renamed or removed itself, never what it points to.

What this process makes in a workspace (folders, uploads, written files) is the session's to
change as much as its own files are: made with modes 0777 and 0666 (set on the descriptor, not
left to the umask), and, when this process runs as root, given to the owner of the workspace
(the session user; see docs/deploy.md). Nothing else can reach them: the workspace itself is
mode 0700.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from cellbus_protocol.workspaces import workspace_path

from ..rpc import CONFLICT, FORBIDDEN, INVALID_PARAMS, NOT_FOUND, RpcError

MAX_PATH = 4096
"""The longest path taken, in bytes (PATH_MAX)."""
MAX_NAME = 255
"""The longest name of one component, in bytes (NAME_MAX)."""

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
"""Added to every open of a file: no link is followed, and a FIFO swapped in for a file never
blocks the open (nor becomes anyone's controlling terminal)."""


def refused(code: int, message: str, path: str) -> RpcError:
    """An error about `path`, which clients also get as ``data.path``."""
    return RpcError(code, message, {"path": path})


def parse(path: str) -> tuple[str, ...]:
    """The components of a workspace-relative path ("" is the workspace itself), or the
    error that says why it is refused."""
    if "\0" in path:
        raise refused(INVALID_PARAMS, f"{path[:200]!r}: a path may not contain NUL", path)
    if len(path.encode(errors="surrogateescape")) > MAX_PATH:
        raise refused(INVALID_PARAMS, f"the path is longer than {MAX_PATH} bytes", path[:200])
    if path == "":
        return ()
    if path.startswith("/"):
        message = f"{path}: an absolute path; give a path inside the workspace (no leading /)"
        raise refused(INVALID_PARAMS, message, path)
    parts = tuple(path.split("/"))
    for part in parts:
        if part in ("", ".", ".."):
            shown = part or "an empty name"
            message = f"{path}: {shown} is not allowed in a path inside the workspace"
            raise refused(INVALID_PARAMS, message, path)
        if len(part.encode(errors="surrogateescape")) > MAX_NAME:
            raise refused(INVALID_PARAMS, f"{path}: a name is longer than {MAX_NAME} bytes", path)
    return parts


def explain(parent: int, name: str, shown: str, wanted: str) -> RpcError:
    """Why `name` in folder `parent` is not the `wanted` thing ("file" or "folder"): it is
    missing, a link, a special file, or the other kind."""
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return refused(NOT_FOUND, f"{shown}: no such file or folder in the workspace", shown)
    except OSError as exc:
        return refused(FORBIDDEN, f"{shown}: {exc.strerror}", shown)
    mode = info.st_mode
    if stat.S_ISLNK(mode):
        return refused(FORBIDDEN, f"{shown} is a symbolic link: links are not followed", shown)
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        message = f"{shown} is not a regular file or folder ({kind_of(mode)}): refused"
        return refused(FORBIDDEN, message, shown)
    if wanted == "folder" and stat.S_ISREG(mode):
        return refused(CONFLICT, f"{shown} is a file, not a folder", shown)
    if wanted == "file" and stat.S_ISDIR(mode):
        return refused(CONFLICT, f"{shown} is a folder, not a file", shown)
    return refused(FORBIDDEN, f"{shown}: cannot be opened", shown)


def kind_of(mode: int) -> str:
    """What a special file is, in words."""
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"


def open_dir(parent: int, name: str, shown: str) -> int:
    """A descriptor of folder `name` in `parent`; never through a link."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent)
    except OSError:
        raise explain(parent, name, shown, "folder") from None


def open_file(parent: int, name: str, shown: str, flags: int = os.O_RDONLY) -> int:
    """A descriptor of regular file `name` in `parent` (`flags` may add O_CREAT, O_WRONLY...).
    The entry is looked at first, so that no special file is ever opened (a device's open may
    do something), and the descriptor is checked again, for what was swapped in between."""
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        if not flags & os.O_CREAT:
            raise explain(parent, name, shown, "file") from None
    else:
        if not stat.S_ISREG(info.st_mode):
            raise explain(parent, name, shown, "file")
    try:
        fd = os.open(name, flags | FILE_FLAGS, 0o666, dir_fd=parent)
    except OSError:
        raise explain(parent, name, shown, "file") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise explain(parent, name, shown, "file")
    return fd


class Workspace:
    """One worksheet's workspace: the folder ``<root>/<session>``, which this process opens
    afresh for each operation (it may be made or removed by a kernel worker meanwhile)."""

    def __init__(self, root: Path, session: str) -> None:
        self.root = root
        self.session = session
        self.path = workspace_path(root, session)
        self.owner: tuple[int, int] | None = None  # (uid, gid) of the workspace, once opened

    def adopt(self, fd: int) -> None:
        """Make what `fd` is (a folder or file this process just made) the session's: modes
        0777/0666, and owned as the workspace is if this process may give it away."""
        folder = stat.S_ISDIR(os.fstat(fd).st_mode)
        os.fchmod(fd, 0o777 if folder else 0o666)
        if self.owner is not None and os.geteuid() == 0 and self.owner[0] != 0:
            os.fchown(fd, *self.owner)

    @contextlib.contextmanager
    def opened(self, create: bool) -> Iterator[int | None]:
        """A descriptor of the workspace; None if it does not exist yet and `create` is false
        (a worksheet whose session never ran has an empty workspace: nothing to list).
        Made, if `create`, as the kernel makes it: mode 0700."""
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        root = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(self.session, 0o700, dir_fd=root)
            try:
                fd = os.open(self.session, DIR_FLAGS, dir_fd=root)
            except FileNotFoundError:
                fd = None
        finally:
            os.close(root)
        if fd is not None:
            info = os.fstat(fd)
            self.owner = (info.st_uid, info.st_gid)
        try:
            yield fd
        finally:
            if fd is not None:
                os.close(fd)

    @contextlib.contextmanager
    def folder(self, parts: tuple[str, ...], create: bool = False) -> Iterator[int | None]:
        """A descriptor of the folder at `parts` (the workspace for none), walked one
        component at a time; missing folders are made if `create`. None: the workspace does
        not exist (and `create` is false)."""
        with self.opened(create) as top:
            if top is None:
                yield None
                return
            fd = os.dup(top)
            try:
                for depth, part in enumerate(parts):
                    shown = "/".join(parts[: depth + 1])
                    made = False
                    if create:
                        with contextlib.suppress(FileExistsError):
                            os.mkdir(part, 0o777, dir_fd=fd)
                            made = True
                    child = open_dir(fd, part, shown)
                    os.close(fd)
                    fd = child
                    if made:
                        self.adopt(fd)
                yield fd
            finally:
                os.close(fd)

    @contextlib.contextmanager
    def parent(self, path: str, create: bool = False) -> Iterator[tuple[int, str]]:
        """The folder holding `path`'s last component, and that name: for operations on an
        entry itself. The workspace itself is no entry (refused); a missing workspace or
        folder is not found unless `create`."""
        parts = parse(path)
        if not parts:
            raise refused(INVALID_PARAMS, "this needs a path inside the workspace, not itself", "")
        with self.folder(parts[:-1], create) as fd:
            if fd is None:
                raise refused(NOT_FOUND, f"{path}: no such file or folder in the workspace", path)
            yield fd, parts[-1]
