"""The Redis bus on a Redis Cluster: the same contract, with every command inside one slot.

`RedisClusterBus` is `RedisBus` with what a cluster changes (``CELLBUS_REDIS_CLUSTER=true``,
the cluster's seed nodes in the URL: ``redis://user:password@host1:7000,host2:7001``):

- A command over several keys must keep to one hash slot (else Redis answers CROSSSLOT).
  Every key of a session carries the session id as its hash tag (`keys`), so a session's
  feed, queue, lease and checkpoint share a slot; the blocking reads that follow many feeds
  (`_ClusterFeedHub`) or queues (`RedisClusterConsumer`) are split into one read per slot,
  each in a task of its own. Sessions' ids are random, so in practice that is one blocking
  read (one connection) per followed session: the price of spreading sessions over nodes.
  A read learns of a new stream in its slot by being restarted; the queue reader first
  takes back, by id, what a cancelled read may have been handed.
- The queues every session passes through (`keys.SHARDED_QUEUES`) are spread over
  `keys.QUEUE_SHARDS` streams on different nodes: a message goes to one at random, a
  consumer reads them all, its items carry their shard (`QueueItem.stream`) for the ack.
- Pub/sub is sharded (SPUBLISH and SSUBSCRIBE): a message goes to the node of its channel's
  slot and its replicas only, not to every node of the cluster. Each channel is listened to
  on a connection of its own, which redis-py moves to the slot's new node after a failover.
- COPY cannot copy between slots (two sessions' checkpoints): it is a GET and a SET.

Everything else (streams, leases, loads, registries, scripts) is single-key and unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
import traceback
import uuid
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from redis import exceptions as redis_errors
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.typing import KeyT, StreamIdT

from .. import keys
from .base import DEFAULT_FEED_RETENTION, Consumer, FeedEntry, Listening, QueueItem
from .redis import MAX_CONNECTIONS, RedisBus, StreamRows, _RedisSubscription, _seq_of
from .redis_connection import (
    BLOCK_MS,
    COMMAND_TIMEOUT,
    CONNECTION_ERRORS,
    RETRY_DELAYS,
    raise_if_cancelled,
    stop_listening,
    stream_rows,
    unavailable_on_connection_error,
    with_retry,
)
from .redis_queue import RedisConsumer, _items

log = logging.getLogger(__name__)

BLOCKING_CONNECTIONS = 100_000
"""Connections per node for blocking reads: one per followed slot, so no small cap."""


def seed_nodes(url: str) -> tuple[list[ClusterNode], dict[str, Any]]:
    """The seed nodes and connection options of a cluster URL
    (``redis[s]://[user:password@]host:port[,host:port...][/0]``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"a Redis Cluster URL starts with redis:// or rediss://, not {url!r}")
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    nodes = []
    for address in hosts.split(","):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"Redis Cluster seed node {address!r} in {url!r}: use host:port")
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError(f"Redis Cluster has only database 0: {url!r}")
    options: dict[str, Any] = {
        "username": unquote(username) or None,
        "password": unquote(password) or None,
        "ssl": parts.scheme == "rediss",
    }
    return nodes, options


