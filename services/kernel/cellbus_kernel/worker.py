"""A kernel worker: takes new sessions, hosts them, routes their requests, and takes over the
sessions of workers that die.

Placement. New sessions arrive on one queue (`keys.NEW_SESSIONS`) read by every worker in one
consumer group, so each goes to exactly one worker. A worker only reads that queue while it is
among the least loaded of the live workers (the load table, `keys.WORKERS`), so new sessions go
to the least-loaded worker. Before hosting, a worker takes the session's lease
(`keys.session_host`): a session is never hosted by two workers at once.

Routing. The worker reads the request queues of all its sessions through one consumer, checks
each message with the codec (invalid ones are logged, counted and dropped), and hands it to
the session's `Session`. A malformed message never stops the worker. A request for a
session this worker no longer hosts is left on the queue, unacknowledged, for its next host.

Failover. Each hosted session is in the registry `keys.SESSION_HOSTS` (session -> worker).
On every heartbeat each worker looks for sessions whose worker has left the load table and
whose lease has expired, and asks for them to be hosted again (a `SessionOpen` naming the
previous host). The worker that takes one restores its checkpoint and claims the requests the
dead worker had read and not finished (`Session.adopt`). A worker that cannot renew a lease
stops hosting that session at once (`Session.lose`).

Hibernation and draining. An idle session hibernates (`Session`): it is checkpointed and
leaves. On SIGTERM the worker checkpoints every session and hands it over (`stop`). However a
session leaves, it tells the worker why (`lifecycle.Departure`), and the worker lets go of it
(`_let_go`).
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
from cellbus_protocol.isolation import Level, announce, withdraw

from . import sandbox
from .checkpoints import CheckpointStore
from .config import KernelSettings
from .control import KernelControl
from .feed import KERNEL_USERNAME
from .frames import MAX_FRAME
from .isolation import session_environment
from .lifecycle import Departure
from .parallel import ParallelHost
from .session import Session
from .spawner import Spawner
from .tasks import all_at_once

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
        self.sessions: dict[str, Session] = {}
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
            bus, self.id, self.checkpoints, settings.lease_ttl, self._open_fork,
            Path(self.spawner.sandbox.workspaces_dir),
        )  # fmt: skip
        self.parallel = ParallelHost(bus, self.id, settings, self.spawner)
        self._tasks: list[asyncio.Task[None]] = []
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._reopened: dict[str, float] = {}  # sessions this worker asked to re-host, when
        self._load_lock = asyncio.Lock()  # load reports in order: the last one is the latest
        self._released = False  # sessions left since the last heartbeat
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
        if self.isolation.level is Level.FULL:
            log.info("kernel worker %s: %s", self.id, self.isolation.describe())
        else:
            log.warning("kernel worker %s: %s", self.id, self.isolation.describe())
        spec = self.spawner.sandbox
        sandbox.prepare_sessions_dir(Path(spec.sessions_dir), spec.user)
        sandbox.prepare_workspaces_dir(Path(spec.workspaces_dir), spec.user)
        await announce(self.bus, self.id, self.isolation.announced())
        await self.spawner.start()
        await self._new_sessions.add(keys.NEW_SESSIONS)
        await self._report_load()
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="heartbeat")
        self._tasks = [
            asyncio.create_task(self._take_new_sessions(), name="take-new-sessions"),
            asyncio.create_task(self._route_requests(), name="route-requests"),
            asyncio.create_task(self.control.run(), name="control-requests"),
            asyncio.create_task(self.parallel.run(), name="parallel-requests"),
        ]
        log.info("kernel worker %s ready", self.id)
        self.ready.set()
        stopping = asyncio.create_task(self._stopping.wait())
        done, _ = await asyncio.wait(
            [*self._tasks, self._heartbeat_task, stopping], return_when=asyncio.FIRST_COMPLETED
        )
        stopping.cancel()  # a loop failed first: the waiter is not needed any more
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
        await self._drain_all()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            await asyncio.wait([self._heartbeat_task], timeout=SHUTDOWN_GRACE)
        with contextlib.suppress(BusUnavailable):
            await self.bus.remove_load(keys.WORKERS, self.id)
            await withdraw(self.bus, self.id)
        await self.parallel.close()
        with contextlib.suppress(BusUnavailable):
            await self.bus.remove_load(keys.PARALLEL_LOAD, self.id)
        await self._new_sessions.close()
        await self._requests.close()
        await self.spawner.close()

    async def _drain_all(self) -> None:
        """Drain every session at once, within CELLBUS_DRAIN_TIMEOUT + CELLBUS_START_TIMEOUT;
        past it, what is left is cancelled: no drain outlives the worker."""
        deadline = self.settings.drain_timeout + self.settings.start_timeout
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(deadline), asyncio.TaskGroup() as drains:
                for session in list(self.sessions.values()):
                    drains.create_task(self._drain(session))

    async def _drain(self, session: Session) -> None:
        try:
            await session.drain(self.settings.drain_timeout)
        except Exception:
            log.exception("session %s: draining failed", session.session)

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

    async def host(self, session: str, fork_of: str = "") -> Session | None:
        """Start hosting `session` unless another worker holds it: restore its checkpoint,
        take over the requests its previous worker left unfinished, read its queue."""
        if session in self.sessions:
            return self.sessions[session]
        lease = keys.session_host(session)
        if not await self.bus.acquire_lease(lease, self.id, self.settings.lease_ttl):
            log.info("session %s is hosted by %s", session, await self.bus.lease_holder(lease))
            return None
        host = Session(
            session,
            bus=self.bus,
            spawner=self.spawner,
            settings=self.settings,
            ack=self._requests.ack,
            drops=self.drops,
            checkpoints=self.checkpoints,
            depart=self._let_go,
            parallel=self.parallel,
        )
        self.sessions[session] = host
        host.process.start_early()  # forks nothing: the spare is told its session
        queue = keys.requests(session)
        try:
            *_, pending = await all_at_once(  # round trips a restore would wait for in turn
                self.bus.set_entry(keys.SESSION_HOSTS, session, self.id),
                self._report_load(),
                host.load_checkpoint(fork_of),
                self._requests.claim(queue),
            )
            claimed = [
                (item, msg) for item in pending if (msg := await self._checked(item)) is not None
            ]
            for item, msg in await host.adopt(claimed):
                await self._dispatch(host, item, msg)
            if host.takes_requests:
                await self._requests.add(queue)
        except BaseException:  # the bus went away, or the worker is stopping: undo
            with contextlib.suppress(BusUnavailable):
                await host.lose()
            with contextlib.suppress(BusUnavailable):
                await self.bus.release_lease(lease, self.id)
            raise
        log.info("worker %s hosts session %s (%d claimed)", self.id, session, len(claimed))
        await host.start()
        return host

    async def _let_go(self, session: Session, departure: Departure) -> None:
        """`session` left (see `Departure` for what each reason asks of the worker): stop
        reading its queue, let go of its lease and registry entry unless they are not the
        worker's to touch, and have it hosted again if it moved or requests wait for it."""
        sid, queue = session.session, keys.requests(session.session)
        self._released = True
        if self.sessions.get(sid) is session:
            del self.sessions[sid]
        await self._requests.remove(queue)
        if not departure.lets_go:  # lost: touch nothing but the load (another worker has it)
            await self._report_load()
            return
        if not departure.stays_registered:
            await self.bus.remove_entry(keys.SESSION_HOSTS, sid, self.id)
        await self.bus.release_lease(keys.session_host(sid), self.id)
        if not self._draining:
            await self._report_load()
        # Requests that came while it was leaving wait on its queue: have it hosted again
        # now, rather than at the next request (which may never come).
        if departure.hands_over:
            await self._open(sid, previous_host=self.id)
        elif departure.wakes_for_queued and await self.bus.queue_size(queue) > 0:
            await self._open(sid)

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
        session = keys.session_of(item.queue)
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
        if host is None or not host.takes_requests:
            # Read just before its session left this worker: its next host claims it.
            log.info("request %s for session %s left for its next host", msg.msg_id, msg.session)
            return
        await self._dispatch(host, item, msg)

    async def _dispatch(self, host: Session, item: QueueItem, msg: Message) -> None:
        host.submit(item, msg)
        if msg.msg_type == "shutdown_request":  # nothing more for it (it then leaves)
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
                    await self.parallel.heartbeat()
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
        """Renew each lease; a session whose lease is gone is no longer this worker's to
        host, and each session judges whether its lease may have expired meanwhile (the bus
        was away)."""
        try:
            for sid, session in list(self.sessions.items()):
                began = time.monotonic()
                if await self.bus.renew_lease(
                    keys.session_host(sid), self.id, self.settings.lease_ttl
                ):
                    session.lease_renewed(began)
                elif session.holds_lease:
                    log.error("lost the lease of session %s; stopping it here", sid)
                    await session.lose()
        finally:
            for session in list(self.sessions.values()):
                await session.check_lease()

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
