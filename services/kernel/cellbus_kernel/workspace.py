"""A session's workspace as its worker sees it: its size against the quota, what code changed
in it, and the copy a fork starts from.

The workspace (``<CELLBUS_WORKSPACES_DIR>/<session>``, `cellbus_protocol.workspaces`) is the
session process's working directory; user code writes there whatever it likes. The quota
(``CELLBUS_WORKSPACE_QUOTA_MB``) counts everything in it, and the kernel enforces it on what
code writes without any help from the file system (a shared volume rarely has per-folder
quotas):

- the worker measures the workspace (`scan`: a walk that follows no link, bounded) when a
  process starts, after each execution, and while one runs (every `WATCH_EVERY` seconds, or
  ten times as long as a scan takes, so a large workspace costs at most a tenth of a core) or
  idles (every `IDLE_WATCH_EVERY` seconds: a thread or a background process may go on
  writing);
- after each measure the process's RLIMIT_FSIZE *soft* limit is set to what the quota leaves
  (never above the hard limit, ``CELLBUS_SESSION_MAX_FILE_MB``; the process sets it, told by
  a `frames.FileLimit` whenever that changed): a write past it fails with EFBIG, which the
  cell shows with "The workspace is full" (`sandbox.limit_hint`);
- the soft limit is the process's to raise (up to the hard one): code that does so and goes
  on writing past the quota by `quota_margin` is killed, as past the memory limit, and the
  feed says why. Several files written at once, each under the limit, can also pass the quota
  between two measures; the margin is what they may add before the same happens.

After an execution that changed files, its `FilesChanged` (the paths that changed) goes on the
feed before its ``idle``: a comparison of two scans' names, sizes and times, no more.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from cellbus_protocol.workspaces import MIB, workspace_path

log = logging.getLogger(__name__)

MAX_ENTRIES = 500_000
"""The most entries one scan looks at (a scan of that many takes about a second); past them the
workspace counts as what was seen, and the worker's log says so."""
MAX_DEPTH = 128
"""The deepest folder a scan enters (each level holds a file descriptor while it is walked)."""
MAX_REMEMBERED = 20_000
"""Entries kept from a scan to name what the next one finds changed; past them a change is
told without names (``paths`` empty: list again)."""
MAX_CHANGED_PATHS = 100
"""The most paths one `FilesChanged` names; more are told as their top-level folders."""
WATCH_EVERY = 0.25
"""Seconds between measures while an execution runs (at least: ten times a scan's time)."""
IDLE_WATCH_EVERY = 30.0
"""Seconds between measures while the process idles."""

Entry = tuple[int, int, int]
"""What a scan keeps of an entry: its type (the ``S_IFMT`` bits), size and modification time
(a folder's size and time are 0: its entries say what changed)."""


@dataclass(frozen=True)
class Snapshot:
    """One scan of a workspace."""

    used: int  # bytes: the sizes of its files and links (apparent sizes, not blocks)
    digest: bytes  # of every entry seen: two scans with the same digest saw the same files
    entries: dict[str, Entry] = field(default_factory=dict)  # the first MAX_REMEMBERED
    complete: bool = True  # every entry was seen (not cut at MAX_ENTRIES or MAX_DEPTH)

    @property
    def remembered_all(self) -> bool:
        return self.complete and len(self.entries) < MAX_REMEMBERED


def scan(root: Path) -> Snapshot:
    """Measure the workspace at `root` (an empty one if it does not exist). It walks from a
    descriptor of each folder, one name at a time, never following a link (so no path is
    too long and nothing outside is counted); a folder its owner made unreadable (mode 000) is
    made readable to its owner again, since the worker must see everything the quota counts."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except (FileNotFoundError, NotADirectoryError):
        return Snapshot(used=0, digest=hashlib.blake2b(digest_size=16).digest())
    walk = _Walk()
    try:
        walk.folder(fd, "", 0)
    finally:
        os.close(fd)
    if not walk.complete:
        log.warning("workspace %s: more than %d entries or %d levels deep: counted in part",
                    root, MAX_ENTRIES, MAX_DEPTH)  # fmt: skip
    return Snapshot(walk.used, walk.digest.digest(), walk.entries, walk.complete)


class _Walk:
    def __init__(self) -> None:
        self.used = 0
        self.seen = 0
        self.complete = True
        self.digest = hashlib.blake2b(digest_size=16)
        self.entries: dict[str, Entry] = {}

    def folder(self, fd: int, prefix: str, depth: int) -> None:
        folders: list[str] = []
        with os.scandir(fd) as listing:
            for item in listing:
                self.seen += 1
                if self.seen > MAX_ENTRIES:
                    self.complete = False
                    return
                try:
                    info = item.stat(follow_symlinks=False)
                except OSError:
                    continue  # gone since it was listed
                kind = stat.S_IFMT(info.st_mode)
                path = prefix + item.name
                if kind == stat.S_IFDIR:
                    folders.append(item.name)
                    entry: Entry = (kind, 0, 0)
                else:
                    self.used += info.st_size
                    entry = (kind, info.st_size, info.st_mtime_ns)
                self.digest.update(os.fsencode(path) + b"\0" + repr(entry).encode())
                if len(self.entries) < MAX_REMEMBERED:
                    self.entries[path] = entry
        for name in folders:
            if depth + 1 >= MAX_DEPTH:
                self.complete = False
                continue
            child = _open_folder(fd, name)
            if child is None:
                continue
            try:
                self.folder(child, f"{prefix}{name}/", depth + 1)
            finally:
                os.close(child)
            if self.seen > MAX_ENTRIES:
                return


def _open_folder(parent: int, name: str) -> int | None:
    """A descriptor of folder `name` in `parent` (None if it is gone or became something
    else: a link is never followed). One its owner made unreadable is made readable to its
    owner, through a descriptor of that very folder (no name is looked up twice)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        return os.open(name, flags, dir_fd=parent)
    except PermissionError:
        pass
    except OSError:
        return None
    try:
        handle = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent)
    except OSError:
        return None
    try:
        mode = os.stat(handle).st_mode
        os.chmod(f"/proc/self/fd/{handle}", stat.S_IMODE(mode) | stat.S_IRWXU)
        return os.open(f"/proc/self/fd/{handle}", flags & ~os.O_NOFOLLOW)
    except OSError:
        return None
    finally:
        os.close(handle)


