"""Control requests: what other services ask the kernel about a session as a whole.

The kernel owns a session's checkpoint and its host lease; nobody else reads or writes them.
So forking a session (a copy of its checkpoint and of its workspace), asking whether it is
hosted, forgetting the namespace of one that no worker hosts and ending one whose worksheet is
gone are requests (`messages.ControlRequest`) on one queue, `keys.KERNEL_CONTROL`, that every
worker reads in one consumer group: any live worker answers, whether or not it hosts the
session.

Touching the checkpoint of a session that no worker hosts takes the session's lease first,
for the moment it takes: a worker cannot start hosting the session (and load the checkpoint
being deleted) meanwhile. A `SessionOpen` that arrives in that moment finds the lease held
and is dropped, so, as when a session hibernates, the lease is released and then the
session's queue checked: requests waiting there have the session hosted again at once.

A request is answered at most once: one that a worker took and died before answering is not
taken again (its sender's deadline passes, `RequestTimeout`, and it may ask again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from cellbus_protocol import codec, keys
from cellbus_protocol import messages as m
from cellbus_protocol.bus import Bus, Consumer, QueueItem
from cellbus_protocol.envelope import new_message, new_msg_id
from cellbus_protocol.errors import BusUnavailable

from .checkpoints import CheckpointStore
from .workspace import copy_workspace

log = logging.getLogger(__name__)

OpenSession = Callable[[str, str], Awaitable[None]]
"""Ask for a session to be hosted: (session, fork_of)."""

_decoder = msgspec.json.Decoder(m.AnyControlRequest)


class Refusal(Exception):
    """A control request that cannot be done, with the code and sentence its sender gets."""

    def __init__(self, code: m.ControlErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: m.ControlErrorCode = code
        self.message = message


class KernelControl:
    """One worker's share of the control requests: reads `keys.KERNEL_CONTROL` and answers."""

    def __init__(
        self,
        bus: Bus,
        worker_id: str,
        checkpoints: CheckpointStore | None,
        lease_ttl: float,
        open_session: OpenSession,
        workspaces: Path,
    ) -> None:
        self._bus = bus
        self._id = worker_id
        self._checkpoints = checkpoints
        self._lease_ttl = lease_ttl
        self._open = open_session
        self._workspaces = workspaces  # the workspaces' root, for a fork's copy
        self._consumer: Consumer = bus.consumer(keys.KERNEL_GROUP, f"{worker_id}:control")

    async def run(self) -> None:
        """Answer requests until cancelled; each in a task of its own, all of them ended
        (with the loop) when it is."""
        await self._consumer.add(keys.KERNEL_CONTROL)
        try:
            async with asyncio.TaskGroup() as tasks:
                while True:
                    try:
                        item = await self._consumer.get(timeout=1.0)
                    except BusUnavailable as exc:
                        log.warning("reading control requests: %s", exc)
                        await asyncio.sleep(1.0)
                        continue
                    if item is not None:
                        tasks.create_task(self._serve(item))
        finally:
            await self._consumer.close()

    async def _serve(self, item: QueueItem) -> None:
        """Answer one request, then retire it; never raises (a failure is the sender's
        ``internal``, a reply that cannot be sent its `RequestTimeout`)."""
        try:
            reply = await self._answer(item)
            await self._bus.reply(item, codec.encode_record(reply))
        except BusUnavailable as exc:
            log.warning("control request %s: could not reply: %s", item.id, exc)
        except Exception:
            log.exception("control request %s: could not reply", item.id)
        finally:
            with contextlib.suppress(BusUnavailable):  # left pending, never retried
                await self._consumer.ack(item)

    async def _answer(self, item: QueueItem) -> m.ControlReply:
        try:
            request = _decoder.decode(item.data)
            keys.check_session_id(request.session)
        except (msgspec.DecodeError, ValueError) as exc:
            log.warning("control request %s: %s", item.id, exc)
            return _error("invalid", f"bad control request: {exc}")
        what = f"{type(request).__name__} of session {request.session} by {request.username}"
        try:
            result = await self._handle(request)
        except Refusal as exc:
            return _error(exc.code, exc.message)
        except BusUnavailable as exc:
            log.warning("control request %s (%s): %s", item.id, what, exc)
            return _error("unavailable", "the message bus is unavailable")
        except Exception:
            log.exception("control request %s (%s) failed", item.id, what)
            return _error("internal", "the kernel worker failed; see its log")
        log.info("control request %s: %s", item.id, what)
        return m.ControlReply(result=msgspec.Raw(codec.encode_record(result)))

    async def _handle(self, request: m.AnyControlRequest) -> msgspec.Struct:
        if isinstance(request, m.ForkSession):
            return await self.fork(request.session)
        if isinstance(request, m.GetSessionStatus):
            return await self.status(request.session)
        if isinstance(request, m.DiscardSession):
            return m.Discarded(hosted=not await self._forget_unhosted(request.session))
        return await self.end(request.session, request.username)

    # -- the requests ---------------------------------------------------------------------
    async def fork(self, session: str) -> m.Forked:
        """Copy the checkpoint and the workspace to a new session, which a worker then hosts
        from them."""
        fork = new_msg_id()
        if self._checkpoints is None or not await self._checkpoints.copy(session, fork):
            raise Refusal(
                "not_found", "this session has no checkpoint to fork yet: run a cell in it first"
            )
        try:
            await copy_workspace(self._workspaces, session, fork)
        except OSError as exc:
            log.error("fork of session %s: its workspace could not be copied: %s", session, exc)
            await self._checkpoints.delete(fork)
            raise Refusal("internal", "the session's files could not be copied") from None
        await self._open(fork, session)
        return m.Forked(session=fork)

    async def status(self, session: str) -> m.SessionStatus:
        hosted = await self._bus.lease_holder(keys.session_host(session)) is not None
        return m.SessionStatus(state="hosted" if hosted else "stopped")

    async def end(self, session: str, username: str) -> m.Ended:
        """A hosted session is sent a ``shutdown_request`` (which deletes its checkpoint);
        one that is not has its checkpoint deleted here."""
        if await self._forget_unhosted(session, reopen=False):
            return m.Ended(hosted=False)
        shutdown = new_message(m.ShutdownRequest(), session=session, username=username)
        await self._bus.enqueue(keys.requests(session), codec.encode(shutdown))
        return m.Ended(hosted=True)

    async def _forget_unhosted(self, session: str, *, reopen: bool = True) -> bool:
        """Delete the checkpoint of `session` unless a worker hosts it; True if deleted.
        With `reopen`, requests that wait on its queue have it hosted again (see above)."""
        lease = keys.session_host(session)
        if not await self._bus.acquire_lease(lease, self._id, self._lease_ttl):
            return False
        try:
            if self._checkpoints is not None:
                await self._checkpoints.delete(session)
        finally:
            await self._bus.release_lease(lease, self._id)
        if reopen and await self._bus.queue_size(keys.requests(session)) > 0:
            await self._open(session, "")
        return True


def _error(code: m.ControlErrorCode, message: str) -> m.ControlReply:
    return m.ControlReply(error=m.ControlError(code=code, message=message))
