"""A hosted session's executions: the queue, the one running, and what each publishes.

`Executions` runs one execution at a time, in arrival order (its `session.Session` decides
when: its runner calls `run_next`), and publishes every message of it on the feed: ``busy``
and ``execute_input`` (held, to go out with what follows), the outputs (through the
`ProcessManager`), the ``execute_reply``, ``files_changed`` if it changed files in the
workspace (`workspace`), and ``idle``, or the ``error`` and ``dead`` of a
process that ended under it. An execution that fails with ``stop_on_error`` has the queue
behind it answered ``aborted``, as in Jupyter; one that was running on a worker that died is
answered ``WorkerLost`` and not run again.

Clients' comm messages (``comm_open``, ``comm_msg``, ``comm_close``) share the queue: as on a
Jupyter kernel's shell channel, a slider moved while a cell runs is handled after that cell,
between executions, with ``busy`` and ``idle`` on the feed (their parent: the comm message).
They have no reply; aborting the queue drops them, as ipykernel's abort does.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import msgspec

from cellbus_protocol import messages as m
from cellbus_protocol.bus import QueueItem
from cellbus_protocol.envelope import Header, Message

from . import frames
from .checkpointing import SessionCheckpoints
from .config import KernelSettings
from .feed import FeedPublisher
from .lifecycle import Lifecycle
from .process import Ending, ProcessManager
from .takeover import worker_lost_message

log = logging.getLogger(__name__)

UNAVAILABLE = Ending(
    "SessionUnavailable", "The session process could not be started.", lost_state=False
)

Ack = Callable[[QueueItem], Coroutine[Any, Any, None]]
COMM_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})
"""Requests that queue with executions: a client's comm messages."""


@dataclass
class Pending:
    """An execution taken from the session's queue and not yet acknowledged."""

    item: QueueItem
    msg: Message
    lost: bool = False  # it was running on a worker that died: answered, not run again

    def describe(self) -> m.QueuedRequest:
        header = self.msg.header
        return m.QueuedRequest(msg_id=header.msg_id, username=header.username, date=header.date)


