"""The feed WebSocket's frames of feed entries: built once per list of entries for every
socket, and written by the outbox, a socket's pending frames in one write."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from cellbus_protocol import codec
from cellbus_protocol import messages as m
from cellbus_protocol.bus import FeedEntry
from cellbus_protocol.envelope import new_message
from cellbus_web.outbox import Outbox, text_frame
from cellbus_web.ws import _Frames

S1 = "11111111-1111-1111-1111-111111111111"
S2 = "22222222-2222-2222-2222-222222222222"


def entry(seq: int, content: Any, session: str = S1) -> FeedEntry:
    return FeedEntry(seq, codec.encode(new_message(content, session=session, username="ada")))


def printed(seq: int, text: str = "x\n") -> FeedEntry:
    return entry(seq, m.Stream(name="stdout", text=text))


def test_the_frames_of_entries_are_built_once_for_all_their_sockets() -> None:
    frames = _Frames()
    entries = [printed(7), printed(8, "y\n")]
    wrapped = frames.of(S1, entries)
    assert frames.of(S1, entries) is wrapped  # the next socket gets the same bytes
    assert wrapped.revoked == [None, None]
    first = json.loads(wrapped.frames[0])
    assert (first["type"], first["session"], first["cursor"]) == ("message", S1, 7)
    assert first["message"] == json.loads(entries[0].data)
    assert json.loads(wrapped.frames[1])["cursor"] == 8
    assert wrapped.wire == text_frame(wrapped.frames[0]) + text_frame(wrapped.frames[1])
    assert json.loads(frames.of(S2, entries).frames[0])["session"] == S2
    assert frames.of(S1, list(entries)) is not wrapped  # another relay's list


def test_only_a_worksheet_shared_with_role_none_removes_access() -> None:
    removed = entry(1, m.WorksheetShared(username="bob", role="none"))
    shared = entry(2, m.WorksheetShared(username="bob", role="viewer"))
    # output that merely mentions it, or that does not decode, removes nothing
    shown = m.DisplayData(data={"application/json": {"worksheet_shared": "worksheet_shared"}})
    odd = FeedEntry(4, b'{"x": "worksheet_shared"}')
    wrapped = _Frames().of(S1, [removed, shared, entry(3, shown), odd])
    assert wrapped.revoked == ["bob", None, None, None]


def read_frames(data: bytes) -> list[str]:
    """`data` read as a client reads a server's frames (RFC 6455, section 5.2): each final,
    unmasked, text."""
    out = []
    while data:
        assert data[0] == 0x81 and not data[1] & 0x80
        size, start = data[1], 2
        if size == 126:
            size, start = int.from_bytes(data[2:4], "big"), 4
        elif size == 127:
            size, start = int.from_bytes(data[2:10], "big"), 10
        assert len(data) >= start + size
        out.append(data[start : start + size].decode())
        data = data[start + size :]
    return out


def test_text_frames_read_back_at_every_length_class() -> None:
    payloads = [b"x" * 5, b"y" * 125, b"z" * 126, b"w" * 70_000]
    frames = [text_frame(p) for p in payloads]
    assert [len(f) - len(p) for f, p in zip(frames, payloads, strict=True)] == [2, 2, 4, 10]
    assert read_frames(b"".join(frames)) == [p.decode() for p in payloads]


# -- the outbox ------------------------------------------------------------------------------


class _Due:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def flush(self) -> None:
        self.log.append(self.name)


async def steps() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_the_outbox_writes_a_group_of_sockets_per_step_oldest_first() -> None:
    log: list[str] = []
    outbox = Outbox(per_step=2)
    a, b, c = (_Due(n, log) for n in "abc")
    for socket in (a, b, c, a):  # a, due again, keeps its place
        outbox.add(socket)
    await asyncio.sleep(0)
    assert log == ["a", "b"]  # the rest waits for the next step: the loop runs between
    await steps()
    assert log == ["a", "b", "c"]
    outbox.add(b)
    outbox.add(c)
    outbox.discard(b)  # a socket that closed
    await steps()
    assert log == ["a", "b", "c", "c"]
    outbox.add(a)
    outbox.close()
    await steps()
    assert log == ["a", "b", "c", "c"]


async def test_a_socket_that_fails_to_write_does_not_stop_the_others() -> None:
    log: list[str] = []
    outbox = Outbox(per_step=10)

    class Broken:
        def flush(self) -> None:
            raise RuntimeError("a bug")

    outbox.add(Broken())
    outbox.add(_Due("ok", log))
    await steps()
    outbox.add(_Due("later", log))
    await steps()
    assert log == ["ok", "later"]  # the outbox runs on


# -- a socket's pending frames ---------------------------------------------------------------


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closing


class _Writer:
    def __init__(self, paused: bool = False, compress: int = 0) -> None:
        self.compress = compress
        self.protocol = type("Protocol", (), {"writing_paused": paused})()
        self.transport = _Transport()


class _Socket:
    """Enough of aiohttp's WebSocketResponse for FeedSocket."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer
        self.closed = False
        self.sent: list[bytes] = []

    async def send_frame(self, data: bytes, opcode: int) -> None:
        self.sent.append(data)
        if isinstance(self._writer, _Writer):  # as aiohttp does: to the same transport
            self._writer.transport.write(text_frame(data))


