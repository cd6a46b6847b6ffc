"""One hosted session on a worker: its process, its queue of executions, and its feed.

A `SessionHost` turns requests into work for its session process and the process's frames
into feed messages. Executions run one at a time in arrival order; completion, inspection,
interrupt and restart are handled at once, even while an execution runs.

Faults are part of the design, not exceptions to it:

- the process dies (os._exit, a segfault, the memory limit): the running execution gets an
  ``error`` output and an ``execute_reply`` with status ``error`` that say what happened, the
  feed says ``dead`` with the reason, and the next request starts a fresh process;
- an execution fails with ``stop_on_error``: the executions queued behind it are answered with
  status ``aborted``, as in Jupyter;
- an output that fails validation is logged, counted and dropped; a frame that cannot be
  decoded, or an invalid reply, stops the process (the pipe can no longer be trusted).

The namespace outlives the process (`checkpointing`): it is saved between executions, loaded
by the first process a worker starts for the session, and a session idle long enough is
hibernated: saved, its process ended, and handed back (`release`) so that it holds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from cellbus_protocol import codec
from cellbus_protocol import messages as m
from cellbus_protocol.bus import Bus, QueueItem
from cellbus_protocol.envelope import Header, Message, reply_to

from . import frames
from .checkpoints import CheckpointStore, Loaded
from .config import KernelSettings
from .session_process import KERNEL_USERNAME, Ending, ProcessHost, died
from .spawner import Spawner
from .takeover import feed_history, worker_lost_message

__all__ = ["KERNEL_USERNAME", "WORKER_STOPPED", "Ending", "SessionHost", "died"]

log = logging.getLogger(__name__)

RESTARTED = Ending("SessionRestarted", "The session was restarted.", expected=True)
SHUT_DOWN = Ending("SessionShutDown", "The session was shut down.", expected=True)
WORKER_STOPPED = Ending("WorkerStopped", "The kernel worker hosting it stopped.", expected=True)
STOPPED_MID_EXECUTION = Ending(
    "WorkerStopped",
    "The kernel worker hosting the session stopped before this execution ended. The session "
    "continues on another worker from its last checkpoint.",
    expected=True,
)
HIBERNATED = Ending("SessionHibernated", "The session was hibernated.", expected=True)
MOVED = Ending("WorkerStopped", "The session moved to another worker.", expected=True)
LEASE_LOST = Ending("LeaseLost", "Another worker hosts the session now.", expected=True)

Claimed = tuple[QueueItem, Message]
Release = Callable[["SessionHost", str], Awaitable[None]]
"""How a host tells its worker that it stops hosting: ``hibernated``, ``shut down`` or
``lost`` (the lease)."""


@dataclass
class _Pending:
    item: QueueItem
    msg: Message
    lost: bool = False  # it was running on a worker that died: answered, not run again


class SessionHost(ProcessHost):
    """One session hosted by this worker."""

    def __init__(
        self,
        session: str,
        *,
        bus: Bus,
        spawner: Spawner,
        settings: KernelSettings,
        ack: Callable[[QueueItem], Awaitable[None]],
        drops: codec.DropCounter,
        checkpoints: CheckpointStore | None = None,
        release: Release | None = None,
    ) -> None:
        super().__init__(
            session,
            bus=bus,
            spawner=spawner,
            settings=settings,
            drops=drops,
            checkpoints=checkpoints,
        )
        self._ack = ack
        self._queue: deque[_Pending] = deque()
        self._queued = asyncio.Event()
        self._running: _Pending | None = None
        self._not_running = asyncio.Event()
        self._not_running.set()
        self._runner: asyncio.Task[None] | None = None
        self._release = release
        self._last_activity = time.monotonic()  # the last request, or the end of an execution
        self._direct = 0  # direct requests being handled
        self._draining = False
        self.lease_deadline = math.inf
        """When (time.monotonic) this worker's lease may have expired: past it, the host stops
        (another worker may have taken the session over)."""

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Start the session process (restoring its checkpoint, if the worker found one),
        then the execution loop."""
        if self.closed:
            return
        await self._ensure_process(None)
        if not self.closed:
            self._runner = asyncio.create_task(
                self._run_executions(), name=f"session-{self.session}"
            )

    async def close(self, ending: Ending = SHUT_DOWN, parent: Header | None = None) -> None:
        """End the process and stop serving: queued executions are aborted, the running one
        ends with `ending`, and the feed says ``dead``."""
        if self.closed:
            return
        self.closed = True
        await self._abort_queued()
        await self._end_process(ending)
        with contextlib.suppress(TimeoutError):  # let the ended execution publish its reply
            await asyncio.wait_for(self._not_running.wait(), self._settings.start_timeout)
        await self._publish(m.Status(execution_state="dead", reason=ending.message), parent)
        if self._runner is not None and self._runner is not asyncio.current_task():
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._cancel_tasks()

    async def drain(self, timeout: float) -> bool:
        """The worker is stopping. With checkpoints: the running execution gets `timeout`
        seconds to end (then it is stopped), the namespace is saved, the process ended and
        the feed says ``hibernated``; queued executions stay on the queue for the next host.
        True: hand the session over. Without checkpoints: as `close` (nothing to hand over)."""
        if not self.cp.enabled:
            await self.close(WORKER_STOPPED)
            return False
        self._draining = True
        self._queued.set()
        runner = self._runner
        if runner is not None:
            done, _ = await asyncio.wait({runner}, timeout=timeout)
            if not done:
                await self._end_process(STOPPED_MID_EXECUTION)
                await asyncio.wait({runner}, timeout=self._settings.start_timeout)
                runner.cancel()
        saved = await self._save()
        self.closed = True
        await self._end_process(MOVED)
        how = "." if saved else ", from its last checkpoint."
        reason = f"The kernel worker hosting it stopped; the session moves to another worker{how}"
        await self._publish(m.Status(execution_state="hibernated", reason=reason), None)
        self._cancel_tasks()
        return True

    def abandon(self) -> None:
        """This worker's lease is gone (another worker may host the session): stop at once,
        publish nothing more and leave every request on the queue for the new host."""
        self.closed = self._abandoned = True
        if self._process is not None:
            self._endings[self._process.pid] = LEASE_LOST
            self._process.signal(signal.SIGKILL)
        if self._runner is not None and self._runner is not asyncio.current_task():
            self._runner.cancel()
        self._cancel_tasks()

    def info(self) -> dict[str, Any]:
        """State, the running and queued executions with who sent them, execution count."""

        def describe(pending: _Pending) -> dict[str, Any]:
            header = pending.msg.header
            return {"msg_id": header.msg_id, "username": header.username, "date": header.date}

        return {
            "session": self.session,
            "state": self.state,
            "execution_count": self.execution_count,
            "running": describe(self._running) if self._running else None,
            "queued": [describe(p) for p in self._queue],
            "pid": self._process.pid if self._process else None,
        }

    # -- requests -------------------------------------------------------------------------
    def submit(self, item: QueueItem, msg: Message) -> None:
        """Take one request; executions queue, everything else is handled at once."""
        self._last_activity = time.monotonic()
        if msg.msg_type == "execute_request":
            self._queue.append(_Pending(item, msg))
            self._queued.set()
            cell_id = cell_of(msg)
            if cell_id is not None:  # held: it goes out with the next feed message, or soon
                header = msg.header
                run = m.CellRun(cell_id=cell_id, msg_id=header.msg_id, username=header.username)
                self._announce(run, header)
            return
        handler = {
            "complete_request": self._answer_from_process,
            "inspect_request": self._answer_from_process,
            "interrupt_request": self._interrupt,
            "restart_request": self._restart,
            "shutdown_request": self._shutdown,
            "kernel_info_request": self._kernel_info,
            "session_info_request": self._session_info,
        }.get(msg.msg_type)
        if handler is None:
            self._drops.drop(self._feed, ValueError(f"{msg.msg_type} is not a request"), item.id)
            self._spawn_task(self._ack(item))
            return
        self._spawn_task(self._handle_direct(handler, item, msg))

    async def _handle_direct(
        self,
        handler: Callable[[Message], Awaitable[m.Reply]],
        item: QueueItem,
        msg: Message,
    ) -> None:
        self._direct += 1
        try:
            try:
                content = await handler(msg)
            except Exception as exc:
                log.exception("session %s: %s %s failed", self.session, msg.msg_type, msg.msg_id)
                content = m.DIRECT_REPLY[msg.msg_type](
                    status="error", ename=type(exc).__name__, evalue=str(exc)
                )
            try:
                await self._bus.reply(item, codec.encode(reply_to(msg, content)))
            finally:
                await self._ack(item)
        finally:
            self._direct -= 1
            self._last_activity = time.monotonic()

    async def adopt(self, claimed: list[Claimed]) -> list[Claimed]:
        """Requests that the session's previous worker had taken and not finished, oldest
        first (see `takeover`): an execution that ended is acknowledged, one that was running
        is answered with ``WorkerLost``; the rest are returned, to be routed as usual."""
        executions = {msg.msg_id for _, msg in claimed if msg.msg_type == "execute_request"}
        if not executions:
            return claimed
        pending = self.cp.pending
        after = 0
        if isinstance(pending, Loaded) and pending.header.session == self.session:
            after = pending.header.feed_seq
        history = await feed_history(self._bus, self.session, executions, after)
        to_route = []
        for item, msg in claimed:
            if msg.msg_id in history.replied:
                log.info("session %s: %s had ended before the takeover", self.session, msg.msg_id)
                await self._ack(item)
            elif msg.msg_id in history.started:
                log.warning("session %s: %s was lost with its worker", self.session, msg.msg_id)
                self._queue.append(_Pending(item, msg, lost=True))
                self._queued.set()
            else:
                to_route.append((item, msg))
        return to_route

    async def _answer_from_process(self, msg: Message) -> m.Reply:
        reply_type = m.DIRECT_REPLY[msg.msg_type]
        process = await self._ensure_process(msg.header)
        if process is None:
            return reply_type(status="error", ename="SessionUnavailable", evalue=self.state)
        request = msg.content
        frame: frames.Complete | frames.Inspect
        if isinstance(request, m.CompleteRequest):
            frame = frames.Complete(id=msg.msg_id, code=request.code, cursor_pos=request.cursor_pos)
        else:
            frame = frames.Inspect(
                id=msg.msg_id,
                code=request.code,
                cursor_pos=request.cursor_pos,
                detail_level=request.detail_level,
            )
        future = asyncio.get_running_loop().create_future()
        self._answers[msg.msg_id] = future
        try:
            await process.pipe.send(frame)
            answer = await asyncio.wait_for(future, self._settings.answer_timeout)
        finally:
            self._answers.pop(msg.msg_id, None)
        if isinstance(answer, Ending):
            return reply_type(status="error", ename=answer.ename, evalue=answer.evalue)
        return msgspec.convert(answer, reply_type)

    async def _interrupt(self, msg: Message) -> m.Reply:
        running = self._running
        if self._process is not None and running is not None:
            log.info("session %s: interrupt by %s", self.session, msg.header.username)
            await self._process.pipe.send(frames.Interrupt(id=running.msg.msg_id))
        return m.InterruptReply()

    async def _restart(self, msg: Message) -> m.Reply:
        log.info("session %s: restart by %s", self.session, msg.header.username)
        await self._publish(m.Status(execution_state="restarting"), msg.header)
        await self._abort_queued()
        await self._end_process(RESTARTED)
        await self._not_running.wait()
        await self.cp.forget()  # the user asked for a fresh namespace
        process = await self._ensure_process(msg.header)
        if process is None:
            return m.RestartReply(status="error", ename="SessionUnavailable", evalue=self.state)
        return m.RestartReply()

    async def _shutdown(self, msg: Message) -> m.Reply:
        """End the session and delete its checkpoint; the worker lets go of it before the
        reply, so the next request starts it afresh."""
        log.info("session %s: shutdown by %s", self.session, msg.header.username)
        await self.close(SHUT_DOWN, msg.header)
        await self.cp.forget()
        if self._release is not None:
            await self._release(self, "shut down")
        return m.ShutdownReply(restart=msg.content.restart)

    async def _kernel_info(self, msg: Message) -> m.Reply:
        ready = self._ready
        language = m.LanguageInfo(version=ready.python_version if ready else "")
        return m.KernelInfoReply(
            implementation_version=ready.ipython_version if ready else "",
            language_info=language,
            banner=ready.banner if ready else "",
        )

    async def _session_info(self, msg: Message) -> m.Reply:
        return msgspec.convert(self.info(), m.SessionInfoReply)

    # -- executions -----------------------------------------------------------------------
    async def _run_executions(self) -> None:
        while not self._draining:
            if not self._queue:
                self._queued.clear()
                if await self._idle():
                    return  # hibernated
                continue
            if time.monotonic() > self.lease_deadline:
                log.error("session %s: the lease may have expired; stopping", self.session)
                if self._release is not None:
                    await self._release(self, "lost")
                return
            if self.cp.overdue() and self._process is not None:
                # A session that never idles: save between two executions (its reply and
                # `idle` are out, the next has not started).
                await self._save()
                if self._draining or not self._queue:
                    continue
            pending = self._queue.popleft()
            self._running = pending
            self._not_running.clear()
            failed = False
            try:
                if pending.lost:
                    await self._reply_lost(pending)
                else:
                    failed = await self._execute(pending)
            except Exception:
                log.exception("session %s: execution %s failed", self.session, pending.msg.msg_id)
            finally:
                self._running = None
                self._done = None
                self._not_running.set()
                self._last_activity = time.monotonic()
                # After `_running` is cleared, so a client that sees the aborted replies and
                # asks for `info` finds nothing running; before the ack, so a worker that dies
                # in between leaves the failed execution to be answered as lost.
                if failed and pending.msg.content.stop_on_error and not self._draining:
                    await self._abort_queued()
                if not self._abandoned:
                    await self._ack(pending.item)

    async def _reply_lost(self, pending: _Pending) -> None:
        """An execution that was running when its worker died: it is not run again."""
        evalue = worker_lost_message(self.cp.restored_from, self.cp.fresh_because)
        error = m.Error(ename="WorkerLost", evalue=evalue, traceback=[evalue])
        await self._publish(error, pending.msg.header)
        reply = m.ExecuteReply(
            status="error", ename=error.ename, evalue=evalue, traceback=error.traceback
        )
        await self._publish(reply, pending.msg.header)
        await self._publish(m.Status(execution_state="idle"), pending.msg.header)

    async def _execute(self, pending: _Pending) -> bool:
        """Run one execution and publish its messages; True if it ended in an error."""
        msg = pending.msg
        request: m.ExecuteRequest = msg.content
        self._remember_parent(msg.header)
        self.cp.postpone()
        process = await self._ensure_process(msg.header, announce_idle=False)
        self._announce(m.Status(execution_state="busy"), msg.header)
        if process is None:
            result: m.ExecuteReply | Ending = Ending(
                "SessionUnavailable", "The session process could not be started.", lost_state=False
            )
        else:
            if not request.silent:
                counted = request.store_history  # not counted: no number, as in the reply
                count = self.execution_count if counted else None
                self._announce(m.ExecuteInput(code=request.code, execution_count=count), msg.header)
            self._done = asyncio.get_running_loop().create_future()
            await process.pipe.send(
                frames.Execute(
                    id=msg.msg_id,
                    code=request.code,
                    silent=request.silent,
                    store_history=request.store_history,
                    user_expressions=request.user_expressions,
                )
            )
            result = await self._done
        if isinstance(result, Ending):
            reply = m.ExecuteReply(
                status="error", ename=result.ename, evalue=result.evalue, traceback=[result.evalue]
            )
            await self._publish(
                m.Error(ename=reply.ename, evalue=reply.evalue, traceback=reply.traceback),
                msg.header,
            )
        else:
            reply = result
            settings = self._settings
            self.cp.ran(msg.header, settings.checkpoint_delay, settings.checkpoint_interval)
        if reply.execution_count is not None:
            self.execution_count = reply.execution_count + 1
        await self._publish(reply, msg.header)
        if isinstance(result, Ending):
            if not result.expected:
                await self._publish(
                    m.Status(execution_state="dead", reason=result.message), msg.header
                )
        else:
            await self._publish(m.Status(execution_state="idle"), msg.header)
        return reply.status == "error"

    # -- between executions ---------------------------------------------------------------
    async def _idle(self) -> bool:
        """Wait for an execution; meanwhile save the namespace when its time comes, and
        hibernate when the session has been idle long enough. True once hibernated."""
        now = time.monotonic()
        due = [t for t in (self.cp.due, self._hibernation_due()) if t is not None]
        try:
            async with asyncio.timeout(max(0.0, min(due) - now) if due else None):
                await self._queued.wait()
            return False
        except TimeoutError:
            pass
        if self._queue or self._draining:
            return False
        now = time.monotonic()
        if self.cp.due is not None and now >= self.cp.due:
            if self._process is None:
                self.cp.postpone()  # nothing to save: the process is gone
                return False
            await self._save()
            return False
        due_at = self._hibernation_due()
        if due_at is not None and now >= due_at:
            return await self._hibernate()
        return False

    def _hibernation_due(self) -> float | None:
        after = self._settings.hibernate_after
        if not self.cp.enabled or after <= 0:
            return None
        return self._last_activity + after

    async def _hibernate(self) -> bool:
        """Save the namespace, end the process and stop hosting; the session's next request
        (`KernelClient.ensure_session`) has a worker host it again, restored."""
        began = self._last_activity
        if self._direct or self._queue:
            self._last_activity = time.monotonic()
            return False
        saved = await self._save()
        if not saved and self._process is not None:  # its state would be lost: keep it up
            log.warning("session %s: not hibernated: its namespace was not saved", self.session)
            self._last_activity = time.monotonic()
            return False
        if self._direct or self._queue or self._last_activity != began:
            return False  # a request came while it was being saved
        self.closed = True
        await self._end_process(HIBERNATED)
        idle = _duration(self._settings.hibernate_after)
        reason = (
            f"The session was idle for {idle}: its namespace is saved and its process ended. "
            "Its next request restores it."
        )
        await self._publish(m.Status(execution_state="hibernated", reason=reason), None)
        log.info("session %s hibernated", self.session)
        self._cancel_tasks()
        if self._release is not None:
            await self._release(self, "hibernated")
        return True

    async def _abort_queued(self) -> None:
        while self._queue:
            pending = self._queue.popleft()
            await self._publish(m.ExecuteReply(status="aborted"), pending.msg.header)
            await self._ack(pending.item)


def cell_of(msg: Message) -> str | None:
    """The worksheet cell an execution runs (``metadata.cellbus.cell_id``, set by
    ``cell.evaluate``), or None for one that names no cell."""
    cellbus = msg.metadata.get("cellbus")
    if isinstance(cellbus, dict):
        cell_id = cellbus.get("cell_id")
        if isinstance(cell_id, str):
            return cell_id
    return None


def _duration(seconds: float) -> str:
    """900 -> '15 minutes', 1.5 -> '1.5 seconds'."""
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"
