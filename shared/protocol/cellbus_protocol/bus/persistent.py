"""The in-process bus that remembers: `InMemoryBus`, with what a Redis deployment keeps across
a restart kept in a SQLite database (``make run``: ``CELLBUS_DATA_DIR/bus.db``).

What is kept, and why (a restarted Redis deployment finds the same in Redis):

- feeds: every retained entry with its cursor, and each feed's last cursor, trimmed to the
  retention as the bus trims them; so clients resume from their cursors;
- queues: their entries, and per consumer group what was delivered and is not acknowledged
  yet; so an execution that was running when the program died is claimed by the session's
  next host (which answers it with ``WorkerLost``) and queued ones still run;
- registries: ``sessions:hosts`` above all, so the sessions hosted when the program died are
  taken over at the first heartbeat after a start and restored from their checkpoints;
- blobs: the signed checkpoints.

Not kept: leases and loads (they expire in seconds, and their holders are gone), broadcasts
and replies (never stored on Redis either).

Writes never hold up the event loop. The bus makes each change in memory as `InMemoryBus`
does and hands a small tuple to its journal (`_Writer.put`: a deque append); one writer thread
takes what has gathered, at most `FLUSH_DELAY` after the first change, and commits it as one
transaction (WAL, ``synchronous=NORMAL``: a commit is safe from the program's death, not from
the machine's). So a SIGKILL loses at most the changes of the last `FLUSH_DELAY` plus one
commit (a few tens of milliseconds), always a prefix-complete state: changes are committed in
the order they were made.

Losing the tail of a feed would mean handing out again cursors that clients may have seen
with other entries. So a start after a kill (the database was not closed: ``state.clean``)
skips `UNCLEAN_SKIP` cursors on every feed, and every entry is stored with the epoch it was
published in (one row per start in ``epochs``, numbered in order): `resume_point` tells a
client whose cursor came from an earlier epoch how much of what it saw the feed still has.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .base import DEFAULT_FEED_RETENTION
from .memory import InMemoryBus, _Entry, _Group

log = logging.getLogger(__name__)

FLUSH_DELAY = 0.02
"""Seconds the writer lets changes gather after the first one before it commits them."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS epochs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, epoch TEXT NOT NULL UNIQUE, started REAL NOT NULL);
CREATE TABLE IF NOT EXISTS logs (
    kind TEXT NOT NULL, name TEXT NOT NULL, last_seq INTEGER NOT NULL,
    PRIMARY KEY (kind, name));
CREATE TABLE IF NOT EXISTS feed_entries (
    feed TEXT NOT NULL, seq INTEGER NOT NULL, epoch INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (feed, seq));
CREATE TABLE IF NOT EXISTS queue_entries (
    queue TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL, reply_to TEXT,
    PRIMARY KEY (queue, seq));
CREATE TABLE IF NOT EXISTS queue_groups (
    queue TEXT NOT NULL, grp TEXT NOT NULL, last_delivered INTEGER NOT NULL,
    PRIMARY KEY (queue, grp));
CREATE TABLE IF NOT EXISTS queue_pending (
    queue TEXT NOT NULL, grp TEXT NOT NULL, seq INTEGER NOT NULL, delivered REAL NOT NULL,
    PRIMARY KEY (queue, grp, seq));
CREATE TABLE IF NOT EXISTS registries (
    tbl TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (tbl, key));
