"""The fan-out workload's subscribers: many sockets on one session, each as cheap as can be.

A fan-out figure is the system's: the time until every subscriber has the output. In real
use each subscriber is a browser on a machine of its own; here a thousand of them share the
two cores with the system under test, so whatever a subscriber spends is taken from the
system and shows up in its figure. A subscriber therefore does only what it must, for every
system alike: `RawWebSocket` is a minimal WebSocket client (RFC 6455) that parses each frame
in the callback that receives its bytes, with no task, queue or message object per frame,
and `Watchers` looks for the output in each text frame's bytes.

With aiohttp's client (a reader task per socket) cellbus's fan-out to 100 measured 0.103 and
0.106 of Jupyter's in two quick runs; with this one, 0.097 and 0.098 (2026-11-24).
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import Callable
from urllib.parse import urlsplit

TEXT, CLOSE, PING = 0x1, 0x8, 0x9


class RawWebSocket(asyncio.Protocol):
    """A client WebSocket without extensions: text frames out, text frames in.

    Until `watch` is called, text frames queue for `receive_str` (for a subscription's
    handshake); after it, each goes to the watching callback as it is parsed."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._head = b""  # the HTTP response, until its blank line
        self._buffer = bytearray()
        self._parts: list[bytes] = []  # the fragments of a text message
        self._texts: asyncio.Queue[str] = asyncio.Queue()
        self._on_text: Callable[[bytes, float], None] | None = None

    @classmethod
    async def connect(cls, url: str, headers: dict[str, str] | None = None) -> RawWebSocket:
        """Open the socket at `url` (``http://host:port/path?query``)."""
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: {parts.netloc}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"a WebSocket URL names its host and port: {url}")
        loop = asyncio.get_running_loop()
        _, socket = await loop.create_connection(cls, parts.hostname, parts.port)
        assert socket.transport is not None
        socket.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            await socket.upgraded
        except BaseException:
            socket.transport.abort()
            raise
        return socket

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        error = exc or ConnectionResetError("the server closed the socket")
        if not self.upgraded.done():
            self.upgraded.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)
        self._texts.put_nowait("")  # wakes a waiting receive_str, which raises

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self.upgraded.done():
            self._head += data
            head, sep, rest = self._head.partition(b"\r\n\r\n")
            if not sep:
                return
            status = head.split(b"\r\n", 1)[0]
            if b" 101 " not in status + b" ":
                self.upgraded.set_exception(ConnectionError(f"no upgrade: {head.decode()!r}"))
                assert self.transport is not None
                self.transport.close()
                return
            self.upgraded.set_result(None)
            data = rest
        self._buffer += data
        self._frames(now)

    def _frames(self, now: float) -> None:
        buffer = self._buffer
        while (header := _frame_header(buffer)) is not None:
            start, size = header
            if len(buffer) < start + size:
                return
            first = buffer[0]
            payload = bytes(buffer[start : start + size])
            del buffer[: start + size]
            self._frame(first & 0x0F, bool(first & 0x80), payload, now)

    def _frame(self, opcode: int, final: bool, payload: bytes, now: float) -> None:
        """One whole frame: a text (or its continuation), a ping, or the server's close."""
        if opcode == TEXT or (opcode == 0 and self._parts):
            self._parts.append(payload)
            if final:
                text, self._parts = b"".join(self._parts), []
                if self._on_text is not None:
                    self._on_text(text, now)
                else:
                    self._texts.put_nowait(text.decode())
        elif opcode == PING:
            self._send(0xA, payload)
        elif opcode == CLOSE and self.transport is not None:
            self.transport.close()

    # -- what the watcher uses ---------------------------------------------------------------
    def _send(self, opcode: int, payload: bytes) -> None:
        """One final frame, masked as a client's must be."""
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
        elif size < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(header + mask + masked)

    async def send_str(self, text: str) -> None:
        self._send(TEXT, text.encode())

    async def receive_str(self) -> str:
        """The next text frame (before `watch`)."""
        if self.closed.done() and self._texts.empty():
            raise ConnectionResetError("the socket is closed")
        text = await self._texts.get()
        if not text and self.closed.done():
            raise ConnectionResetError("the socket is closed")
        return text

    def watch(self, on_text: Callable[[bytes, float], None]) -> None:
        """From now on, hand each text frame to `on_text` with the time its bytes arrived."""
        self._on_text = on_text

    async def close(self, timeout: float = 5.0) -> None:
        """Close as the protocol asks: a close frame, then wait for the server to end it."""
        if self.transport is None or self.closed.done():
            return
        self._send(CLOSE, struct.pack("!H", 1000))
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self.closed)
        except TimeoutError:
            self.transport.abort()


def _frame_header(buffer: bytearray) -> tuple[int, int] | None:
    """Where the next frame's payload starts and its size, or None until its header is in."""
    if len(buffer) < 2:
        return None
    second = buffer[1]
    size, start = second & 0x7F, 2
    if size == 126:
        if len(buffer) < 4:
            return None
        (size,) = struct.unpack_from("!H", buffer, 2)
        start = 4
    elif size == 127:
        if len(buffer) < 10:
            return None
        (size,) = struct.unpack_from("!Q", buffer, 2)
        start = 10
    if second & 0x80:
        raise ConnectionError("a server frame was masked")
    return start, size


class Watchers:
    """`n` sockets watching one session, each noting when the stream text `x\\n` reached it."""

    def __init__(self) -> None:
        self.arrivals: list[float | None] = []
        self.armed = False
        self.all_arrived = asyncio.Event()
        self._left = 0
        self._sockets: list[RawWebSocket] = []
        self.refused: str | None = None  # why opening stopped before all were open

    def arm(self) -> None:
        self.arrivals = [None] * len(self._sockets)
        self._left = len(self._sockets)
        self.all_arrived.clear()
        self.armed = True

    def add(self, socket: RawWebSocket, is_x: Callable[[bytes], bool]) -> None:
        """Watch `socket`, whose text frames `is_x` tells apart."""
        i = len(self._sockets)

        def on_text(data: bytes, now: float) -> None:
            if self.armed and self.arrivals[i] is None and is_x(data):
                self.arrivals[i] = now
                self._left -= 1
                if self._left == 0:
                    self.armed = False
                    self.all_arrived.set()

        socket.watch(on_text)
        self._sockets.append(socket)

    def __len__(self) -> int:
        return len(self._sockets)

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self._sockets), return_exceptions=True)
