"""A kernel worker: takes new sessions, hosts them, routes their requests.

Placement. New sessions arrive on one queue (`keys.NEW_SESSIONS`) read by every worker in one
consumer group, so each goes to exactly one worker. A worker only reads that queue while it is
among the least loaded of the live workers (the load table, `keys.WORKERS`), so new sessions go
to the least-loaded worker. Before hosting, a worker takes the session's lease
(`keys.session_host`): a session is never hosted by two workers at once.

Routing. The worker reads the request queues of all its sessions through one consumer, checks
each message with the codec (invalid ones are logged, counted and dropped), and hands it to
the session's `SessionHost`. A malformed message never stops the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator

from cellbus_protocol import codec, keys
from cellbus_protocol import messages as m
from cellbus_protocol.bus import Bus, Consumer, QueueItem
from cellbus_protocol.errors import BusUnavailable, ValidationError

from .config import KernelSettings
from .isolation import session_environment
from .session import WORKER_STOPPED, SessionHost
from .spawner import Spawner

log = logging.getLogger(__name__)

IDLE_POLL = 0.05
"""Seconds between load checks while another worker is less loaded."""
SHUTDOWN_GRACE = 5.0
"""Seconds the worker's loops get to end when it stops."""


class KernelWorker:
    """Hosts sessions on this machine for the bus it is given."""

    def __init__(self, settings: KernelSettings, bus: Bus) -> None:
        self.settings = settings
        self.bus = bus
        self.id = (
            settings.worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        self.sessions: dict[str, SessionHost] = {}
        self.drops = codec.DropCounter()
        self.spawner = Spawner(session_environment(os.environ))
        # One new session at a time: one taken is this worker's, even if it stops being the
        # least loaded.
        self._new_sessions: Consumer = bus.consumer(keys.KERNEL_GROUP, f"{self.id}:new", batch=1)
        self._requests: Consumer = bus.consumer(keys.KERNEL_GROUP, f"{self.id}:requests")
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()

    # -- life cycle -----------------------------------------------------------------------
    async def run(self) -> None:
        """Serve until `stop` is called."""
        await self.spawner.start()
        await self._new_sessions.add(keys.NEW_SESSIONS)
        await self._report_load()
        self._tasks = [
            asyncio.create_task(self._take_new_sessions(), name="take-new-sessions"),
            asyncio.create_task(self._route_requests(), name="route-requests"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
        ]
        log.info("kernel worker %s ready", self.id)
        self.ready.set()
        stopping = asyncio.create_task(self._stopping.wait())
        done, _ = await asyncio.wait([*self._tasks, stopping], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopping and task.exception() is not None:
                log.error("worker task %s failed", task.get_name(), exc_info=task.exception())
        await self._shutdown()

    def stop(self) -> None:
        self._stopping.set()

    async def _shutdown(self) -> None:
        log.info("kernel worker %s stopping (%d sessions)", self.id, len(self.sessions))
        for task in self._tasks:
            task.cancel()
        # Bounded: a blocking read may not notice its cancellation at once.
        await asyncio.wait(self._tasks, timeout=SHUTDOWN_GRACE)
        for host in list(self.sessions.values()):
            await host.close(WORKER_STOPPED)
            with contextlib.suppress(BusUnavailable):
                await self.bus.release_lease(keys.session_host(host.session), self.id)
        self.sessions.clear()
        with contextlib.suppress(BusUnavailable):
            await self.bus.remove_load(keys.WORKERS, self.id)
        await self._new_sessions.close()
        await self._requests.close()
        await self.spawner.close()

    # -- placement ------------------------------------------------------------------------
    async def _is_least_loaded(self) -> bool:
        mine = len(self.sessions)
        if mine >= self.settings.max_sessions:
            return False
        others = [load for worker, load in (await self.bus.loads(keys.WORKERS)).items()
                  if worker != self.id]  # fmt: skip
        return not others or mine <= min(others)

    async def _take_new_sessions(self) -> None:
        while not self._stopping.is_set():
            async with self._contained("taking new sessions"):
                if not await self._is_least_loaded():
                    await asyncio.sleep(IDLE_POLL)
                    continue
                item = await self._new_sessions.get(timeout=1.0)
                if item is not None:
                    await self._take_new_session(item)

    @contextlib.asynccontextmanager
    async def _contained(self, what: str) -> AsyncIterator[None]:
        """One turn of a worker loop: a failure is logged and the loop goes on."""
        try:
            yield
        except BusUnavailable as exc:
            log.warning("%s: %s", what, exc)
            await asyncio.sleep(1.0)
        except Exception:
            log.exception("%s failed; carrying on", what)
            await asyncio.sleep(0.1)

    async def _take_new_session(self, item: QueueItem) -> None:
        try:
            record = codec.decode_record(item.data, m.SessionOpen)
            keys.check_session_id(record.session)
        except (ValidationError, ValueError) as exc:
            self.drops.drop(keys.NEW_SESSIONS, exc, item.id)
        else:
            await self.host(record.session)
        finally:
            await self._new_sessions.ack(item)

    async def host(self, session: str) -> SessionHost | None:
        """Start hosting `session` unless another worker holds it."""
        if session in self.sessions:
            return self.sessions[session]
        lease = keys.session_host(session)
        if not await self.bus.acquire_lease(lease, self.id, self.settings.lease_ttl):
            log.info("session %s is hosted by %s", session, await self.bus.lease_holder(lease))
            return None
        host = SessionHost(
            session,
            bus=self.bus,
            spawner=self.spawner,
            settings=self.settings,
            ack=self._requests.ack,
            drops=self.drops,
        )
        self.sessions[session] = host
        await self._report_load()
        await self._requests.add(keys.requests(session))
        log.info("worker %s hosts session %s", self.id, session)
        await host.start()
        return host

    async def _drop_session(self, host: SessionHost) -> None:
        self.sessions.pop(host.session, None)
        await self._requests.remove(keys.requests(host.session))
        await self.bus.release_lease(keys.session_host(host.session), self.id)
        await self._report_load()

    # -- routing --------------------------------------------------------------------------
    async def _route_requests(self) -> None:
        while not self._stopping.is_set():
            async with self._contained("routing requests"):
                item = await self._requests.get(timeout=1.0)
                if item is not None:
                    await self._route(item)

    async def _route(self, item: QueueItem) -> None:
        session = item.queue.split(":")[1]
        host = self.sessions.get(session)
        try:
            msg = codec.decode(item.data)
            if msg.header.session != session:
                raise ValidationError(f"message for session {msg.header.session!r} on {item.queue}")
            if msg.msg_type not in {cls.msg_type for cls in m.REQUEST_TYPES}:
                raise ValidationError(f"{msg.msg_type} is not a request")
        except ValidationError as exc:
            self.drops.drop(item.queue, exc, item.id)
            await self._requests.ack(item)
            return
        if host is None or host.closed:
            log.warning("request %s for session %s, not hosted here", msg.msg_id, session)
            await self._requests.ack(item)
            return
        host.submit(item, msg)
        if msg.msg_type == "shutdown_request":
            await self._drop_session(host)

    # -- liveness -------------------------------------------------------------------------
    async def _report_load(self) -> None:
        ttl = self.settings.heartbeat_interval * 3
        await self.bus.report_load(keys.WORKERS, self.id, len(self.sessions), ttl)

    async def _heartbeat(self) -> None:
        while not self._stopping.is_set():
            await asyncio.sleep(self.settings.heartbeat_interval)
            async with self._contained("heartbeat"):
                await self._report_load()
                for session in list(self.sessions):
                    lease = keys.session_host(session)
                    if not await self.bus.renew_lease(lease, self.id, self.settings.lease_ttl):
                        log.error("lost the lease of session %s", session)