class _FailoverSafeCluster(RedisCluster):
    """redis-py's cluster client, with one of its failover races reported as what it is.

    When a node fails, redis-py disconnects that node's connections, including one another
    task is writing a command to at that moment; the write then fails with AttributeError
    (``'NoneType' object has no attribute 'writelines'``) from inside redis-py's connection
    code rather than ConnectionError. Raised there, it is a lost connection: it becomes one,
    so that the bus retries or reports `BusUnavailable` as for any other."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except AttributeError as exc:
            if not _raised_in_redis_connection(exc):
                raise
            raise redis_errors.ConnectionError(f"connection lost mid-command: {exc}") from exc


def _raised_in_redis_connection(exc: BaseException) -> bool:
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and frames[-1].filename.endswith(
        f"redis{os.sep}asyncio{os.sep}connection.py"
    )


class RedisClusterBus(RedisBus):
    """A `Bus` on a Redis Cluster (7.0 or newer)."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "cellbus",
        feed_retention: int = DEFAULT_FEED_RETENTION,
    ) -> None:
        super().__init__(url, namespace=namespace, feed_retention=feed_retention)
        self._hub = _ClusterFeedHub(self)
        self._replies = _ClusterReplyListener(self)
        self._broadcasts = _ClusterBroadcasts(self)

    def _clients(self, url: str) -> tuple[Any, Any]:
        nodes, options = seed_nodes(url)
        common = {
            "startup_nodes": nodes,
            "socket_connect_timeout": COMMAND_TIMEOUT,
            **options,
        }
        commands = _FailoverSafeCluster(
            max_connections=MAX_CONNECTIONS, socket_timeout=COMMAND_TIMEOUT, **common
        )
        blocking = _FailoverSafeCluster(
            max_connections=BLOCKING_CONNECTIONS,
            socket_timeout=BLOCK_MS / 1000 + COMMAND_TIMEOUT,
            **common,
        )
        return commands, blocking

    def physical_queues(self, queue: str) -> list[str]:
        return keys.queue_shards(queue) if queue in keys.SHARDED_QUEUES else [queue]

    async def start(self) -> None:
        with unavailable_on_connection_error():
            async with asyncio.timeout(COMMAND_TIMEOUT):
                await self._redis.initialize()
                await self._blocking.initialize()
                await self._redis.ping()

    def consumer(self, group: str, name: str, *, batch: int = 100) -> Consumer:
        return RedisClusterConsumer(self, group, name, batch)

    async def copy_blob(self, source: str, target: str) -> bool:
        with unavailable_on_connection_error():
            data = cast(bytes | None, await self._redis.get(self.key(source)))
            if data is None:
                return False
            await self._redis.set(self.key(target), data)
        return True

    async def _publish(self, channel: str, data: bytes) -> None:
        await self._redis.spublish(channel, data)


def _slot(key: bytes) -> int:
    slot: int = key_slot(key)
    return slot


class _SlotReaders:
    """One task per hash slot, each running `read(slot)` while its slot has streams."""

    def __init__(self, name: str, read: Callable[[int], Any]) -> None:
        self._name = name
        self._read = read
        self.streams: dict[int, set[bytes]] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}

    def add(self, key: bytes) -> None:
        """Follow `key` too: its slot's read starts, or starts again to include it."""
        slot = _slot(key)
        self.streams.setdefault(slot, set()).add(key)
        old = self._tasks.pop(slot, None)
        if old is not None:
            old.cancel()
        self._tasks[slot] = asyncio.create_task(self._read(slot), name=f"{self._name}-{slot}")

    def current(self, slot: int) -> bool:
        """Whether the calling task is its slot's reader and should go on: a reader cancelled
        while its read was answering may run on (redis-py can drop a cancellation; see
        `redis_connection.raise_if_cancelled`), and must then leave the slot to its
        successor rather than read beside it."""
        return self._tasks.get(slot) is asyncio.current_task() and bool(self.streams.get(slot))

    def discard(self, key: bytes) -> None:
        """Stop following `key` (its slot's read ignores it from now, ends if it was last)."""
        slot = _slot(key)
        streams = self.streams.get(slot)
        if streams is None:
            return
        streams.discard(key)
        if not streams:
            del self.streams[slot]
            task = self._tasks.pop(slot, None)
            if task is not None:
                task.cancel()

    async def close(self) -> None:
        self.streams.clear()
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class _ClusterFeedHub:
    """Live feed entries for the bus's subscriptions: one blocking XREAD per slot."""

    def __init__(self, bus: RedisClusterBus) -> None:
        self._bus = bus
        self._positions: dict[bytes, StreamIdT] = {}  # feed key -> the last id read
        self._subscribers: dict[bytes, set[_RedisSubscription]] = {}
        self._readers = _SlotReaders("cellbus-feed-hub", self._run)

    async def add(self, subscription: _RedisSubscription) -> None:
        key = self._bus.key(subscription.feed).encode()
        self._subscribers.setdefault(key, set()).add(subscription)
        if key not in self._positions:
            with unavailable_on_connection_error():
                rows = cast(StreamRows, await self._bus._redis.xrevrange(key, "+", "-", count=1))
            # Entries up to here are fetched by each subscription's own catch-up read.
            if key in self._subscribers and key not in self._positions:
                self._positions[key] = rows[0][0] if rows else b"0-0"
                self._readers.add(key)

    def remove(self, subscription: _RedisSubscription) -> None:
        key = self._bus.key(subscription.feed).encode()
        subscribers = self._subscribers.get(key)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[key]
                self._positions.pop(key, None)
                self._readers.discard(key)

    def followers(self) -> int:
        return sum(len(subscribers) for subscribers in self._subscribers.values())

    async def _run(self, slot: int) -> None:
        while self._readers.current(slot):
            streams: dict[KeyT, StreamIdT] = {
                key: self._positions[key]
                for key in self._readers.streams[slot]
                if key in self._positions
            }
            read = functools.partial(self._bus._blocking.xread, streams, count=1000, block=BLOCK_MS)
            response = await with_retry("feed hub", read)
            if not self._readers.current(slot):
                return  # superseded: the new reader reads these from the same position
            for key, rows in stream_rows(response):
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
        await self._readers.close()


