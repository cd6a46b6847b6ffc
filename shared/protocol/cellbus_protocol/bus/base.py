"""The bus interface and the guarantees every transport keeps.

cellbus services talk only through a `Bus`. It moves encoded bytes (it never looks inside a
message) and offers four things:

Feeds (`publish`, `subscribe`, `read_feed`)
    An ordered, retained log per name. `publish` appends and returns the entry's cursor
    (``seq``: 1, 2, 3, ... per feed; `persistent.PersistentBus` started after a kill skips
    some, so that none is handed out twice). A subscriber that names the last cursor it saw receives
    every later retained entry exactly once, in order, then live ones. At least the last
    ``feed_retention`` entries of each feed are kept. Any number of subscribers may follow one
    feed; a slow subscriber never blocks the publisher or the others (it catches up from the
    retained log instead).

Queues (`enqueue`, `consumer`)
    Durable work queues. Each item goes to exactly one consumer of a group, in the order it was
    enqueued, and stays pending until that consumer acknowledges it. A consumer reads any number
    of queues at once and may add and remove queues while it reads.

Broadcasts (`broadcast`, `listen`)
    Ephemeral: a broadcast goes to whoever listens on its channel at that moment, in any
    process, at most once, and is never stored. For awareness (where people's cursors are).

Request/reply (`request`, `reply`)
    `request` enqueues an item that carries a reply address and waits, with a deadline, for the
    single `reply` to it. Used for completions, inspection and service calls.

Leases and loads (`acquire_lease` ..., `report_load`, `loads`)
    A lease names the one holder of something (the worker that hosts a session) until it
    expires or is released. The load table is how workers see each other: every live worker
    reports its load with a time to live, and `loads` returns only the live ones.

Registries (`set_entry`, `get_entry`, `remove_entry`, `entries`)
    A durable table of string keys to string values (which worker hosts which session).
    `remove_entry` removes a key only while it still has the value the caller expects.

Blobs (`put_blob`, `get_blob`, `copy_blob`, `delete_blob`)
    Durable bytes under a name (a session's checkpoint): written whole, read whole.

Epochs (`epoch`, `resume_point`)
    The bus's incarnation: a random string that changes when what the bus keeps may have
    been lost or rewritten (the in-process bus: each start of its program; Redis: when the
    Redis data set is new). A follower keeps the epoch with its cursors; `resume_point` says
    how much of what it saw in that epoch the feed still has.

`contract tests` in tests/contract run the same checks over every transport.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

DEFAULT_FEED_RETENTION = 10_000
"""Default number of entries kept per feed."""


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One entry of a feed: its cursor and the encoded message."""

    seq: int
    data: bytes


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One item taken from a queue; acknowledge it with `Consumer.ack` once handled."""

    queue: str
    id: str
    data: bytes
    reply_to: str | None = None
    stream: str | None = None
    """The stream it was taken from when that is not `queue`: a shard of one of
    `keys.SHARDED_QUEUES` on Redis Cluster (`RedisClusterBus`)."""


class _Closing(abc.ABC):
    """``async with`` support for anything with ``close()`` (and an optional ``start()``)."""

    async def start(self) -> None:
        """Get ready; for a bus, connect (`BusUnavailable` if the transport is unreachable)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class Subscription(_Closing):
    """A live, ordered read of one feed; iterate it with ``async for`` and close it when done."""

    feed: str
    last_seq: int
    """The cursor of the last entry this subscription returned (resume from it)."""

    @abc.abstractmethod
    async def next(self, timeout: float | None = None) -> FeedEntry | None:
        """The next entry, or None when `timeout` seconds pass without one or the
        subscription is closed."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[FeedEntry]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[FeedEntry]:
        # without a timeout, next() returns None only once the subscription is closed
        while (entry := await self.next()) is not None:
            yield entry


class Consumer(_Closing):
    """One member of a consumer group, reading a changing set of queues."""

    @abc.abstractmethod
    async def add(self, queue: str) -> None:
        """Start reading `queue` (creating the group on it if needed)."""

    @abc.abstractmethod
    async def remove(self, queue: str) -> None:
        """Stop reading `queue`; items already returned stay pending until acknowledged."""

    @abc.abstractmethod
    async def get(self, timeout: float | None = None) -> QueueItem | None:
        """The next item from any queue read, or None when `timeout` seconds pass."""

    @abc.abstractmethod
    async def wake(self) -> None:
        """Have the `get` waiting now, or else the next one, return None at once unless it
        has an item in hand: a consumer that stops need not wait out its timeout, and
        nothing it was being handed is dropped (as cancelling its read could)."""

    @abc.abstractmethod
    def taken(self) -> list[QueueItem]:
        """The items this consumer has read ahead (up to its batch) and `get` has not
        returned yet; they are the caller's from now on. A consumer that stops serves them:
        they are pending on it, and no other consumer would take them."""

    @abc.abstractmethod
    async def ack(self, item: QueueItem) -> None:
        """Mark `item` handled; it will not be delivered again."""

    @abc.abstractmethod
    async def claim(self, queue: str, min_idle: float = 0.0) -> list[QueueItem]:
        """Take over the items of `queue` that any consumer of the group has taken and not
        acknowledged for at least `min_idle` seconds, oldest first; they are then this
        consumer's, pending until it acknowledges them. (A worker taking over a session
        claims what the previous worker had read but not finished.)"""

    @abc.abstractmethod
    async def close(self) -> None: ...


class Listening(abc.ABC):
    """A listener of a broadcast channel (`Bus.listen`), until `close`."""

    @abc.abstractmethod
    async def close(self) -> None: ...


class Bus(_Closing):
    """The one interface between cellbus services. See the module docstring for guarantees.

    Use it as ``async with create_bus(url) as bus:`` (or call `start` and `close`).
    """

    feed_retention: int

    # -- feeds ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def publish(self, feed: str, data: bytes) -> int:
        """Append `data` to `feed`; returns its cursor."""

    async def publish_many(self, feed: str, entries: Sequence[bytes]) -> list[int]:
        """Append `entries` to `feed`, in order (in one round trip where the bus has them);
        returns their cursors."""
        return [await self.publish(feed, data) for data in entries]

    @abc.abstractmethod
    async def subscribe(self, feed: str, after: int | None = None) -> Subscription:
        """Follow `feed` from just after cursor `after` (0: from the oldest retained entry;
        None: only entries published from now on)."""

    @abc.abstractmethod
    async def read_feed(self, feed: str, after: int = 0, limit: int = 1000) -> list[FeedEntry]:
        """Up to `limit` retained entries with cursor greater than `after`, oldest first."""

    @abc.abstractmethod
    async def last_seq(self, feed: str) -> int:
        """The cursor of the newest entry of `feed` (0 if it has none)."""

    @abc.abstractmethod
    async def delete(self, name: str) -> None:
        """Forget a feed or queue and everything in it."""

    # -- epochs ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def epoch(self) -> str:
        """This bus's incarnation (see the module docstring)."""

    async def resume_point(self, feed: str, cursor: int, epoch: str) -> int:
        """Where a follower that saw `feed` up to `cursor` in epoch `epoch` resumes: `cursor`
        if every entry up to it is still the one it saw, otherwise the last cursor up to
        which it is (0: none), and the follower must drop what it holds after that. This
        default keeps cursors within one epoch only; a bus that keeps feeds across restarts
        (`persistent.PersistentBus`) knows better."""
        if cursor <= 0 or epoch == await self.epoch():
            return max(cursor, 0)
        return 0

    # -- queues ---------------------------------------------------------------------------
    @abc.abstractmethod
    async def enqueue(self, queue: str, data: bytes, *, reply_to: str | None = None) -> str:
        """Append an item to `queue`; returns its id."""

    @abc.abstractmethod
    async def queue_size(self, queue: str) -> int:
        """How many items of `queue` are not yet acknowledged (delivered or not)."""

    @abc.abstractmethod
    def consumer(self, group: str, name: str, *, batch: int = 100) -> Consumer:
        """A consumer called `name` in consumer group `group`.

        It takes up to `batch` items per read; items it has taken are its own until
        acknowledged, so a consumer that may stop reading (a busy worker) takes one at a time.
        """

    # -- broadcasts -------------------------------------------------------------------------
    @abc.abstractmethod
    async def broadcast(self, channel: str, data: bytes) -> None:
        """Give `data` to whoever listens on `channel` now, in any process: at most once,
        never stored (who listens later never gets it). For what is worth nothing a moment
        later: where people's cursors are."""

    @abc.abstractmethod
    async def listen(self, channel: str, deliver: Callable[[bytes], None]) -> Listening:
        """Call `deliver` (in the event loop, not awaited) with each broadcast on `channel`
        from now until the returned `Listening` is closed."""

    # -- request/reply ------------------------------------------------------------------------
    @abc.abstractmethod
    async def request(self, queue: str, data: bytes, *, timeout: float) -> bytes:
        """Enqueue `data` with a reply address and wait for the reply; raises `RequestTimeout`."""

    @abc.abstractmethod
    async def reply(self, item: QueueItem, data: bytes) -> None:
        """Answer a request taken from a queue (a no-op for items that expect no reply)."""

    # -- leases and loads -----------------------------------------------------------------
    @abc.abstractmethod
    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Take lease `name` for `holder` unless someone else holds it; True if taken."""

    @abc.abstractmethod
    async def renew_lease(self, name: str, holder: str, ttl: float) -> bool:
        """Extend `holder`'s lease; False if it expired or belongs to someone else."""

    @abc.abstractmethod
    async def release_lease(self, name: str, holder: str) -> None:
        """Give up `holder`'s lease (no-op if it is not held by `holder`)."""

    @abc.abstractmethod
    async def lease_holder(self, name: str) -> str | None: ...

    @abc.abstractmethod
    async def report_load(self, table: str, member: str, load: int, ttl: float) -> None:
        """Record `member`'s load; the record expires after `ttl` seconds unless reported again."""

    @abc.abstractmethod
    async def remove_load(self, table: str, member: str) -> None: ...

    @abc.abstractmethod
    async def loads(self, table: str) -> dict[str, int]:
        """The loads of the live members of `table`."""

    # -- registries -----------------------------------------------------------------------
    @abc.abstractmethod
    async def set_entry(self, table: str, key: str, value: str) -> None:
        """Set `key` of registry `table` to `value`."""

    @abc.abstractmethod
    async def get_entry(self, table: str, key: str) -> str | None: ...

    @abc.abstractmethod
    async def remove_entry(self, table: str, key: str, value: str) -> bool:
        """Remove `key` if its value is still `value`; True if it was removed."""

    @abc.abstractmethod
    async def entries(self, table: str) -> dict[str, str]:
        """Every key of `table` with its value."""

    # -- blobs ----------------------------------------------------------------------------
    @abc.abstractmethod
    async def put_blob(self, name: str, data: bytes) -> None:
        """Store `data` under `name`, replacing what was there."""

    @abc.abstractmethod
    async def get_blob(self, name: str) -> bytes | None:
        """The bytes stored under `name`, or None."""

    @abc.abstractmethod
    async def copy_blob(self, source: str, target: str) -> bool:
        """Copy blob `source` to `target` (replacing it); False if there is no `source`."""

    @abc.abstractmethod
    async def delete_blob(self, name: str) -> None:
        """Forget blob `name` (no-op if there is none)."""
