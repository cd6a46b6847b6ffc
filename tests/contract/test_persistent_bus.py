"""`PersistentBus` across restarts: what ``make run`` finds again after it stops or is killed.

The contract itself (what any bus does while it runs) is test_bus.py's, where the persistent
bus is the third transport. Here: a bus closed and opened again on its database keeps its
feeds (entries, cursors, retention), queues (what was delivered and not acknowledged can be
claimed; what was not delivered yet is delivered; what was acknowledged is gone), registries
and blobs, and starts a new epoch; leases and loads are not kept. A SIGKILL is the database as
the writer left it: the tests copy the files while changes wait in memory, as a kill would
leave them, and open the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from cellbus_protocol.bus import DEFAULT_FEED_RETENTION, PersistentBus, create_bus
from cellbus_protocol.bus.persistent import FLUSH_DELAY, UNCLEAN_SKIP

from .test_bus import TIMEOUT, payload, publish_range, seqs_of, take


@asynccontextmanager
async def opened(
    path: Path, *, feed_retention: int = DEFAULT_FEED_RETENTION, flush_delay: float = FLUSH_DELAY
) -> AsyncIterator[PersistentBus]:
    bus = PersistentBus(path, feed_retention, flush_delay=flush_delay)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()


def killed_copy(path: Path, to: Path) -> Path:
    """The database files as a SIGKILL would leave them now (what is committed, no more)."""
    for suffix in ("", "-wal"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            shutil.copyfile(source, to.with_name(to.name + suffix))
    return to


def rows_of(path: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "bus.db"


async def test_create_bus_with_a_path_is_persistent(db: Path) -> None:
    bus = create_bus(f"memory://{db}")
    assert isinstance(bus, PersistentBus) and bus.path == db
    assert not isinstance(create_bus("memory://"), PersistentBus)


async def test_the_database_is_readable_by_its_owner_only(db: Path) -> None:
    async with opened(db) as bus:
        await bus.publish("feed", payload(1))
        await bus.flush()
    assert os.stat(db).st_mode & 0o777 == 0o600


async def test_feeds_come_back_with_their_cursors_and_go_on_from_them(db: Path) -> None:
    async with opened(db) as bus:
        await publish_range(bus, "feed", 1, 5)
        await publish_range(bus, "other", 1, 2)
        first_epoch = await bus.epoch()
    async with opened(db) as bus:
        assert await bus.epoch() != first_epoch
        assert await bus.last_seq("feed") == 5
        entries = await bus.read_feed("feed")
        assert [(e.seq, e.data) for e in entries] == [(i, payload(i)) for i in range(1, 6)]
        async with await bus.subscribe("feed", after=3) as subscription:
            assert seqs_of(await take(subscription, 2)) == [4, 5]
            assert await bus.publish("feed", payload(6)) == 6
            assert [(e.seq, e.data) for e in await take(subscription, 1)] == [(6, payload(6))]
        assert await bus.last_seq("other") == 2
        # nothing was lost: every cursor of the first life is still good
        assert await bus.resume_point("feed", 5, first_epoch) == 5


async def test_retention_is_kept_as_the_bus_trims(db: Path) -> None:
    async with opened(db, feed_retention=10) as bus:
        await publish_range(bus, "feed", 1, 25)
    async with opened(db, feed_retention=10) as bus:
        assert seqs_of(await bus.read_feed("feed")) == list(range(16, 26))
        assert await bus.publish("feed", payload(26)) == 26
        assert seqs_of(await bus.read_feed("feed")) == list(range(17, 27))


async def test_a_deleted_feed_or_queue_stays_deleted(db: Path) -> None:
    async with opened(db) as bus:
        await publish_range(bus, "feed", 1, 3)
        await bus.enqueue("queue", b"item")
        await bus.delete("feed")
        await bus.delete("queue")
        assert await bus.publish("feed", payload(1)) == 1
    async with opened(db) as bus:
        assert seqs_of(await bus.read_feed("feed")) == [1]
        assert await bus.queue_size("queue") == 0


async def test_queues_keep_what_is_not_acknowledged(db: Path) -> None:
    async with opened(db) as bus:
        consumer = bus.consumer("workers", "w1")
        await consumer.add("queue")
        for i in range(1, 5):
            await bus.enqueue("queue", payload(i), reply_to=f"reply-{i}" if i == 2 else None)
        done = await consumer.get(timeout=TIMEOUT)
        assert done is not None
        await consumer.ack(done)  # 1: handled
        taken = await consumer.get(timeout=TIMEOUT)  # 2: taken, not acknowledged (it died)
        assert taken is not None and taken.data == payload(2)
    async with opened(db) as bus:
        assert await bus.queue_size("queue") == 3
        consumer = bus.consumer("workers", "w2")
        await consumer.add("queue")
        # what the group had taken before the restart is claimed...
        assert await consumer.claim("queue", min_idle=3600.0) == []  # taken moments ago
        [claimed] = await consumer.claim("queue", min_idle=0.0)
        assert (claimed.data, claimed.reply_to) == (payload(2), "reply-2")
        # ...and what it had not delivered goes to the next reader
        fresh = await consumer.get(timeout=TIMEOUT)
        assert fresh is not None and fresh.data == payload(3)
        for item in (fresh, claimed):
            await consumer.ack(item)
        last = await consumer.get(timeout=TIMEOUT)
        assert last is not None and last.data == payload(4)
        await consumer.ack(last)
        assert await bus.queue_size("queue") == 0
        assert await bus.enqueue("queue", payload(5)) == "5"  # ids go on
    async with opened(db) as bus:
        assert await bus.queue_size("queue") == 1
        consumer = bus.consumer("workers", "w3")
        await consumer.add("queue")
        fifth = await consumer.get(timeout=TIMEOUT)
        assert fifth is not None and (fifth.id, fifth.data) == ("5", payload(5))


async def test_registries_and_blobs_come_back_leases_and_loads_do_not(db: Path) -> None:
    async with opened(db) as bus:
        await bus.set_entry("sessions:hosts", "s1", "worker-a")
        await bus.set_entry("sessions:hosts", "s2", "worker-a")
        assert await bus.remove_entry("sessions:hosts", "s2", "worker-a")
        await bus.put_blob("session:s1:checkpoint", b"signed" * 1000)
        await bus.put_blob("gone", b"x")
        assert await bus.copy_blob("session:s1:checkpoint", "session:s3:checkpoint")
        await bus.delete_blob("gone")
        assert await bus.acquire_lease("session:s1:host", "worker-a", ttl=60)
        await bus.report_load("workers", "worker-a", 1, ttl=60)
    async with opened(db) as bus:
        assert await bus.entries("sessions:hosts") == {"s1": "worker-a"}
        assert await bus.get_blob("session:s1:checkpoint") == b"signed" * 1000
        assert await bus.get_blob("session:s3:checkpoint") == b"signed" * 1000
        assert await bus.get_blob("gone") is None
        assert await bus.lease_holder("session:s1:host") is None
        assert await bus.loads("workers") == {}


async def test_a_kill_loses_only_what_was_not_committed_and_cursors_say_so(
    tmp_path: Path, db: Path
) -> None:
    """Entries 6-8 were published but not yet written when the program was killed. The next
    life skips UNCLEAN_SKIP cursors (6, 7, 8 are never handed out again), and `resume_point`
    tells a follower that saw 8 that it shares only 5 with the feed, and one that saw 3 that
    it shares all of it."""
    async with opened(db, flush_delay=3600.0) as bus:
        await publish_range(bus, "feed", 1, 5)
        await bus.flush()
        await publish_range(bus, "feed", 6, 8)  # waits in memory: the writer gathers for an hour
        first = await bus.epoch()
        copy = killed_copy(db, tmp_path / "killed.db")
    after_kill = 5 + UNCLEAN_SKIP
    async with opened(copy) as bus:
        second = await bus.epoch()
        assert seqs_of(await bus.read_feed("feed")) == [1, 2, 3, 4, 5]
        assert await bus.last_seq("feed") == after_kill
        assert await bus.resume_point("feed", 8, first) == 5  # saw 6-8, which are lost
        assert await bus.resume_point("feed", 3, first) == 3
        assert await bus.resume_point("feed", 0, first) == 0
        assert await publish_range(bus, "feed", 6, 7) == [after_kill + 1, after_kill + 2]
        assert await bus.resume_point("feed", 7, first) == 5
        assert await bus.resume_point("feed", after_kill + 2, second) == after_kill + 2
        assert await bus.resume_point("feed", 7, "an epoch of another bus") == 0
        assert await bus.resume_point("nothing", 7, first) == 0
        # the skipped cursors are a gap, as trimmed ones are: readers go on past it
        assert seqs_of(await bus.read_feed("feed", after=3)) == [
            4,
            5,
            after_kill + 1,
            after_kill + 2,
        ]
        assert seqs_of(await bus.read_feed("feed", after=8)) == [after_kill + 1, after_kill + 2]
        async with await bus.subscribe("feed", after=8) as subscription:
            assert seqs_of(await take(subscription, 2)) == [after_kill + 1, after_kill + 2]
    async with opened(copy) as bus:  # a third life, after a clean stop: no skipping
        assert await bus.last_seq("feed") == after_kill + 2
        assert await bus.resume_point("feed", 7, first) == 5
        assert await bus.resume_point("feed", after_kill + 2, second) == after_kill + 2
        assert await bus.resume_point("feed", 4, first) == 4
        assert seqs_of(await bus.read_feed("feed", after=4)) == [5, after_kill + 1, after_kill + 2]
        assert await bus.publish("feed", payload(9)) == after_kill + 3


async def test_writes_are_batched(db: Path) -> None:
    """Many changes in one step of the event loop take one or a few transactions."""
    async with opened(db, flush_delay=0.05) as bus:
        for i in range(1000):
            await bus.publish("feed", payload(i))
        await bus.flush()
        writer = bus._writer
        assert writer is not None and writer.written == 1000
        assert writer.batches <= 5


async def test_requests_handled_within_a_batch_are_never_written(db: Path) -> None:
    """An entry enqueued, delivered, acknowledged and dropped before the writer commits (an
    execution of a few milliseconds) costs no row; the queue's cursors still go on."""
    async with opened(db, flush_delay=3600.0) as bus:
        consumer = bus.consumer("workers", "w1")
        await consumer.add("queue")
        for i in range(1, 4):
            await bus.enqueue("queue", payload(i))
            item = await consumer.get(timeout=TIMEOUT)
            assert item is not None
            await consumer.ack(item)
        await bus.enqueue("queue", payload(4))  # waits: written
        await bus.flush()
        assert await asyncio.to_thread(rows_of, db, "SELECT seq FROM queue_entries") == [(4,)]
    async with opened(db) as bus:
        assert await bus.queue_size("queue") == 1
        assert await bus.enqueue("queue", payload(5)) == "5"
        consumer = bus.consumer("workers", "w2")
        await consumer.add("queue")
        item = await consumer.get(timeout=TIMEOUT)
        assert item is not None and item.data == payload(4)


async def test_skipped_cursors_and_retention_together(tmp_path: Path, db: Path) -> None:
    async with opened(db, feed_retention=10) as bus:
        await publish_range(bus, "feed", 1, 5)
        await bus.flush()
        copy = killed_copy(db, tmp_path / "killed.db")
    async with opened(copy, feed_retention=10) as bus:
        await publish_range(bus, "feed", 6, 8)
        after_kill = 5 + UNCLEAN_SKIP
        assert seqs_of(await bus.read_feed("feed")) == [
            *range(1, 6),
            *range(after_kill + 1, after_kill + 4),
        ]
        assert seqs_of(await bus.read_feed("feed", after=4, limit=2)) == [5, after_kill + 1]
        await publish_range(bus, "feed", 9, 30)
        newest = list(range(after_kill + 16, after_kill + 26))
        assert seqs_of(await bus.read_feed("feed")) == newest
        assert seqs_of(await bus.read_feed("feed", after=after_kill + 20)) == newest[5:]
    async with opened(copy, feed_retention=10) as bus:
        assert seqs_of(await bus.read_feed("feed")) == newest
        assert await bus.last_seq("feed") == after_kill + 25