class RedisClusterConsumer(RedisConsumer):
    """A consumer whose queues may lie in many slots: one blocking XREADGROUP per slot, each
    in a task that fills the consumer's buffer (up to a batch ahead of `get`)."""

    def __init__(self, bus: RedisClusterBus, group: str, name: str, batch: int) -> None:
        super().__init__(bus, group, name, batch)
        self._streams: dict[bytes, tuple[str, str]] = {}  # key -> (queue, stream)
        self._arrived = asyncio.Event()
        self._wanted = asyncio.Event()  # a `get` waits for an item
        self._deadline: float | None = None  # when that `get` gives up
        self._outstanding: set[tuple[bytes, bytes]] = set()  # read, not yet acknowledged
        self._readers = _SlotReaders(f"cellbus-consumer-{name}", self._run)

    async def add(self, queue: str) -> None:
        for stream in self._bus.physical_queues(queue):
            key = self._bus.key(stream).encode()
            if key in self._streams:
                continue
            with unavailable_on_connection_error():
                await self._ensure_group(key)
            self._streams[key] = (queue, stream)
            self._readers.add(key)

    async def remove(self, queue: str) -> None:
        for stream in self._bus.physical_queues(queue):
            key = self._bus.key(stream).encode()
            self._streams.pop(key, None)
            self._readers.discard(key)

    async def get(self, timeout: float | None = None) -> QueueItem | None:
        if not self._buffer:
            # Readers read only while a `get` waits (as the single-node consumer reads
            # within `get`), so an idle consumer takes nothing another could handle.
            self._deadline = None if timeout is None else time.monotonic() + timeout
            self._wanted.set()
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        while not self._buffer and not self._woken:
                            self._arrived.clear()
                            await self._arrived.wait()
            finally:
                self._wanted.clear()
        if self._buffer:
            return self._buffer.popleft()
        self._woken = False
        return None

    async def wake(self) -> None:
        # `get` waits on the readers, not on a read of its own: no wake stream needed.
        self._woken = True
        self._arrived.set()

    def _block_ms(self) -> int | None:
        """How long a read may block: until the waiting `get` gives up (None: it has)."""
        if self._deadline is None:
            return BLOCK_MS
        remaining = int((self._deadline - time.monotonic()) * 1000)
        return min(remaining, BLOCK_MS) if remaining > 0 else None

    async def _run(self, slot: int) -> None:
        # A read cancelled while Redis answered it leaves entries pending on this consumer
        # that it never saw: a restarted read first takes this consumer's pending entries
        # (id 0, at once) and keeps those it has not handed out; then new ones (>).
        start: bytes = b"0"
        while self._readers.current(slot):
            block = None
            if start == b">":
                while self._buffer or not self._wanted.is_set():
                    await self._wanted.wait()
                    await asyncio.sleep(0)  # a `get` about to take from the buffer
                block = self._block_ms()
                if block is None:
                    await asyncio.sleep(0)  # the waiting `get` is ending: let it
                    continue
            streams: dict[KeyT, StreamIdT] = dict.fromkeys(self._readers.streams[slot], start)
            try:
                response = await with_retry(
                    f"consumer {self._name}",
                    functools.partial(
                        self._bus._blocking.xreadgroup,
                        self._group,
                        self._name,
                        streams,
                        count=self._batch,
                        block=block,
                    ),
                )
            except redis_errors.ResponseError as exc:
                if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                    raise
                await self._recreate_groups()
                continue
            for key, rows in stream_rows(response):
                self._take(key, rows)  # handed to this consumer: kept even if superseded
            start = b">"

    def _take(self, key: bytes, rows: StreamRows) -> None:
        if key not in self._streams:
            return
        fresh = [
            (stream_id, fields)
            for stream_id, fields in rows
            if fields and (key, stream_id) not in self._outstanding
        ]
        self._outstanding.update((key, stream_id) for stream_id, _ in fresh)
        queue, stream = self._streams[key]
        self._buffer.extend(_items(queue, fresh, stream))
        if fresh:
            self._wanted.clear()  # the waiting `get` has its item: no more reads for now
            self._arrived.set()

    async def _recreate_groups(self) -> None:
        log.warning("consumer %s: a consumer group was missing; recreating", self._name)
        with unavailable_on_connection_error():
            for key in list(self._streams):
                await self._ensure_group(key)

    async def ack(self, item: QueueItem) -> None:
        key = self._bus.key(item.stream or item.queue)
        with unavailable_on_connection_error():  # two commands: no cluster pipeline needed
            await self._bus._redis.xack(key, self._group, item.id)
            await self._bus._redis.xdel(key, item.id)
        self._outstanding.discard(
            (self._bus.key(item.stream or item.queue).encode(), item.id.encode())
        )

    async def claim(self, queue: str, min_idle: float = 0.0) -> list[QueueItem]:
        claimed: list[QueueItem] = []
        for stream in self._bus.physical_queues(queue):
            for item in await super().claim(stream, min_idle):
                # Now pending on this consumer: its readers' first read must not repeat it.
                self._outstanding.add((self._bus.key(stream).encode(), item.id.encode()))
                claimed.append(
                    QueueItem(
                        queue,
                        item.id,
                        item.data,
                        item.reply_to,
                        stream if stream != queue else None,
                    )
                )
        return claimed

    async def close(self) -> None:
        self._streams.clear()
        await self._readers.close()


