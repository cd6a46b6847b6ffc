"""The Redis bus: feeds and queues as Redis Streams, replies over pub/sub.

How each part of the `Bus` contract maps onto Redis (key names come from `keys`, prefixed with
the bus namespace):

- A feed is a stream whose entries get ids ``0-1``, ``0-2``, ... (``XADD key 0-*``), so the
  cursor ``seq`` is the id's sequence number and resuming is ``XRANGE key (0-<seq> +``.
  Streams keep entries while a subscriber is away; pub/sub alone would lose them.
  ``MAXLEN ~ retention`` trims old entries.
- All subscriptions of one bus share a single blocking ``XREAD`` over every feed they follow
  (`_FeedHub`), so a web process with a thousand subscribers holds one connection, not a
  thousand. A subscription catches up by itself with ``XRANGE``; live entries arriving
  meanwhile are de-duplicated by ``seq`` (`catch_up.CatchUp`, shared with the web process's
  feed listeners). A subscriber that falls too far behind drops its buffer and catches up
  from the stream again, so it never holds up the others.
- A blocking read learns about a newly followed stream through a private *wake* stream that
  it always reads: adding a stream appends to the wake stream, which ends the block at once.
- A queue is a stream with one consumer group; ``XREADGROUP`` hands each entry to one
  consumer, ``XACK`` + ``XDEL`` retire it (`redis_queue`).
- A request carries its reply address (``reply:<bus instance>#<request id>``); the reply is a
  ``PUBLISH`` on the requester's reply channel, which its bus subscribes to once.
- Leases are keys set with ``NX PX``; loads are a hash of member -> "load deadline_ms";
  registries are hashes; blobs are plain string keys.
- The epoch is the deployment's, ``redis:<namespace>``: Redis keeps the feeds while services
  restart, so a restarted service is no new incarnation. A cursor past the end of its feed
  (Redis lost the entries the client saw) resumes from the end (`resume_point`). (A key set
  once per Redis data set would also tell a Redis that lost everything and whose feeds grew
  again; every service's Redis user would need a grant for it: not done.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.typing import EncodableT, FieldT, KeyT, StreamIdT

from .. import keys
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
from .catch_up import CatchUp
from .redis_connection import BLOCK_MS, COMMAND_TIMEOUT, WAKE_EXPIRY, stop_listening, with_retry
from .redis_connection import CONNECTION_ERRORS as _CONNECTION_ERRORS
from .redis_connection import stream_rows as _stream_rows
from .redis_connection import unavailable_on_connection_error as _unavailable_on_connection_error
from .redis_queue import RedisConsumer

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 64
"""Connections per pool; a bus has two (commands, and blocking reads)."""
SUBSCRIBER_BUFFER = 10_000
"""Live entries a subscription holds before it drops them and catches up from the stream."""

T = TypeVar("T")

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_REMOVE_ENTRY = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1])
end
return 0
"""


StreamRows = list[tuple[bytes, dict[bytes, bytes]]]
"""Entries of a stream as this bus's clients return them (bytes: responses are not decoded;
redis-py's types allow for `str` too, hence the casts where replies are read)."""


def _seq_of(stream_id: bytes) -> int:
    return int(stream_id.split(b"-", 1)[1])


class FeedHub(Protocol):
    """What a bus's subscriptions need from the part that reads live feed entries."""

    async def add(self, subscription: _RedisSubscription) -> None: ...
    def remove(self, subscription: _RedisSubscription) -> None: ...
    def followers(self) -> int:
        """Subscriptions it delivers to."""
        ...

    async def close(self) -> None: ...


class ReplyListener(Protocol):
    """The requester's side of request/reply."""

    channel: str

    async def expect(self) -> tuple[str, asyncio.Future[bytes]]: ...
    def forget(self, request_id: str) -> None: ...
    async def close(self) -> None: ...


class BroadcastHub(Protocol):
    """Every broadcast channel a bus listens on."""

    async def listen(self, channel: str, deliver: Callable[[bytes], None]) -> Listening: ...
    async def close(self) -> None: ...


