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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from cellbus_protocol import codec, keys
from cellbus_protocol import messages as m
from cellbus_protocol.bus import Bus, QueueItem
from cellbus_protocol.envelope import Header, Message, new_message, reply_to
from cellbus_protocol.errors import BusUnavailable

from . import frames
from .config import KernelSettings
from .spawner import SessionProcess, Spawner, describe_exit

log = logging.getLogger(__name__)

KERNEL_USERNAME = "kernel"
"""The username on feed messages that no request caused (a process starting or dying)."""
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


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


RESTARTED = Ending("SessionRestarted", "The session was restarted.", expected=True)
SHUT_DOWN = Ending("SessionShutDown", "The session was shut down.", expected=True)
WORKER_STOPPED = Ending("WorkerStopped", "The kernel worker hosting it stopped.", expected=True)


def died(how: str) -> Ending:
    """A fault: ``died("exited with code 3")``."""
    return Ending("SessionProcessDied", f"The session process {how}.")


@dataclass
class _Pending:
    item: QueueItem
    msg: Message


class SessionHost:
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
    ) -> None:
        self.session = session
        self.state: m.ExecutionState = "starting"
        self.execution_count = 1
        self._feed = keys.feed(session)
        self._bus = bus
        self._spawner = spawner
        self._settings = settings
        self._ack = ack
        self._drops = drops
        self._process: SessionProcess | None = None
        self._ready: frames.Ready | None = None
        self._lifecycle = asyncio.Lock()
        self._queue: deque[_Pending] = deque()
        self._queued = asyncio.Event()
        self._running: _Pending | None = None
        self._not_running = asyncio.Event()
        self._not_running.set()
        self._done: asyncio.Future[m.ExecuteReply | Ending] | None = None
        self._answers: dict[str, asyncio.Future[dict[str, Any] | Ending]] = {}
        self._parents: OrderedDict[str, Header] = OrderedDict()
        self._endings: dict[int, Ending] = {}  # why we killed a process, by pid
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self.closed = False

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Start the session process and the execution loop."""
        self._runner = asyncio.create_task(self._run_executions(), name=f"session-{self.session}")
        await self._ensure_process(None)

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
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()

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
        if msg.msg_type == "execute_request":
            self._queue.append(_Pending(item, msg))
            self._queued.set()
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

    def _spawn_task(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session %s: task failed", self.session, exc_info=task.exception())

    async def _handle_direct(
        self,
        handler: Callable[[Message], Awaitable[m.Reply]],
        item: QueueItem,
        msg: Message,
    ) -> None:
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
        process = await self._ensure_process(msg.header)
        if process is None:
            return m.RestartReply(status="error", ename="SessionUnavailable", evalue=self.state)
        return m.RestartReply()

    async def _shutdown(self, msg: Message) -> m.Reply:
        log.info("session %s: shutdown by %s", self.session, msg.header.username)
        await self.close(SHUT_DOWN, msg.header)
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
        while True:
            if not self._queue:
                self._queued.clear()
                await self._queued.wait()
                continue
            pending = self._queue.popleft()
            self._running = pending
            self._not_running.clear()
            try:
                await self._execute(pending)
            except Exception:
                log.exception("session %s: execution %s failed", self.session, pending.msg.msg_id)
            finally:
                self._running = None
                self._done = None
                self._not_running.set()
                await self._ack(pending.item)

    async def _execute(self, pending: _Pending) -> None:
        msg = pending.msg
        request: m.ExecuteRequest = msg.content
        self._remember_parent(msg.header)
        process = await self._ensure_process(msg.header, announce_idle=False)
        await self._publish(m.Status(execution_state="busy"), msg.header)
        if process is None:
            result: m.ExecuteReply | Ending = Ending(
                "SessionUnavailable", "The session process could not be started.", lost_state=False
            )
        else:
            if not request.silent:
                counted = request.store_history  # not counted: no number, as in the reply
                count = self.execution_count if counted else None
                await self._publish(
                    m.ExecuteInput(code=request.code, execution_count=count), msg.header
                )
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
        if reply.status == "error" and request.stop_on_error:
            await self._abort_queued()

    async def _abort_queued(self) -> None:
        while self._queue:
            pending = self._queue.popleft()
            await self._publish(m.ExecuteReply(status="aborted"), pending.msg.header)
            await self._ack(pending.item)

    # -- the process ----------------------------------------------------------------------
    async def _ensure_process(
        self, parent: Header | None, *, announce_idle: bool = True
    ) -> SessionProcess | None:
        """The running process, started first if there is none (``starting``, then ``idle``
        unless the caller goes on to ``busy``)."""
        async with self._lifecycle:
            if self._process is not None or self.closed:
                return self._process
            await self._publish(m.Status(execution_state="starting"), parent)
            try:
                process = await self._spawner.spawn(
                    self._settings.output_cap, self._settings.session_user
                )
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
            self._process, self._ready = process, ready
            self.execution_count = ready.execution_count
            log.info("session %s: process %d started", self.session, process.pid)
            self._reader = asyncio.create_task(
                self._read_frames(process), name=f"session-{self.session}-frames"
            )
            if self._settings.memory_limit_mb:
                self._spawn_task(self._watch_memory(process))
            if announce_idle:
                await self._publish(m.Status(execution_state="idle"), parent)
            return process

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
        async with self._lifecycle:
            if self._process is process:
                self._process = None
        for future in self._answers.values():
            if not future.done():
                future.set_result(ending)
        if self._done is not None and not self._done.done():
            self._done.set_result(ending)
        elif not ending.expected:
            await self._publish(m.Status(execution_state="dead", reason=ending.message), None)

    async def _watch_memory(self, process: SessionProcess) -> None:
        limit = self._settings.memory_limit_mb * 1024 * 1024
        while self._process is process:
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

    async def _publish(self, content: m.Content, parent: Header | None) -> None:
        """Publish one feed message, retrying while the bus is away so nothing is lost."""
        if isinstance(content, m.Status):
            self.state = content.execution_state
        if parent is None or parent.is_empty:
            msg = new_message(content, session=self.session, username=KERNEL_USERNAME)
        else:
            msg = reply_to(parent, content)
        data = codec.encode(msg)
        delay = 0.05
        while True:
            try:
                await self._bus.publish(self._feed, data)
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