class _ChannelListening(Listening):
    def __init__(
        self, hub: _ClusterBroadcasts, channel: str, deliver: Callable[[bytes], None]
    ) -> None:
        self.hub, self.channel, self.deliver = hub, channel, deliver

    async def close(self) -> None:
        await self.hub.stop(self)


class _ShardChannel:
    """One sharded channel listened to on a connection of its own (to its slot's node).

    When that connection fails (the node died, or it lost the slot to a failover and closed
    its shard subscribers, as Redis 7.0 does), the listener asks the cluster where the slot
    is now and subscribes there again, with backoff. What is published meanwhile is lost, as
    pub/sub loses it on one Redis: replies come again when a request is retried, and
    broadcasts are only ever what is happening now."""

    def __init__(
        self, bus: RedisClusterBus, channel: str, deliver: Callable[[bytes], None]
    ) -> None:
        self._bus = bus
        self.channel = channel
        self._deliver = deliver
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe; returns once Redis counts the subscription, so that a message sent
        after it is heard."""
        with unavailable_on_connection_error():
            await self._subscribe()
        self._task = asyncio.create_task(self._run(), name=f"cellbus-channel-{self.channel}")

    async def _subscribe(self) -> None:
        pubsub = self._bus._blocking.pubsub()
        try:
            await pubsub.ssubscribe(self.channel)
            async with asyncio.timeout(COMMAND_TIMEOUT):
                while await pubsub.get_sharded_message(timeout=COMMAND_TIMEOUT) is None:
                    pass
        except BaseException:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await pubsub.aclose()
            raise
        self._pubsub = pubsub

    async def _run(self) -> None:
        failures = 0
        while True:
            raise_if_cancelled()
            try:
                if self._pubsub is None:  # subscribe where the cluster now serves the slot
                    await self._bus._blocking.nodes_manager.initialize()
                    await self._subscribe()
                message = await self._pubsub.get_sharded_message(
                    ignore_subscribe_messages=True, timeout=BLOCK_MS / 1000
                )
            except (*CONNECTION_ERRORS, TimeoutError) as exc:
                delay = RETRY_DELAYS[min(failures, len(RETRY_DELAYS) - 1)]
                failures += 1
                log.warning("channel %s: %s; subscribing again in %.2f s", self.channel, exc, delay)
                if self._pubsub is not None:
                    with contextlib.suppress(*CONNECTION_ERRORS):
                        await self._pubsub.aclose()
                    self._pubsub = None
                await asyncio.sleep(delay)
                continue
            failures = 0
            if message is not None and message.get("type") in (b"smessage", "smessage"):
                self._deliver(message["data"])

    async def close(self) -> None:
        await stop_listening(self._task, self._pubsub)


class _ClusterBroadcasts:
    """Every broadcast channel the bus listens on, each a `_ShardChannel`."""

    def __init__(self, bus: RedisClusterBus) -> None:
        self._bus = bus
        self._listeners: dict[str, set[_ChannelListening]] = {}
        self._channels: dict[str, _ShardChannel] = {}
        self._lock = asyncio.Lock()

    async def listen(self, channel: str, deliver: Callable[[bytes], None]) -> Listening:
        listening = _ChannelListening(self, channel, deliver)
        async with self._lock:
            listeners = self._listeners.setdefault(channel, set())
            if channel not in self._channels:
                shard = _ShardChannel(self._bus, channel, functools.partial(self._deliver, channel))
                try:
                    await shard.start()
                except BaseException:
                    await shard.close()
                    raise
                self._channels[channel] = shard
            listeners.add(listening)
        return listening

    def _deliver(self, channel: str, data: bytes) -> None:
        for listening in list(self._listeners.get(channel, ())):
            listening.deliver(data)

    async def stop(self, listening: _ChannelListening) -> None:
        async with self._lock:
            listeners = self._listeners.get(listening.channel)
            if listeners is None or listening not in listeners:
                return
            listeners.discard(listening)
            if not listeners:
                del self._listeners[listening.channel]
                shard = self._channels.pop(listening.channel, None)
                if shard is not None:
                    await shard.close()

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        self._listeners.clear()
        for shard in channels:
            await shard.close()


class _ClusterReplyListener:
    """The requester's side of request/reply: the bus's reply channel, sharded."""

    def __init__(self, bus: RedisClusterBus) -> None:
        self._bus = bus
        self.channel = bus.key(keys.replies(bus.instance_id))
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._shard: _ShardChannel | None = None
        self._lock = asyncio.Lock()

    async def expect(self) -> tuple[str, asyncio.Future[bytes]]:
        async with self._lock:
            if self._shard is None:
                shard = _ShardChannel(self._bus, self.channel, self._deliver)
                try:
                    await shard.start()
                except BaseException:
                    await shard.close()
                    raise
                self._shard = shard
        request_id = uuid.uuid4().hex
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        return request_id, future

    def _deliver(self, data: bytes) -> None:
        request_id, _, payload = data.partition(b"\n")
        future = self._pending.get(request_id.decode())
        if future is not None and not future.done():
            future.set_result(payload)

    def forget(self, request_id: str) -> None:
        self._pending.pop(request_id, None)

    async def close(self) -> None:
        if self._shard is not None:
            await self._shard.close()
