"""The feed WebSocket's write path: ``messages`` frames built once per batch for every socket,
one typed queue per socket bounded in messages, and one writer task that sends it in order."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import WSMsgType

from cellbus_protocol import codec, keys
from cellbus_protocol import messages as m
from cellbus_protocol.bus import FeedEntry, InMemoryBus
from cellbus_protocol.envelope import new_message
from cellbus_web import batches as batches_module
from cellbus_web.batches import Batch, batches
from cellbus_web.feeds import FeedHub
from cellbus_web.outgoing import Outgoing, Send, Turns
from cellbus_web.ws import OVERFLOW, FeedSocket

S1 = "11111111-1111-1111-1111-111111111111"
S2 = "22222222-2222-2222-2222-222222222222"


def entry(seq: int, content: Any, session: str = S1) -> FeedEntry:
    return FeedEntry(seq, codec.encode(new_message(content, session=session, username="ada")))


def printed(seq: int, text: str = "x\n") -> FeedEntry:
    return entry(seq, m.Stream(name="stdout", text=text))


def test_a_batch_is_one_frame_with_the_kernels_bytes_spliced_in() -> None:
    entries = [printed(7), printed(8, "y\n")]
    (batch,) = batches(S1, entries)
    frame = json.loads(batch.frame)
    assert (frame["type"], frame["session"], frame["cursor"]) == ("messages", S1, 8)
    assert [item["cursor"] for item in frame["messages"]] == [7, 8]
    assert [item["message"] for item in frame["messages"]] == [json.loads(e.data) for e in entries]
    assert entries[0].data in batch.frame  # the published bytes, not encoded again
    assert batch.cursor == 8 and batch.removes == frozenset()


def test_a_batch_is_split_before_its_frame_gets_too_large(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batches_module, "MAX_BATCH_BYTES", 600)
    entries = [printed(n, "z" * 150) for n in range(1, 8)]
    split = batches(S1, entries)
    assert len(split) > 1
    assert [e.seq for b in split for e in b.entries] == list(range(1, 8))
    assert all(len(b.frame) <= 600 + len(b.entries[-1].data) for b in split)
    huge = printed(9, "h" * 2000)
    assert [b.entries for b in batches(S1, [huge])] == [[huge]]  # too large alone: alone


def test_only_a_worksheet_shared_with_role_none_removes_access() -> None:
    removed = entry(2, m.WorksheetShared(username="bob", role="none"))
    shared = entry(3, m.WorksheetShared(username="bob", role="viewer"))
    # output that merely mentions it, or that does not decode, removes nothing
    shown = m.DisplayData(data={"application/json": {"worksheet_shared": "worksheet_shared"}})
    odd = FeedEntry(5, b'{"x": "worksheet_shared"}')
    (batch,) = batches(S1, [printed(1), removed, shared, entry(4, shown), odd])
    assert batch.removes == frozenset({"bob"})
    before = batch.before_removal_of("bob")
    assert before is not None and [e.seq for e in before.entries] == [1]
    assert batch.before_removal_of("ada") is batch
    (first,) = batches(S1, [removed])
    assert first.before_removal_of("bob") is None


# -- a socket's queue --------------------------------------------------------------------------


def deliver(*seqs: int) -> Batch:
    (batch,) = batches(S1, [printed(seq) for seq in seqs])
    return batch


async def test_the_queue_counts_feed_messages_and_refuses_live_ones_when_full() -> None:
    queue = Outgoing(capacity=4, turns=Turns())
    assert queue.offer(deliver(1, 2, 3))
    assert queue.offer(Send(b"{}"))
    assert not queue.offer(deliver(4))  # 5 messages > 4
    assert isinstance(await queue.get(), Batch)
    assert queue.offer(deliver(4, 5, 6))
    assert len(queue) == 2


async def test_catching_up_waits_for_room_and_a_large_page_goes_into_an_empty_queue() -> None:
    queue = Outgoing(capacity=2, turns=Turns())
    assert queue.offer(deliver(1))
    page = asyncio.create_task(queue.put(deliver(2, 3, 4, 5)))  # heavier than the queue
    await asyncio.sleep(0)
    assert not page.done()
    await queue.get()
    await page
    item = await queue.get()
    assert isinstance(item, Batch) and item.cursor == 5


# -- a socket ------------------------------------------------------------------------------------


class _WebSocket:
    """What FeedSocket uses of aiohttp's WebSocketResponse; `paused` holds every send."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.paused: asyncio.Event | None = None
        self.ended = asyncio.Event()  # END was sent

    async def send_frame(self, data: bytes, opcode: WSMsgType) -> None:
        assert opcode == WSMsgType.TEXT
        self.sent.append(data)
        if data == END:
            self.ended.set()
        if self.paused is not None:
            await self.paused.wait()


def feed_socket(username: str = "ada", queue: int = 10) -> Any:
    backend = SimpleNamespace(settings=SimpleNamespace(socket_queue=queue))
    principal = SimpleNamespace(user=SimpleNamespace(username=username), token="t0ken")
    socket = FeedSocket(_WebSocket(), backend, principal, Turns())  # type: ignore[arg-type]  # fakes
    socket.sent[S1] = 0  # subscribed
    return socket


