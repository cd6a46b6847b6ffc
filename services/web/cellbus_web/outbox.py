"""Live feed frames on their way to the sockets: written a group of sockets at a time.

A message of a session that many sockets watch (fan-out) means one write per socket. Done
all at once, in the relay's own step, those writes hold up the whole process: with 100
sockets, the kernel's next output waits in its pipe behind 100 writes of ``busy`` and 100 of
``execute_input``, and then takes its own turn of 100. So a live frame only joins its
socket's pending frames (`FeedSocket.deliver`), and the `Outbox` writes the sockets that
have some, a group per step of the event loop, oldest first. Between groups the loop reads
what has arrived meanwhile: a socket not written to yet when the next message comes gets
both in one write (one system call, one read for the browser).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Protocol

log = logging.getLogger(__name__)

PER_STEP = 16
"""Sockets written in one step of the event loop (a write takes about 10 µs)."""


class Flushable(Protocol):
    def flush(self) -> None:
        """Write the socket's pending frames, or hand them to its writer task."""


class Outbox:
    """The sockets of this web process with live frames to write, in the order they got
    their first one."""

    def __init__(self, per_step: int = PER_STEP) -> None:
        self.per_step = per_step
        self._due: dict[Flushable, None] = {}  # a dict: ordered, and a socket is in it once
        self._step: asyncio.Handle | None = None

    def add(self, socket: Flushable) -> None:
        """Write `socket`'s pending frames soon (it is kept in its place if already due)."""
        self._due[socket] = None
        if self._step is None:
            self._step = asyncio.get_running_loop().call_soon(self._write_some)

    def discard(self, socket: Flushable) -> None:
        self._due.pop(socket, None)

    def _write_some(self) -> None:
        due = self._due
        try:
            for _ in range(min(self.per_step, len(due))):
                socket = next(iter(due))
                del due[socket]
                socket.flush()
        except Exception:  # a bug: lose that socket's frames, not every socket's
            log.exception("writing feed frames failed")
        finally:
            self._step = asyncio.get_running_loop().call_soon(self._write_some) if due else None

    def close(self) -> None:
        if self._step is not None:
            self._step.cancel()
            self._step = None
        self._due.clear()


def text_frame(payload: bytes) -> bytes:
    """`payload` as one WebSocket text frame as a server sends it: final, unmasked,
    uncompressed (RFC 6455, section 5.2)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload
