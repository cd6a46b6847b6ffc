"""The in-process bus: every service in one program, no servers.

It keeps the same guarantees as the Redis bus (see `base`) with plain asyncio: feeds and
queues are in-memory logs shaped like Redis streams, and it moves encoded bytes exactly as
Redis does, so a service cannot tell the two apart. Used by `make run`; tested by the same
contract tests as the Redis bus. Everything lives in the event loop that uses it.

Every change that a restart should find again (feed entries, queue entries and what their
group delivered and had acknowledged, registries, blobs) is also handed, as a small tuple, to
`_journal` when one is set: `persistent.PersistentBus` writes them to SQLite behind the event
loop's back. Leases, loads, broadcasts and replies are not journalled: they live seconds, and
who held or waited for them is gone after a restart anyway.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import RequestTimeout
from .base import (
    DEFAULT_FEED_RETENTION,
    Bus,
    Consumer,
    FeedEntry,
    Listening,
    QueueItem,
    Subscription,
)


@dataclass
class _Entry:
    seq: int
    data: bytes
    reply_to: str | None = None


@dataclass
class _Group:
    last_delivered: int = 0
    pending: dict[int, _Entry] = field(default_factory=dict)
    delivered_at: dict[int, float] = field(default_factory=dict)  # monotonic, per pending seq

    def deliver(self, entry: _Entry) -> None:
        self.pending[entry.seq] = entry
        self.delivered_at[entry.seq] = time.monotonic()

    def acknowledge(self, seq: int) -> None:
        self.pending.pop(seq, None)
        self.delivered_at.pop(seq, None)


class _Log:
    """An append-only log with integer ids, optional trimming and consumer groups."""

    def __init__(self, maxlen: int | None) -> None:
        self.entries: deque[_Entry] = deque(maxlen=maxlen)
        self.last_seq = 0
        self.groups: dict[str, _Group] = {}
        self.changes = _Changes()
        # (first cursor, how many) never handed out: only after a persistent bus's unclean
        # start (`skip`), so that cursors it may have handed out before are not used again
        self.gaps: list[tuple[int, int]] = []

    def append(self, data: bytes, reply_to: str | None = None) -> int:
        self.last_seq += 1
        self.entries.append(_Entry(self.last_seq, data, reply_to))
        return self.last_seq

    def skip(self, count: int) -> None:
        """Never hand out the next `count` cursors."""
        self.gaps.append((self.last_seq + 1, count))
        self.last_seq += count

    def after(self, seq: int, limit: int) -> list[_Entry]:
        """Up to `limit` entries after `seq`, walking from whichever end is nearer: entries
        are numbered without gaps (only the oldest are ever dropped, and `gaps` are known),
        so the position of `seq` is known, and readers mostly ask for the newest few, which a
        walk from the oldest would reach only after passing every retained entry."""
        if not self.entries or seq >= self.last_seq:
            return []
        first = self.entries[0].seq
        start = seq + 1 - first
        if self.gaps and start > 0:
            start -= sum(
                max(0, min(at + size - 1, seq) - max(at, first) + 1) for at, size in self.gaps
            )
        start = max(0, start)
        newer = len(self.entries) - start
        if start <= newer:
            return list(itertools.islice(self.entries, start, start + limit))
        tail = list(itertools.islice(reversed(self.entries), newer))
        tail.reverse()
        return tail[:limit]

    def unacknowledged(self) -> int:
        """Entries that some group has not delivered and acknowledged."""
        if not self.groups:
            return len(self.entries)
        return sum(
            any(g.last_delivered < e.seq or e.seq in g.pending for g in self.groups.values())
            for e in self.entries
        )

    def drop_acknowledged(self) -> int:
        """Forget queue entries that every group has delivered and acknowledged; the cursor
        of the last one forgotten (0 if none was)."""
        dropped = 0
        while self.entries and self.groups:
            seq = self.entries[0].seq
            if any(g.last_delivered < seq or seq in g.pending for g in self.groups.values()):
                break
            dropped = self.entries.popleft().seq
        return dropped


class _Changes:
    """Wakes every waiter when anything is appended (one event per change)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float | None) -> bool:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation that
        # arrives in the same step as the event, and the cancelled reader would run on.
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return False
        return True


class _MemoryListening(Listening):
    def __init__(self, bus: InMemoryBus, channel: str, deliver: Callable[[bytes], None]) -> None:
        self._bus, self._channel, self._deliver = bus, channel, deliver
        self._open = True

    def deliver(self, data: bytes) -> None:
        if self._open:
            self._deliver(data)

    async def close(self) -> None:
        self._open = False
        listeners = self._bus._listeners.get(self._channel)
        if listeners is not None:
            listeners.discard(self)
            if not listeners:
                del self._bus._listeners[self._channel]


Journal = Callable[[tuple[Any, ...]], None]
"""Receives each change to keep (see the module docstring), in the order they were made."""


