"""The kernel worker's side of parallel cells: Dask workers for sessions, on this machine and
on the others.

A session's Dask scheduler runs in the session process (`cluster`); when it wants workers it
sends its kernel worker a `frames.ParallelWanted`. The worker (`ParallelHost.grant`):

1. caps the ask: `CELLBUS_PARALLEL_MAX_WORKERS` for the session, and
   `CELLBUS_PARALLEL_MAX_WORKERS_PER_USER` for whoever runs the cell, counted over the
   sessions this worker hosts;
2. forks as many Dask workers as its free cores allow (`CELLBUS_PARALLEL_CORES`, all sessions
   together) from its template, each in the session's sandbox (`dask_worker`);
3. asks the other kernel workers for the rest, least loaded first (`keys.PARALLEL_LOAD`), on
   their own queues (`keys.parallel_requests`): they fork them the same way;
4. answers with a `frames.ParallelGranted`, whose note says why fewer came than were asked.

When the session's process ends (restart, shutdown, hibernation, a crash, the session moving
away) its workers are stopped here and on the workers it asked (`stop`); a Dask worker whose
scheduler vanished also ends by itself (`dask_worker.DEATH_TIMEOUT`). The scheduler's
dashboard address is registered (`keys.PARALLEL_DASHBOARDS`) for the web service's proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field

import msgspec

from cellbus_protocol import codec, keys
from cellbus_protocol import messages as m
from cellbus_protocol.bus import Bus, Consumer, QueueItem
from cellbus_protocol.errors import BusUnavailable, RequestTimeout

from . import frames
from .config import KernelSettings
from .sandbox import parse_ports
from .spawner import SessionProcess, Spawner
from .tasks import TaskSet

log = logging.getLogger(__name__)

ASK_TIMEOUT = 15.0
"""Seconds another kernel worker gets to start Dask workers for a session."""

_decoder = msgspec.json.Decoder(m.AnyParallelRequest)


def dashboard_path(session: str) -> str:
    """Where the web service serves a session's Dask dashboard (its scheduler's prefix)."""
    return f"/parallel/{keys.check_session_id(session)}/dashboard"


def advertised_host(setting: str) -> str:
    """CELLBUS_PARALLEL_HOST: ``auto`` is this machine's address (a container's own)."""
    if setting == "auto":
        return socket.gethostbyname(socket.gethostname())
    return setting or "127.0.0.1"


@dataclass
class _SessionWorkers:
    """The Dask workers of one session that this kernel worker knows of."""

    username: str = ""
    local: dict[int, SessionProcess] = field(default_factory=dict)  # pid -> process
    remote: dict[str, int] = field(default_factory=dict)  # other kernel worker -> its count

    @property
    def count(self) -> int:
        return len(self.local) + sum(self.remote.values())


class ParallelHost:
    """This kernel worker's Dask workers, and its asks to the others."""

    def __init__(
        self, bus: Bus, worker_id: str, settings: KernelSettings, spawner: Spawner
    ) -> None:
        self._bus = bus
        self._id = worker_id
        self._settings = settings
        self._spawner = spawner
        self.cores = settings.parallel_cores or os.cpu_count() or 1
        self.enabled = settings.parallel_max_workers > 0
        self.host = advertised_host(settings.parallel_host)
        self._ports = parse_ports(settings.parallel_ports, "CELLBUS_PARALLEL_PORTS") or []
        self._http_ports = (
            parse_ports(settings.parallel_dashboard_ports, "CELLBUS_PARALLEL_DASHBOARD_PORTS") or []
        )
        self._sessions: dict[str, _SessionWorkers] = {}
        self._lock = asyncio.Lock()  # one grant at a time: cores are counted, then used
        self._tasks = TaskSet(f"kernel worker {worker_id} parallel")
        self._consumer: Consumer = bus.consumer(keys.KERNEL_GROUP, f"{worker_id}:parallel")

    # -- what sessions learn --------------------------------------------------------------
    def session_settings(self, session: str) -> dict[str, object]:
        """What a session process needs to start its scheduler (`cluster.Settings`)."""
        if not self.enabled:
            return {}
        return {
            "session": session,
            "host": self.host,
            "ports": self._ports,
            "http_ports": self._http_ports,
            "dashboard": dashboard_path(session),
            "max_workers": self._settings.parallel_max_workers,
            "idle_seconds": self._settings.parallel_idle_seconds,
        }

    @property
    def running(self) -> int:
        """Dask workers running on this kernel worker, for every session."""
        return sum(len(workers.local) for workers in self._sessions.values())

    # -- the session's own kernel worker --------------------------------------------------
    async def grant(
        self, session: str, username: str, wanted: frames.ParallelWanted
    ) -> frames.ParallelGranted:
        """Start up to `wanted.count` workers for `session`: here first, then elsewhere."""
        async with self._lock:
            workers = self._sessions.setdefault(session, _SessionWorkers())
            workers.username = username
            await self._register_dashboard(session, wanted)
            await self._refresh_remote(session, workers)
            notes: list[str] = []
            count = self._capped(session, username, wanted.count, notes)
            tls = m.ParallelTLS(ca=wanted.tls[0], cert=wanted.tls[1], key=wanted.tls[2])
            local = await self._start_here(
                session, username, wanted.scheduler, tls, min(count, self.cores - self.running),
                wanted.sys_path,
            )  # fmt: skip
            remote = 0
            if count > local:
                start = m.ParallelStart(
                    session=session, username=username, scheduler=wanted.scheduler, tls=tls,
                    count=count - local, sys_path=wanted.sys_path,
                )  # fmt: skip
                remote = await self._ask_others(start, workers)
            if count and local + remote == 0:  # fewer than asked is the usual case: no note
                notes.append(
                    "every kernel worker's cores are in use by Dask workers "
                    "(CELLBUS_PARALLEL_CORES); they free them when idle"
                )
        log.info(
            "session %s: %d Dask workers here, %d elsewhere (asked for %d)",
            session, local, remote, wanted.count,
        )  # fmt: skip
        return frames.ParallelGranted(
            id=wanted.id, local=local, remote=remote, note=" ".join(notes),
            dashboard=dashboard_path(session),
        )  # fmt: skip

    def _capped(self, session: str, username: str, count: int, notes: list[str]) -> int:
        settings = self._settings
        have = self._sessions[session].count
        room = settings.parallel_max_workers - have
        if count > room:
            count = max(room, 0)
            notes.append(
                f"A session may have {settings.parallel_max_workers} Dask workers "
                f"(CELLBUS_PARALLEL_MAX_WORKERS); it has {have}."
            )
        users = sum(w.count for w in self._sessions.values() if w.username == username)
        room = settings.parallel_max_workers_per_user - users
        if count > room:
            count = max(room, 0)
            notes.append(
                f"{username}'s sessions may have {settings.parallel_max_workers_per_user} Dask "
                f"workers together (CELLBUS_PARALLEL_MAX_WORKERS_PER_USER); they have {users}."
            )
        return count

    async def _ask_others(self, start: m.ParallelStart, workers: _SessionWorkers) -> int:
        """Ask the other live kernel workers, least loaded first, until `start.count` run."""
        try:
            live = set(await self._bus.loads(keys.WORKERS))
            loads = await self._bus.loads(keys.PARALLEL_LOAD)
        except BusUnavailable as exc:
            log.warning("session %s: cannot ask for Dask workers: %s", start.session, exc)
            return 0
        others = sorted((loads.get(w, 0), w) for w in live if w != self._id)
        started = 0
        for _, other in others:
            wanted = start.count - started
            if wanted <= 0:
                break
            reply = await self._ask(other, msgspec.structs.replace(start, count=wanted))
            if reply is not None:
                started += reply.started
                workers.remote[other] = workers.remote.get(other, 0) + reply.started
        return started

    async def _refresh_remote(self, session: str, workers: _SessionWorkers) -> None:
        """How many of the session's workers still run elsewhere (some may have ended)."""
        for other in list(workers.remote):
            reply = await self._ask(other, m.ParallelStart(
                session=session, username=workers.username, scheduler="",
                tls=m.ParallelTLS(ca="", cert="", key=""), count=0,
            ))  # fmt: skip
            workers.remote[other] = reply.started if reply is not None else 0

    async def _ask(self, other: str, request: m.AnyParallelRequest) -> m.ParallelStarted | None:
        try:
            data = await self._bus.request(
                keys.parallel_requests(other), codec.encode_record(request), timeout=ASK_TIMEOUT
            )
            return codec.decode_record(data, m.ParallelStarted)
        except (BusUnavailable, RequestTimeout, msgspec.DecodeError, ValueError) as exc:
            log.warning("asking %s for Dask workers of %s: %s", other, request.session, exc)
            return None

    async def _register_dashboard(self, session: str, wanted: frames.ParallelWanted) -> None:
        if wanted.dashboard_port in self._http_ports:
            address = f"http://{self.host}:{wanted.dashboard_port}"
            with contextlib.suppress(BusUnavailable):
                await self._bus.set_entry(keys.PARALLEL_DASHBOARDS, session, address)

    # -- any kernel worker ----------------------------------------------------------------
    async def _start_here(
        self,
        session: str,
        username: str,
        scheduler: str,
        tls: m.ParallelTLS,
        count: int,
        sys_path: list[str],
    ) -> int:
        """Fork `count` Dask workers for `session` (fewer if one fails to start)."""
        started = 0
        workers = self._sessions.setdefault(session, _SessionWorkers(username=username))
        for _ in range(max(count, 0)):
            private = f"{session}.parallel-{uuid.uuid4().hex[:8]}"
            try:
                process = await self._spawner.spawn(
                    session, 0, role=frames.Role.DASK_WORKER, private=private
                )
                await process.pipe.send(
                    frames.ParallelPorts(
                        scheduler=scheduler, tls=(tls.ca, tls.cert, tls.key), host=self.host,
                        ports=self._ports, http_ports=self._http_ports,
                        name=f"{self._id}/{process.pid}",
                        memory_limit=self._settings.memory_limit_mb * 1024 * 1024,
                        sys_path=sys_path,
                    )
                )  # fmt: skip
            except Exception:
                log.exception("session %s: a Dask worker could not start", session)
                break
            workers.local[process.pid] = process
            self._tasks.spawn(self._reap(session, process, private))
            started += 1
        if started:
            await self._report_load()
        return started

    async def _reap(self, session: str, process: SessionProcess, private: str) -> None:
        """Forget a Dask worker when it ends, and its private folder with it."""
        try:
            await asyncio.shield(process.exited)
        finally:
            workers = self._sessions.get(session)
            if workers is not None:
                workers.local.pop(process.pid, None)
                if not workers.local and not workers.remote:
                    self._sessions.pop(session, None)
            await process.pipe.close()
            folder = os.path.join(self._spawner.sandbox.sessions_dir, private)
            await asyncio.to_thread(_remove_tree, folder)
            with contextlib.suppress(BusUnavailable):
                await self._report_load()

    def stop_soon(self, session: str) -> None:
        """`stop`, in a task of this host's (which outlives the session)."""
        if session in self._sessions:
            self._tasks.spawn(self.stop(session), name=f"stop-dask-workers-{session}")

    async def stop(self, session: str) -> None:
        """The session's process ended: its Dask workers go, here and elsewhere."""
        workers = self._sessions.pop(session, None)
        with contextlib.suppress(BusUnavailable):
            entry = await self._bus.get_entry(keys.PARALLEL_DASHBOARDS, session)
            if entry is not None:
                await self._bus.remove_entry(keys.PARALLEL_DASHBOARDS, session, entry)
        if workers is None:
            return
        for process in list(workers.local.values()):
            await process.kill()
        for other in workers.remote:
            await self._ask(other, m.ParallelStop(session=session))
        log.info("session %s: its Dask workers were stopped", session)

    async def _report_load(self) -> None:
        ttl = self._settings.heartbeat_interval * 3
        await self._bus.report_load(keys.PARALLEL_LOAD, self._id, self.running, ttl)

    async def heartbeat(self) -> None:
        """Keep this worker's row of `keys.PARALLEL_LOAD` alive (with the worker's own)."""
        if self.enabled:
            await self._report_load()

    async def run(self) -> None:
        """Answer other kernel workers' asks until cancelled."""
        queue = keys.parallel_requests(self._id)
        await self._consumer.add(queue)
        try:
            async with asyncio.TaskGroup() as tasks:
                while True:
                    try:
                        item = await self._consumer.get(timeout=1.0)
                    except BusUnavailable as exc:
                        log.warning("reading Dask worker requests: %s", exc)
                        await asyncio.sleep(1.0)
                        continue
                    if item is not None:
                        tasks.create_task(self._serve(item))
        finally:
            await self._consumer.close()

    async def _serve(self, item: QueueItem) -> None:
        try:
            reply = await self._answer(item)
            await self._bus.reply(item, codec.encode_record(reply))
        except BusUnavailable as exc:
            log.warning("Dask worker request %s: could not reply: %s", item.id, exc)
        except Exception:
            log.exception("Dask worker request %s failed", item.id)
        finally:
            with contextlib.suppress(BusUnavailable):
                await self._consumer.ack(item)

    async def _answer(self, item: QueueItem) -> m.ParallelStarted:
        try:
            request = _decoder.decode(item.data)
            keys.check_session_id(request.session)
        except (msgspec.DecodeError, ValueError) as exc:
            log.warning("Dask worker request %s: %s", item.id, exc)
            return m.ParallelStarted(started=0, note=f"bad request: {exc}")
        if isinstance(request, m.ParallelStop):
            await self.stop(request.session)
            return m.ParallelStarted(started=0)
        if request.count <= 0:  # how many run for the session here now
            workers = self._sessions.get(request.session)
            return m.ParallelStarted(started=len(workers.local) if workers else 0)
        async with self._lock:
            free = self.cores - self.running
            started = await self._start_here(
                request.session, request.username, request.scheduler, request.tls,
                min(request.count, free), request.sys_path,
            )  # fmt: skip
        return m.ParallelStarted(started=started)

    async def close(self) -> None:
        for session in list(self._sessions):
            workers = self._sessions.pop(session)
            for process in list(workers.local.values()):
                await process.kill()
        await self._tasks.close()


def _remove_tree(folder: str) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
