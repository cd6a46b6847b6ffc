"""A hosted session's process, as its worker sees it: starting it, its frames, why it ended.

`ProcessManager` owns one session's process on the worker: it starts it from the template
(loading the session's checkpoint into the first one, see `checkpointing`), sends it frames
and waits for their answers, turns its output frames into feed messages (through the
session's `FeedPublisher`), watches its memory, and learns why it ended (`Ending`). It knows
nothing of requests or of the session's life on the worker: the `session.Session` that owns
it says whether a new process may start (`may_start`).

Why a process ended is told to users: in the ``error`` of the execution it ended, its
``execute_reply``, and a ``session_state`` ``dead`` for a fault. A fault loses the namespace: the
checkpoint is deleted with it, so that no later restore brings back what the users lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from cellbus_protocol import codec
from cellbus_protocol import messages as m
from cellbus_protocol.envelope import Header, new_msg_id
from cellbus_protocol.errors import BusUnavailable

from . import frames
from .checkpointing import SessionCheckpoints
from .config import KernelSettings
from .feed import FeedPublisher
from .parallel import ParallelHost
from .spawner import SessionProcess, Spawner, describe_exit
from .tasks import TaskSet
from .workspace import IDLE_WATCH_EVERY, WorkspaceGuard

log = logging.getLogger(__name__)

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
INTERRUPT_GRACE = 5.0
"""Seconds a checkpoint that overran its time gets to stop after it is interrupted."""
EXIT_STATUS_WAIT = 2.0
"""Seconds to wait for the template to report the exit status of a process whose pipe ended."""


@dataclass(frozen=True)
class Ending:
    """Why a session process ended, as users are told: in the ``error`` of the execution it
    ended, its ``execute_reply``, and a ``session_state`` ``dead`` (unless a restart follows)."""

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


KERNEL_OUTPUTS = frozenset(
    {
        "stream", "display_data", "update_display_data", "execute_result", "error",
        "clear_output", "comm_open", "comm_msg", "comm_close",
    }
)  # fmt: skip
"""The feed messages a session process may publish (its `frames.Output`): user code runs
there, so any other type (a status, a reply, a cellbus event, an ``input_request``) is
dropped, never forged onto the feed."""
MAX_PROMPT = 4096
"""The longest ``input()`` prompt published (longer ones are cut)."""


@dataclass(frozen=True)
class AwaitedInput:
    """An ``input_request`` on the feed that its execution waits to have answered."""

    msg_id: str  # the input_request's
    username: str  # who ran the execution: the one person who may answer
    execution: str  # the execution's msg_id
    seq: int  # the process's number for this wait (`stdin.Stdin`)


Answer = Any
"""What a process answers to a frame: a frame (Checkpointed, Restored), an answer's content,
or the `Ending` of a process that ended first."""


class ProcessManager:
    """One session's process on this worker."""

    def __init__(
        self,
        session: str,
        *,
        spawner: Spawner,
        settings: KernelSettings,
        drops: codec.DropCounter,
        feed: FeedPublisher,
        checkpoints: SessionCheckpoints,
        may_start: Callable[[], bool],
        parallel: ParallelHost | None = None,
    ) -> None:
        self.session = session
        self._parallel = parallel  # this worker's Dask workers (`parallel`), if any
        self.execution_count = 1
        """The count the next execution gets."""
        self.ready: frames.Ready | None = None
        """What the last process said when it started (versions, banner)."""
        self._spawner = spawner
        self._settings = settings
        self._drops = drops
        self._feed = feed
        self._checkpoints = checkpoints
        self._may_start = may_start
        self._process: SessionProcess | None = None
        self._lock = asyncio.Lock()  # one start or end at a time
        self._done: asyncio.Future[m.ExecuteReply | Ending] | None = None
        self._executing: Header | None = None  # the request of the running execution
        self._running = asyncio.Event()  # set while an execution runs (`_watch_workspace`)
        self.awaited_input: AwaitedInput | None = None
        """The input the running execution waits for, if it does."""
        self._answers: dict[str, asyncio.Future[Answer]] = {}
        self._parent: Header | None = None
        """The request whose code the process runs or ran last (an execution, or a client's
        comm message): the only parent its output frames may name (`_publish_output`)."""
        self._endings: dict[int, Ending] = {}  # why we killed a process, by pid
        self._reader: asyncio.Task[None] | None = None
        self._tasks = TaskSet(f"session {session} process")
        spec = spawner.sandbox
        self.workspace = WorkspaceGuard(Path(spec.workspaces_dir) / session, spec.quota_mb)
        """The session's files and their quota (`workspace`)."""
        self._file_limits: dict[int, int] = {}  # the soft limit last sent, by pid
        self._early: asyncio.Future[tuple[SessionProcess, frames.Ready | None]] | None = None
        """A process started ahead by `start_early`, until `ensure` takes it."""

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None

    # -- starting -------------------------------------------------------------------------
    async def ensure(
        self, parent: Header | None, *, announce_idle: bool = True
    ) -> SessionProcess | None:
        """The running process, started first if there is none (``starting``, then ``idle``
        unless the caller goes on to ``busy``). The first process a worker starts for the
        session loads its checkpoint: ``restoring``, then ``idle`` with the outcome."""
        async with self._lock:
            if self._process is not None or not self._may_start():
                return self._process
            restoring = self._checkpoints.pending is not None
            started = await self._spawn(parent, restoring)
            if started is None:
                return None
            process, ready = started
            count, reason = ready.execution_count, ""
            if restoring:
                restored_count, reason, alive = await self._checkpoints.load_into(
                    process, self.ask, self._settings.start_timeout, self._feed.last_seq
                )
                if not alive:
                    return None  # it died loading the checkpoint; its end is reported
                count = restored_count or count
            self._process = process
            self.execution_count = count
            if announce_idle or restoring:
                await self._feed.publish(m.Status(execution_state="idle", reason=reason), parent)
            return process

    def start_early(self) -> None:
        """Start the process now, while the worker still has round trips to make before the
        session may use it (registry, load, its checkpoint, its queue): the next `ensure`
        takes it, and a process nobody took is ended by `close`."""
        if self._process is None and self._early is None and self._may_start():
            self._early = asyncio.ensure_future(self._start())

    async def _start(self) -> tuple[SessionProcess, frames.Ready | None]:
        """A process (the spawner's spare, given this session) and its first frame."""
        process: SessionProcess | None = None
        # The workspace's baseline, measured while the process starts: no code runs before
        # the process is ready, and it only makes the workspace's folder if there is none.
        measured = asyncio.ensure_future(self.workspace.started())
        try:
            settings = self._parallel.session_settings(self.session) if self._parallel else {}
            process = await self._spawner.spawn(
                self.session, self._settings.output_cap, parallel=settings
            )
            async with asyncio.timeout(self._settings.start_timeout):
                ready = await process.pipe.receive()
            await measured
        except BaseException:
            measured.cancel()
            await asyncio.gather(measured, return_exceptions=True)
            if process is not None:  # not to be talked to: its pipe is closed
                await process.pipe.close()
            raise
        return process, ready if isinstance(ready, frames.Ready) else None

    async def _spawn(
        self, parent: Header | None, restoring: bool
    ) -> tuple[SessionProcess, frames.Ready] | None:
        """A new process, ready, its frames read; None (and ``dead``) if it did not start."""
        if restoring:
            reason = self._checkpoints.restoring_reason()
            announced: m.Content = m.SessionState(state="restoring", reason=reason)
        else:
            announced = m.Status(execution_state="starting")
        await self._feed.publish(announced, parent)
        early, self._early = self._early, None
        try:
            process, ready = await (early if early is not None else self._start())
        except Exception as exc:
            log.exception("session %s: could not start a process", self.session)
            reason = f"The session process could not be started: {exc}."
            await self._feed.publish(m.SessionState(state="dead", reason=reason), parent)
            return None
        if ready is None:
            await process.kill()
            reason = "The session process did not start."
            await self._feed.publish(m.SessionState(state="dead", reason=reason), parent)
            return None
        self.ready = ready
        log.info("session %s: process %d started", self.session, process.pid)
        self._reader = self._tasks.spawn(
            self._read_frames(process), name=f"session-{self.session}-frames"
        )
        if self._settings.memory_limit_mb:
            self._tasks.spawn(self._watch_memory(process))
        if self.workspace.quota:
            await self._limit_files(process)  # before any code runs
            self._tasks.spawn(self._watch_workspace(process))
        return process, ready

    # -- talking to it --------------------------------------------------------------------
    async def ask(self, process: SessionProcess, frame: Any, timeout: float) -> Answer:
        """Send `frame` and wait for the frame that answers it; None if the process ended or
        did not answer in time (a checkpoint is first interrupted; then the process is
        stopped, reported as a fault)."""
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._answers[frame.id] = future
        try:
            await process.pipe.send(frame)
            answer = await _within(future, timeout)
            if answer is None and isinstance(frame, frames.Checkpoint):
                await process.pipe.send(frames.Interrupt(id=frame.id))
                answer = await _within(future, INTERRUPT_GRACE)
            if answer is None:
                what = "save" if isinstance(frame, frames.Checkpoint) else "load"
                self._endings[process.pid] = died(
                    f"did not {what} its checkpoint within {timeout:g} s and was stopped"
                )
                process.signal(signal.SIGKILL)
        except (ConnectionError, OSError):
            return None
        finally:
            self._answers.pop(frame.id, None)
        return None if isinstance(answer, Ending) else answer

    async def answer(self, process: SessionProcess, frame: frames.Question) -> Answer:
        """The process's answer to a question (completion, inspection...: its content), or
        the `Ending` of a process that ended first; `TimeoutError` past
        CELLBUS_ANSWER_TIMEOUT."""
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._answers[frame.id] = future
        try:
            await process.pipe.send(frame)
            async with asyncio.timeout(self._settings.answer_timeout):
                return await future
        finally:
            self._answers.pop(frame.id, None)

    async def comm(
        self, process: SessionProcess, header: Header, frame: frames.CommIn
    ) -> Ending | None:
        """Have the process handle a client's comm message (what it publishes has `header`
        as parent); None once handled, or the `Ending` of a process that ended first. No
        deadline: a handler runs user code (``interact``), as long as a cell may."""
        self._remember_parent(header)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._answers[frame.id] = future
        try:
            await process.pipe.send(frame)
            answer = await future
        finally:
            self._answers.pop(frame.id, None)
        return answer if isinstance(answer, Ending) else None

    async def give_input(self, awaited: AwaitedInput, value: str, cancelled: str = "") -> bool:
        """Hand the awaited input its line (or, with `cancelled`, end the wait: why); False if
        that input is no longer awaited. Once only: the wait is over either way."""
        if self.awaited_input != awaited or self._process is None:
            return False
        self.awaited_input = None
        frame = frames.InputValue(
            id=awaited.execution, seq=awaited.seq, value=value, cancelled=cancelled
        )
        await self._process.pipe.send(frame)
        return True

    async def execute(
        self, process: SessionProcess, header: Header, frame: frames.Execute
    ) -> m.ExecuteReply | Ending:
        """Run one execution: its outputs reach the feed with `header` as their parent; the
        result is its reply, or why the process ended under it."""
        self._remember_parent(header)
        done: asyncio.Future[m.ExecuteReply | Ending] = asyncio.get_running_loop().create_future()
        self._done, self._executing = done, header
        self._running.set()
        try:
            await process.pipe.send(frame)
            return await done
        finally:
            self._done = self._executing = None
            self._running.clear()
            self.awaited_input = None  # an input it waited for is not awaited any more

    async def interrupt(self, execution: str) -> None:
        """Interrupt `execution` if it runs (the process decides; see child.py); an input it
        waits for is not awaited any more (KeyboardInterrupt ends the wait)."""
        if self.awaited_input is not None and self.awaited_input.execution == execution:
            self.awaited_input = None
        if self._process is not None:
            await self._process.pipe.send(frames.Interrupt(id=execution))

    async def save(self) -> bool:
        """Save the namespace (see `SessionCheckpoints.save`)."""
        return await self._checkpoints.save(
            self._process, self.ask, self.execution_count, self._feed.last_seq
        )

    def _remember_parent(self, header: Header) -> None:
        self._parent = header

    # -- ending it ------------------------------------------------------------------------
    async def end(self, ending: Ending) -> None:
        """End the process (if any) for `ending`, and wait until what waited on it is settled."""
        async with self._lock:
            process = self._process
            if process is None:
                return
            self._endings[process.pid] = ending
            await process.kill()
            reader = self._reader
        # The frame reader sees the end of the pipe and settles what was waiting on it.
        if reader is not None:
            async with asyncio.timeout(self._settings.start_timeout):
                await asyncio.shield(reader)

    def kill(self, ending: Ending) -> None:
        """Kill the process at once, without waiting (the lease is lost)."""
        if self._process is not None:
            self._endings[self._process.pid] = ending
            self._process.signal(signal.SIGKILL)

    async def close(self) -> None:
        """The session left: no task of this process outlives it, nor one started early."""
        early, self._early = self._early, None
        if early is not None:
            early.cancel()
            (started,) = await asyncio.gather(early, return_exceptions=True)
            if isinstance(started, tuple):
                await started[0].kill()
        await self._tasks.close()

    # -- its frames -----------------------------------------------------------------------
    async def _read_frames(self, process: SessionProcess) -> None:
        try:
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
                elif isinstance(frame, frames.InputWanted):
                    await self._ask_for_input(frame)
                elif isinstance(frame, frames.Done):
                    self._settle_execution(process, frame)
                elif isinstance(frame, frames.ParallelWanted):
                    self._tasks.spawn(self._grant_workers(process, frame))
                elif not isinstance(frame, frames.Ready):  # only ever the first frame
                    # Answer: its content answers; Checkpointed, Restored: the frame does.
                    content = frame.content if isinstance(frame, frames.Answer) else frame
                    future = self._answers.get(frame.id)
                    if future is not None and not future.done():
                        future.set_result(content)
        finally:
            # The process ended, or the session left (this task was cancelled): the pipe too.
            await process.pipe.close()
        await self._process_ended(process)

    async def _grant_workers(self, process: SessionProcess, wanted: frames.ParallelWanted) -> None:
        """The session's scheduler wants Dask workers (`parallel`): counted against the caps
        of whoever runs the cell (the request's user), started, and the outcome sent back."""
        parent = self._executing or self._parent
        if self._parallel is None or not self._parallel.enabled or parent is None:
            note = "parallel cells are off here (CELLBUS_PARALLEL_MAX_WORKERS=0)"
            granted = frames.ParallelGranted(id=wanted.id, local=0, remote=0, note=note)
        else:
            granted = await self._parallel.grant(self.session, parent.username, wanted)
        with contextlib.suppress(ConnectionError):
            await process.pipe.send(granted)

    def _settle_execution(self, process: SessionProcess, frame: frames.Done) -> None:
        try:
            reply = msgspec.convert(frame.content, m.ExecuteReply)
        except msgspec.ValidationError as exc:
            self._stop_misbehaving(process, exc)
            return
        if self._done is not None and not self._done.done():
            self._done.set_result(reply)

    def _stop_misbehaving(self, process: SessionProcess, error: Exception) -> None:
        self._drops.drop(f"session process {process.pid}", error, self.session)
        self._endings[process.pid] = died("sent a malformed message and was stopped")
        process.signal(signal.SIGKILL)

    async def _ask_for_input(self, frame: frames.InputWanted) -> None:
        """The running execution waits for a line: ``input_request`` on the feed, addressed
        to whoever ran it (the header's username), and remembered as awaited. Only the
        running execution may ask: user code that names an earlier one (someone else's)
        would have that person asked, and read their answer."""
        parent = self._executing
        if parent is None or frame.id != parent.msg_id:
            self._drops.drop(self._feed.name, ValueError("input outside an execution"), frame.id)
            return
        msg_id = new_msg_id()
        # Awaited before it is published: an answer may come as soon as it is seen.
        self.awaited_input = AwaitedInput(msg_id, parent.username, frame.id, frame.seq)
        request = m.InputRequest(prompt=frame.prompt[:MAX_PROMPT], password=frame.password)
        await self._feed.publish(request, parent, msg_id=msg_id)

    async def _publish_output(self, frame: frames.Output) -> None:
        """Publish an output of the request the process runs, or ran last (a thread that
        prints after its cell ended). A frame naming any other request is dropped: the pipe
        is user code's to write on, and an earlier request may be someone else's."""
        content_type = m.CONTENT_TYPES.get(frame.msg_type)
        parent = self._parent
        if parent is not None and parent.msg_id != frame.id:
            parent = None
        if content_type is None or frame.msg_type not in KERNEL_OUTPUTS or parent is None:
            self._drops.drop(
                self._feed.name, ValueError(f"unexpected output {frame.msg_type}"), frame.id
            )
            return
        try:
            content = msgspec.convert(frame.content, content_type)
        except msgspec.ValidationError as exc:
            self._drops.drop(self._feed.name, exc, frame.id)
            return
        await self._feed.publish(content, parent, metadata=frame.metadata)

    async def _process_ended(self, process: SessionProcess) -> None:
        if self._parallel is not None:  # its scheduler is gone: so are its Dask workers
            self._parallel.stop_soon(self.session)
        status = await _within(process.exited, EXIT_STATUS_WAIT)
        ending = self._endings.pop(process.pid, None) or died(describe_exit(status))
        log.log(
            logging.INFO if ending.expected else logging.WARNING,
            "session %s: process %d ended: %s", self.session, process.pid, ending.message,
        )  # fmt: skip
        self.awaited_input = None
        # Answers first: a restore in progress holds the lock while it waits.
        for future in self._answers.values():
            if not future.done():
                future.set_result(ending)
        async with self._lock:
            if self._process is process:
                self._process = None
        if not ending.expected and not self._feed.silenced:
            # Its variables are lost: so is the checkpoint of them.
            try:
                await self._checkpoints.forget()
            except BusUnavailable as exc:
                log.warning("session %s: cannot delete its checkpoint (%s)", self.session, exc)
        if self._done is not None and not self._done.done():
            self._done.set_result(ending)
        elif not ending.expected:
            await self._feed.publish(m.SessionState(state="dead", reason=ending.message), None)

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

    async def _watch_workspace(self, process: SessionProcess) -> None:
        """Keep the process's file size limit at what the quota leaves, and kill it if it
        went past the quota anyway (see `workspace`)."""
        guard = self.workspace
        while not process.exited.done():
            if self._executing is None:  # idle: until the next execution starts, at most
                await _first(process.exited, self._running.wait(), IDLE_WATCH_EVERY)
            else:
                await _within(process.exited, guard.next_watch())
            if process.exited.done():
                return
            await guard.check(baseline=self._executing is None)
            await self._limit_files(process)
            if guard.over:
                self._endings[process.pid] = died(
                    f"went over the workspace quota of {guard.quota // 2**20} MiB "
                    f"({guard.used // 2**20} MiB used; CELLBUS_WORKSPACE_QUOTA_MB) and was killed"
                )
                process.signal_group(signal.SIGKILL)  # a writer it started in the background too
                return

    async def files_changed(self) -> list[str] | None:
        """After an execution: the workspace's paths it changed (None: none; empty: some,
        list again), and the file size limit set from what the quota leaves now."""
        changed = await self.workspace.check(baseline=True)
        if self._process is not None:
            await self._limit_files(self._process)
        return changed

    async def _limit_files(self, process: SessionProcess) -> None:
        """Have `process` set its file size limit to what the workspace's quota leaves, when
        that changed since it was last told (any write changes it; an execution that wrote
        nothing costs no frame)."""
        soft = self.workspace.file_limit
        if soft is None or self._file_limits.get(process.pid) == soft:
            return
        with contextlib.suppress(ConnectionError, OSError):  # it ended: nothing to limit
            await process.pipe.send(frames.FileLimit(soft=soft))
            self._file_limits = {process.pid: soft}  # one process at a time


async def _within(awaitable: asyncio.Future[Any], timeout: float) -> Any:
    """What `awaitable` gives within `timeout` seconds, else None (it goes on)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            return await asyncio.shield(awaitable)
    return None


async def _first(
    future: asyncio.Future[Any], event: Coroutine[Any, Any, Any], timeout: float
) -> None:
    """Wait until `future` is done, `event` returns, or `timeout` seconds have passed."""
    waiter = asyncio.ensure_future(event)
    try:
        await asyncio.wait([future, waiter], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


def resident_bytes(pid: int) -> int | None:
    """The resident memory of process `pid` (a /proc read: never blocks), None if it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None
