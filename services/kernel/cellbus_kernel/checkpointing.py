"""One session's checkpoints, the worker's side: when to save, what to report, what to load.

A `SessionCheckpoints` belongs to one `session.Session`. The session tells it when an execution has
run (`ran`: the namespace changed) and asks it to save (`save`, between executions: after
`CELLBUS_CHECKPOINT_DELAY` of idleness; before the next queued execution once the namespace
has changed for `CELLBUS_CHECKPOINT_INTERVAL` without a save (`overdue`), so that a session
that never idles is saved too; before hibernating; when the worker stops) and, on the first
process start, to load what the worker found on the bus (`load_into`). It reports on the
feed with ``checkpoint`` messages: ``saved`` (with the names that could not be saved, and the
names that hold open files, which a restore gives back closed, each once per session),
``not_saved`` (too large, or failed: the previous checkpoint is kept), ``refused`` and
``restore_failed`` (the namespace is fresh).

Whenever the namespace becomes fresh (a restart, a fault, a refused or failed restore), the
checkpoint is deleted (`forget`), so that it never brings back state the session no longer has.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from cellbus_protocol import messages as m
from cellbus_protocol.envelope import Header, new_msg_id, now_iso
from cellbus_protocol.errors import BusUnavailable

from . import checkpoints, frames
from .spawner import SessionProcess

log = logging.getLogger(__name__)

CHECKPOINT_TIMEOUT = 60.0
"""Seconds a session process gets to pickle its namespace before it is interrupted."""
RETRY_DELAY = 5.0
"""Seconds before a checkpoint that could not be written (the bus was away) is tried again."""
NOT_SAVED_BACKOFF = 60.0
"""Seconds before a namespace that could not be saved (too large, unpicklable) is tried again:
pickling it costs the session up to CELLBUS_CHECKPOINT_MAX_MB of work each time."""

Ask = Callable[[SessionProcess, Any, float], Awaitable[Any]]
"""Send a frame to the process and wait for the frame that answers it; None if the process
ended, or did not answer in time (it is then stopped)."""
Publish = Callable[[m.Content, Header | None], Awaitable[None]]


class SessionCheckpoints:
    def __init__(
        self, session: str, store: checkpoints.CheckpointStore | None, publish: Publish
    ) -> None:
        self.session = session
        self._store = store
        self._publish = publish
        self.pending: checkpoints.Loaded | checkpoints.Refused | None = None
        """What the next process start loads (set when the worker starts hosting)."""
        self.restored_from: checkpoints.Header | None = None
        """The checkpoint this session's namespace was restored from, if it was."""
        self.fresh_because = "it had no checkpoint."
        """If it was not: why (for the ``WorkerLost`` error of a takeover)."""
        self.dirty = False
        """The namespace has changed since it was last saved."""
        self.due: float | None = None
        """When (time.monotonic) to save it, if it is dirty."""
        self.overdue_at: float | None = None
        """When (time.monotonic) it has been dirty for CELLBUS_CHECKPOINT_INTERVAL: from then
        on it is saved before the next execution, even if the session never idles."""
        self.last_execution: Header | None = None
        self.reported: set[str] = set()
        self.reported_open: set[str] = set()  # names holding open files, already reported
        self._not_saved_reported = False
        self._retry_after = 0.0  # no automatic save before this (time.monotonic)
        self._generation = 0  # bumped by `forget`: a save in flight is then thrown away
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self._store is not None

    async def fetch(self, fork_of: str = "") -> None:
        """Read the session's checkpoint (a fork: the copy of `fork_of`'s), verified, for the
        first process to load (`pending`)."""
        if self._store is not None:
            self.pending = await self._store.load(self.session, fork_of)

    def ran(self, execution: Header, delay: float, interval: float) -> None:
        """An execution ran in the process: save in `delay` seconds, unless another comes;
        and before the next execution if the namespace has changed for `interval` seconds."""
        self.last_execution = execution
        if self.enabled:
            now = time.monotonic()
            if not self.dirty or self.overdue_at is None:
                self.overdue_at = now + interval
            self.dirty = True
            self.due = max(now + delay, self._retry_after)

    def overdue(self) -> bool:
        """The namespace has changed for CELLBUS_CHECKPOINT_INTERVAL without being saved:
        save it now, between executions, although more are queued."""
        if not self.dirty or self.overdue_at is None:
            return False
        return time.monotonic() >= max(self.overdue_at, self._retry_after)

    def postpone(self) -> None:
        """Another execution started: the save waits until it has ended (`ran` again)."""
        self.due = None

    # -- saving ---------------------------------------------------------------------------
    async def save(
        self, process: SessionProcess | None, ask: Ask, next_count: int, seq: int
    ) -> bool:
        """Save the namespace if it changed; True if the checkpoint on the bus is current.
        `next_count` is the count the next execution gets, `seq` the feed's last cursor."""
        if self._store is None or process is None:
            return False
        if not self.dirty:
            return True
        async with self._store.saving:  # bounds the checkpoints this worker holds at once
            return await self._save(process, ask, next_count, seq)

    async def _save(self, process: SessionProcess, ask: Ask, next_count: int, seq: int) -> bool:
        assert self._store is not None
        generation = self._generation
        frame = frames.Checkpoint(id=new_msg_id(), max_bytes=self._store.max_bytes)
        answer = await ask(process, frame, CHECKPOINT_TIMEOUT)
        if not isinstance(answer, frames.Checkpointed):
            return False  # the process ended, or did not answer
        parent, count = self.last_execution, next_count - 1
        new_skipped = [name for name in answer.skipped if name not in self.reported]
        if not answer.data:  # still dirty, so it is not hibernated with the old checkpoint
            self.due = None
            self._retry_after = time.monotonic() + NOT_SAVED_BACKOFF
            await self._report_not_saved(answer, count, new_skipped, parent)
            return False
        header = checkpoints.Header(
            session=self.session, execution_count=count,
            msg_id=parent.msg_id if parent else "", created=now_iso(), feed_seq=seq,
            reported=sorted(self.reported | set(answer.skipped)), open_files=answer.open_files,
            history=answer.history,
        )  # fmt: skip
        try:
            async with self._lock:
                if generation != self._generation:
                    return False
                size = await self._store.save(self.session, header, answer.data)
        except BusUnavailable as exc:
            log.warning("session %s: cannot write its checkpoint (%s)", self.session, exc)
            self.due = self._retry_after = time.monotonic() + RETRY_DELAY
            return False
        self.dirty, self.due, self.overdue_at, self._not_saved_reported = False, None, None, False
        self.reported |= set(answer.skipped)
        new_open = [name for name in answer.open_files if name not in self.reported_open]
        self.reported_open |= set(answer.open_files)
        log.debug("session %s: checkpoint after %d saved (%d bytes)", self.session, count, size)
        reasons = []
        if new_skipped:
            reasons.append(
                f"These names could not be saved, and would be lost if the session moved to "
                f"another worker: {', '.join(new_skipped)}."
            )
        if new_open:
            reasons.append(open_files_note(new_open))
        saved = m.Checkpoint(
            event="saved", execution_count=count, skipped=new_skipped, size=size,
            reason=" ".join(reasons), open_files=new_open,
        )  # fmt: skip
        await self._publish(saved, parent)
        return True

    async def _report_not_saved(
        self,
        answer: frames.Checkpointed,
        count: int,
        new_skipped: list[str],
        parent: Header | None,
    ) -> None:
        assert self._store is not None
        if answer.too_large:
            limit = self._store.max_bytes // 2**20
            why = f"the namespace is over the checkpoint limit of {limit} MiB"
        else:
            why = f"saving it failed ({answer.error})"
        log.warning("session %s: checkpoint not saved: %s", self.session, why)
        if self._not_saved_reported:
            return
        self._not_saved_reported = True
        self.reported |= set(answer.skipped)
        reason = f"The session's namespace was not saved: {why}. The previous checkpoint is kept."
        note = m.Checkpoint(
            event="not_saved", execution_count=count, skipped=new_skipped, reason=reason
        )
        await self._publish(note, parent)

    async def forget(self) -> None:
        """The namespace is fresh: delete the checkpoint and forget what was reported."""
        self._generation += 1
        self.dirty, self.due, self.overdue_at, self._not_saved_reported = False, None, None, False
        self.reported, self.reported_open = set(), set()
        self.pending = None
        if self._store is not None:
            async with self._lock:
                await self._store.delete(self.session)

    # -- restoring ------------------------------------------------------------------------
    async def load_into(
        self, process: SessionProcess, ask: Ask, timeout: float, seq: int
    ) -> tuple[int | None, str, bool]:
        """Load the pending checkpoint into a new process: the execution count to go on from
        (None: the namespace is fresh), the reason for the ``idle`` that follows, and whether
        the process is still alive."""
        pending, self.pending = self.pending, None
        if pending is None:
            return None, "", True
        if isinstance(pending, checkpoints.Refused):
            reason = (
                f"The session's checkpoint was refused: {pending.reason} The namespace is fresh."
            )
            await self._publish(m.Checkpoint(event="refused", reason=reason), None)
            await self.forget()
            self.fresh_because = "its checkpoint was refused."
            return None, reason, True
        header = pending.header
        payload: Any = pending.payload  # a view of the blob: msgspec sends it without a copy
        frame = frames.Restore(
            id=new_msg_id(), data=payload, execution_count=header.execution_count + 1,
            history=header.history,
        )  # fmt: skip
        answer = await ask(process, frame, timeout)
        if isinstance(answer, frames.Restored) and answer.ok:
            self.restored_from = header
            self.reported = set(header.reported)
            self.reported_open = set(header.open_files)  # named in the `idle` that follows
            if header.session != self.session and self._store is not None:
                # A fork: the copy becomes this session's own.
                own = msgspec.structs.replace(header, session=self.session, feed_seq=seq)
                async with self._lock:
                    await self._store.save(self.session, own, pending.payload)
            log.info("session %s: restored after %d", self.session, header.execution_count)
            reason = after_cell(header, "Restored the namespace")
            if header.open_files:
                reason += " " + open_files_note(header.open_files)
            return header.execution_count + 1, reason, True
        if not isinstance(answer, frames.Restored):
            return None, "", False  # the process ended while loading; its end is reported
        error = answer.error
        reason = f"The session's checkpoint could not be loaded ({error}). The namespace is fresh."
        log.warning("session %s: %s", self.session, reason)
        failed = m.Checkpoint(
            event="restore_failed", execution_count=header.execution_count, reason=reason
        )
        await self._publish(failed, None)
        await self.forget()
        self.fresh_because = "its checkpoint could not be loaded."
        return None, reason, True

    def restoring_reason(self) -> str:
        pending = self.pending
        if isinstance(pending, checkpoints.Loaded):
            return after_cell(pending.header, "Restoring the namespace")
        return "Restoring the namespace from its checkpoint."


def after_cell(header: checkpoints.Header, what: str) -> str:
    """'Restored the namespace saved after execution 3 (execute_request abc...).'"""
    if not header.msg_id:
        return f"{what} saved before any execution."
    count, msg_id = header.execution_count, header.msg_id
    return f"{what} saved after execution {count} (execute_request {msg_id})."


def open_files_note(names: list[str]) -> str:
    """The sentence that names the variables whose files a restore gives back closed."""
    return (
        "These names hold files that were open when the namespace was saved; a restore gives "
        f"them back closed (restoring a checkpoint never opens a file): {', '.join(names)}."
    )