END = b'{"type":"end of test"}'


async def written(socket: Any) -> list[dict[str, Any]]:
    """The frames the socket's writer sends of what is queued now."""
    socket.outgoing.offer(Send(END))
    writer = asyncio.create_task(socket._write())
    try:
        async with asyncio.timeout(5):
            await socket.ws.ended.wait()
    finally:
        writer.cancel()
    return [json.loads(frame) for frame in socket.ws.sent[:-1]]


async def test_writers_take_turns_and_a_late_one_sends_what_came_meanwhile_in_one_frame() -> None:
    turns = Turns(per_turn=2)
    sockets = [feed_socket() for _ in range(4)]
    for socket in sockets:
        socket.outgoing = Outgoing(10, turns)
    writers = [asyncio.create_task(socket._write()) for socket in sockets]
    await asyncio.sleep(0)  # every writer waits for an item
    busy, output = batches(S1, [printed(1)]), batches(S1, [printed(2, "y\n")])
    for socket in sockets:
        socket.deliver(busy)
    await asyncio.sleep(0)  # the first turn: two writers woken
    await asyncio.sleep(0)  # they write
    for socket in sockets:
        socket.deliver(output)  # the output, before the others had their turn
    for _ in range(6):
        await asyncio.sleep(0)
    for writer in writers:
        writer.cancel()
    sent = [[[i["cursor"] for i in json.loads(f)["messages"]] for f in s.ws.sent] for s in sockets]
    assert sent == [[[1], [2]], [[1], [2]], [[1, 2]], [[1, 2]]]
    assert sockets[2].ws.sent[0] is sockets[3].ws.sent[0]  # the joined frame, built once


async def test_every_socket_is_sent_the_same_bytes_one_write_per_batch() -> None:
    together = batches(S1, [printed(1, "a\n"), printed(2, "b\n"), printed(3, "c\n")])
    sockets = [feed_socket(), feed_socket()]
    for socket in sockets:
        socket.deliver(together)
    for socket in sockets:
        (frame,) = await written(socket)
        assert [item["cursor"] for item in frame["messages"]] == [1, 2, 3]
        assert socket.ws.sent[0] is together[0].frame
        assert socket.sent[S1] == 3


async def test_frames_go_out_in_the_order_they_were_queued() -> None:
    socket = feed_socket()
    socket.deliver(batches(S1, [printed(1)]))
    assert socket.show_presence(S1, b'{"type":"presence","session":"s","users":[]}')
    socket.deliver(batches(S1, [printed(2)]))
    socket.deliver(
        batches(S2, [entry(1, m.Stream(name="stdout", text="x\n"), S2)])
    )  # not subscribed (any more)
    frames = await written(socket)
    assert [f["type"] for f in frames] == ["messages", "presence", "messages"]
    assert socket.sent == {S1: 2}


async def test_a_socket_whose_live_messages_overflow_is_told_to_close() -> None:
    socket = feed_socket(queue=3)
    socket.ws.paused = asyncio.Event()  # the client stopped reading
    writer = asyncio.create_task(socket._write())
    socket.deliver(batches(S1, [printed(1)]))
    await asyncio.sleep(0)  # the writer is stuck sending it
    for seq in range(2, 6):
        socket.deliver(batches(S1, [printed(seq)]))
    writer.cancel()
    assert socket.ending == OVERFLOW
    assert socket.sent[S1] == 1  # the cursors its overflow frame will carry


async def test_a_user_whose_access_is_removed_gets_what_came_before_then_an_error() -> None:
    socket = feed_socket(username="bob")
    socket.backend.hub = None  # nothing is followed in this test
    removal = entry(2, m.WorksheetShared(username="bob", role="none"))
    socket.deliver(batches(S1, [printed(1), removal, printed(3)]))
    socket.deliver(batches(S1, [printed(4)]))
    frames = await written(socket)
    assert [item["cursor"] for item in frames[0]["messages"]] == [1]
    assert (frames[1]["type"], frames[1]["code"], frames[1]["session"]) == ("error", -32003, S1)
    assert S1 not in socket.sent


# -- joining a feed: catch up, then live -------------------------------------------------------


async def test_a_listener_gets_every_entry_once_in_order_while_the_feed_goes_on() -> None:
    bus = InMemoryBus()
    feed = keys.feed(S1)
    hub = FeedHub(bus)
    for n in range(1, 2501):  # more than two pages
        await bus.publish(feed, printed(n).data)
    got: list[int] = []
    publishing = 2501

    async def catch_up(page: list[Batch]) -> None:
        nonlocal publishing
        got.extend(e.seq for b in page for e in b.entries)
        if publishing < 2504:  # live while it catches up (for the first three pages)
            await bus.publish(feed, printed(publishing).data)
            publishing += 1

    last = asyncio.Event()

    def live(delivered: list[Batch]) -> None:
        got.extend(e.seq for b in delivered for e in b.entries)
        if got[-1] == publishing:
            last.set()

    listener = await hub.follow(S1, 0, live, catch_up)
    await bus.publish(feed, printed(publishing).data)
    async with asyncio.timeout(5):
        await last.wait()
    assert got == list(range(1, publishing + 1))
    await hub.unfollow(listener)
    await hub.close()
