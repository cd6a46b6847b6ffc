"""The feed WebSocket's frames of feed entries: built once per entry for every socket."""

from __future__ import annotations

import json
from typing import Any

from cellbus_protocol import codec
from cellbus_protocol import messages as m
from cellbus_protocol.bus import FeedEntry
from cellbus_protocol.envelope import new_message
from cellbus_web.ws import _Frames

S1 = "11111111-1111-1111-1111-111111111111"
S2 = "22222222-2222-2222-2222-222222222222"


def entry(seq: int, content: Any, session: str = S1) -> FeedEntry:
    return FeedEntry(seq, codec.encode(new_message(content, session=session, username="ada")))


def test_the_frame_of_an_entry_is_built_once_for_all_its_sockets() -> None:
    frames = _Frames()
    printed = entry(7, m.Stream(name="stdout", text="x\n"))
    frame, revoked = frames.of(S1, printed)
    assert revoked is None
    assert frames.of(S1, printed)[0] is frame  # the next socket gets the same bytes
    decoded = json.loads(frame)
    assert (decoded["type"], decoded["session"], decoded["cursor"]) == ("message", S1, 7)
    assert decoded["message"] == json.loads(printed.data)
    other = frames.of(S2, FeedEntry(7, printed.data))
    assert json.loads(other[0])["session"] == S2
    again = frames.of(S1, FeedEntry(8, printed.data))
    assert json.loads(again[0])["cursor"] == 8


def test_only_a_worksheet_shared_with_role_none_removes_access() -> None:
    frames = _Frames()
    removed = entry(1, m.WorksheetShared(username="bob", role="none"))
    assert frames.of(S1, removed)[1] == "bob"
    shared = entry(2, m.WorksheetShared(username="bob", role="viewer"))
    assert frames.of(S1, shared)[1] is None
    # output that merely mentions it, or that does not decode, removes nothing
    shown = m.DisplayData(data={"application/json": {"worksheet_shared": "worksheet_shared"}})
    assert frames.of(S1, entry(3, shown))[1] is None
    assert frames.of(S1, FeedEntry(4, b'{"x": "worksheet_shared"}'))[1] is None


class _Socket:
    """Enough of aiohttp's WebSocketResponse for FeedSocket.deliver."""

    def __init__(self, writer: Any) -> None:
        self._writer = writer
        self.closed = False


class _Writer:
    def __init__(self, paused: bool = False, compress: int = 0) -> None:
        self.compress = compress
        self.protocol = type("Protocol", (), {"writing_paused": paused})()
        self.written: list[bytes] = []

    def _write_websocket_frame(self, message: bytes, opcode: int, rsv: int) -> None:
        self.written.append(message)


def feed_socket(writer: Any) -> Any:
    from types import SimpleNamespace

    from cellbus_web.ws import FeedSocket

    backend = SimpleNamespace(settings=SimpleNamespace(socket_queue=10))
    principal = SimpleNamespace(user=SimpleNamespace(username="ada"))
    return FeedSocket(_Socket(writer), backend, principal)  # type: ignore[arg-type]


async def test_a_live_frame_is_written_at_once_when_nothing_waits_before_it() -> None:
    writer = _Writer()
    socket = feed_socket(writer)
    socket.subscribed.add(S1)
    socket.deliver(S1, entry(1, m.Stream(name="stdout", text="x\n")))
    assert len(writer.written) == 1 and socket.queue.empty() and socket.sent[S1] == 1
    socket.queue.put_nowait(("", 0, b'{"type":"pong"}'))  # something queued: keep the order
    socket.deliver(S1, entry(2, m.Stream(name="stdout", text="y\n")))
    assert len(writer.written) == 1 and socket.queue.qsize() == 2


async def test_a_live_frame_queues_when_the_socket_cannot_take_it_now() -> None:
    for writer in (_Writer(paused=True), _Writer(compress=15), object(), None):
        socket = feed_socket(writer)
        socket.deliver(S1, entry(1, m.Stream(name="stdout", text="x\n")))
        assert socket.queue.qsize() == 1, writer
