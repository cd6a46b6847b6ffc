"""A kernel worker: takes new sessions, hosts them, routes their requests, and takes over the
sessions of workers that die.

Placement. New sessions arrive on one queue (`keys.NEW_SESSIONS`) read by every worker in one
consumer group, so each goes to exactly one worker. A worker only reads that queue while it is
among the least loaded of the live workers (the load table, `keys.WORKERS`), so new sessions go
to the least-loaded worker. Before hosting, a worker takes the session's lease
(`keys.session_host`): a session is never hosted by two workers at once.

Routing. The worker reads the request queues of all its sessions through one consumer, checks
each message with the codec (invalid ones are logged, counted and dropped), and hands it to
the session's `SessionHost`. A malformed message never stops the worker. A request for a
session this worker no longer hosts is left on the queue, unacknowledged, for its next host.

Failover. Each hosted session is in the registry `keys.SESSION_HOSTS` (session -> worker).
On every heartbeat each worker looks for sessions whose worker has left the load table and
whose lease has expired, and asks for them to be hosted again (a `SessionOpen` naming the
previous host). The worker that takes one restores its checkpoint and claims the requests the
dead worker had read and not finished (`SessionHost.adopt`). A worker that cannot renew a lease
stops hosting that session at once (`SessionHost.abandon`).

Hibernation and draining. An idle session hibernates (`SessionHost`): it is checkpointed and
released. On SIGTERM the worker checkpoints every session and hands it over (`stop`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from cellbus_protocol import codec, keys
from cellbus_protocol import messages as m
from cellbus_protocol.bus import Bus, Consumer, QueueItem
from cellbus_protocol.envelope import Message, now_iso
from cellbus_protocol.errors import BusUnavailable, ValidationError
from cellbus_protocol.isolation import announce, withdraw

from . import sandbox
from .checkpoints import CheckpointStore
from .config import KernelSettings
from .control import KernelControl
from .frames import MAX_FRAME
from .isolation import session_environment
from .session import KERNEL_USERNAME, SessionHost
from .spawner import Spawner

log = logging.getLogger(__name__)

IDLE_POLL = 0.05
"""Seconds between load checks while another worker is less loaded."""
SHUTDOWN_GRACE = 5.0
"""Seconds the worker's loops get to end when it stops."""
ABANDONED_OPEN_AGE = 60.0
"""Seconds after which a `SessionOpen` that a worker took and never finished (it died) is
claimed by another worker."""


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
        max_bytes = settings.checkpoint_max_mb * 2**20
        self.checkpoints = (
            CheckpointStore(bus, settings.secret, max_bytes) if settings.checkpoints else None
        )
        self.isolation = sandbox.probe()
        self.spawner = Spawner(
            session_environment(os.environ),
            sandbox.spec_from_settings(settings),
            max_frame=max(MAX_FRAME, max_bytes + 2**20),
        )
        # One new session at a time: one taken is this worker's, even if it stops being the
        # least loaded.
        self._new_sessions: Consumer = bus.consumer(keys.KERNEL_GROUP, f"{self.id}:new", batch=1)
        self._requests: Consumer = bus.consumer(keys.KERNEL_GROUP, f"{self.id}:requests")
        self.control = KernelControl(
            bus, self.id, self.checkpoints, settings.lease_ttl, self._open_fork
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._reopened: dict[str, float] = {}  # sessions this worker asked to re-host, when
        self._load_lock = asyncio.Lock()  # load reports in order: the last one is the latest
        self._released = False  # sessions were released since the last heartbeat
        self._stopping = asyncio.Event()
        self._draining = False
        self.ready = asyncio.Event()

    # -- life cycle -----------------------------------------------------------------------
    async def run(self) -> None:
        """Serve until `stop` is called."""
        if self.checkpoints is None:
            log.warning(
                "CELLBUS_SECRET is not set: no checkpoints; sessions do not hibernate, and "
                "those of a worker that dies or stops start again with a fresh namespace"
            )
        if self.isolation.level is sandbox.Level.FULL:
            log.info("kernel worker %s: %s", self.id, self.isolation.describe())
        else:
            log.warning("kernel worker %s: %s", self.id, self.isolation.describe())
        spec = self.spawner.sandbox
        sandbox.prepare_sessions_dir(Path(spec.sessions_dir), spec.user)
        await announce(self.bus, self.id, self.isolation.announced())
        await self.spawner.start()
        await self._new_sessions.add(keys.NEW_SESSIONS)
        await self._report_load()
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="heartbeat")
        self._tasks = [
            asyncio.create_task(self._take_new_sessions(), name="take-new-sessions"),
            asyncio.create_task(self._route_requests(), name="route-requests"),
            asyncio.create_task(self.control.run(), name="control-requests"),
        ]
        log.info("kernel worker %s ready", self.id)
        self.ready.set()
        stopping = asyncio.create_task(self._stopping.wait())
        done, _ = await asyncio.wait(
            [*self._tasks, self._heartbeat_task, stopping], return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if task is not stopping and task.exception() is not None:
                log.error("worker task %s failed", task.get_name(), exc_info=task.exception())
        await self._shutdown()

    def stop(self) -> None:
        self._stopping.set()

    async def _shutdown(self) -> None:
        """Drain: stop taking sessions and requests, leave the load table (so no new session
        comes here), checkpoint every session and hand it over, renewing leases meanwhile."""
        log.info("kernel worker %s stopping (%d sessions)", self.id, len(self.sessions))
        self._draining = True
        for task in self._tasks:
            task.cancel()
        # Bounded: a blocking read may not notice its cancellation at once.
        await asyncio.wait(self._tasks, timeout=SHUTDOWN_GRACE)
        with contextlib.suppress(BusUnavailable):
            await self.bus.remove_load(keys.WORKERS, self.id)
        hosts = list(self.sessions.values())
        if hosts:
            await asyncio.wait(
                [asyncio.create_task(self._drain(host)) for host in hosts],
                timeout=self.settings.drain_timeout + self.settings.start_timeout,
            )
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            await asyncio.wait([self._heartbeat_task], timeout=SHUTDOWN_GRACE)
        with contextlib.suppress(BusUnavailable):
            await self.bus.remove_load(keys.WORKERS, self.id)
            await withdraw(self.bus, self.id)
        await self._new_sessions.close()
        await self._requests.close()
        await self.spawner.close()

    async def _drain(self, host: SessionHost) -> None:
        try:
            moved = await host.drain(self.settings.drain_timeout)
            await self._release(host, "moved" if moved else "stopped")
        except Exception:
            log.exception("session %s: draining failed", host.session)

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
            if record.previous_host and not await self._still_orphaned(record):
                log.info("session %s was taken over already", record.session)
            else:
                await self.host(record.session, fork_of=record.fork_of)
        finally:
            await self._new_sessions.ack(item)

    async def _still_orphaned(self, record: m.SessionOpen) -> bool:
        """A takeover or handover record is stale once the registry names another worker
        (the session was taken, then hibernated or shut down)."""
        registered = await self.bus.get_entry(keys.SESSION_HOSTS, record.session)
        return registered == record.previous_host

    async def host(self, session: str, fork_of: str = "") -> SessionHost | None:
        """Start hosting `session` unless another worker holds it: restore its checkpoint,
        take over the requests its previous worker left unfinished, read its queue."""
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
            checkpoints=self.checkpoints,
            release=self._release,
        )
        host.lease_deadline = time.monotonic() + self.settings.lease_ttl
        self.sessions[session] = host
        try:
            await self.bus.set_entry(keys.SESSION_HOSTS, session, self.id)
            await self._report_load()
            if self.checkpoints is not None:
                host.cp.pending = await self.checkpoints.load(session, fork_of)
            queue = keys.requests(session)
            claimed = [
                (item, msg)
                for item in await self._requests.claim(queue)
                if (msg := await self._checked(item)) is not None
            ]
            for item, msg in await host.adopt(claimed):
                await self._dispatch(host, item, msg)
            if not host.closed:
                await self._requests.add(queue)
        except BaseException:  # the bus went away, or the worker is stopping: undo
            host.abandon()
            self.sessions.pop(session, None)
            with contextlib.suppress(BusUnavailable):
                await self.bus.release_lease(lease, self.id)
            raise
        log.info("worker %s hosts session %s (%d claimed)", self.id, session, len(claimed))
        await host.start()
        return host

    async def _release(self, host: SessionHost, how: str) -> None:
        """Stop hosting `host`'s session. `how`: ``hibernated`` (its next request re-hosts
        it), ``moved`` (handed over: another worker takes it now), ``stopped`` (ended by a
        stopping worker without checkpoints), ``shut down``, or ``lost`` (the lease is gone:
        touch nothing on the bus, another worker may host it)."""
        session, queue = host.session, keys.requests(host.session)
        self._released = True
        if how == "lost":
            host.abandon()
        if self.sessions.get(session) is host:
            del self.sessions[session]
        await self._requests.remove(queue)
        if how == "lost":
            await self._report_load()
            return
        if how != "moved":  # a handed-over session stays registered to us until taken
            await self.bus.remove_entry(keys.SESSION_HOSTS, session, self.id)
        await self.bus.release_lease(keys.session_host(session), self.id)
        if not self._draining:
            await self._report_load()
        # Requests that came while it was being released wait on its queue: have it hosted
        # again now, rather than at the next request (which may never come).
        if how == "moved" or (how == "hibernated" and await self.bus.queue_size(queue) > 0):
            previous = self.id if how == "moved" else ""
            await self._open(session, previous_host=previous)

    async def _open(self, session: str, previous_host: str = "", fork_of: str = "") -> None:
        record = m.SessionOpen(
            session=session, username=KERNEL_USERNAME, date=now_iso(),
            previous_host=previous_host, fork_of=fork_of,
        )  # fmt: skip
        await self.bus.enqueue(keys.NEW_SESSIONS, codec.encode_record(record))

    async def _open_fork(self, session: str, fork_of: str) -> None:
        await self._open(session, fork_of=fork_of)

    # -- routing --------------------------------------------------------------------------
    async def _route_requests(self) -> None:
        while not self._stopping.is_set():
            async with self._contained("routing requests"):
                item = await self._requests.get(timeout=1.0)
                if item is not None:
                    await self._route(item)

    async def _checked(self, item: QueueItem) -> Message | None:
        """The request in `item`, or None (logged, counted, acknowledged) if it is invalid."""
        session = item.queue.split(":")[1]
        try:
            msg = codec.decode(item.data)
            if msg.header.session != session:
                raise ValidationError(f"message for session {msg.header.session!r} on {item.queue}")
            if msg.msg_type not in {cls.msg_type for cls in m.REQUEST_TYPES}:
                raise ValidationError(f"{msg.msg_type} is not a request")
        except ValidationError as exc:
            self.drops.drop(item.queue, exc, item.id)
            await self._requests.ack(item)
            return None
        return msg

    async def _route(self, item: QueueItem) -> None:
        msg = await self._checked(item)
        if msg is None:
            return
        host = self.sessions.get(msg.session)
        if host is None or host.closed:
            # Read just before its session left this worker: its next host claims it.
            log.info("request %s for session %s left for its next host", msg.msg_id, msg.session)
            return
        await self._dispatch(host, item, msg)

    async def _dispatch(self, host: SessionHost, item: QueueItem, msg: Message) -> None:
        host.submit(item, msg)
        if msg.msg_type == "shutdown_request":  # nothing more for it (the host then releases it)
            await self._requests.remove(keys.requests(host.session))

    # -- liveness -------------------------------------------------------------------------
    async def _report_load(self) -> None:
        ttl = self.settings.heartbeat_interval * 3
        async with self._load_lock:
            await self.bus.report_load(keys.WORKERS, self.id, len(self.sessions), ttl)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval)
            if not self._draining:
                async with self._contained("heartbeat"):
                    await self._report_load()
            async with self._contained("renewing leases"):
                await self._renew_leases()
            if not self._draining:
                async with self._contained("looking for orphaned sessions"):
                    await self._take_over_orphans()
                    await self._claim_abandoned_opens()
            if self._released:
                self._released = False
                release_free_memory()

    async def _renew_leases(self) -> None:
        """Renew each lease; a session whose lease is gone, or may have expired while the bus
        was away, is no longer this worker's to host."""
        try:
            for session, host in list(self.sessions.items()):
                began = time.monotonic()
                if await self.bus.renew_lease(
                    keys.session_host(session), self.id, self.settings.lease_ttl
                ):
                    host.lease_deadline = began + self.settings.lease_ttl
                elif not host.closed:
                    log.error("lost the lease of session %s; stopping it here", session)
                    await self._release(host, "lost")
        finally:
            now = time.monotonic()
            for session, host in list(self.sessions.items()):
                if now > host.lease_deadline and not host.closed:
                    log.error("the lease of session %s may have expired; stopping it", session)
                    await self._release(host, "lost")

    async def _take_over_orphans(self) -> None:
        """Ask for the sessions of workers that are gone to be hosted again."""
        registry = await self.bus.entries(keys.SESSION_HOSTS)
        if not registry:
            return
        live = await self.bus.loads(keys.WORKERS)
        now = time.monotonic()
        window = self.settings.lease_ttl
        self._reopened = {s: t for s, t in self._reopened.items() if now - t < window}
        for session, worker in registry.items():
            if session in self._reopened or session in self.sessions:
                continue
            if worker != self.id and worker in live:
                continue
            if await self.bus.lease_holder(keys.session_host(session)) is not None:
                continue
            log.warning("session %s: its worker %s is gone; re-hosting it", session, worker)
            self._reopened[session] = now
            await self._open(session, previous_host=worker)

    async def _claim_abandoned_opens(self) -> None:
        """`SessionOpen` records that a worker took and died before finishing."""
        for item in await self._new_sessions.claim(keys.NEW_SESSIONS, ABANDONED_OPEN_AGE):
            log.warning("taking over session record %s left by a lost worker", item.id)
            await self._take_new_session(item)


def release_free_memory() -> None:
    """Give the C allocator's free pages back to the system (glibc's ``malloc_trim``, about
    2 ms). Without it a worker whose sessions have hibernated keeps the memory they used in
    its heap (6 MiB after 1,000 sessions, measured), although nothing uses it any more."""
    with contextlib.suppress(AttributeError, OSError):  # not glibc: nothing to do
        ctypes.CDLL(None).malloc_trim(0)