class InMemoryBus(Bus):
    """A `Bus` inside one event loop."""

    def __init__(self, feed_retention: int = DEFAULT_FEED_RETENTION) -> None:
        self.feed_retention = feed_retention
        self._epoch = secrets.token_hex(8)  # this bus's life: a restart is a new one
        self._journal: Journal | None = None
        self._feeds: dict[str, _Log] = {}
        self._queues: dict[str, _Log] = {}
        self._queue_changes = _Changes()
        self._replies: dict[str, asyncio.Future[bytes]] = {}
        self._reply_ids = itertools.count(1)
        self._leases: dict[str, tuple[str, float]] = {}
        self._loads: dict[str, dict[str, tuple[int, float]]] = {}
        self._registries: dict[str, dict[str, str]] = {}
        self._blobs: dict[str, bytes] = {}
        self._listeners: dict[str, set[_MemoryListening]] = {}

    async def epoch(self) -> str:
        return self._epoch

    async def close(self) -> None:
        for future in self._replies.values():
            future.cancel()
        self._queue_changes.notify()
        for log in self._feeds.values():
            log.changes.notify()

    # -- broadcasts -------------------------------------------------------------------------
    async def broadcast(self, channel: str, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        for listening in list(self._listeners.get(channel, ())):
            loop.call_soon(listening.deliver, data)

    async def listen(self, channel: str, deliver: Callable[[bytes], None]) -> Listening:
        listening = _MemoryListening(self, channel, deliver)
        self._listeners.setdefault(channel, set()).add(listening)
        return listening

    # -- feeds ----------------------------------------------------------------------------
    def _feed(self, name: str) -> _Log:
        log = self._feeds.get(name)
        if log is None:
            log = self._feeds[name] = _Log(self.feed_retention)
        return log

    async def publish(self, feed: str, data: bytes) -> int:
        log = self._feed(feed)
        data = bytes(data)
        seq = log.append(data)
        if self._journal is not None:
            self._journal(("feed", feed, seq, data))
        log.changes.notify()
        return seq

    async def subscribe(self, feed: str, after: int | None = None) -> Subscription:
        log = self._feed(feed)
        return _MemorySubscription(self, feed, log.last_seq if after is None else after)

    async def read_feed(self, feed: str, after: int = 0, limit: int = 1000) -> list[FeedEntry]:
        return [FeedEntry(e.seq, e.data) for e in self._feed(feed).after(after, limit)]

    async def last_seq(self, feed: str) -> int:
        log = self._feeds.get(feed)
        return log.last_seq if log else 0

    async def delete(self, name: str) -> None:
        self._feeds.pop(name, None)
        self._queues.pop(name, None)
        if self._journal is not None:
            self._journal(("delete", name))

    # -- queues ---------------------------------------------------------------------------
    def _queue(self, name: str) -> _Log:
        log = self._queues.get(name)
        if log is None:
            log = self._queues[name] = _Log(None)
        return log

    async def enqueue(self, queue: str, data: bytes, *, reply_to: str | None = None) -> str:
        data = bytes(data)
        seq = self._queue(queue).append(data, reply_to)
        if self._journal is not None:
            self._journal(("enqueue", queue, seq, data, reply_to))
        self._queue_changes.notify()
        return str(seq)

    async def queue_size(self, queue: str) -> int:
        log = self._queues.get(queue)
        return log.unacknowledged() if log else 0

    def consumer(self, group: str, name: str, *, batch: int = 100) -> Consumer:
        return _MemoryConsumer(self, group)

    # -- request/reply --------------------------------------------------------------------
    async def request(self, queue: str, data: bytes, *, timeout: float) -> bytes:
        # the epoch in it: a request kept from before a restart never gets a reply meant
        # for a request of this life
        reply_to = f"reply:{self._epoch}:{next(self._reply_ids)}"
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._replies[reply_to] = future
        try:
            await self.enqueue(queue, data, reply_to=reply_to)
            async with asyncio.timeout(timeout):  # not wait_for: see _Changes.wait
                return await future
        except TimeoutError:
            raise RequestTimeout(f"no reply from {queue} within {timeout:g} s") from None
        finally:
            self._replies.pop(reply_to, None)

    async def reply(self, item: QueueItem, data: bytes) -> None:
        future = self._replies.get(item.reply_to or "")
        if future is not None and not future.done():
            future.set_result(bytes(data))

    # -- leases and loads -----------------------------------------------------------------
    def _live_holder(self, name: str) -> str | None:
        held = self._leases.get(name)
        if held is None or held[1] <= time.monotonic():
            self._leases.pop(name, None)
            return None
        return held[0]

    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        if self._live_holder(name) is not None:
            return False
        self._leases[name] = (holder, time.monotonic() + ttl)
        return True

    async def renew_lease(self, name: str, holder: str, ttl: float) -> bool:
        if self._live_holder(name) != holder:
            return False
        self._leases[name] = (holder, time.monotonic() + ttl)
        return True

    async def release_lease(self, name: str, holder: str) -> None:
        if self._live_holder(name) == holder:
            del self._leases[name]

    async def lease_holder(self, name: str) -> str | None:
        return self._live_holder(name)

    async def report_load(self, table: str, member: str, load: int, ttl: float) -> None:
        self._loads.setdefault(table, {})[member] = (load, time.monotonic() + ttl)

    async def remove_load(self, table: str, member: str) -> None:
        self._loads.get(table, {}).pop(member, None)

    async def loads(self, table: str) -> dict[str, int]:
        now = time.monotonic()
        rows = self._loads.get(table, {})
        return {member: load for member, (load, deadline) in rows.items() if deadline > now}

    # -- registries -----------------------------------------------------------------------
    async def set_entry(self, table: str, key: str, value: str) -> None:
        self._registries.setdefault(table, {})[key] = value
        if self._journal is not None:
            self._journal(("set_entry", table, key, value))

    async def get_entry(self, table: str, key: str) -> str | None:
        return self._registries.get(table, {}).get(key)

    async def remove_entry(self, table: str, key: str, value: str) -> bool:
        registry = self._registries.get(table, {})
        if registry.get(key) != value:
            return False
        del registry[key]
        if self._journal is not None:
            self._journal(("remove_entry", table, key))
        return True

    async def entries(self, table: str) -> dict[str, str]:
        return dict(self._registries.get(table, {}))

    # -- blobs ----------------------------------------------------------------------------
    async def put_blob(self, name: str, data: bytes) -> None:
        self._blobs[name] = data = bytes(data)
        if self._journal is not None:
            self._journal(("put_blob", name, data))

    async def get_blob(self, name: str) -> bytes | None:
        return self._blobs.get(name)

    async def copy_blob(self, source: str, target: str) -> bool:
        if source not in self._blobs:
            return False
        self._blobs[target] = data = self._blobs[source]
        if self._journal is not None:
            self._journal(("put_blob", target, data))
        return True

    async def delete_blob(self, name: str) -> None:
        if self._blobs.pop(name, None) is not None and self._journal is not None:
            self._journal(("delete_blob", name))

    # -- for the journal ------------------------------------------------------------------
    def _delivered(self, queue: str, group: str, seq: int) -> None:
        if self._journal is not None:
            self._journal(("deliver", queue, group, seq, time.time()))


class _MemorySubscription(Subscription):
    def __init__(self, bus: InMemoryBus, feed: str, after: int) -> None:
        self._bus = bus
        self.feed = feed
        self.last_seq = after
        self._ready: deque[_Entry] = deque()
        self._closed = False

    async def next(self, timeout: float | None = None) -> FeedEntry | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed:
            if not self._ready:
                self._ready.extend(self._bus._feed(self.feed).after(self.last_seq, 1000))
            if self._ready:
                entry = self._ready.popleft()
                self.last_seq = entry.seq
                return FeedEntry(entry.seq, entry.data)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            await self._bus._feed(self.feed).changes.wait(remaining)
        return None

    async def close(self) -> None:
        self._closed = True
        self._bus._feed(self.feed).changes.notify()


class _MemoryConsumer(Consumer):
    def __init__(self, bus: InMemoryBus, group: str) -> None:
        self._bus = bus
        self._group = group
        self._queues: list[str] = []
        self._woken = False

    async def add(self, queue: str) -> None:
        if queue not in self._queues:
            self._queues.append(queue)
            self._bus._queue(queue).groups.setdefault(self._group, _Group())
            self._bus._queue_changes.notify()

    async def remove(self, queue: str) -> None:
        if queue in self._queues:
            self._queues.remove(queue)

    def _take(self) -> QueueItem | None:
        for name in self._queues:
            log = self._bus._queue(name)
            group = log.groups.setdefault(self._group, _Group())
            for entry in log.after(group.last_delivered, 1):
                group.last_delivered = entry.seq
                group.deliver(entry)
                self._bus._delivered(name, self._group, entry.seq)
                return QueueItem(name, str(entry.seq), entry.data, entry.reply_to)
        return None

    async def get(self, timeout: float | None = None) -> QueueItem | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            item = self._take()
            if item is not None:
                return item
            remaining = None if deadline is None else deadline - time.monotonic()
            if self._woken or (remaining is not None and remaining <= 0):
                self._woken = False
                return None
            await self._bus._queue_changes.wait(remaining)

    async def wake(self) -> None:
        self._woken = True
        self._bus._queue_changes.notify()

    def taken(self) -> list[QueueItem]:
        return []  # it takes one item at a time, in `get`

    async def ack(self, item: QueueItem) -> None:
        log = self._bus._queues.get(item.queue)
        if log is not None:
            log.groups.get(self._group, _Group()).acknowledge(int(item.id))
            dropped = log.drop_acknowledged()
            journal = self._bus._journal
            if journal is not None:
                journal(("ack", item.queue, self._group, int(item.id), dropped))

    async def claim(self, queue: str, min_idle: float = 0.0) -> list[QueueItem]:
        group = self._bus._queue(queue).groups.setdefault(self._group, _Group())
        now = time.monotonic()
        claimed = []
        for seq in sorted(group.pending):
            if now - group.delivered_at[seq] >= min_idle:
                entry = group.pending[seq]
                group.deliver(entry)
                self._bus._delivered(queue, self._group, seq)
                claimed.append(QueueItem(queue, str(seq), entry.data, entry.reply_to))
        return claimed

    async def close(self) -> None:
        self._queues.clear()
