"""The `Bus` contract (see cellbus_protocol.bus.base), checked over every transport.

Every test that takes the `bus` fixture runs three times: on the in-process bus, on the same
bus kept in SQLite (`PersistentBus`, what ``make run`` uses; its restarts are tested in
test_persistent_bus.py) and on the Redis bus.
They cover feeds (cursors, resuming after a disconnect, live and retained entries, many
subscribers, retention, delete), queues (one consumer per item, order, ack, batch size, adding
a queue while a read is blocked, timeouts, size, claiming what a dead consumer left pending),
request/reply, leases and the load table, registries, blobs, and that a task reading a feed or
a queue, or waiting on any call, stops when it is cancelled.

The tests at the end are for what only the Redis transports have, on the Redis and (most of
them) on the Redis Cluster: a slow subscriber that overflows its live buffer (under load, and
the exact race that used to lose entries), many subscriptions sharing one blocking read (one
Redis), a cancelled subscribe, what ack does to the stream, request/reply between two bus
instances, and (the cluster) sharded queues and one slot per session.

Nothing here sleeps to wait for a result: every wait is on the thing itself, with a deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from cellbus_protocol import keys
from cellbus_protocol.bus import (
    Bus,
    Consumer,
    FeedEntry,
    InMemoryBus,
    PersistentBus,
    QueueItem,
    RedisBus,
    RedisClusterBus,
    Subscription,
    redis_queue,
)
from cellbus_protocol.bus import redis as redis_transport
from cellbus_protocol.errors import RequestTimeout

from ..support.polling import eventually
from ..support.redis import REDIS_URL
from ..support.redis_cluster import LoopbackCluster

TIMEOUT = 10.0
"""Deadline for anything that should happen at once (generous: it only bounds a failure)."""
QUIET = 0.2
"""How long to watch for something that must not happen."""


# -- the transports ----------------------------------------------------------------------------


@pytest.fixture(params=["memory", "persistent", "redis", "redis-cluster"])
async def bus(request: pytest.FixtureRequest, namespace: str, tmp_path: Path) -> AsyncIterator[Bus]:
    """Each transport in turn (this module's own: the shared one has no persistent bus)."""
    if request.param == "memory":
        instance: Bus = InMemoryBus()
    elif request.param == "persistent":
        instance = PersistentBus(tmp_path / "bus.db")
    elif request.param == "redis":
        instance = RedisBus(REDIS_URL, namespace=namespace)
    else:
        cluster: LoopbackCluster = request.getfixturevalue("redis_cluster")
        instance = RedisClusterBus(cluster.url(), namespace=namespace)
        request.addfinalizer(lambda: cluster.delete_namespace(namespace))
    await instance.start()
    yield instance
    await instance.close()


@pytest.fixture(params=["redis", "redis-cluster"])
def make_redis_bus(request: pytest.FixtureRequest, namespace: str) -> Callable[[], RedisBus]:
    """Makes (unstarted) Redis buses of this test's namespace: on the Redis, then on the
    Redis Cluster."""
    if request.param == "redis":
        return lambda: RedisBus(REDIS_URL, namespace=namespace)
    cluster: LoopbackCluster = request.getfixturevalue("redis_cluster")
    request.addfinalizer(lambda: cluster.delete_namespace(namespace))
    return lambda: RedisClusterBus(cluster.url(), namespace=namespace)


@pytest.fixture
async def any_redis_bus(make_redis_bus: Callable[[], RedisBus]) -> AsyncIterator[RedisBus]:
    async with make_redis_bus() as instance:
        yield instance


# -- helpers ---------------------------------------------------------------------------------


def payload(i: int) -> bytes:
    return f"message {i}".encode()


async def publish_range(bus: Bus, feed: str, first: int, last: int) -> list[int]:
    """Publish payload(first) .. payload(last), yielding to other tasks after each one."""
    seqs = []
    for i in range(first, last + 1):
        seqs.append(await bus.publish(feed, payload(i)))
        await asyncio.sleep(0)  # let readers run between publishes, on both transports
    return seqs


async def take(subscription: Subscription, count: int, timeout: float = TIMEOUT) -> list[FeedEntry]:
    """The next `count` entries of `subscription`, failing if they do not come in time."""
    entries: list[FeedEntry] = []
    async with asyncio.timeout(timeout):
        while len(entries) < count:
            entry = await subscription.next()
            assert entry is not None, "subscription ended while entries were expected"
            entries.append(entry)
    return entries


def seqs_of(entries: list[FeedEntry]) -> list[int]:
    return [entry.seq for entry in entries]


@asynccontextmanager
async def responder(
    bus: Bus, queue: str, answer: Callable[[bytes], bytes]
) -> AsyncIterator[list[QueueItem]]:
    """A service answering every request on `queue` with `answer(data)` while in the block."""
    consumer = bus.consumer("service", "responder")
    await consumer.add(queue)
    handled: list[QueueItem] = []

    async def serve() -> None:
        while True:
            item = await consumer.get()
            if item is not None:
                handled.append(item)
                await bus.reply(item, answer(item.data))
                await consumer.ack(item)

    task = asyncio.create_task(serve())
    try:
        yield handled
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.close()


async def take_items(consumer: Consumer, count: int) -> list[QueueItem]:
    """The next `count` items `consumer` gets, each acknowledged."""
    items: list[QueueItem] = []
    async with asyncio.timeout(TIMEOUT):
        while len(items) < count:
            item = await consumer.get(timeout=TIMEOUT)
            assert item is not None, "no item came"
            items.append(item)
            await consumer.ack(item)
    return items


# -- feeds -----------------------------------------------------------------------------------


async def test_publish_returns_cursors_1_2_3_per_feed(bus: Bus) -> None:
    assert [await bus.publish("feed-a", payload(i)) for i in range(3)] == [1, 2, 3]
    assert [await bus.publish("feed-b", payload(i)) for i in range(2)] == [1, 2]
    assert await bus.publish("feed-a", payload(3)) == 4


async def test_publish_many_appends_in_order_and_returns_each_cursor(bus: Bus) -> None:
    await bus.publish("feed", payload(0))
    assert await bus.publish_many("feed", [payload(i) for i in range(1, 4)]) == [2, 3, 4]
    assert await bus.publish_many("feed", [payload(4)]) == [5]
    entries = await bus.read_feed("feed")
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert [e.data for e in entries] == [payload(i) for i in range(5)]


async def test_last_seq(bus: Bus) -> None:
    assert await bus.last_seq("feed") == 0
    await publish_range(bus, "feed", 1, 3)
    assert await bus.last_seq("feed") == 3
    assert await bus.last_seq("other") == 0


async def test_subscribe_from_zero_gets_retained_entries_in_order_then_live_ones(bus: Bus) -> None:
    await publish_range(bus, "feed", 1, 3)
    async with await bus.subscribe("feed", after=0) as subscription:
        retained = await take(subscription, 3)
        assert [(e.seq, e.data) for e in retained] == [(i, payload(i)) for i in (1, 2, 3)]

        await publish_range(bus, "feed", 4, 5)
        live = await take(subscription, 2)
        assert [(e.seq, e.data) for e in live] == [(4, payload(4)), (5, payload(5))]
        assert subscription.last_seq == 5
        assert await subscription.next(timeout=QUIET) is None


async def test_subscription_gets_only_its_own_feed(bus: Bus) -> None:
    async with (
        await bus.subscribe("feed-a", after=0) as sub_a,
        await bus.subscribe("feed-b", after=0) as sub_b,
    ):
        await bus.publish("feed-a", b"for a")
        await bus.publish("feed-b", b"for b")
        await bus.publish("feed-a", b"for a again")
        assert [e.data for e in await take(sub_a, 2)] == [b"for a", b"for a again"]
        assert [e.data for e in await take(sub_b, 1)] == [b"for b"]
        assert await sub_b.next(timeout=QUIET) is None


async def test_subscribe_after_a_cursor_resumes_right_after_it(bus: Bus) -> None:
    await publish_range(bus, "feed", 1, 10)
    async with await bus.subscribe("feed", after=7) as subscription:
        assert seqs_of(await take(subscription, 3)) == [8, 9, 10]
        assert await subscription.next(timeout=QUIET) is None


async def test_resume_after_disconnect_loses_and_repeats_nothing(bus: Bus) -> None:
    await publish_range(bus, "feed", 1, 10)
    subscription = await bus.subscribe("feed", after=0)
    seen = await take(subscription, 4)
    await subscription.close()  # the client goes away mid-stream...
    assert subscription.last_seq == 4

    await publish_range(bus, "feed", 11, 15)  # ...the feed moves on without it...

    async with await bus.subscribe("feed", after=subscription.last_seq) as resumed:
        seen += await take(resumed, 11)  # ...and it comes back with the last cursor it saw
        assert await resumed.next(timeout=QUIET) is None

    assert seqs_of(seen) == list(range(1, 16))
    assert [e.data for e in seen] == [payload(i) for i in range(1, 16)]


async def test_repeated_disconnects_while_publishing_lose_and_repeat_nothing(bus: Bus) -> None:
    """A reader that keeps dropping its subscription while a publisher runs sees every entry
    exactly once, in order."""
    total = 300
    publisher = asyncio.create_task(publish_range(bus, "feed", 1, total))
    seen: list[FeedEntry] = []
    cursor = 0
    async with asyncio.timeout(TIMEOUT * 3):
        while len(seen) < total:
            async with await bus.subscribe("feed", after=cursor) as subscription:
                seen += await take(subscription, min(23, total - len(seen)))
                cursor = subscription.last_seq
    assert await publisher == list(range(1, total + 1))
    assert seqs_of(seen) == list(range(1, total + 1))
    assert [e.data for e in seen] == [payload(i) for i in range(1, total + 1)]


async def test_subscribe_after_none_gets_only_new_entries(bus: Bus) -> None:
    await publish_range(bus, "feed", 1, 3)
    async with await bus.subscribe("feed", after=None) as subscription:
        assert subscription.last_seq == 3  # resuming from here would also skip the old ones
        assert await subscription.next(timeout=QUIET) is None
        await bus.publish("feed", b"new")
        (entry,) = await take(subscription, 1)
        assert (entry.seq, entry.data) == (4, b"new")


async def test_subscribe_after_none_to_an_empty_feed(bus: Bus) -> None:
    async with await bus.subscribe("feed", after=None) as subscription:
        await bus.publish("feed", b"first")
        assert [(e.seq, e.data) for e in await take(subscription, 1)] == [(1, b"first")]


async def test_many_subscribers_each_get_every_message_in_order(bus: Bus) -> None:
    """5 subscribers x 200 messages, published while they read."""
    count = 200
    subscriptions = [await bus.subscribe("feed", after=0) for _ in range(5)]
    try:
        published, results = await asyncio.gather(
            publish_range(bus, "feed", 1, count),
            asyncio.gather(*(take(subscription, count) for subscription in subscriptions)),
        )
    finally:
        for subscription in subscriptions:
            await subscription.close()
    assert published == list(range(1, count + 1))
    for entries in results:
        assert seqs_of(entries) == list(range(1, count + 1))
        assert [e.data for e in entries] == [payload(i) for i in range(1, count + 1)]


async def test_a_subscriber_that_does_not_read_does_not_hold_up_the_others(bus: Bus) -> None:
    idle = await bus.subscribe("feed", after=0)  # never read until the end
    async with await bus.subscribe("feed", after=0) as active:
        results = await asyncio.gather(publish_range(bus, "feed", 1, 100), take(active, 100))
    assert seqs_of(results[1]) == list(range(1, 101))
    assert seqs_of(await take(idle, 100)) == list(range(1, 101))
    await idle.close()


async def test_cancelling_a_reader_ends_it_even_as_an_entry_arrives(bus: Bus) -> None:
    """A reader cancelled in the same step an entry reaches it stops (asyncio.wait_for on
    Python 3.11 would hand it the entry and drop the cancellation)."""
    subscription = await bus.subscribe("feed", after=0)

    async def read_forever() -> None:
        while True:
            await subscription.next(timeout=TIMEOUT)

    for i in range(1, 21):
        reader = asyncio.create_task(read_forever())
        done, _ = await asyncio.wait({reader}, timeout=0.02)
        assert not done
        await bus.publish("feed", payload(i))
        for _ in range(i % 4):
            await asyncio.sleep(0)
        reader.cancel()
        done, _ = await asyncio.wait({reader}, timeout=TIMEOUT)
        assert done and reader.cancelled(), f"round {i}: the reader ran on after cancel()"
    await subscription.close()


async def test_cancelling_a_reader_ends_it_even_during_its_catch_up_read(bus: Bus) -> None:
    """A reader cancelled while its new subscription reads the retained entries stops, as a
    web process's shared feed is closed the moment a long-poll has its answer (redis-py on
    Python 3.11 drops a cancellation that lands while it sends a command; the reader then
    waited for the next entry and its closer with it)."""
    await bus.publish("feed", payload(0))

    async def read_forever(subscription: Subscription) -> None:
        while True:
            await subscription.next(timeout=TIMEOUT)

    for i in range(24):
        subscription = await bus.subscribe("feed", None)
        reader = asyncio.create_task(read_forever(subscription))
        for _ in range(i % 8):  # the first few steps of the read: where it can be dropped
            await asyncio.sleep(0)
        reader.cancel()
        done, _ = await asyncio.wait({reader}, timeout=TIMEOUT)
        if not done:  # cancel again (now it lands in the wait) so that the test can end
            reader.cancel()
            await asyncio.wait({reader})
        await subscription.close()
        assert done and reader.cancelled(), f"round {i}: the reader ran on after cancel()"


async def test_a_cancelled_call_raises_cancelled_error(bus: Bus) -> None:
    """A call cancelled at any moment raises CancelledError; it never returns as if it had
    not been cancelled (its effect on the bus may or may not have happened)."""
    await bus.publish("feed", payload(0))
    calls: list[Callable[[], Coroutine[Any, Any, object]]] = [
        lambda: bus.read_feed("feed", 0),
        lambda: bus.last_seq("feed"),
        lambda: bus.publish("feed", payload(1)),
        lambda: bus.get_entry("table", "key"),
    ]
    for i in range(8 * len(calls)):
        call = asyncio.create_task(calls[i // 8]())
        for _ in range(i % 8):  # each call cancelled at each of its first steps
            await asyncio.sleep(0)
        if call.done():
            continue
        call.cancel()
        done, _ = await asyncio.wait({call}, timeout=TIMEOUT)
        assert done and call.cancelled(), f"round {i}: the call returned after cancel()"


async def test_read_feed_with_after_and_limit(bus: Bus) -> None:
    await publish_range(bus, "feed", 1, 10)
    everything = await bus.read_feed("feed")
    assert [(e.seq, e.data) for e in everything] == [(i, payload(i)) for i in range(1, 11)]
    assert seqs_of(await bus.read_feed("feed", after=3, limit=4)) == [4, 5, 6, 7]
    assert seqs_of(await bus.read_feed("feed", after=8)) == [9, 10]
    assert seqs_of(await bus.read_feed("feed", after=6, limit=2)) == [7, 8]
    assert seqs_of(await bus.read_feed("feed", after=0, limit=2)) == [1, 2]
    assert await bus.read_feed("feed", after=10) == []
    assert await bus.read_feed("no-such-feed") == []


async def test_the_epoch_stays_while_the_bus_lives_and_vouches_for_its_cursors(bus: Bus) -> None:
    epoch = await bus.epoch()
    assert epoch and await bus.epoch() == epoch
    await publish_range(bus, "feed", 1, 3)
    assert await bus.resume_point("feed", 3, epoch) == 3
    assert await bus.resume_point("feed", 0, "another epoch") == 0
    # a cursor from an epoch the bus never had: nothing of it is known to be the same
    assert await bus.resume_point("feed", 2, "another epoch") == 0


RETENTION = 10


@pytest.fixture
async def small_bus(bus: Bus, namespace: str, tmp_path: Path) -> AsyncIterator[Bus]:
    """A bus of the same transport as `bus` that keeps only RETENTION entries per feed."""
    if isinstance(bus, RedisBus):
        instance: Bus = RedisBus(REDIS_URL, namespace=namespace, feed_retention=RETENTION)
    elif isinstance(bus, PersistentBus):
        instance = PersistentBus(tmp_path / "small.db", feed_retention=RETENTION)
    else:
        instance = InMemoryBus(feed_retention=RETENTION)
    await instance.start()
    yield instance
    await instance.close()


async def test_retention_keeps_the_newest_entries_and_trims_the_oldest(small_bus: Bus) -> None:
    total = 1000  # far more than RETENTION, so that Redis's approximate MAXLEN ~ trims too
    await publish_range(small_bus, "feed", 1, total)

    retained = await small_bus.read_feed("feed", after=0, limit=2 * total)
    seqs = seqs_of(retained)
    assert len(seqs) >= RETENTION
    assert seqs == list(range(seqs[0], total + 1)), "retained entries are the newest, no gaps"
    assert seqs[0] > 1, "the oldest entries were trimmed"
    if isinstance(small_bus, InMemoryBus):
        assert len(seqs) == RETENTION  # exact in process; Redis keeps whole stream nodes
    assert await small_bus.last_seq("feed") == total
    newest = await small_bus.read_feed("feed", after=total - 3)
    assert seqs_of(newest) == [total - 2, total - 1, total]
    assert seqs_of(await small_bus.read_feed("feed", after=seqs[1], limit=2)) == seqs[2:4]

    # A subscriber whose cursor was trimmed away starts at the oldest retained entry.
    async with await small_bus.subscribe("feed", after=0) as subscription:
        assert seqs_of(await take(subscription, len(seqs))) == seqs
        assert await subscription.next(timeout=QUIET) is None


async def test_delete_forgets_a_feed(bus: Bus) -> None:
    await publish_range(bus, "feed", 1, 3)
    await publish_range(bus, "kept", 1, 2)
    await bus.delete("feed")
    assert await bus.last_seq("feed") == 0
    assert await bus.read_feed("feed") == []
    assert seqs_of(await bus.read_feed("kept")) == [1, 2]
    await bus.delete("never-existed")  # no error


async def test_delete_forgets_a_queue(bus: Bus) -> None:
    await bus.enqueue("queue", b"stale")
    await bus.delete("queue")
    consumer = bus.consumer("group", "c1")
    await consumer.add("queue")
    assert await consumer.get(timeout=QUIET) is None
    await bus.enqueue("queue", b"fresh")
    item = await consumer.get(timeout=TIMEOUT)
    assert item is not None and item.data == b"fresh"
    await consumer.close()


# -- queues ----------------------------------------------------------------------------------


async def test_queue_items_enqueued_before_the_consumer_came_are_delivered(bus: Bus) -> None:
    ids = [await bus.enqueue("queue", payload(i)) for i in range(3)]
    assert len(set(ids)) == 3
    consumer = bus.consumer("group", "c1")
    await consumer.add("queue")
    items = [await consumer.get(timeout=TIMEOUT) for _ in range(3)]
    assert [(i.queue, i.id, i.data, i.reply_to) for i in items if i] == [
        ("queue", ids[n], payload(n), None) for n in range(3)
    ]
    await consumer.close()


async def test_each_item_goes_to_exactly_one_consumer_of_a_group_in_order(bus: Bus) -> None:
    total = 100
    first, second = bus.consumer("group", "c1"), bus.consumer("group", "c2")
    await first.add("queue")
    await second.add("queue")

    received: list[QueueItem] = []

    def done() -> bool:
        return len(received) >= total

    async def read(consumer: Consumer) -> list[QueueItem]:
        items = []
        while not done():
            item = await consumer.get(timeout=0.05)
            if item is not None:
                items.append(item)
                received.append(item)
                await consumer.ack(item)
        return items

    async def produce() -> None:
        for i in range(total):
            await bus.enqueue("queue", payload(i))
            await asyncio.sleep(0)

    async with asyncio.timeout(TIMEOUT * 2):
        _, got_first, got_second = await asyncio.gather(produce(), read(first), read(second))

    everything = sorted(item.data for item in got_first + got_second)
    assert everything == sorted(payload(i) for i in range(total)), "each item exactly once"
    for got in (got_first, got_second):
        numbers = [int(item.data.split()[1]) for item in got]
        assert numbers == sorted(numbers), "each consumer sees its items in enqueue order"
    await first.close()
    await second.close()


async def test_an_unacknowledged_item_is_not_given_to_another_consumer(bus: Bus) -> None:
    first, second = bus.consumer("group", "c1"), bus.consumer("group", "c2")
    await first.add("queue")
    await second.add("queue")
    await bus.enqueue("queue", b"job")
    taken = await first.get(timeout=TIMEOUT)
    assert taken is not None and taken.data == b"job"
    assert await second.get(timeout=QUIET) is None
    await first.close()
    await second.close()


async def test_acknowledged_items_are_not_delivered_again(bus: Bus) -> None:
    consumer = bus.consumer("group", "c1")
    await consumer.add("queue")
    for i in range(3):
        await bus.enqueue("queue", payload(i))
    items = [await consumer.get(timeout=TIMEOUT) for _ in range(3)]
    for item in items:
        assert item is not None
        await consumer.ack(item)
        await consumer.ack(item)  # acknowledging twice is harmless
    await consumer.close()

    # A new member of the group (a restarted worker) finds nothing left...
    restarted = bus.consumer("group", "c2")
    await restarted.add("queue")
    assert await restarted.get(timeout=QUIET) is None
    # ...and still gets what comes next.
    await bus.enqueue("queue", b"next")
    item = await restarted.get(timeout=TIMEOUT)
    assert item is not None and item.data == b"next"
    await restarted.close()


async def test_a_consumer_reads_several_queues(bus: Bus) -> None:
    consumer = bus.consumer("group", "c1")
    await consumer.add("q1")
    await consumer.add("q2")
    await bus.enqueue("q1", b"one")
    await bus.enqueue("q2", b"two")
    items = await take_items(consumer, 2)
    assert sorted((i.queue, i.data) for i in items) == [("q1", b"one"), ("q2", b"two")]

    await consumer.remove("q1")
    await bus.enqueue("q1", b"not for me")
    assert await consumer.get(timeout=QUIET) is None
    await consumer.close()


async def test_adding_a_queue_wakes_a_blocked_get(bus: Bus) -> None:
    consumer = bus.consumer("group", "c1")
    await consumer.add("idle-queue")
    getting = asyncio.create_task(consumer.get())  # no timeout: blocks until an item comes
    done, _ = await asyncio.wait({getting}, timeout=QUIET)
    assert not done, "get() returned while every queue it reads was empty"

    await bus.enqueue("new-queue", b"hello")
    started = time.monotonic()
    await consumer.add("new-queue")
    # Promptly: well within one blocking read (the Redis bus blocks 5 s at a time).
    item = await asyncio.wait_for(getting, timeout=2.0)
    assert time.monotonic() - started < 2.0
    assert item is not None and (item.queue, item.data) == ("new-queue", b"hello")
    await consumer.close()


async def test_wake_ends_a_waiting_get_at_once_and_keeps_what_was_read(bus: Bus) -> None:
    """A consumer that stops wakes its reader: `get` returns None without waiting out its
    timeout (here none), and an item that came meanwhile is not lost: it is still this
    consumer's to take (`taken`, if it was read ahead) or still on the queue for another."""
    consumer = bus.consumer("group", "c1")
    await consumer.add("queue")
    getting = asyncio.create_task(consumer.get())  # no timeout: blocks until woken
    done, _ = await asyncio.wait({getting}, timeout=QUIET)
    assert not done, "get() returned while its queue was empty"
    await consumer.wake()
    assert await asyncio.wait_for(getting, timeout=2.0) is None  # within one blocking read
    # Woken before it waits: the next get returns at once.
    await consumer.wake()
    assert await asyncio.wait_for(consumer.get(), timeout=2.0) is None

    for i in range(3):
        await bus.enqueue("queue", payload(i))
    first = await consumer.get(timeout=TIMEOUT)
    assert first is not None and first.data == payload(0)
    read_ahead = consumer.taken()  # the rest, if this consumer read them with the first
    assert consumer.taken() == []  # handed over once
    other = bus.consumer("group", "c2")
    await other.add("queue")
    rest = [item.data for item in read_ahead]
    rest += [item.data for item in await take_items(other, 2 - len(read_ahead))]
    assert rest == [payload(1), payload(2)]
    for item in [first, *read_ahead]:
        await consumer.ack(item)
    assert await bus.queue_size("queue") == 0
    await consumer.close()
    await other.close()


async def test_get_returns_none_on_timeout(bus: Bus) -> None:
    consumer = bus.consumer("group", "c1")
    started = time.monotonic()
    assert await consumer.get(timeout=0.1) is None  # no queues at all
    await consumer.add("queue")
    assert await consumer.get(timeout=0.2) is None
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 5, f"two timeouts of 0.1 s and 0.2 s took {elapsed:.2f} s"
    await consumer.close()


async def test_a_consumer_taking_one_at_a_time_leaves_the_rest_to_others(bus: Bus) -> None:
    """A busy worker takes one item and stops reading; the other items are not its own."""
    busy = bus.consumer("group", "busy", batch=1)
    idle = bus.consumer("group", "idle", batch=1)
    await busy.add("queue")
    for i in range(3):
        await bus.enqueue("queue", payload(i))
    first = await busy.get(timeout=TIMEOUT)
    assert first is not None and first.data == payload(0)

    await idle.add("queue")
    assert [item.data for item in await take_items(idle, 2)] == [payload(1), payload(2)]
    await busy.close()
    await idle.close()


async def test_a_cancelled_queue_reader_stops(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker loop cancelled at any point (in get, in ack) ends; it never reads on.

    Cancelled at many different moments, because redis-py can swallow a cancellation that
    lands while it sends a command. BLOCK_MS is shortened so that a reader that did go on
    would be caught at its next read rather than 5 s later.
    """
    monkeypatch.setattr(redis_queue, "BLOCK_MS", 200)
    consumer = bus.consumer("group", "c1")
    await consumer.add("queue")

    async def work() -> None:
        while True:
            item = await consumer.get()
            if item is not None:
                await consumer.ack(item)

    for attempt in range(40):
        await bus.enqueue("queue", payload(attempt))
        worker = asyncio.create_task(work())
        for _ in range(attempt % 20):
            await asyncio.sleep(0)
        worker.cancel()
        done, _ = await asyncio.wait({worker}, timeout=TIMEOUT)
        assert done, f"attempt {attempt}: the worker ran on after cancel()"
        assert worker.cancelled()
    await consumer.close()


async def test_queue_size_counts_what_is_not_yet_acknowledged(bus: Bus) -> None:
    assert await bus.queue_size("queue") == 0
    for i in range(3):
        await bus.enqueue("queue", payload(i))
    assert await bus.queue_size("queue") == 3  # no consumer yet
    consumer = bus.consumer("group", "c1")
    await consumer.add("queue")
    first = await consumer.get(timeout=TIMEOUT)
    assert first is not None
    assert await bus.queue_size("queue") == 3  # taken is not handled
    await consumer.ack(first)
    assert await bus.queue_size("queue") == 2
    await take_items(consumer, 2)
    assert await bus.queue_size("queue") == 0
    await consumer.close()


async def test_claim_takes_over_what_a_consumer_took_and_never_acknowledged(bus: Bus) -> None:
    """A worker dies holding items it had read: the next one claims them, oldest first, and
    new items still come after them, each once."""
    dead = bus.consumer("group", "dead", batch=1)  # took exactly what it got
    await dead.add("queue")
    for i in range(4):
        await bus.enqueue("queue", payload(i))
    taken = [await dead.get(timeout=TIMEOUT) for _ in range(3)]
    assert all(taken)
    handled = taken[0]
    assert handled is not None
    await dead.ack(handled)  # handled one, died before the others
    await dead.remove("queue")

    heir = bus.consumer("group", "heir")
    assert [item.data for item in await heir.claim("queue")] == [payload(1), payload(2)]
    assert await heir.claim("other-queue") == []
    await heir.add("queue")
    rest = await take_items(heir, 1)  # never taken by the dead one: delivered as usual
    assert [item.data for item in rest] == [payload(3)]
    assert await heir.get(timeout=QUIET) is None
    assert await bus.queue_size("queue") == 2  # claimed, not yet handled


async def test_claimed_items_are_the_claimers_until_acknowledged(bus: Bus) -> None:
    first = bus.consumer("group", "first")
    await first.add("queue")
    await bus.enqueue("queue", payload(1))
    assert await first.get(timeout=TIMEOUT) is not None
    second = bus.consumer("group", "second")
    (item,) = await second.claim("queue")
    await second.ack(item)
    assert await bus.queue_size("queue") == 0
    assert await second.claim("queue") == []
    assert await first.claim("queue") == []


async def test_claim_leaves_items_taken_more_recently_than_min_idle(bus: Bus) -> None:
    holder = bus.consumer("group", "holder")
    await holder.add("queue")
    await bus.enqueue("queue", payload(1))
    assert await holder.get(timeout=TIMEOUT) is not None
    other = bus.consumer("group", "other")
    assert await other.claim("queue", min_idle=30) == []
    await asyncio.sleep(0.05)  # the idle time is what is being tested
    assert [item.data for item in await other.claim("queue", min_idle=0.01)] == [payload(1)]


# -- request/reply ---------------------------------------------------------------------------


async def test_request_reply_round_trip(bus: Bus) -> None:
    async with responder(bus, "service", lambda data: b"re: " + data) as handled:
        assert await bus.request("service", b"ping", timeout=TIMEOUT) == b"re: ping"
    assert [item.data for item in handled] == [b"ping"]
    assert handled[0].reply_to


async def test_concurrent_requests_each_get_their_own_reply(bus: Bus) -> None:
    count = 20
    consumer = bus.consumer("service", "responder")
    await consumer.add("service")

    async def answer_in_reverse() -> None:
        items = await take_items(consumer, count)
        for item in reversed(items):  # replies come back in a different order
            await bus.reply(item, b"re: " + item.data)

    replies = await asyncio.gather(
        *(bus.request("service", payload(i), timeout=TIMEOUT) for i in range(count)),
        answer_in_reverse(),
    )
    assert replies[:count] == [b"re: " + payload(i) for i in range(count)]
    await consumer.close()


async def test_request_without_responder_raises_request_timeout(bus: Bus) -> None:
    started = time.monotonic()
    with pytest.raises(RequestTimeout, match="nobody-home"):
        await bus.request("nobody-home", b"hello?", timeout=0.2)
    assert time.monotonic() - started < 5


async def test_reply_to_an_item_that_expects_none_is_a_no_op(bus: Bus) -> None:
    consumer = bus.consumer("group", "c1")
    await consumer.add("queue")
    await bus.enqueue("queue", b"fire and forget")
    item = await consumer.get(timeout=TIMEOUT)
    assert item is not None and item.reply_to is None
    await bus.reply(item, b"nobody asked")  # no error
    await consumer.close()
    # Request/reply still works afterwards.
    async with responder(bus, "service", lambda data: data.upper()):
        assert await bus.request("service", b"still there?", timeout=TIMEOUT) == b"STILL THERE?"


# -- broadcasts ------------------------------------------------------------------------------


class Heard:
    """What a listener was given, and a way to wait for it."""

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self.changed = asyncio.Event()

    def __call__(self, data: bytes) -> None:
        self.items.append(data)
        self.changed.set()

    async def until(self, count: int) -> list[bytes]:
        async with asyncio.timeout(TIMEOUT):
            while len(self.items) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.items


async def test_a_broadcast_reaches_every_listener_of_its_channel_only(bus: Bus) -> None:
    first, second, elsewhere = Heard(), Heard(), Heard()
    listening = [await bus.listen("room", first), await bus.listen("room", second),
                 await bus.listen("other room", elsewhere)]  # fmt: skip
    await bus.broadcast("room", b"hello")
    await bus.broadcast("other room", b"over there")
    assert await first.until(1) == [b"hello"]
    assert await second.until(1) == [b"hello"]
    assert await elsewhere.until(1) == [b"over there"]
    for each in listening:
        await each.close()


async def test_a_broadcast_is_not_kept_for_later_listeners_nor_closed_ones(bus: Bus) -> None:
    await bus.broadcast("room", b"before anyone listened")
    early, late = Heard(), Heard()
    early_listening = await bus.listen("room", early)
    await bus.broadcast("room", b"one")
    assert await early.until(1) == [b"one"]
    await early_listening.close()
    late_listening = await bus.listen("room", late)
    await bus.broadcast("room", b"two")
    assert await late.until(1) == [b"two"]  # nothing from before it listened
    assert early.items == [b"one"]  # and nothing after it stopped
    await late_listening.close()


# -- leases and loads ------------------------------------------------------------------------


async def test_lease_has_one_holder(bus: Bus) -> None:
    assert await bus.lease_holder("lease") is None
    assert await bus.acquire_lease("lease", "worker-a", ttl=30)
    assert await bus.lease_holder("lease") == "worker-a"
    assert not await bus.acquire_lease("lease", "worker-b", ttl=30)
    assert not await bus.acquire_lease("lease", "worker-a", ttl=30)  # held, even by itself

    assert await bus.renew_lease("lease", "worker-a", ttl=30)
    assert not await bus.renew_lease("lease", "worker-b", ttl=30)
    await bus.release_lease("lease", "worker-b")  # not the holder: no effect
    assert await bus.lease_holder("lease") == "worker-a"

    await bus.release_lease("lease", "worker-a")
    assert await bus.lease_holder("lease") is None
    assert not await bus.renew_lease("lease", "worker-a", ttl=30)
    assert await bus.acquire_lease("lease", "worker-b", ttl=30)
    assert await bus.lease_holder("lease") == "worker-b"


async def test_lease_expires_after_its_ttl(bus: Bus) -> None:
    assert await bus.acquire_lease("lease", "worker-a", ttl=0.1)
    assert await bus.acquire_lease("long", "worker-a", ttl=30)

    async def expired() -> bool:
        return await bus.lease_holder("lease") is None

    await eventually(expired)
    assert not await bus.renew_lease("lease", "worker-a", ttl=30)
    assert await bus.acquire_lease("lease", "worker-b", ttl=30)
    assert await bus.lease_holder("lease") == "worker-b"
    assert await bus.lease_holder("long") == "worker-a"


async def test_renewing_a_lease_extends_it(bus: Bus) -> None:
    assert await bus.acquire_lease("lease", "worker-a", ttl=0.1)
    assert await bus.renew_lease("lease", "worker-a", ttl=30)
    assert not await bus.acquire_lease("lease", "worker-b", ttl=30)
    assert await bus.lease_holder("lease") == "worker-a"


async def test_loads_returns_live_members_only(bus: Bus) -> None:
    assert await bus.loads("workers") == {}
    await bus.report_load("workers", "w1", 3, ttl=30)
    await bus.report_load("workers", "w2", 7, ttl=30)
    await bus.report_load("other-table", "w9", 1, ttl=30)
    assert await bus.loads("workers") == {"w1": 3, "w2": 7}

    await bus.report_load("workers", "w1", 4, ttl=30)  # a new report replaces the old one
    assert await bus.loads("workers") == {"w1": 4, "w2": 7}

    await bus.report_load("workers", "w2", 7, ttl=0.1)  # w2 stops reporting...

    async def w2_gone() -> bool:
        return "w2" not in await bus.loads("workers")

    await eventually(w2_gone)  # ...and drops out once its record expires
    assert await bus.loads("workers") == {"w1": 4}

    await bus.report_load("workers", "w2", 1, ttl=30)  # it comes back by reporting again
    assert await bus.loads("workers") == {"w1": 4, "w2": 1}

    await bus.remove_load("workers", "w1")
    await bus.remove_load("workers", "never-there")
    assert await bus.loads("workers") == {"w2": 1}
    assert await bus.loads("other-table") == {"w9": 1}


# -- registries and blobs --------------------------------------------------------------------


async def test_registry_entries(bus: Bus) -> None:
    assert await bus.entries("hosts") == {}
    assert await bus.get_entry("hosts", "s1") is None
    await bus.set_entry("hosts", "s1", "worker-a")
    await bus.set_entry("hosts", "s2", "worker-b")
    await bus.set_entry("other", "s1", "worker-z")
    assert await bus.get_entry("hosts", "s1") == "worker-a"
    await bus.set_entry("hosts", "s1", "worker-c")  # taken over
    assert await bus.entries("hosts") == {"s1": "worker-c", "s2": "worker-b"}
    assert not await bus.remove_entry("hosts", "s1", "worker-a")  # no longer worker-a's
    assert await bus.remove_entry("hosts", "s1", "worker-c")
    assert not await bus.remove_entry("hosts", "never", "worker-a")
    assert await bus.entries("hosts") == {"s2": "worker-b"}
    assert await bus.entries("other") == {"s1": "worker-z"}


async def test_blobs(bus: Bus) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value
    assert await bus.get_blob("blob") is None
    await bus.put_blob("blob", data)
    assert await bus.get_blob("blob") == data
    await bus.put_blob("blob", b"replaced")
    assert await bus.get_blob("blob") == b"replaced"

    assert await bus.copy_blob("blob", "copy")
    await bus.put_blob("blob", b"changed after the copy")
    assert await bus.get_blob("copy") == b"replaced"
    assert await bus.copy_blob("blob", "copy")  # replaces the target
    assert await bus.get_blob("copy") == b"changed after the copy"
    assert not await bus.copy_blob("missing", "copy")
    assert await bus.get_blob("copy") == b"changed after the copy"

    await bus.delete_blob("blob")
    await bus.delete_blob("never-there")
    assert await bus.get_blob("blob") is None
    assert await bus.get_blob("copy") == b"changed after the copy"


# -- Redis only ------------------------------------------------------------------------------


async def test_slow_subscriber_overflowing_its_buffer_catches_up_from_the_stream(
    any_redis_bus: RedisBus, make_redis_bus: Callable[[], RedisBus], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A subscriber too slow for its live buffer drops it and re-reads the stream; it still
    gets every entry exactly once, in order, and the publisher and a fast subscriber never
    wait for it. The publisher is another bus instance, as in a deployment (a kernel worker
    publishes, a web process subscribes)."""
    monkeypatch.setattr(redis_transport, "SUBSCRIBER_BUFFER", 3)
    overflows = 0
    push = redis_transport._RedisSubscription.push

    def counting_push(self: redis_transport._RedisSubscription, entries: list[FeedEntry]) -> None:
        nonlocal overflows
        overflows += len(self._live) + len(entries) > redis_transport.SUBSCRIBER_BUFFER
        push(self, entries)

    monkeypatch.setattr(redis_transport._RedisSubscription, "push", counting_push)

    total = 2000
    slow = await any_redis_bus.subscribe("feed", after=0)
    fast = await any_redis_bus.subscribe("feed", after=0)

    async def read_slowly() -> list[FeedEntry]:
        entries: list[FeedEntry] = []
        while len(entries) < total:
            entries += await take(slow, 1)
            if len(entries) % 20 == 0:
                await asyncio.sleep(0.002)  # a slow consumer (a congested websocket)
        return entries

    async with make_redis_bus() as publisher:
        async with asyncio.timeout(TIMEOUT * 3):
            published, got_slow, got_fast = await asyncio.gather(
                publish_range(publisher, "feed", 1, total), read_slowly(), take(fast, total)
            )
    await slow.close()
    await fast.close()

    assert overflows > 0, "the test did not make the slow subscriber overflow"
    assert published == list(range(1, total + 1))
    for got in (got_slow, got_fast):
        assert seqs_of(got) == list(range(1, total + 1))
        assert [e.data for e in got] == [payload(i) for i in range(1, total + 1)]


async def test_entries_dropped_while_a_catch_up_read_is_in_flight_are_read_again(
    any_redis_bus: RedisBus, make_redis_bus: Callable[[], RedisBus], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race behind the test above, made certain: the catch-up read finds nothing new,
    and before its answer is seen, new entries arrive and overflow the live buffer (which
    drops them). The subscription must read the stream again rather than call itself
    caught up."""
    monkeypatch.setattr(redis_transport, "SUBSCRIBER_BUFFER", 3)
    overflowed = asyncio.Event()
    push = redis_transport._RedisSubscription.push

    def watching_push(self: redis_transport._RedisSubscription, entries: list[FeedEntry]) -> None:
        if len(self._live) + len(entries) > redis_transport.SUBSCRIBER_BUFFER:
            overflowed.set()
        push(self, entries)

    monkeypatch.setattr(redis_transport._RedisSubscription, "push", watching_push)

    async with make_redis_bus() as publisher:
        read_feed = any_redis_bus.read_feed

        async def read_feed_racing(feed: str, after: int = 0, limit: int = 1000) -> list[FeedEntry]:
            entries = await read_feed(feed, after, limit)
            if not entries and not overflowed.is_set():
                await publish_range(publisher, "feed", after + 1, after + 5)
                await asyncio.wait_for(overflowed.wait(), TIMEOUT)
            return entries

        monkeypatch.setattr(any_redis_bus, "read_feed", read_feed_racing)

        await publish_range(publisher, "feed", 1, 2)
        async with await any_redis_bus.subscribe("feed", after=0) as subscription:
            entries = await take(subscription, 7)
            assert overflowed.is_set()
            assert seqs_of(entries) == list(range(1, 8))
            assert [e.data for e in entries] == [payload(i) for i in range(1, 8)]


async def test_many_subscriptions_share_one_blocking_read(
    redis_bus: RedisBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 subscribers (a web process with many open notebooks) all get a message, and the
    bus never has more than one blocking XREAD in flight for them."""
    in_flight = most_in_flight = 0
    xread = redis_bus._blocking.xread

    async def counting_xread(*args: Any, **kwargs: Any) -> Any:
        nonlocal in_flight, most_in_flight
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        try:
            return await xread(*args, **kwargs)
        finally:
            in_flight -= 1

    monkeypatch.setattr(redis_bus._blocking, "xread", counting_xread)

    subscriptions = [await redis_bus.subscribe("feed", after=None) for _ in range(200)]
    await redis_bus.publish("feed", b"to everyone")
    got = await asyncio.gather(*(take(subscription, 1) for subscription in subscriptions))
    assert all([(e.seq, e.data) for e in entries] == [(1, b"to everyone")] for entries in got)
    assert most_in_flight == 1, f"{most_in_flight} blocking reads for 200 subscriptions"
    for subscription in subscriptions:
        await subscription.close()


async def test_a_cancelled_subscribe_leaves_nothing_followed(any_redis_bus: RedisBus) -> None:
    """A subscribe cancelled at any step (while the hub looks up where the feed ends, or wakes
    its blocking read) gives the feed up again: the hub does not follow it for nobody."""
    await any_redis_bus.publish("feed", payload(0))
    for steps in range(12):
        subscribing = asyncio.create_task(any_redis_bus.subscribe("feed", None))
        for _ in range(steps):
            await asyncio.sleep(0)
        subscribing.cancel()
        await asyncio.wait({subscribing}, timeout=TIMEOUT)
        if not subscribing.cancelled():
            await subscribing.result().close()
        assert not any_redis_bus._hub.followers(), f"{steps} steps: a subscriber was left behind"


async def test_ack_retires_the_item_from_the_stream(redis_bus: RedisBus, namespace: str) -> None:
    consumer = redis_bus.consumer("group", "c1")
    await consumer.add("queue")
    await redis_bus.enqueue("queue", b"job")
    item = await consumer.get(timeout=TIMEOUT)
    assert item is not None

    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        key = f"{namespace}:queue"
        assert (await client.xpending(key, "group"))["pending"] == 1  # taken, not yet handled
        await consumer.ack(item)
        assert (await client.xpending(key, "group"))["pending"] == 0
        assert await client.xlen(key) == 0
    finally:
        await client.aclose()
        await consumer.close()


async def test_the_epoch_is_the_deployments(
    any_redis_bus: RedisBus, make_redis_bus: Callable[[], RedisBus]
) -> None:
    """Every bus on one Redis namespace shares its epoch (services restart, Redis keeps the
    feeds); a cursor past a feed's end (Redis lost what the follower saw) resumes at the end."""
    epoch = await any_redis_bus.epoch()
    async with make_redis_bus() as other:
        assert await other.epoch() == epoch
    await publish_range(any_redis_bus, "feed", 1, 3)
    assert await any_redis_bus.resume_point("feed", 2, epoch) == 2
    assert await any_redis_bus.resume_point("feed", 9, epoch) == 3
    assert await any_redis_bus.resume_point("feed", 2, "another bus") == 0


async def test_request_reply_between_two_bus_instances(
    any_redis_bus: RedisBus, make_redis_bus: Callable[[], RedisBus]
) -> None:
    """The usual deployment: the requester and the service are different processes."""
    async with make_redis_bus() as service_bus:
        async with responder(service_bus, "service", lambda data: b"re: " + data):
            replies = await asyncio.gather(
                *(any_redis_bus.request("service", payload(i), timeout=TIMEOUT) for i in range(5))
            )
    assert replies == [b"re: " + payload(i) for i in range(5)]


# -- Redis Cluster only ------------------------------------------------------------------------


async def test_a_sharded_queue_spreads_over_the_nodes_and_each_item_is_taken_once(
    redis_cluster: LoopbackCluster, namespace: str
) -> None:
    """New sessions (like every queue all sessions pass through) go to shards on different
    nodes; two consumers of the group between them take each item exactly once, and acks
    retire them from their shards."""
    async with RedisClusterBus(redis_cluster.url(), namespace=namespace) as cluster_bus:
        try:
            first, second = (cluster_bus.consumer("group", name) for name in ("w1", "w2"))
            for consumer in (first, second):
                await consumer.add(keys.NEW_SESSIONS)
            for i in range(40):
                await cluster_bus.enqueue(keys.NEW_SESSIONS, payload(i))
            assert await cluster_bus.queue_size(keys.NEW_SESSIONS) == 40
            nodes = {
                redis_cluster.master_of(f"{namespace}:{shard}").port
                for shard in keys.queue_shards(keys.NEW_SESSIONS)
                if redis_cluster.master_of(f"{namespace}:{shard}").admin.xlen(
                    f"{namespace}:{shard}"
                )
            }
            assert len(nodes) == 3, "the shards holding items are on every master"

            taken: list[QueueItem] = []
            async with asyncio.timeout(TIMEOUT):
                while len(taken) < 40:
                    for consumer in (first, second):
                        item = await consumer.get(timeout=0.05)
                        if item is not None:
                            assert item.queue == keys.NEW_SESSIONS
                            await consumer.ack(item)
                            taken.append(item)
            assert sorted(item.data for item in taken) == sorted(payload(i) for i in range(40))
            assert await cluster_bus.queue_size(keys.NEW_SESSIONS) == 0
        finally:
            await first.close()
            await second.close()
            redis_cluster.delete_namespace(namespace)


def test_every_key_of_a_session_is_in_one_slot() -> None:
    """So that a command over a session's keys never crosses slots on Redis Cluster."""
    session = "3f9c2d7e5b1a4c6d"
    per_session = [keys.feed, keys.requests, keys.session_host, keys.checkpoint, keys.presence,
                   keys.live]  # fmt: skip
    slots = {key_slot(f"cellbus:{key(session)}".encode()) for key in per_session}
    assert slots == {key_slot(session.encode())}
    shard_slots = {key_slot(f"cellbus:{s}".encode()) for s in keys.queue_shards(keys.ACCOUNTS)}
    assert len(shard_slots) == keys.QUEUE_SHARDS
