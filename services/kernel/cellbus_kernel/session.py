"""One hosted session on a worker: its requests, its queue of executions, its life there.

A `Session` owns the objects that do its work, as jupyter_client's manager and session are
apart: its `ProcessManager` (the process and its frames), its `FeedPublisher` (the feed, with
the held announcement) and its `Executions` (the queue and the running one); and its
`Lifecycle`, one state changed along one table (`lifecycle.py`, drawn in
docs/architecture.md). It turns requests into work for its process. Executions run one at a
time in arrival order, in its runner task, which also saves the namespace between them and
hibernates the session; completion, inspection, interrupt, restart and shutdown are handled
at once, even while an execution runs.

Faults are part of the design, not exceptions to it:

- the process dies (os._exit, a segfault, the memory limit): the running execution gets an
  ``error`` output and an ``execute_reply`` with status ``error`` that say what happened, the
  feed says ``dead`` (a ``session_state``) with the reason, and the next request starts a
  fresh process;
- an execution fails with ``stop_on_error``: the executions queued behind it are answered with
  status ``aborted``, as in Jupyter;
- an output that fails validation is logged, counted and dropped; a frame that cannot be
  decoded, or an invalid reply, stops the process (the pipe can no longer be trusted).

The namespace outlives the process (`checkpointing`): it is saved between executions, loaded
by the first process a worker starts for the session, and a session idle long enough is
hibernated: saved, its process ended, and it leaves its worker (`Departure.HIBERNATED`) so
that it holds nothing. However it leaves, it tells its worker once, with why (`Departure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import platform
import time
from collections.abc import Awaitable, Callable

import msgspec

from cellbus_protocol import codec
from cellbus_protocol import messages as m
from cellbus_protocol.bus import Bus, QueueItem
from cellbus_protocol.envelope import Header, Message, reply_to

from . import frames
from .checkpointing import SessionCheckpoints
from .checkpoints import CheckpointStore, Loaded
from .config import KernelSettings
from .executions import COMM_TYPES, Ack, Executions
from .feed import FeedPublisher
from .lifecycle import Departure, HostingState, Lifecycle
from .parallel import ParallelHost
from .process import Ending, ProcessManager
from .spawner import Spawner
from .takeover import feed_history
from .tasks import TaskSet

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
Depart = Callable[["Session", Departure], Awaitable[None]]
"""How a session tells its worker that it left, and why; the worker then lets go of it."""
Handler = Callable[[Message], Awaitable[m.Content]]


class Session:
    """One session hosted by this worker."""

    def __init__(
        self,
        session: str,
        *,
        bus: Bus,
        spawner: Spawner,
        settings: KernelSettings,
        ack: Ack,
        drops: codec.DropCounter,
        checkpoints: CheckpointStore | None,
        depart: Depart,
        parallel: ParallelHost | None = None,
    ) -> None:
        self.session = session
        self.lifecycle = Lifecycle(session)
        self.feed = FeedPublisher(session, bus)
        self.checkpoints = SessionCheckpoints(session, checkpoints, self.feed.publish)
        self.process = ProcessManager(
            session, spawner=spawner, settings=settings, drops=drops, feed=self.feed,
            checkpoints=self.checkpoints, may_start=self._may_start_process, parallel=parallel,
        )  # fmt: skip
        self._bus = bus
        self._settings = settings
        self._ack = ack
        self._drops = drops
        self._depart = depart
        self._tasks = TaskSet(f"session {session}")
        self.executions = Executions(
            session, lifecycle=self.lifecycle, feed=self.feed, process=self.process,
            checkpoints=self.checkpoints, settings=settings, ack=ack,
        )  # fmt: skip
        self._runner: asyncio.Task[None] | None = None
        self._last_activity = time.monotonic()  # the last request, or the end of an execution
        self._direct = 0  # direct requests being handled
        self._lease_deadline = time.monotonic() + settings.lease_ttl
        """When (time.monotonic) this worker's lease may have expired (`check_lease`)."""

    def _may_start_process(self) -> bool:
        return self.lifecycle.may_start_process

    @property
    def takes_requests(self) -> bool:
        return self.lifecycle.takes_requests

    @property
    def holds_lease(self) -> bool:
        """It needs its lease: a renewal that fails means another worker may host it."""
        return self.lifecycle.holds_lease

    # -- its life on the worker -----------------------------------------------------------
    async def load_checkpoint(self, fork_of: str = "") -> None:
        """Read the checkpoint that the first process will load (`fork_of`: a fork's)."""
        await self.checkpoints.fetch(fork_of)

    async def start(self) -> None:
        """Start the session process (restoring its checkpoint, if one was read), then
        serve: STARTING -> SERVING."""
        if self.lifecycle.state is not HostingState.STARTING:
            return
        await self.process.ensure(None)
        if self.lifecycle.state is HostingState.STARTING:
            # Idle from now on, not from when it was asked for: a start that took longer
            # than CELLBUS_HIBERNATE_AFTER (a template still starting) must not hibernate a
            # session before anyone could use it.
            self._last_activity = time.monotonic()
            self.lifecycle.to(HostingState.SERVING)
            self._runner = self._tasks.spawn(self._run_executions(), name=f"session-{self.session}")

    def lease_renewed(self, at: float) -> None:
        """The worker renewed the lease, having asked at `at` (time.monotonic)."""
        self._lease_deadline = at + self._settings.lease_ttl

    async def check_lease(self) -> bool:
        """Whether the lease may still be this worker's. The one place its expiry is judged:
        past the deadline (the bus was away) another worker may host the session, so it
        stops here (`lose`); the worker asks at every heartbeat, the runner before each
        execution."""
        if time.monotonic() <= self._lease_deadline or not self.lifecycle.holds_lease:
            return True
        log.error("session %s: its lease may have expired; stopping it here", self.session)
        await self.lose()
        return False

    async def lose(self) -> None:
        """The lease is gone: stop at once, publish nothing more, and leave every request on
        the queue for the new host."""
        if self.lifecycle.state is HostingState.LEFT:
            return
        self.feed.silence()
        self.process.kill(LEASE_LOST)
        await self._leave(Departure.LOST)

    async def drain(self, timeout: float) -> None:
        """The worker is stopping. With checkpoints: the running execution gets `timeout`
        seconds to end (then it is stopped), the namespace is saved, the process ended, the
        feed says ``hibernated`` and the session moves; queued executions stay on the queue
        for the next host. Without: it ends (``dead``). One already leaving is waited for."""
        if not self.lifecycle.takes_requests:
            await self.lifecycle.left.wait()
            return
        if not self.checkpoints.enabled:
            await self._close(WORKER_STOPPED)
            await self._leave(Departure.STOPPED)
            return
        self.lifecycle.to(HostingState.DRAINING)
        self.executions.queued.set()  # the runner looks again, and stops
        await self._finish_running(timeout)
        saved = await self.process.save()
        self.lifecycle.to(HostingState.ENDING)
        await self.process.end(MOVED)
        how = "." if saved else ", from its last checkpoint."
        reason = f"The kernel worker hosting it stopped; the session moves to another worker{how}"
        await self.feed.publish(m.SessionState(state="hibernated", reason=reason), None)
        await self._leave(Departure.MOVED)

    async def _finish_running(self, timeout: float) -> None:
        runner = self._runner
        if runner is None:
            return
        done, _ = await asyncio.wait({runner}, timeout=timeout)
        if not done:
            await self.process.end(STOPPED_MID_EXECUTION)
            await asyncio.wait({runner}, timeout=self._settings.start_timeout)
            runner.cancel()

    async def _close(self, ending: Ending, parent: Header | None = None) -> None:
        """End the process for good: queued executions are aborted, the running one ends
        with `ending`, and the feed says ``dead``."""
        self.lifecycle.to(HostingState.ENDING)
        await self.executions.abort_queued()
        await self.process.end(ending)
        with contextlib.suppress(TimeoutError):  # let the ended execution publish its reply
            async with asyncio.timeout(self._settings.start_timeout):
                await self.executions.none_running()
        await self.feed.publish(m.SessionState(state="dead", reason=ending.message), parent)

    async def _leave(self, departure: Departure) -> None:
        """Leave the worker: no task of the session outlives this, then the worker is told."""
        self.lifecycle.leave(departure)
        await self._tasks.close()
        await self.process.close()
        await self.feed.close()
        await self._depart(self, departure)

    def info(self) -> m.SessionInfoReply:
        """State, the running and queued executions with who sent them, execution count."""
        running = self.executions.running
        return m.SessionInfoReply(
            state=self.feed.state,
            execution_count=self.process.execution_count,
            running=running.describe() if running is not None else None,
            queued=self.executions.waiting(),
        )

    # -- requests -------------------------------------------------------------------------
    def submit(self, item: QueueItem, msg: Message) -> None:
        """Take one request; executions queue, everything else is handled at once."""
        self._last_activity = time.monotonic()
        if msg.msg_type in COMM_TYPES:  # handled between executions, in arrival order
            if len(msgspec.json.encode(msg.content.data)) > m.MAX_COMM_BYTES:
                self._drops.drop(self.feed.name, ValueError("comm data over the limit"), item.id)
                self._tasks.spawn(self._ack(item))
                return
            self.executions.add(item, msg)
            return
        if msg.msg_type == "execute_request":
            self.executions.add(item, msg)
            cell_id = cell_of(msg)
            if cell_id is not None:  # held: it goes out with the next feed message, or soon
                header = msg.header
                run = m.CellRun(cell_id=cell_id, msg_id=header.msg_id, username=header.username)
                self.feed.announce(run, header)
            return
        handler = self._direct_handler(msg.msg_type)
        if handler is None:
            self._drops.drop(
                self.feed.name, ValueError(f"{msg.msg_type} is not a request"), item.id
            )
            self._tasks.spawn(self._ack(item))
            return
        self._tasks.spawn(self._handle_direct(handler, item, msg))

    def _direct_handler(self, msg_type: str) -> Handler | None:
        return {
            "complete_request": self._answer_from_process,
            "inspect_request": self._answer_from_process,
            "is_complete_request": self._answer_from_process,
            "history_request": self._answer_from_process,
            "comm_info_request": self._answer_from_process,
            "widget_state_request": self._answer_from_process,
            "input_reply": self._input_reply,
            "interrupt_request": self._interrupt,
            "restart_request": self._restart,
            "shutdown_request": self._shutdown,
            "kernel_info_request": self._kernel_info,
            "session_info_request": self._session_info,
        }.get(msg_type)

    async def _handle_direct(self, handler: Handler, item: QueueItem, msg: Message) -> None:
        self._direct += 1
        try:
            try:
                content = await handler(msg)
            except Exception as exc:
                log.exception("session %s: %s %s failed", self.session, msg.msg_type, msg.msg_id)
                content = _unanswered(m.DIRECT_REPLY[msg.msg_type], type(exc).__name__, str(exc))
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
        pending = self.checkpoints.pending
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
                self.executions.add(item, msg, lost=True)
            else:
                to_route.append((item, msg))
        return to_route

    async def _answer_from_process(self, msg: Message) -> m.Content:
        reply_type = m.DIRECT_REPLY[msg.msg_type]
        process = await self.process.ensure(msg.header)
        if process is None:
            return _unanswered(reply_type, "SessionUnavailable", self.feed.state)
        answer = await self.process.answer(process, question_frame(msg))
        if isinstance(answer, Ending):
            return _unanswered(reply_type, answer.ename, answer.evalue)
        try:
            return msgspec.convert(answer, reply_type)
        except msgspec.ValidationError as exc:  # a question that failed (is_complete: error)
            return _unanswered(reply_type, str(answer.get("ename") or "BadAnswer"), str(exc))

    async def _input_reply(self, msg: Message) -> m.Content:
        """A line for the input the running execution waits for: taken only from the
        person who ran it, for that very ``input_request`` (named in the metadata:
        ``cellbus.input_request``); ``cellbus.cancelled`` ends the wait instead (the web
        sends it when that person leaves)."""
        awaited = self.process.awaited_input
        named, cancelled = input_reply_target(msg)
        if len(msg.content.value) > m.MAX_INPUT_CHARS:
            return m.InputAck(
                status="error", ename="TooLarge",
                evalue=f"An input line may have at most {m.MAX_INPUT_CHARS:,} characters.",
            )  # fmt: skip
        if (
            awaited is None
            or awaited.msg_id != named
            or awaited.username != msg.header.username
            or not await self.process.give_input(awaited, msg.content.value, cancelled)
        ):
            return m.InputAck(
                status="error", ename="NoInputAwaited",
                evalue="No input is awaited from you for that request.",
            )  # fmt: skip
        return m.InputAck()

    async def _interrupt(self, msg: Message) -> m.Reply:
        running = self.executions.running
        if running is not None and self.process.running:
            log.info("session %s: interrupt by %s", self.session, msg.header.username)
            await self.process.interrupt(running.msg.msg_id)
        return m.InterruptReply()

    async def _restart(self, msg: Message) -> m.Reply:
        log.info("session %s: restart by %s", self.session, msg.header.username)
        await self.feed.publish(m.SessionState(state="restarting"), msg.header)
        await self.executions.abort_queued()
        await self.process.end(RESTARTED)
        await self.executions.none_running()
        await self.checkpoints.forget()  # the user asked for a fresh namespace
        process = await self.process.ensure(msg.header)
        if process is None:
            return m.RestartReply(
                status="error", ename="SessionUnavailable", evalue=self.feed.state
            )
        return m.RestartReply()

    async def _shutdown(self, msg: Message) -> m.Reply:
        """End the session and delete its checkpoint; it leaves the worker before the reply,
        so the next request starts it afresh."""
        log.info("session %s: shutdown by %s", self.session, msg.header.username)
        if self.lifecycle.takes_requests:
            await self._close(SHUT_DOWN, msg.header)
            await self.checkpoints.forget()
            await self._leave(Departure.SHUT_DOWN)
        else:  # already leaving (two shutdowns, or the worker stopping)
            await self.lifecycle.left.wait()
        return m.ShutdownReply(restart=msg.content.restart)

    async def _kernel_info(self, msg: Message) -> m.Reply:
        """Answered by the worker (the process need not run): the versions it last reported,
        or, before any process started, those of the template's interpreter (the same)."""
        ready = self.process.ready
        python = ready.python_version if ready else platform.python_version()
        ipython = ready.ipython_version if ready else importlib.metadata.version("ipython")
        return m.KernelInfoReply(
            implementation_version=ipython,
            language_info=m.LanguageInfo(version=python),
            banner=ready.banner if ready else f"Python {python} on cellbus, IPython {ipython}",
            help_links=HELP_LINKS,
        )

    async def _session_info(self, msg: Message) -> m.Reply:
        return self.info()

    # -- executions -----------------------------------------------------------------------
    async def _run_executions(self) -> None:
        while self.lifecycle.serving:
            if not self.executions:
                self.executions.queued.clear()
                if await self._idle():
                    return  # hibernated
                continue
            if not await self.check_lease():
                return
            if self.checkpoints.overdue() and self.process.running:
                # A session that never idles: save between two executions (its reply and
                # `idle` are out, the next has not started).
                await self.process.save()
                if not self.lifecycle.serving or not self.executions:
                    continue
            await self.executions.run_next()
            self._last_activity = time.monotonic()

    # -- between executions ---------------------------------------------------------------
    async def _idle(self) -> bool:
        """Wait for an execution; meanwhile save the namespace when its time comes, and
        hibernate when the session has been idle long enough. True once hibernated."""
        due = [t for t in (self.checkpoints.due, self._hibernation_due()) if t is not None]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, min(due) - time.monotonic()) if due else None):
                await self.executions.queued.wait()
                return False
        if self.executions or not self.lifecycle.serving:
            return False
        now = time.monotonic()
        if self.checkpoints.due is not None and now >= self.checkpoints.due:
            if not self.process.running:
                self.checkpoints.postpone()  # nothing to save: the process is gone
                return False
            await self.process.save()
            return False
        due_at = self._hibernation_due()
        if due_at is not None and now >= due_at:
            return await self._hibernate()
        return False

    def _hibernation_due(self) -> float | None:
        after = self._settings.hibernate_after
        if not self.checkpoints.enabled or after <= 0:
            return None
        return self._last_activity + after

    async def _hibernate(self) -> bool:
        """Save the namespace, end the process and leave the worker; the session's next
        request (`KernelClient.ensure_session`) has a worker host it again, restored."""
        began = self._last_activity
        if self._direct or self.executions:
            self._last_activity = time.monotonic()
            return False
        saved = await self.process.save()
        if not saved and self.process.running:  # its state would be lost: keep it up
            log.warning("session %s: not hibernated: its namespace was not saved", self.session)
            self._last_activity = time.monotonic()
            return False
        if self._direct or self.executions or self._last_activity != began:
            return False  # a request came while it was being saved
        if not self.lifecycle.serving:
            return False  # its worker began to stop meanwhile: the drain moves it
        self.lifecycle.to(HostingState.ENDING)
        await self.process.end(HIBERNATED)
        idle = _duration(self._settings.hibernate_after)
        reason = (
            f"The session was idle for {idle}: its namespace is saved and its process ended. "
            "Its next request restores it."
        )
        await self.feed.publish(m.SessionState(state="hibernated", reason=reason), None)
        log.info("session %s hibernated", self.session)
        await self._leave(Departure.HIBERNATED)
        return True