class RedisBus(Bus):
    """A `Bus` on a Redis server (7.0 or newer)."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "cellbus",
        feed_retention: int = DEFAULT_FEED_RETENTION,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.feed_retention = feed_retention
        self.instance_id = uuid.uuid4().hex[:12]
        self._redis, self._blocking = self._clients(url)
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self._remove_entry = self._redis.register_script(_REMOVE_ENTRY)
        self._hub: FeedHub = _FeedHub(self)
        self._replies: ReplyListener = _ReplyListener(self)
        self._broadcasts: BroadcastHub = _Broadcasts(self)

    def _clients(self, url: str) -> tuple[Any, Any]:
        """The client for commands and the client for blocking reads (`RedisClusterBus`
        makes cluster clients instead)."""
        # Bursts of commands wait for a free connection rather than fail (redis-py's plain
        # pool raises "Too many connections" past its limit).
        # A pooled connection may be dead (Redis restarted since it was last used): a command
        # that fails to go through is tried again, twice, on a fresh connection. (A command
        # whose reply alone was lost could run twice; a dead connection never ran it.)
        # `from_pool`: each client owns its pool, so `aclose` closes the pool's connections.
        commands = aioredis.Redis.from_pool(
            aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=MAX_CONNECTIONS,
                timeout=COMMAND_TIMEOUT,
                socket_timeout=COMMAND_TIMEOUT,
                socket_connect_timeout=COMMAND_TIMEOUT,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            )
        )
        # Blocking reads hold their connection for up to BLOCK_MS: a pool of their own.
        blocking = aioredis.Redis.from_pool(
            aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=MAX_CONNECTIONS,
                timeout=COMMAND_TIMEOUT,
                socket_timeout=BLOCK_MS / 1000 + COMMAND_TIMEOUT,
                socket_connect_timeout=COMMAND_TIMEOUT,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            )
        )
        return commands, blocking

    def physical_queues(self, queue: str) -> list[str]:
        """The streams that hold `queue` (one here; `RedisClusterBus` shards some)."""
        return [queue]

    def key(self, name: str) -> str:
        """The Redis key of a logical bus name."""
        return f"{self.namespace}:{name}"

    async def start(self) -> None:
        with _unavailable_on_connection_error():
            async with asyncio.timeout(COMMAND_TIMEOUT):
                await self._redis.ping()

    async def epoch(self) -> str:
        return f"redis:{self.namespace}"

    async def resume_point(self, feed: str, cursor: int, epoch: str) -> int:
        """`cursor`, unless it is past the feed's end (Redis lost entries the follower saw:
        it resumes from the end) or from another bus (0)."""
        if cursor <= 0:
            return 0
        if epoch != await self.epoch():
            return 0
        return min(cursor, await self.last_seq(feed))

    async def close(self) -> None:
        await self._hub.close()
        await self._replies.close()
        await self._broadcasts.close()
        await self._redis.aclose()
        await self._blocking.aclose()

    # -- feeds ----------------------------------------------------------------------------
    def _append(self, commands: Any, key: str, data: bytes) -> Any:
        """The XADD of one feed entry, on the client or on a pipeline."""
        return commands.xadd(
            key, {b"d": data}, id="0-*", maxlen=self.feed_retention, approximate=True
        )

    async def publish(self, feed: str, data: bytes) -> int:
        with _unavailable_on_connection_error():
            stream_id = await self._append(self._redis, self.key(feed), data)
        return _seq_of(cast(bytes, stream_id))

    async def publish_many(self, feed: str, entries: Sequence[bytes]) -> list[int]:
        if len(entries) == 1:  # most: no pipeline needed
            return [await self.publish(feed, entries[0])]
        key = self.key(feed)
        with _unavailable_on_connection_error():
            async with self._redis.pipeline(transaction=False) as pipe:
                for data in entries:
                    self._append(pipe, key, data)
                stream_ids = await pipe.execute()
        return [_seq_of(cast(bytes, stream_id)) for stream_id in stream_ids]

    async def subscribe(self, feed: str, after: int | None = None) -> Subscription:
        subscription = _RedisSubscription(self, feed, after or 0)
        try:
            await self._hub.add(subscription)
            if after is None:
                subscription.resume_from(await self.last_seq(feed))
        except BaseException:  # cancelled, or Redis away: the hub must not follow it on
            await subscription.close()
            raise
        return subscription

    async def read_feed(self, feed: str, after: int = 0, limit: int = 1000) -> list[FeedEntry]:
        with _unavailable_on_connection_error():
            rows = cast(
                StreamRows,
                await self._redis.xrange(self.key(feed), f"(0-{after}", "+", count=limit),
            )
        return [FeedEntry(_seq_of(stream_id), fields[b"d"]) for stream_id, fields in rows]

    async def last_seq(self, feed: str) -> int:
        with _unavailable_on_connection_error():
            rows = cast(StreamRows, await self._redis.xrevrange(self.key(feed), "+", "-", count=1))
        return _seq_of(rows[0][0]) if rows else 0

    async def delete(self, name: str) -> None:
        with _unavailable_on_connection_error():
            await self._redis.delete(self.key(name))

    # -- queues ---------------------------------------------------------------------------
    async def enqueue(self, queue: str, data: bytes, *, reply_to: str | None = None) -> str:
        fields: dict[FieldT, EncodableT] = {b"d": data}
        if reply_to is not None:
            fields[b"r"] = reply_to
        stream = random.choice(self.physical_queues(queue))
        with _unavailable_on_connection_error():
            stream_id = cast(bytes, await self._redis.xadd(self.key(stream), fields))
        return stream_id.decode()

    async def queue_size(self, queue: str) -> int:
        with _unavailable_on_connection_error():
            return sum(
                [int(await self._redis.xlen(self.key(s))) for s in self.physical_queues(queue)]
            )

    def consumer(self, group: str, name: str, *, batch: int = 100) -> Consumer:
        return RedisConsumer(self, group, name, batch)

    # -- broadcasts -----------------------------------------------------------------------
    async def broadcast(self, channel: str, data: bytes) -> None:
        with _unavailable_on_connection_error():
            await self._publish(self.key(channel), data)

    async def listen(self, channel: str, deliver: Callable[[bytes], None]) -> Listening:
        return await self._broadcasts.listen(self.key(channel), deliver)

    # -- request/reply --------------------------------------------------------------------
    async def request(self, queue: str, data: bytes, *, timeout: float) -> bytes:
        request_id, future = await self._replies.expect()
        try:
            await self.enqueue(queue, data, reply_to=f"{self._replies.channel}#{request_id}")
            async with asyncio.timeout(timeout):  # not wait_for: see _RedisSubscription.next
                return await future
        except TimeoutError:
            raise RequestTimeout(f"no reply from {queue} within {timeout:g} s") from None
        finally:
            self._replies.forget(request_id)

    async def reply(self, item: QueueItem, data: bytes) -> None:
        if not item.reply_to:
            return
        channel, _, request_id = item.reply_to.partition("#")
        with _unavailable_on_connection_error():
            await self._publish(channel, request_id.encode() + b"\n" + data)

    # -- leases and loads -----------------------------------------------------------------
    async def acquire_lease(self, name: str, holder: str, ttl: float) -> bool:
        with _unavailable_on_connection_error():
            return bool(await self._redis.set(self.key(name), holder, nx=True, px=int(ttl * 1000)))

    async def renew_lease(self, name: str, holder: str, ttl: float) -> bool:
        with _unavailable_on_connection_error():
            return bool(await self._renew(keys=[self.key(name)], args=[holder, int(ttl * 1000)]))

    async def release_lease(self, name: str, holder: str) -> None:
        with _unavailable_on_connection_error():
            await self._release(keys=[self.key(name)], args=[holder])

    async def lease_holder(self, name: str) -> str | None:
        with _unavailable_on_connection_error():
            value = cast(bytes | None, await self._redis.get(self.key(name)))
        return value.decode() if value is not None else None

    async def report_load(self, table: str, member: str, load: int, ttl: float) -> None:
        deadline_ms = int((time.time() + ttl) * 1000)
        with _unavailable_on_connection_error():
            await self._redis.hset(self.key(table), member, f"{load} {deadline_ms}")

    async def remove_load(self, table: str, member: str) -> None:
        with _unavailable_on_connection_error():
            await self._redis.hdel(self.key(table), member)

    async def loads(self, table: str) -> dict[str, int]:
        with _unavailable_on_connection_error():
            rows = cast(dict[bytes, bytes], await self._redis.hgetall(self.key(table)))
        now_ms = time.time() * 1000
        live: dict[str, int] = {}
        expired: list[bytes] = []
        for member, value in rows.items():
            load, deadline_ms = value.split()
            if int(deadline_ms) > now_ms:
                live[member.decode()] = int(load)
            else:
                expired.append(member)
        if expired:
            with _unavailable_on_connection_error():
                await self._redis.hdel(self.key(table), *expired)
        return live

    # -- registries -----------------------------------------------------------------------
    async def set_entry(self, table: str, key: str, value: str) -> None:
        with _unavailable_on_connection_error():
            await self._redis.hset(self.key(table), key, value)

    async def get_entry(self, table: str, key: str) -> str | None:
        with _unavailable_on_connection_error():
            value = cast(bytes | None, await self._redis.hget(self.key(table), key))
        return value.decode() if value is not None else None

    async def remove_entry(self, table: str, key: str, value: str) -> bool:
        with _unavailable_on_connection_error():
            return bool(await self._remove_entry(keys=[self.key(table)], args=[key, value]))

    async def entries(self, table: str) -> dict[str, str]:
        with _unavailable_on_connection_error():
            rows = cast(dict[bytes, bytes], await self._redis.hgetall(self.key(table)))
        return {key.decode(): value.decode() for key, value in rows.items()}

    # -- blobs ----------------------------------------------------------------------------
    async def put_blob(self, name: str, data: bytes) -> None:
        with _unavailable_on_connection_error():
            await self._redis.set(self.key(name), data)

    async def get_blob(self, name: str) -> bytes | None:
        with _unavailable_on_connection_error():
            return cast(bytes | None, await self._redis.get(self.key(name)))

    async def copy_blob(self, source: str, target: str) -> bool:
        with _unavailable_on_connection_error():
            return bool(await self._redis.copy(self.key(source), self.key(target), replace=True))

    async def delete_blob(self, name: str) -> None:
        with _unavailable_on_connection_error():
            await self._redis.delete(self.key(name))

    # -- helpers for the parts below ------------------------------------------------------
    async def _publish(self, channel: str, data: bytes) -> None:
        """Send a pub/sub message (`RedisClusterBus`: a sharded one)."""
        await self._redis.publish(channel, data)

    async def _with_retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """Run a blocking read, reconnecting with backoff while Redis is away."""
        return await with_retry(what, call)


class _FeedHub:
    """One blocking XREAD over every feed that this bus's subscriptions follow."""

    def __init__(self, bus: RedisBus) -> None:
        self._bus = bus
        self._wake_key = bus.key(keys.wake(bus.instance_id))
        self._wake_pos = b"0-0"
        self._positions: dict[KeyT, StreamIdT] = {}  # feed key -> the last id read
        self._subscribers: dict[bytes, set[_RedisSubscription]] = {}
        self._task: asyncio.Task[None] | None = None

    async def add(self, subscription: _RedisSubscription) -> None:
        key = self._bus.key(subscription.feed).encode()
        subscribers = self._subscribers.setdefault(key, set())
        subscribers.add(subscription)
        if key not in self._positions:
            with _unavailable_on_connection_error():
                rows = cast(StreamRows, await self._bus._redis.xrevrange(key, "+", "-", count=1))
            # Entries up to here are fetched by each subscription's own catch-up read.
            self._positions.setdefault(key, rows[0][0] if rows else b"0-0")
            await self._wake()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="cellbus-feed-hub")

    def remove(self, subscription: _RedisSubscription) -> None:
        key = self._bus.key(subscription.feed).encode()
        subscribers = self._subscribers.get(key)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[key]
                self._positions.pop(key, None)

    def followers(self) -> int:
        return sum(len(subscribers) for subscribers in self._subscribers.values())

    async def _wake(self) -> None:
        with _unavailable_on_connection_error():
            async with self._bus._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(self._wake_key, {b"w": b"1"}, maxlen=1)
                pipe.expire(self._wake_key, WAKE_EXPIRY)
                await pipe.execute()

    async def _run(self) -> None:
        while self._subscribers:
            streams: dict[KeyT, StreamIdT] = {
                self._wake_key.encode(): self._wake_pos,
                **self._positions,
            }
            read = functools.partial(self._bus._blocking.xread, streams, count=1000, block=BLOCK_MS)
            response = await self._bus._with_retry("feed hub", read)
            for key, rows in _stream_rows(response):
                if key == self._wake_key.encode():
                    self._wake_pos = rows[-1][0]
                    continue
                if key not in self._positions:
                    continue
                self._positions[key] = rows[-1][0]
                entries = [
                    FeedEntry(_seq_of(stream_id), fields[b"d"]) for stream_id, fields in rows
                ]
                for subscription in list(self._subscribers.get(key, ())):
                    subscription.push(entries)

    async def close(self) -> None:
        self._subscribers.clear()
        self._positions.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(*_CONNECTION_ERRORS):
            await self._bus._redis.delete(self._wake_key)


