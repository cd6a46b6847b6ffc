"""Queues on Redis: consumer groups on streams, read by `RedisConsumer`.

A queue is a stream with one consumer group; ``XREADGROUP`` hands each entry to one consumer
and ``XACK`` + ``XDEL`` retire it, so a queue's length (``XLEN``) is what is not yet handled.
A consumer reads all its queues in one blocking ``XREADGROUP``; it learns that it has a new
queue through its own *wake* stream, which it always reads. ``XAUTOCLAIM`` moves entries that
another consumer took and never acknowledged (it died) to this one.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from redis import exceptions as redis_errors
from redis.typing import KeyT, StreamIdT

from .. import keys
from .base import Consumer, QueueItem
from .redis_connection import (
    BLOCK_MS,
    CONNECTION_ERRORS,
    WAKE_EXPIRY,
    stream_rows,
    unavailable_on_connection_error,
    with_retry,
)

if TYPE_CHECKING:
    from .redis import RedisBus

log = logging.getLogger(__name__)

CLAIM_PAGE = 100
"""Entries per XAUTOCLAIM call."""


class RedisConsumer(Consumer):
    """XREADGROUP over a changing set of queues, woken by its own wake stream when it grows."""

    def __init__(self, bus: RedisBus, group: str, name: str, batch: int) -> None:
        self._bus = bus
        self._group = group
        self._name = name
        self._batch = batch
        self._wake_key = bus.key(keys.wake(bus.instance_id, name)).encode()
        self._queues: dict[bytes, str] = {}
        self._buffer: deque[QueueItem] = deque()
        self._wake_ready = False
        self._wake_expiry_renewed: float | None = None
        self._woken = False

    async def _ensure_group(self, key: bytes) -> None:
        try:
            await self._bus._redis.xgroup_create(key, self._group, id="0", mkstream=True)
        except redis_errors.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _ensure_wake(self) -> None:
        """Create the wake stream's group once, and keep the stream from expiring while this
        consumer lives (it expires a day after a consumer that died without closing)."""
        if not self._wake_ready:
            await self._ensure_group(self._wake_key)
            self._wake_ready = True
        renewed = self._wake_expiry_renewed
        if renewed is None or time.monotonic() - renewed > WAKE_EXPIRY / 2:
            await self._bus._redis.expire(self._wake_key, WAKE_EXPIRY)
            self._wake_expiry_renewed = time.monotonic()

    async def _recreate_groups(self) -> None:
        """After a stream or its group was deleted under us: make them again and go on."""
        log.warning("consumer %s: a consumer group was missing; recreating", self._name)
        self._wake_ready = False
        with unavailable_on_connection_error():
            await self._ensure_wake()
            for key in list(self._queues):
                await self._ensure_group(key)

    async def add(self, queue: str) -> None:
        key = self._bus.key(queue).encode()
        if key in self._queues:
            return
        with unavailable_on_connection_error():
            await self._ensure_wake()
            await self._ensure_group(key)
            self._queues[key] = queue
            await self._bus._redis.xadd(self._wake_key, {b"w": b"1"}, maxlen=1)

    async def remove(self, queue: str) -> None:
        self._queues.pop(self._bus.key(queue).encode(), None)

    def _queue_of(self, key: bytes) -> str:
        """The logical queue of a stream key this consumer reads."""
        return self._queues.get(key) or key.decode().removeprefix(self._bus.namespace + ":")

    async def get(self, timeout: float | None = None) -> QueueItem | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._buffer:
            remaining = BLOCK_MS if deadline is None else int((deadline - time.monotonic()) * 1000)
            if remaining <= 0 or self._woken:
                self._woken = False
                return None
            await self._read(min(remaining, BLOCK_MS))
        return self._buffer.popleft()

    async def wake(self) -> None:
        # The blocking read returns with the wake stream's entry (and anything else Redis
        # hands over with it, which goes to the buffer), then `get` sees the flag.
        self._woken = True
        with unavailable_on_connection_error():
            await self._bus._redis.xadd(self._wake_key, {b"w": b"1"}, maxlen=1)

    def taken(self) -> list[QueueItem]:
        items = list(self._buffer)
        self._buffer.clear()
        return items

    async def _read(self, block_ms: int) -> None:
        with unavailable_on_connection_error():
            await self._ensure_wake()
        streams: dict[KeyT, StreamIdT] = {self._wake_key: b">"}
        streams.update(dict.fromkeys(self._queues, b">"))
        try:
            response = await with_retry(
                f"consumer {self._name}",
                lambda: self._bus._blocking.xreadgroup(
                    self._group, self._name, streams, count=self._batch, block=block_ms
                ),
            )
        except redis_errors.ResponseError as exc:
            # NOGROUP: a stream or its group was deleted before the read; UNBLOCKED: during it.
            if "NOGROUP" not in str(exc) and "UNBLOCKED" not in str(exc):
                raise
            await self._recreate_groups()
            return
        for key, rows in stream_rows(response):
            if key == self._wake_key:
                with unavailable_on_connection_error():
                    await self._bus._redis.xack(key, self._group, *(r[0] for r in rows))
                continue
            self._buffer.extend(_items(self._queue_of(key), rows))

    async def ack(self, item: QueueItem) -> None:
        key = self._bus.key(item.stream or item.queue)
        with unavailable_on_connection_error():
            async with self._bus._redis.pipeline(transaction=False) as pipe:
                pipe.xack(key, self._group, item.id)
                pipe.xdel(key, item.id)
                await pipe.execute()

    async def claim(self, queue: str, min_idle: float = 0.0) -> list[QueueItem]:
        key = self._bus.key(queue).encode()
        claimed: list[QueueItem] = []
        start: Any = b"0-0"
        with unavailable_on_connection_error():
            await self._ensure_group(key)
            while True:
                response = await self._bus._redis.xautoclaim(
                    key, self._group, self._name, int(min_idle * 1000), start, count=CLAIM_PAGE
                )
                start, rows = response[0], response[1]
                # Entries deleted while pending come back without fields (Redis 6.2) or in a
                # third list (7.0); either way there is nothing left to handle.
                claimed.extend(_items(queue, [row for row in rows if row and row[1]]))
                if start in (b"0-0", "0-0"):
                    return claimed

    async def close(self) -> None:
        self._queues.clear()
        with contextlib.suppress(*CONNECTION_ERRORS):
            await self._bus._redis.delete(self._wake_key)


def _items(
    queue: str, rows: list[tuple[bytes, dict[bytes, bytes]]], stream: str | None = None
) -> list[QueueItem]:
    """Queue items from stream entries (`stream`: the shard they came from, if any)."""
    items = []
    for stream_id, fields in rows:
        reply_to = fields.get(b"r")
        items.append(
            QueueItem(
                queue,
                stream_id.decode(),
                fields[b"d"],
                reply_to.decode() if reply_to else None,
                stream if stream != queue else None,
            )
        )
    return items