HELP_LINKS = [
    {"text": "Python Reference", "url": "https://docs.python.org/3/"},
    {"text": "IPython Reference", "url": "https://ipython.readthedocs.io/en/stable/"},
]
"""kernel_info's ``help_links`` (ipykernel lists its language's references likewise)."""


def question_frame(msg: Message) -> frames.Question:
    """The frame that asks the session process a direct request's question."""
    request, msg_id = msg.content, msg.msg_id
    if isinstance(request, m.CompleteRequest):
        return frames.Complete(id=msg_id, code=request.code, cursor_pos=request.cursor_pos)
    if isinstance(request, m.InspectRequest):
        return frames.Inspect(
            id=msg_id, code=request.code, cursor_pos=request.cursor_pos,
            detail_level=request.detail_level,
        )  # fmt: skip
    if isinstance(request, m.IsCompleteRequest):
        return frames.IsComplete(id=msg_id, code=request.code)
    if isinstance(request, m.HistoryRequest):
        fields = msgspec.structs.asdict(request)
        return frames.History(id=msg_id, **fields)
    if isinstance(request, m.CommInfoRequest):
        return frames.CommInfo(id=msg_id, target_name=request.target_name)
    return frames.WidgetState(id=msg_id)


def input_reply_target(msg: Message) -> tuple[str, str]:
    """The input_request an input_reply answers (``metadata.cellbus.input_request``) and,
    for one that cancels the wait, why (``metadata.cellbus.cancelled``)."""
    cellbus = msg.metadata.get("cellbus")
    if not isinstance(cellbus, dict):
        return "", ""
    named, cancelled = cellbus.get("input_request"), cellbus.get("cancelled")
    return (
        named if isinstance(named, str) else "",
        cancelled[:1000] if isinstance(cancelled, str) else "",
    )


def _unanswered(reply_type: type[m.Content], ename: str, evalue: str) -> m.Content:
    """A direct reply saying the session could not answer (is_complete: ``unknown``)."""
    if reply_type is m.IsCompleteReply:
        return m.IsCompleteReply(status="unknown")
    return reply_type(status="error", ename=ename, evalue=evalue)


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