def changed_paths(before: Snapshot, after: Snapshot) -> list[str] | None:
    """The workspace-relative paths that differ between two scans (None: nothing changed; an
    empty list: something did, list again)."""
    if before.digest == after.digest:
        return None
    if not (before.remembered_all and after.remembered_all):
        return []
    old, new = before.entries, after.entries
    paths = sorted(p for p in old.keys() | new.keys() if old.get(p) != new.get(p))
    if len(paths) > MAX_CHANGED_PATHS:
        paths = sorted({path.split("/", 1)[0] for path in paths})
    if len(paths) > MAX_CHANGED_PATHS or not all(_printable(p) for p in paths):
        return []
    return paths


def _printable(path: str) -> bool:
    """Whether `path` can go in a message (a name that is not UTF-8 cannot)."""
    try:
        path.encode()
    except UnicodeEncodeError:
        return False
    return True


def quota_margin(quota: int) -> int:
    """How far past the quota a workspace may go before the process writing it is killed: a
    tenth of the quota, at least 16 MiB (see the module's docstring)."""
    return max(quota // 10, 16 * MIB)


class WorkspaceGuard:
    """One session's workspace and its quota, kept by the session's `ProcessManager`."""

    def __init__(self, path: Path, quota_mb: int) -> None:
        self.path = path
        self.quota = quota_mb * MIB  # 0: none
        self._baseline: Snapshot | None = None  # what code's changes are measured from
        self.used = 0  # bytes, at the last measure
        self._started_with = 0  # bytes, when the process started
        self.scan_time = 0.0  # seconds the last scan took

    async def measure(self) -> Snapshot:
        started = time.monotonic()
        snapshot = await asyncio.to_thread(scan, self.path)
        self.scan_time = time.monotonic() - started
        self.used = snapshot.used
        return snapshot

    @property
    def over(self) -> bool:
        """Past the quota by more than the margin (or, for a process that started in a
        workspace already past it, past what it held then): the writer is killed. A process
        that only reads a full workspace is not."""
        ceiling = max(self.quota, self._started_with) + quota_margin(self.quota)
        return bool(self.quota) and self.used > ceiling

    @property
    def file_limit(self) -> int | None:
        """The file size soft limit a process of the session gets from the last measure:
        what the quota leaves (None: no quota). The hard limit is not the worker's to change
        (CELLBUS_SESSION_MAX_FILE_MB); the process caps this at it."""
        return max(self.quota - self.used, 0) if self.quota else None

    async def started(self) -> None:
        """A process starts in the workspace: measure it (the baseline of what changes)."""
        self._baseline = await self.measure()
        self._started_with = self.used

    async def check(self, *, baseline: bool) -> list[str] | None:
        """Measure again; with `baseline` (an execution ended, or the process idles) what
        changed since the baseline, which becomes this measure."""
        snapshot = await self.measure()
        if not baseline:
            return None
        before, self._baseline = self._baseline, snapshot
        return None if before is None else changed_paths(before, snapshot)

    def next_watch(self) -> float:
        """Seconds until the next measure while an execution runs."""
        return max(WATCH_EVERY, 10 * self.scan_time)


async def copy_workspace(root: Path, source: str, target: str) -> None:
    """Make `target`'s workspace a copy of `source`'s (a fork): as ``cp -a --reflink=auto``
    does it: the file system's copy-on-write clones where it has them (a fork costs no space
    until either side writes), a plain copy elsewhere; links copied as links, never followed;
    modes, owners and times kept. Never hard links: the fork's writes must not reach the
    original. Nothing is made if `source` has no workspace yet."""
    origin, copy = workspace_path(root, source), workspace_path(root, target)
    if not origin.is_dir() or origin.is_symlink():
        return
    process = await asyncio.create_subprocess_exec(
        "cp", "-a", "--reflink=auto", "--no-target-directory", "--", str(origin), str(copy),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, errors = await process.communicate()
    if process.returncode != 0:
        await asyncio.to_thread(shutil.rmtree, copy, True)
        raise OSError(f"cp exited with code {process.returncode}: {errors.decode()[-500:]}")