class Executions:
    """One session's queued and running executions."""

    def __init__(
        self,
        session: str,
        *,
        lifecycle: Lifecycle,
        feed: FeedPublisher,
        process: ProcessManager,
        checkpoints: SessionCheckpoints,
        settings: KernelSettings,
        ack: Ack,
    ) -> None:
        self.session = session
        self.queued = asyncio.Event()
        """Set when an execution is added (or the runner must look again: a drain)."""
        self.running: Pending | None = None
        self._lifecycle = lifecycle
        self._feed = feed
        self._process = process
        self._checkpoints = checkpoints
        self._settings = settings
        self._ack = ack
        self._queue: deque[Pending] = deque()
        self._not_running = asyncio.Event()
        self._not_running.set()

    def __len__(self) -> int:
        """How many wait (the running one not included)."""
        return len(self._queue)

    def add(self, item: QueueItem, msg: Message, *, lost: bool = False) -> None:
        self._queue.append(Pending(item, msg, lost))
        self.queued.set()

    def waiting(self) -> list[m.QueuedRequest]:
        return [pending.describe() for pending in self._queue]

    async def none_running(self) -> None:
        """Return once no execution runs (at once if none does)."""
        await self._not_running.wait()

    async def abort_queued(self) -> None:
        """Answer every waiting execution ``aborted`` (comm messages are dropped), and those
        that arrive meanwhile: the session is ending or restarting."""
        while self._queue:
            await self._abort(self._queue.popleft())

    async def _abort_behind(self) -> None:
        """``stop_on_error``: answer ``aborted`` the executions that were waiting when one
        failed, not one that arrives meanwhile. A client that has seen their replies may send
        its next request at once, before the last of them is acknowledged: that one runs (as
        on ipykernel, whose ``stop_on_error_timeout`` is 0)."""
        behind = list(self._queue)
        self._queue.clear()
        for pending in behind:
            await self._abort(pending)

    async def _abort(self, pending: Pending) -> None:
        if pending.msg.msg_type == "execute_request":
            await self._feed.publish(m.ExecuteReply(status="aborted"), pending.msg.header)
        await self._ack(pending.item)

    async def run_next(self) -> None:
        """Run the oldest waiting execution to its end, then acknowledge it."""
        pending = self._queue.popleft()
        self.running = pending
        self._not_running.clear()
        failed = False
        try:
            if pending.msg.msg_type in COMM_TYPES:
                await self._comm(pending)
            elif pending.lost:
                await self._reply_lost(pending)
            else:
                failed = await self._execute(pending)
        except Exception:
            log.exception("session %s: execution %s failed", self.session, pending.msg.msg_id)
        finally:
            self.running = None
            self._not_running.set()
            # After `running` is cleared, so a client that sees the aborted replies and asks
            # for `info` finds nothing running; before the ack, so a worker that dies in
            # between leaves the failed execution to be answered as lost.
            if failed and pending.msg.content.stop_on_error and self._lifecycle.serving:
                await self._abort_behind()
            if not self._lifecycle.lost:
                await self._ack(pending.item)

    async def _reply_lost(self, pending: Pending) -> None:
        """An execution that was running when its worker died: it is not run again."""
        checkpoints = self._checkpoints
        evalue = worker_lost_message(checkpoints.restored_from, checkpoints.fresh_because)
        error = m.Error(ename="WorkerLost", evalue=evalue, traceback=[evalue])
        await self._feed.publish(error, pending.msg.header)
        reply = m.ExecuteReply(
            status="error", ename=error.ename, evalue=evalue, traceback=error.traceback
        )
        await self._feed.publish(reply, pending.msg.header)
        await self._feed.publish(m.Status(execution_state="idle"), pending.msg.header)

    async def _execute(self, pending: Pending) -> bool:
        """Run one execution and publish its messages; True if it ended in an error."""
        msg = pending.msg
        request: m.ExecuteRequest = msg.content
        self._checkpoints.postpone()
        process = await self._process.ensure(msg.header, announce_idle=False)
        self._feed.announce(m.Status(execution_state="busy"), msg.header)
        result: m.ExecuteReply | Ending = UNAVAILABLE
        if process is not None:
            if not request.silent:
                counted = request.store_history  # not counted: no number, as in the reply
                count = self._process.execution_count if counted else None
                echo = m.ExecuteInput(code=request.code, execution_count=count)
                self._feed.announce(echo, msg.header)
            frame = frames.Execute(
                id=msg.msg_id, code=request.code, silent=request.silent,
                store_history=request.store_history, user_expressions=request.user_expressions,
                allow_stdin=request.allow_stdin,
            )  # fmt: skip
            result = await self._process.execute(process, msg.header, frame)
        changed = await self._process.files_changed() if process is not None else None
        return await self._publish_result(msg.header, result, changed)

    async def _comm(self, pending: Pending) -> None:
        """Have the process handle a client's comm message, ``busy`` to ``idle``."""
        msg = pending.msg
        process = await self._process.ensure(msg.header, announce_idle=False)
        self._feed.announce(m.Status(execution_state="busy"), msg.header)
        if process is None:
            ended: Ending | None = UNAVAILABLE
        else:
            content = msgspec.to_builtins(msg.content)
            header = msgspec.to_builtins(msg.header)
            frame = frames.CommIn(
                id=msg.msg_id, msg_type=msg.msg_type, content=content, header=header
            )
            ended = await self._process.comm(process, msg.header, frame)
        if ended is None:
            await self._feed.publish(m.Status(execution_state="idle"), msg.header)
        elif not ended.expected:
            await self._feed.publish(m.SessionState(state="dead", reason=ended.message), msg.header)

    async def _publish_result(
        self, parent: Header, result: m.ExecuteReply | Ending, changed: list[str] | None = None
    ) -> bool:
        """Publish an execution's reply (and, if its process ended under it, the error and
        ``dead``), the workspace's paths it `changed` if any (``files_changed``), then
        ``idle``; True if it ended in an error."""
        feed = self._feed
        if isinstance(result, Ending):
            reply = m.ExecuteReply(
                status="error", ename=result.ename, evalue=result.evalue, traceback=[result.evalue]
            )
            error = m.Error(ename=reply.ename, evalue=reply.evalue, traceback=reply.traceback)
            await feed.publish(error, parent)
        else:
            reply = result
            settings = self._settings
            self._checkpoints.ran(parent, settings.checkpoint_delay, settings.checkpoint_interval)
        if reply.execution_count is not None:
            self._process.execution_count = reply.execution_count + 1
        await feed.publish(reply, parent)
        if changed is not None:
            await feed.publish(m.FilesChanged(paths=changed), parent)
        if not isinstance(result, Ending):
            await feed.publish(m.Status(execution_state="idle"), parent)
        elif not result.expected:
            await feed.publish(m.SessionState(state="dead", reason=result.message), parent)
        return reply.status == "error"
