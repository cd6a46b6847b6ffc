"""Room in a workspace's quota held by the uploads under way, so that uploads at the same time
(on one web process or several) never pass the quota together.

Checking the quota once, when an upload starts, is not enough: two uploads that each fit
would both be let in, and together pass it; the kernel then takes the workspace for one that
code filled and kills the session, which did nothing. So an upload *holds* what it has still
to receive: a reservation, a sparse file ``<workspace>/.cellbus-room-<random>`` (there only
while the upload goes on, as its partial file is) whose apparent size is those bytes. Every
measure of the workspace counts it as any file (this service's `ops.usage` and the kernel's
scan alike), so what a workspace holds plus what its uploads will still write never passes
the quota:

- an upload's reservation is made under a lock of the workspace (``flock`` of its folder),
  with the measure that checks it fits: two uploads cannot both take the last room;
- it shrinks as bytes arrive (the partial file grows by as much, so the measure stays put),
  and is removed when the request ends, however it ends;
- a body of no declared size holds `STEP` at a time, and takes more (checked again) when it
  passes what it holds;
- the request holds a lock of its reservation; one nobody holds (its web process died) is
  removed by the next upload that takes room.

User code may delete or lock these files: that only changes what its own workspace's uploads
are let do (they wait `LOCK_WAIT` for the workspace, then are refused with a clear error).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from collections.abc import Iterator

from ..rpc import CONFLICT
from . import ops
from .confine import Workspace, open_file, refused

PREFIX = ".cellbus-room-"
"""The start of a reservation's name, at the top of the workspace."""
STEP = 64 * 1024 * 1024
"""Bytes a body of no declared size holds at a time."""
LOCK_WAIT = 5.0
"""Seconds to wait for the workspace's lock (held for one measure at a time)."""


class Reservation:
    """One upload's hold on the quota: `limit` is the size its partial file may reach, and
    the reservation file is `limit` less what the partial file holds."""

    def __init__(self, ws: Workspace, path: str, quota: int) -> None:
        self.ws = ws
        self.path = path  # the upload's target, for messages
        self.quota = quota
        self.limit = 0
        self.fd = -1
        self.dir_fd = -1
        self.name = PREFIX + secrets.token_hex(12)

    def take(self, have: int, limit: int) -> None:
        """Hold room for the partial file (now `have` bytes) to grow to `limit`: refused with
        the quota's message if the workspace cannot take it. A file the upload replaces is
        counted until it is replaced (both are on the disk until then). Blocking: run in a
        thread."""
        with self.ws.opened(create=True) as top:
            assert top is not None  # made if missing
            with _locked(top, self.path):
                if self.fd < 0:
                    self._open(top)
                _remove_abandoned(self.dir_fd, keep=self.name)
                held = os.fstat(self.fd).st_size
                used = ops.usage(self.ws) - held
                adding = limit - have
                if self.quota and used + adding > self.quota:  # 0: no quota, as for the kernel
                    raise ops.quota_error(self.path, used, self.quota, adding)
                os.ftruncate(self.fd, max(adding, 0))
                self.limit = limit

    def grown(self, size: int) -> None:
        """The partial file holds `size` bytes now: hold the rest of `limit` only."""
        if self.fd >= 0:
            os.ftruncate(self.fd, max(self.limit - size, 0))

    def release(self) -> None:
        """Give the room back (the request ends, however it ends)."""
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.unlink(self.name, dir_fd=self.dir_fd)
            os.close(self.fd)
            os.close(self.dir_fd)
        self.fd = self.dir_fd = -1

    def _open(self, top: int) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
        fd = open_file(top, self.name, self.name, flags)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new: nobody else has it
        self.ws.adopt(fd)
        self.fd, self.dir_fd = fd, os.dup(top)


@contextlib.contextmanager
def _locked(workspace: int, path: str) -> Iterator[None]:
    """The workspace's lock, for one measure and the reservation it decides."""
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        try:
            fcntl.flock(workspace, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                message = f"{path}: the workspace is locked by something else; try again"
                raise refused(CONFLICT, message, path) from None
            time.sleep(0.01)
    try:
        yield
    finally:
        fcntl.flock(workspace, fcntl.LOCK_UN)


def _remove_abandoned(folder: int, keep: str) -> None:
    """Remove the reservations no request holds any more (their web process died)."""
    for name in os.listdir(folder):
        if name == keep or not name.startswith(PREFIX):
            continue
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=folder)  # fmt: skip
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # held: an upload under way
        else:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=folder)
        finally:
            os.close(fd)