class _RedisSubscription(Subscription):
    """A feed followed through the bus's `_FeedHub`: live entries are pushed into `_live`,
    and `CatchUp` reads the stream after the cursor until it has caught up with them."""

    def __init__(self, bus: RedisBus, feed: str, after: int) -> None:
        self._bus = bus
        self.feed = feed
        self.last_seq = after
        self._catch_up = CatchUp(after)
        self._backlog: deque[FeedEntry] = deque()  # read from the stream, not yet returned
        self._live: deque[FeedEntry] = deque()  # pushed by the hub, not yet returned
        self._arrived = asyncio.Event()
        self._closed = False

    def resume_from(self, cursor: int) -> None:
        """Start after `cursor` (set before anything was returned)."""
        self.last_seq = self._catch_up.cursor = cursor

    def push(self, entries: list[FeedEntry]) -> None:
        """Called by the hub with new entries, in order."""
        if len(self._live) + len(entries) > SUBSCRIBER_BUFFER:
            self._live.clear()
            self._catch_up.fell_behind()
        else:
            self._live.extend(entries)
        self._arrived.set()

    async def next(self, timeout: float | None = None) -> FeedEntry | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._closed:
            entry = await self._take()
            if entry is not None:
                return entry
            self._arrived.clear()
            if self._live or self._catch_up.catching_up:
                continue
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancellation that
            # arrives in the same step as an entry, and the cancelled reader would run on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
        return None

    async def _take(self) -> FeedEntry | None:
        """The next entry: from the stream while catching up, then the live ones."""
        catch_up = self._catch_up
        while not self._backlog:
            if catch_up.catching_up:
                self._backlog.extend(await catch_up.page(self._read))
            elif self._live:
                live = [self._live.popleft() for _ in range(len(self._live))]
                self._backlog.extend(catch_up.after_cursor(live))
            else:
                return None
        entry = self._backlog.popleft()
        self.last_seq = entry.seq
        return entry

    async def _read(self, after: int, limit: int) -> list[FeedEntry]:
        return await self._bus.read_feed(self.feed, after, limit)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._bus._hub.remove(self)
            self._arrived.set()


