"""A hosted session's process, as its worker sees it, and the feed that reports on it.

`ProcessHost` is the half of a `session.SessionHost` that deals with the session process:
starting it from the template (loading the session's checkpoint into the first one, see
`checkpointing`), sending it frames and waiting for their answers, turning its frames into
feed messages, watching its memory, and learning why it ended (`Ending`). `session.py` holds
the other half: requests, the execution queue, and the session's life on the worker.

Why a process ended is told to users: in the ``error`` of the execution it ended, its
``execute_reply``, and a ``dead`` status for a fault. A fault loses the namespace: the
checkpoint is deleted with it, so that no later restore brings back what the users lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import OrderedDict
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import msgspec

from cellbus_protocol import codec, keys
from cellbus_protocol import messages as m
from cellbus_protocol.bus import Bus
from cellbus_protocol.envelope import Header, new_message, reply_to
from cellbus_protocol.errors import BusUnavailable

from . import frames
from .checkpointing import SessionCheckpoints
from .checkpoints import CheckpointStore
from .config import KernelSettings
from .spawner import SessionProcess, Spawner, describe_exit

log = logging.getLogger(__name__)

KERNEL_USERNAME = "kernel"
"""The username on feed messages that no request caused (a process starting or dying)."""
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
INTERRUPT_GRACE = 5.0
"""Seconds a checkpoint that overran its time gets to stop after it is interrupted."""
ANNOUNCE_WITHIN = 0.005
"""Seconds an execution's ``busy`` and ``execute_input`` may wait to go out with its first
output or reply (see `ProcessHost._announce`)."""


@dataclass(frozen=True)
class Ending:
    """Why a session process ended, as users are told: in the ``error`` of the execution it
    ended, its ``execute_reply``, and a ``dead`` status (unless a restart follows)."""

    ename: str
    message: str  # a whole sentence
    expected: bool = False  # ended on purpose (restart, shutdown, worker stop), not a fault
    lost_state: bool = True  # a process ran and its variables are gone

    @property
    def evalue(self) -> str:
        if self.expected or not self.lost_state:
            return self.message
        return f"{self.message} Its variables are lost; the next execution starts a fresh process."


def died(how: str) -> Ending:
    """A fault: ``died("exited with code 3")``."""
    return Ending("SessionProcessDied", f"The session process {how}.")


class ProcessHost:
    """One session's process on this worker, and the session's feed."""

    def __init__(
        self,
        session: str,
        *,
        bus: Bus,
        spawner: Spawner,
        settings: KernelSettings,
        drops: codec.DropCounter,
        checkpoints: CheckpointStore | None,
    ) -> None:
        self.session = session
        self.state: m.ExecutionState = "starting"
        self.execution_count = 1
        self.closed = False
        self.cp = SessionCheckpoints(session, checkpoints, self._publish)
        self._feed = keys.feed(session)
        self._bus = bus
        self._spawner = spawner
        self._settings = settings
        self._drops = drops
        self._process: SessionProcess | None = None
        self._ready: frames.Ready | None = None
        self._lifecycle = asyncio.Lock()
        self._done: asyncio.Future[m.ExecuteReply | Ending] | None = None
        self._answers: dict[str, asyncio.Future[Any]] = {}
        self._parents: OrderedDict[str, Header] = OrderedDict()
        self._endings: dict[int, Ending] = {}  # why we killed a process, by pid
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._last_seq = 0  # the feed cursor of the last message this host published
        self._held: list[bytes] = []  # an execution's announcement, not published yet
        self._held_until: asyncio.TimerHandle | None = None
        self._publishing = asyncio.Lock()  # feed messages go out one at a time, in order
        self._abandoned = False  # another worker hosts the session: publish nothing more

    # -- tasks ----------------------------------------------------------------------------
    def _spawn_task(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session %s: task failed", self.session, exc_info=task.exception())

    def _cancel_tasks(self) -> None:
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()

    async def _save(self) -> bool:
        return await self.cp.save(self._process, self._ask, self.execution_count, self._last_seq)

    # -- the process ----------------------------------------------------------------------
    async def _ensure_process(
        self, parent: Header | None, *, announce_idle: bool = True
    ) -> SessionProcess | None:
        """The running process, started first if there is none (``starting``, then ``idle``
        unless the caller goes on to ``busy``). The first process a worker starts for the
        session loads its checkpoint: ``restoring``, then ``idle`` with the outcome."""
        async with self._lifecycle:
            if self._process is not None or self.closed:
                return self._process
            restoring = self.cp.pending is not None
            if restoring:
                status = m.Status(execution_state="restoring", reason=self.cp.restoring_reason())
            else:
                status = m.Status(execution_state="starting")
            await self._publish(status, parent)
            try:
                process = await self._spawner.spawn(self.session, self._settings.output_cap)
                ready = await asyncio.wait_for(process.pipe.receive(), self._settings.start_timeout)
            except Exception as exc:
                log.exception("session %s: could not start a process", self.session)
                reason = f"The session process could not be started: {exc}."
                await self._publish(m.Status(execution_state="dead", reason=reason), parent)
                return None
            if not isinstance(ready, frames.Ready):
                await process.kill()
                reason = "The session process did not start."
                await self._publish(m.Status(execution_state="dead", reason=reason), parent)
                return None
            self._ready = ready
            log.info("session %s: process %d started", self.session, process.pid)
            self._reader = asyncio.create_task(
                self._read_frames(process), name=f"session-{self.session}-frames"
            )
            if self._settings.memory_limit_mb:
                self._spawn_task(self._watch_memory(process))
            count, reason = ready.execution_count, ""
            if restoring:
                restored_count, reason, alive = await self.cp.load_into(
                    process, self._ask, self._settings.start_timeout, self._last_seq
                )
                if not alive:
                    return None  # it died loading the checkpoint; its end is reported
                count = restored_count or count
            self._process = process
            self.execution_count = count
            if announce_idle or restoring:
                await self._publish(m.Status(execution_state="idle", reason=reason), parent)
            return process

    async def _ask(self, process: SessionProcess, frame: Any, timeout: float) -> Any:
        """Send `frame` and wait for the frame that answers it; None if the process ended or
        did not answer in time (a checkpoint is first interrupted; then the process is
        stopped, reported as a fault)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._answers[frame.id] = future
        try:
            await process.pipe.send(frame)
            answer = await asyncio.wait_for(asyncio.shield(future), timeout)
        except (ConnectionError, OSError):
            return None
        except TimeoutError:
            answer = None
            if isinstance(frame, frames.Checkpoint):
                await process.pipe.send(frames.Interrupt(id=frame.id))
                with contextlib.suppress(TimeoutError):
                    answer = await asyncio.wait_for(asyncio.shield(future), INTERRUPT_GRACE)
            if answer is None:
                what = "save" if isinstance(frame, frames.Checkpoint) else "load"
                self._endings[process.pid] = died(
                    f"did not {what} its checkpoint within {timeout:g} s and was stopped"
                )
                process.signal(signal.SIGKILL)
                return None
        finally:
            self._answers.pop(frame.id, None)
        return None if isinstance(answer, Ending) else answer

    async def _end_process(self, ending: Ending) -> None:
        async with self._lifecycle:
            process = self._process
            if process is None:
                return
            self._endings[process.pid] = ending
            await process.kill()
            reader = self._reader
        # The frame reader sees the end of the pipe and settles what was waiting on it.
        if reader is not None:
            await asyncio.wait_for(asyncio.shield(reader), self._settings.start_timeout)

    async def _read_frames(self, process: SessionProcess) -> None:
        while True:
            try:
                frame = await process.pipe.receive()
            except frames.FrameError as exc:
                # The pipe cannot be trusted past a bad frame: stop the process.
                self._stop_misbehaving(process, exc)
                break
            if frame is None:
                break
            if isinstance(frame, frames.Output):
                await self._publish_output(frame)
            elif isinstance(frame, frames.Done):
                try:
                    reply = msgspec.convert(frame.content, m.ExecuteReply)
                except msgspec.ValidationError as exc:
                    self._stop_misbehaving(process, exc)
                    continue
                if self._done is not None and not self._done.done():
                    self._done.set_result(reply)
            elif isinstance(frame, frames.Answer):
                future = self._answers.get(frame.id)
                if future is not None and not future.done():
                    future.set_result(frame.content)
            else:  # Checkpointed, Restored: the frame is the answer
                future = self._answers.get(frame.id)
                if future is not None and not future.done():
                    future.set_result(frame)
        await self._process_ended(process)

    def _stop_misbehaving(self, process: SessionProcess, error: Exception) -> None:
        self._drops.drop(f"session process {process.pid}", error, self.session)
        self._endings[process.pid] = died("sent a malformed message and was stopped")
        process.signal(signal.SIGKILL)

    async def _publish_output(self, frame: frames.Output) -> None:
        content_type = m.CONTENT_TYPES.get(frame.msg_type)
        parent = self._parents.get(frame.id)
        if content_type is None or content_type not in m.FEED_TYPES or parent is None:
            self._drops.drop(
                self._feed, ValueError(f"unexpected output {frame.msg_type}"), frame.id
            )
            return
        try:
            content = msgspec.convert(frame.content, content_type)
        except msgspec.ValidationError as exc:
            self._drops.drop(self._feed, exc, frame.id)
            return
        await self._publish(content, parent)

    async def _process_ended(self, process: SessionProcess) -> None:
        try:
            status = await asyncio.wait_for(asyncio.shield(process.exited), 2.0)
        except TimeoutError:
            status = None
        ending = self._endings.pop(process.pid, None) or died(describe_exit(status))
        log.log(
            logging.INFO if ending.expected else logging.WARNING,
            "session %s: process %d ended: %s", self.session, process.pid, ending.message,
        )  # fmt: skip
        # Answers first: a restore in progress holds the lifecycle lock while it waits.
        for future in self._answers.values():
            if not future.done():
                future.set_result(ending)
        async with self._lifecycle:
            if self._process is process:
                self._process = None
        if not ending.expected and not self._abandoned:  # its variables are lost: so is the
            # checkpoint of them
            try:
                await self.cp.forget()
            except BusUnavailable as exc:
                log.warning("session %s: cannot delete its checkpoint (%s)", self.session, exc)
        if self._done is not None and not self._done.done():
            self._done.set_result(ending)
        elif not ending.expected:
            await self._publish(m.Status(execution_state="dead", reason=ending.message), None)

    async def _watch_memory(self, process: SessionProcess) -> None:
        limit = self._settings.memory_limit_mb * 1024 * 1024
        while not process.exited.done():
            rss = resident_bytes(process.pid)
            if rss is None:
                return
            if rss > limit:
                self._endings[process.pid] = died(
                    f"went over the memory limit of {self._settings.memory_limit_mb} MiB "
                    f"({rss // 2**20} MiB resident) and was killed"
                )
                process.signal(signal.SIGKILL)
                return
            await asyncio.sleep(self._settings.memory_poll_interval)

    # -- the feed -------------------------------------------------------------------------
    def _remember_parent(self, header: Header) -> None:
        self._parents[header.msg_id] = header
        while len(self._parents) > 64:
            self._parents.popitem(last=False)

    def _message(self, content: m.Content, parent: Header | None) -> bytes:
        if isinstance(content, m.Status):
            self.state = content.execution_state
        if parent is None or parent.is_empty:
            msg = new_message(content, session=self.session, username=KERNEL_USERNAME)
        else:
            msg = reply_to(parent, content)
        return codec.encode(msg)

    def _announce(self, content: m.Content, parent: Header) -> None:
        """Publish an execution's ``busy`` or ``execute_input`` with the next feed message
        (its first output, or its reply), or after `ANNOUNCE_WITHIN` seconds if that comes
        first. Most executions take a millisecond: their messages then reach the feed
        together, and each watching socket gets them in one write, not two (with many
        watchers, those writes are most of the cost). Outputs are never held."""
        self._held.append(self._message(content, parent))
        if self._held_until is None:
            self._held_until = asyncio.get_running_loop().call_later(
                ANNOUNCE_WITHIN, self._held_due
            )

    def _held_due(self) -> None:
        self._held_until = None
        self._spawn_task(self._publish_held())

    async def _publish_held(self) -> None:
        async with self._publishing:
            await self._send_held()

    async def _send_held(self) -> None:
        if self._held_until is not None:
            self._held_until.cancel()
            self._held_until = None
        held, self._held = self._held, []
        for data in held:
            await self._send(data)

    async def _publish(self, content: m.Content, parent: Header | None) -> None:
        """Publish one feed message (after any held announcement), retrying while the bus is
        away so nothing is lost."""
        if self._abandoned:
            return
        data = self._message(content, parent)
        async with self._publishing:
            if self._held:
                await self._send_held()
            await self._send(data)

    async def _send(self, data: bytes) -> None:
        delay = 0.05
        while not self._abandoned:
            try:
                self._last_seq = await self._bus.publish(self._feed, data)
                return
            except BusUnavailable as exc:
                log.warning("session %s: cannot publish (%s); retrying", self.session, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


def resident_bytes(pid: int) -> int | None:
    """The resident memory of process `pid` (a /proc read: never blocks), None if it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None