CREATE TABLE IF NOT EXISTS blobs (name TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

UNCLEAN_SKIP = 1000
"""Cursors each feed skips after a start that follows a kill: more than a feed publishes in
the moments a kill loses (a session's output is coalesced every 0.05 s), so no cursor that a
client, or the accounts service's saver, may have seen is handed out again."""

Op = tuple[Any, ...]
Rows = list[Op]


class PersistentBus(InMemoryBus):
    """An `InMemoryBus` whose feeds, queues, registries and blobs outlive its program."""

    def __init__(
        self,
        path: str | Path,
        feed_retention: int = DEFAULT_FEED_RETENTION,
        *,
        flush_delay: float = FLUSH_DELAY,
    ) -> None:
        super().__init__(feed_retention)
        self.path = Path(path)
        self.flush_delay = flush_delay
        self._epoch_ids: dict[str, int] = {}  # every epoch this database has seen -> its order
        self._epoch_id = 0
        # feed -> (first cursor, epoch id) of each run of entries published in one epoch
        self._feed_epochs: dict[str, list[tuple[int, int]]] = {}
        self._writer: _Writer | None = None

    async def start(self) -> None:
        if self._writer is None:
            db = await asyncio.to_thread(self._load)
            self._writer = _Writer(db, self.feed_retention, self._epoch_id, self.flush_delay)
            self._journal = self._keep

    async def close(self) -> None:
        await super().close()
        writer, self._writer = self._writer, None
        self._journal = None
        if writer is not None:
            await asyncio.to_thread(writer.close)

    async def flush(self) -> None:
        """Wait until every change made so far is committed."""
        if self._writer is not None:
            await asyncio.to_thread(self._writer.wait_written, self._writer.queued)

    # -- epochs ---------------------------------------------------------------------------
    async def resume_point(self, feed: str, cursor: int, epoch: str) -> int:
        """`cursor` if the entries up to it were all published in `epoch` or before (they
        are then the ones the follower saw: entries are committed in order, so a start finds
        every entry before the newest it kept); otherwise the last cursor before the first
        entry of a later epoch (entries after it may reuse cursors the follower saw)."""
        if cursor <= 0 or epoch == self._epoch:
            return max(cursor, 0)
        order = self._epoch_ids.get(epoch)
        feed_log = self._feeds.get(feed)
        if order is None or feed_log is None:
            return 0  # not an epoch of this database, or a feed it does not have
        shared = feed_log.last_seq
        for first, published in self._feed_epochs.get(feed, ()):
            if published > order:
                shared = first - 1
                break
        for at, size in feed_log.gaps:  # the last cursor handed out before it
            if at <= shared < at + size:
                shared = at - 1
        return min(cursor, shared)

    # -- the journal ----------------------------------------------------------------------
    def _keep(self, op: Op) -> None:
        kind = op[0]
        if kind == "feed":
            runs = self._feed_epochs.get(op[1])
            if runs is None:
                self._feed_epochs[op[1]] = [(op[2], self._epoch_id)]
            elif runs[-1][1] != self._epoch_id:
                runs.append((op[2], self._epoch_id))
        elif kind == "delete":
            self._feed_epochs.pop(op[1], None)
        assert self._writer is not None
        self._writer.put(op)

    # -- loading --------------------------------------------------------------------------
    def _load(self) -> sqlite3.Connection:
        """Open the database (made if new), start a new epoch and read everything kept into
        the in-memory structures. Runs in a thread, before the bus is used."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # checkpoints are code: readable by this user only (SQLite gives its -wal and -shm
        # files the database's mode)
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
            self._epoch_ids = {
                epoch: id for id, epoch in db.execute("SELECT id, epoch FROM epochs")
            }
            clean = db.execute("SELECT value FROM state WHERE key = 'clean'").fetchone()
            killed = bool(self._epoch_ids) and clean != ("1",)
            db.execute("INSERT OR REPLACE INTO state (key, value) VALUES ('clean', '0')")
            cursor = db.execute(
                "INSERT INTO epochs (epoch, started) VALUES (?, ?)", (self._epoch, time.time())
            )
            self._epoch_id = self._epoch_ids[self._epoch] = int(cursor.lastrowid or 0)
            self._load_logs(db)
            self._load_feed_entries(db)
            if killed:
                log.warning("bus.db was not closed (the program was killed): skipping cursors")
                for feed_log in self._feeds.values():
                    feed_log.skip(UNCLEAN_SKIP)
            self._load_queues(db)
            for table, key, value in db.execute("SELECT tbl, key, value FROM registries"):
                self._registries.setdefault(table, {})[key] = value
            self._blobs = {name: bytes(data) for name, data in db.execute("SELECT * FROM blobs")}
        except BaseException:
            db.close()
            raise
        return db

    def _load_logs(self, db: sqlite3.Connection) -> None:
        for kind, name, last_seq in db.execute("SELECT kind, name, last_seq FROM logs"):
            if kind == "feed":
                self._feed(name).last_seq = last_seq
            else:
                self._queue(name).last_seq = last_seq

    def _load_feed_entries(self, db: sqlite3.Connection) -> None:
        rows = db.execute("SELECT feed, seq, epoch, data FROM feed_entries ORDER BY feed, seq")
        for feed, entries in itertools.groupby(rows, key=lambda row: row[0]):
            feed_log = self._feed(feed)
            runs: list[tuple[int, int]] = []
            self._feed_epochs[feed] = runs
            previous = 0
            for _, seq, epoch, data in entries:
                if previous and seq != previous + 1:  # skipped after a kill
                    feed_log.gaps.append((previous + 1, seq - previous - 1))
                previous = seq
                feed_log.entries.append(_Entry(seq, bytes(data)))
                if not runs or runs[-1][1] != epoch:
                    runs.append((seq, epoch))
            if feed_log.entries:
                feed_log.last_seq = max(feed_log.last_seq, feed_log.entries[-1].seq)

    def _load_queues(self, db: sqlite3.Connection) -> None:
        kept: dict[tuple[str, int], _Entry] = {}
        rows = db.execute(
            "SELECT queue, seq, data, reply_to FROM queue_entries ORDER BY queue, seq"
        )
        for queue, seq, data, reply_to in rows:
            entry = kept[(queue, seq)] = _Entry(seq, bytes(data), reply_to)
            queue_log = self._queue(queue)
            queue_log.entries.append(entry)
            queue_log.last_seq = max(queue_log.last_seq, seq)
        for queue, group, last_delivered in db.execute("SELECT * FROM queue_groups"):
            self._queue(queue).groups[group] = _Group(last_delivered)
        # how long ago each was delivered, in this process's monotonic clock (a claim waits
        # for `min_idle` since the delivery, restarts included)
        now, wall = time.monotonic(), time.time()
        for queue, group, seq, delivered in db.execute("SELECT * FROM queue_pending"):
            pending = kept.get((queue, seq))
            taken = self._queue(queue).groups.setdefault(group, _Group())
            if pending is not None:
                taken.pending[seq] = pending
                taken.delivered_at[seq] = now - max(0.0, wall - delivered)


class _Writer:
    """The thread that commits the journal's changes, in order, a batch per transaction."""

    def __init__(self, db: sqlite3.Connection, retention: int, epoch_id: int, delay: float) -> None:
        self._db = db
        self._retention = retention
        self._epoch_id = epoch_id
        self._delay = delay
        self._ops: deque[Op] = deque()
        self._wake = threading.Event()
        self._hurry = threading.Event()  # someone waits for the commit: no gathering
        self._stopping = False
        self._written = threading.Condition()
        self.queued = 0  # changes put (by the event loop's thread)
        self.written = 0  # changes committed (or given up on)
        self.batches = 0
        self._apply: dict[str, Callable[[Rows, dict[str, int], dict[str, int]], None]] = {
            "feed": self._feed_entries,
            "delete": self._deletions,
            "enqueue": self._queue_entries,
            "deliver": self._deliveries,
            "ack": self._acks,
            "set_entry": self._set_entries,
            "remove_entry": self._removed_entries,
            "put_blob": self._blobs,
            "delete_blob": self._deleted_blobs,
        }
        self._thread = threading.Thread(target=self._run, name="cellbus-bus-writer", daemon=True)
        self._thread.start()

    def put(self, op: Op) -> None:
        """Called from the event loop: no lock, no I/O (an event set once per batch)."""
        self._ops.append(op)
        self.queued += 1
        if not self._wake.is_set():
            self._wake.set()

    def wait_written(self, count: int) -> None:
        self._hurry.set()
        with self._written:
            self._written.wait_for(lambda: self.written >= count)

    def close(self) -> None:
        """Commit what is left, then stop (called once, from a thread of the event loop's)."""
        self._stopping = True
        self._hurry.set()
        self._wake.set()
        self._thread.join()
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("INSERT OR REPLACE INTO state (key, value) VALUES ('clean', '1')")
        self._db.close()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._hurry.wait(self._delay)  # let a burst gather: one transaction for all of it
            self._hurry.clear()
            self._wake.clear()
            batch: list[Op] = []
            while self._ops:
                batch.append(self._ops.popleft())
            if batch:
                self._commit(batch)
            if self._stopping and not self._ops:
                return

    def _commit(self, batch: list[Op]) -> None:
        feeds: dict[str, int] = {}  # feed -> its last cursor written in this batch
        queues: dict[str, int] = {}
        try:
            self._db.execute("BEGIN")
            for kind, ops in itertools.groupby(_passing(batch, queues), key=lambda op: op[0]):
                self._apply[kind](list(ops), feeds, queues)
            self._logs(feeds, queues)
            self._db.execute("COMMIT")
        except Exception:
            log.exception("the bus could not write %d changes to %s", len(batch), "bus.db")
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        with self._written:
            self.written += len(batch)
            self.batches += 1
            self._written.notify_all()

    def _many(self, sql: str, rows: Iterable[tuple[Any, ...]]) -> None:
        self._db.executemany(sql, rows)

    def _logs(self, feeds: dict[str, int], queues: dict[str, int]) -> None:
        upsert = (
            "INSERT INTO logs (kind, name, last_seq) VALUES (?, ?, ?) ON CONFLICT (kind, name)"
            " DO UPDATE SET last_seq = max(last_seq, excluded.last_seq)"
        )
        self._many(upsert, [("feed", name, seq) for name, seq in feeds.items()])
        self._many(upsert, [("queue", name, seq) for name, seq in queues.items()])
        trim = [
            (name, seq - self._retention) for name, seq in feeds.items() if seq > self._retention
        ]
        self._many("DELETE FROM feed_entries WHERE feed = ? AND seq <= ?", trim)

    def _feed_entries(self, ops: Rows, feeds: dict[str, int], queues: dict[str, int]) -> None:
        epoch = self._epoch_id
        self._many(
            "INSERT OR REPLACE INTO feed_entries (feed, seq, epoch, data) VALUES (?, ?, ?, ?)",
            [(feed, seq, epoch, data) for _, feed, seq, data in ops],
        )
        for _, feed, seq, _ in ops:
            feeds[feed] = seq

    def _deletions(self, ops: Rows, feeds: dict[str, int], queues: dict[str, int]) -> None:
        for _, name in ops:
            feeds.pop(name, None)
            queues.pop(name, None)
            for sql in (
                "DELETE FROM feed_entries WHERE feed = ?",
                "DELETE FROM queue_entries WHERE queue = ?",
                "DELETE FROM queue_groups WHERE queue = ?",
                "DELETE FROM queue_pending WHERE queue = ?",
                "DELETE FROM logs WHERE name = ?",
            ):
                self._db.execute(sql, (name,))

    def _queue_entries(self, ops: Rows, feeds: dict[str, int], queues: dict[str, int]) -> None:
        self._many(
            "INSERT OR REPLACE INTO queue_entries (queue, seq, data, reply_to) VALUES (?, ?, ?, ?)",
            [op[1:] for op in ops],
        )
        for _, queue, seq, _, _ in ops:
            queues[queue] = max(seq, queues.get(queue, 0))

    def _deliveries(self, ops: Rows, feeds: dict[str, int], queues: dict[str, int]) -> None:
        self._many(
            "INSERT INTO queue_groups (queue, grp, last_delivered) VALUES (?, ?, ?)"
            " ON CONFLICT (queue, grp)"
            " DO UPDATE SET last_delivered = max(last_delivered, excluded.last_delivered)",
            [(queue, group, seq) for _, queue, group, seq, _ in ops],
        )
        self._many(
            "INSERT OR REPLACE INTO queue_pending (queue, grp, seq, delivered) VALUES (?, ?, ?, ?)",
            [op[1:] for op in ops],
        )

    def _acks(self, ops: Rows, feeds: dict[str, int], queues: dict[str, int]) -> None:
        self._many(
            "DELETE FROM queue_pending WHERE queue = ? AND grp = ? AND seq = ?",
            [(queue, group, seq) for _, queue, group, seq, _ in ops if seq],
        )
        dropped: dict[str, int] = {}  # one delete per queue: the newest drop covers the rest
        for _, queue, _, _, upto in ops:
            if upto:
                dropped[queue] = max(upto, dropped.get(queue, 0))
        self._many("DELETE FROM queue_entries WHERE queue = ? AND seq <= ?", list(dropped.items()))

    def _set_entries(self, ops: Rows, feeds: dict[str, int], queues: dict[str, int]) -> None:
        self._many(
            "INSERT OR REPLACE INTO registries (tbl, key, value) VALUES (?, ?, ?)",
            [op[1:] for op in ops],
        )

    def _removed_entries(self, ops: Rows, feeds: dict[str, int], queues: dict[str, int]) -> None:
        self._many("DELETE FROM registries WHERE tbl = ? AND key = ?", [op[1:] for op in ops])

    def _blobs(self, ops: Rows, feeds: dict[str, int], queues: dict[str, int]) -> None:
        self._many(
            "INSERT OR REPLACE INTO blobs (name, data) VALUES (?, ?)", [op[1:] for op in ops]
        )

    def _deleted_blobs(self, ops: Rows, feeds: dict[str, int], queues: dict[str, int]) -> None:
        self._many("DELETE FROM blobs WHERE name = ?", [op[1:] for op in ops])


def _drops(batch: list[Op]) -> dict[str, int]:
    """Per queue, the newest cursor up to which `batch` drops entries (none if the batch
    deletes a queue or feed: cursors start again after it, so it is written as it is)."""
    dropped: dict[str, int] = {}
    for op in batch:
        if op[0] == "ack" and op[4]:
            dropped[op[1]] = max(op[4], dropped.get(op[1], 0))
        elif op[0] == "delete":
            return {}
    return dropped


def _passing(batch: list[Op], queues: dict[str, int]) -> list[Op]:
    """`batch` less what it makes and undoes itself: a queue entry enqueued, delivered,
    acknowledged and dropped within the batch (most requests: an execution takes a few
    milliseconds, a batch gathers for `FLUSH_DELAY`) is never written. Its queue's last
    cursor still is (in `queues`), so cursors are not handed out again; an acknowledgement
    that also drops older entries keeps its drop."""
    dropped = _drops(batch)
    if not dropped:
        return batch
    made = {(op[1], op[2]) for op in batch if op[0] == "enqueue" and op[2] <= dropped.get(op[1], 0)}
    if not made:
        return batch
    kept: list[Op] = []
    for op in batch:
        kind = op[0]
        if kind == "enqueue" and (op[1], op[2]) in made:
            queues[op[1]] = max(op[2], queues.get(op[1], 0))
        elif kind == "deliver" and (op[1], op[3]) in made:
            pass
        elif kind == "ack" and (op[1], op[3]) in made:
            if op[4]:
                kept.append(("ack", op[1], op[2], 0, op[4]))  # the drop, no pending row
        else:
            kept.append(op)
    return kept