class _BroadcastListening(Listening):
    def __init__(self, hub: _Broadcasts, channel: str, deliver: Callable[[bytes], None]) -> None:
        self.hub, self.channel, self.deliver = hub, channel, deliver

    async def close(self) -> None:
        await self.hub.stop(self)


class _Broadcasts:
    """Every broadcast channel this bus listens on, over one pub/sub connection (redis-py
    subscribes it again to every channel when it reconnects)."""

    def __init__(self, bus: RedisBus) -> None:
        self._bus = bus
        self._listeners: dict[str, set[_BroadcastListening]] = {}
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def listen(self, channel: str, deliver: Callable[[bytes], None]) -> Listening:
        listening = _BroadcastListening(self, channel, deliver)
        async with self._lock:
            if self._pubsub is None:
                self._pubsub = self._bus._blocking.pubsub()
            listeners = self._listeners.setdefault(channel, set())
            if not listeners:
                with _unavailable_on_connection_error():
                    await self._pubsub.subscribe(channel)
                    await self._subscribed(channel)
            listeners.add(listening)
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._run(), name="cellbus-broadcasts")
        return listening

    async def _subscribed(self, channel: str) -> None:
        """Wait until Redis counts the subscription (its confirmation goes to the reading
        task), so that a broadcast sent after `listen` returns is heard."""
        async with asyncio.timeout(COMMAND_TIMEOUT):
            while True:
                counts = dict(await self._bus._redis.pubsub_numsub(channel))
                if counts.get(channel.encode(), 0) > 0:
                    return
                await asyncio.sleep(0.001)

    async def stop(self, listening: _BroadcastListening) -> None:
        async with self._lock:
            listeners = self._listeners.get(listening.channel)
            if listeners is None or listening not in listeners:
                return
            listeners.discard(listening)
            if not listeners:
                del self._listeners[listening.channel]
                with contextlib.suppress(*_CONNECTION_ERRORS):
                    await self._pubsub.unsubscribe(listening.channel)

    async def _run(self) -> None:
        while True:
            message = await self._bus._with_retry(
                "broadcast listener",
                lambda: self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=BLOCK_MS / 1000
                ),
            )
            if message is None or message.get("type") != "message":
                continue
            channel = message["channel"].decode()
            for listening in list(self._listeners.get(channel, ())):
                listening.deliver(message["data"])

    async def close(self) -> None:
        await stop_listening(self._task, self._pubsub)