def feed_socket(writer: Any, outbox: Outbox | None = None) -> Any:
    from types import SimpleNamespace

    from cellbus_web.ws import FeedSocket

    backend = SimpleNamespace(settings=SimpleNamespace(socket_queue=10))
    principal = SimpleNamespace(user=SimpleNamespace(username="ada"), token="t0ken")
    socket = FeedSocket(_Socket(writer), backend, principal, outbox or Outbox())  # type: ignore[arg-type]
    socket.subscribed.add(S1)
    return socket


async def test_live_frames_that_arrive_together_go_out_in_one_write() -> None:
    writer = _Writer()
    socket = feed_socket(writer)
    busy, echo, output = [printed(1, "a\n")], [printed(2, "b\n")], [printed(3, "x\n")]
    for entries in (busy, echo, output):
        socket.deliver(S1, entries)
    assert writer.transport.writes == []  # not in the relay's step
    await steps()
    (written,) = writer.transport.writes
    assert [json.loads(f)["cursor"] for f in read_frames(written)] == [1, 2, 3]
    assert socket.queue.empty() and socket.sent[S1] == 3


async def test_something_queued_keeps_its_place_after_pending_frames() -> None:
    writer = _Writer()
    socket = feed_socket(writer)
    socket.deliver(S1, [printed(1)])
    socket.queue.put_nowait(("", 0, b'{"type":"pong"}'))
    socket.deliver(S1, [printed(2, "y\n")])  # behind the pong, in the queue
    assert socket.queue.qsize() == 2
    writer_task = asyncio.create_task(socket.write())
    await steps()
    writer_task.cancel()
    wire = b"".join(writer.transport.writes)
    cursors = [json.loads(f).get("cursor") for f in read_frames(wire)]
    assert cursors == [1, None, 2]  # the pending frame first, then the queue in order


async def test_live_frames_of_a_compressed_socket_go_through_its_writer() -> None:
    for writer in (_Writer(compress=15), object(), None):  # (or if aiohttp changed shape)
        socket = feed_socket(writer)
        socket.deliver(S1, [printed(1), printed(2, "y\n")])
        assert socket.queue.qsize() == 2, writer


async def test_pending_frames_go_to_the_writer_if_the_socket_is_full_when_the_outbox_runs() -> None:
    writer = _Writer()
    socket = feed_socket(writer)
    socket.deliver(S1, [printed(1)])
    writer.protocol.writing_paused = True
    await steps()
    assert writer.transport.writes == [] and socket.queue.qsize() == 1  # woken
    writer_task = asyncio.create_task(socket.write())
    await steps()
    writer_task.cancel()
    assert [json.loads(f)["cursor"] for f in socket.ws.sent] == [1]  # sent by the writer
    assert socket.sent[S1] == 1
