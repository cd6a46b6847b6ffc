"""What a feed socket's writer task sends: typed items on one bounded queue per socket.

Everything a socket is sent goes through its `Outgoing` queue, in order, and is written by
its one writer task (`ws.FeedSocket`), so there is a single path to the client:

- `batches.Batch`: deliver this batch of feed messages (the same bytes for every socket; the
  batch is its own item, not wrapped, as it is queued on every socket of its session);
- `Send`: any other frame (``subscribed``, ``error``, ``presence``, ``pong``);
- `Revoke`: this user's access to a session was taken away (the writer unsubscribes and
  sends the ``error`` frame, after the messages queued before it).

The queue's size counts feed messages (a `Batch` weighs as many as it holds; any
other item, one), as ``CELLBUS_SOCKET_QUEUE`` is documented. Catching up waits for room
(`put`); live messages never wait (`offer` says False when there is none, and the socket
is closed for overflow). An item heavier than the whole queue goes in once the queue is
empty, so a large catch-up page is never refused.

`Close` is not queued: closing overtakes whatever is still queued (the client is told the
cursors of what it was sent and resumes from them).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from .batches import Batch


@dataclass(frozen=True, slots=True)
class Send:
    """Send this frame (JSON text)."""

    frame: bytes


@dataclass(frozen=True, slots=True)
class Revoke:
    """The user's access to `session` was removed: stop following it and say so."""

    session: str


Item = Batch | Send | Revoke
"""A `Batch` on the queue: send it (its frame is the same bytes for every socket)."""


@dataclass(frozen=True, slots=True)
class Close:
    """Why a socket closes: the frame it is sent last (``overflow``, ``revoked``,
    ``closing``, with its cursors) and the close code."""

    frame_type: str
    code: int
    message: str = ""


def _weight(item: Item) -> int:
    return len(item.entries) if type(item) is Batch else 1


PER_TURN = 16
"""Writers woken in one step of the event loop (a write takes some 20 µs)."""


class Turns:
    """The writers of one web process's sockets, woken `per_turn` at a time, one group per
    step of the event loop, oldest first.

    A message of a session that many sockets watch wakes every one of their writers. Woken
    all at once, they would all write in one step, and the session's next message (an
    execution's output, a moment after its ``busy``) would wait behind a thousand writes to
    be read, then take its own turn of a thousand. Taking turns, the loop reads what arrives
    between groups, and the writers not yet run find it queued and send both in one frame
    (`Outgoing.join_following`): one write per socket instead of two.
    """

    def __init__(self, per_turn: int = PER_TURN) -> None:
        self.per_turn = per_turn
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._turn: asyncio.Handle | None = None

    def wake(self, writer: asyncio.Future[None]) -> None:
        """Wake the writer waiting on `writer` in its turn."""
        self._waiting.append(writer)
        if self._turn is None:
            self._turn = asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        waiting = self._waiting
        for _ in range(min(self.per_turn, len(waiting))):
            writer = waiting.popleft()
            if not writer.done():  # (not if its socket's tasks were stopped meanwhile)
                writer.set_result(None)
        self._turn = asyncio.get_running_loop().call_soon(self._next_turn) if waiting else None


class Outgoing:
    """One socket's queue of items for its writer task, bounded in feed messages."""

    def __init__(self, capacity: int, turns: Turns) -> None:
        self.capacity = capacity
        self._turns = turns
        self._items: deque[Item] = deque()
        self._size = 0  # the weight of the items queued
        self._item: asyncio.Future[None] | None = None  # the writer, waiting for an item
        self._woken = False  # `_item` has its turn coming
        self._room = asyncio.Event()  # set when items are taken

    def offer(self, item: Item) -> bool:
        """Queue `item` if there is room now; False if there is none."""
        weight = _weight(item)
        if self._items and self._size + weight > self.capacity:
            return False
        self._items.append(item)
        self._size += weight
        if self._item is not None and not self._woken:
            self._woken = True
            self._turns.wake(self._item)
        return True

    async def put(self, item: Item) -> None:
        """Queue `item`, waiting for room."""
        while not self.offer(item):
            self._room.clear()
            await self._room.wait()

    async def get(self) -> Item:
        """The next item, waiting for one."""
        while not self._items:
            self._item = asyncio.get_running_loop().create_future()
            self._woken = False
            try:
                await self._item
            finally:
                self._item = None
        item = self._items.popleft()
        self._size -= _weight(item)
        if not self._room.is_set():
            self._room.set()
        return item

    def join_following(self, batch: Batch) -> Batch:
        """`batch` (just taken) joined with the batches of its session queued right behind
        it, which are taken too, as long as the frame stays small enough (`Batch.joined`)."""
        while self._items:
            following = self._items[0]
            if not isinstance(following, Batch) or following.session != batch.session:
                break
            both = batch.joined(following)
            if both is None:
                break
            self._items.popleft()
            self._size -= len(following.entries)
            self._room.set()
            batch = both
        return batch

    def __len__(self) -> int:
        return len(self._items)