class _ReplyListener:
    """The requester's side of request/reply: one pub/sub channel per bus instance."""

    def __init__(self, bus: RedisBus) -> None:
        self._bus = bus
        self.channel = bus.key(keys.replies(bus.instance_id))
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def expect(self) -> tuple[str, asyncio.Future[bytes]]:
        await self._ensure_listening()
        request_id = uuid.uuid4().hex
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        return request_id, future

    def forget(self, request_id: str) -> None:
        self._pending.pop(request_id, None)

    async def _ensure_listening(self) -> None:
        async with self._lock:
            if self._task is not None and not self._task.done():
                return
            pubsub = self._bus._blocking.pubsub()
            with _unavailable_on_connection_error():
                await pubsub.subscribe(self.channel)
                # Wait for the confirmation so that no reply can be published before it.
                while await pubsub.get_message(timeout=COMMAND_TIMEOUT) is None:
                    pass
            self._pubsub = pubsub
            self._task = asyncio.create_task(self._listen(), name="cellbus-replies")

    async def _listen(self) -> None:
        async for data in self._messages():
            request_id, _, payload = data.partition(b"\n")
            future = self._pending.get(request_id.decode())
            if future is not None and not future.done():
                future.set_result(payload)

    async def _messages(self) -> AsyncIterator[bytes]:
        while True:
            message = await self._bus._with_retry(
                "reply listener",
                lambda: self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=BLOCK_MS / 1000
                ),
            )
            if message is not None and message.get("type") == "message":
                yield message["data"]

    async def close(self) -> None:
        await stop_listening(self._task, self._pubsub)
