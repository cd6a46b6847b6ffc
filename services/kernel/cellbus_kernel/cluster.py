"""The session process's side of parallel cells: its Dask scheduler, its client, its workers.

Runs inside the session's sandbox. On first use (`Cluster.client`) the session starts a Dask
scheduler in a thread of its own process, listening with TLS on one of the ports the sandbox
lets it bind (`CELLBUS_PARALLEL_PORTS`) and serving its dashboard on another
(`CELLBUS_PARALLEL_DASHBOARD_PORTS`, which no sandbox may connect to: only the web service's
authenticated proxy reaches it). The TLS credentials are made here, for this process only
(`distributed.security.Security.temporary`): other sessions can reach the port, never talk to
the scheduler.

Workers come from the kernel worker (`frames.ParallelWanted`, answered by
`frames.ParallelGranted`): it forks them in this session's sandbox, on its own machine and on
other kernel workers (`cellbus_kernel.parallel`). A worker that is lost is topped up on the
next use, or while a map waits (`top_up`); its tasks are rerun by Dask itself.

Nothing of this is saved in a checkpoint: a restored session starts a new scheduler and new
workers when it next uses them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import random
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from . import frames

if TYPE_CHECKING:
    from distributed import Client, Scheduler

log = logging.getLogger(__name__)

WORKERS_TIMEOUT = 60.0
"""Seconds to wait for the workers the kernel worker started to join the scheduler."""
RESTART_WAIT = 2.0
"""Seconds to wait for the scheduler to notice the workers it had restarted have gone."""
ASK_AGAIN_AFTER = 5.0
"""Seconds before asking again for workers that could not all be started."""


class Settings(msgspec.Struct, frozen=True):
    """What the kernel worker tells a session process about its parallel cells (at fork)."""

    session: str = ""
    host: str = "127.0.0.1"
    ports: list[int] = []
    http_ports: list[int] = []
    dashboard: str = ""  # the dashboard's path through the web service
    max_workers: int = 0
    idle_seconds: float = 0.0  # workers idle this long end (0: never)


class ParallelUnavailable(RuntimeError):
    """No Dask worker could be had: the message says why (a cap, parallel cells off)."""


class Cluster:
    """This session's scheduler, client and workers; made on first use."""

    def __init__(self) -> None:
        self.settings = Settings()
        self._send: Callable[[frames.FromSession], None] | None = None
        self._lock = threading.RLock()
        self._replies: dict[str, queue.SimpleQueue[frames.ParallelGranted]] = {}
        self._ids = itertools.count(1)
        self._scheduler: Scheduler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Client | None = None
        self._tls: tuple[str, str, str] | None = None
        self._dashboard_port = 0
        self._asked_at = 0.0
        self._short = False  # the last ask got fewer workers than it wanted
        self.note = ""
        """Why the last ask got fewer workers than wanted ("" if it did not)."""

    def configure(
        self, settings: dict[str, Any], send: Callable[[frames.FromSession], None]
    ) -> None:
        """In `child.serve`: the kernel worker's settings, and the pipe to ask it on."""
        self.settings = msgspec.convert(settings, Settings)
        self._send = send

    def deliver(self, granted: frames.ParallelGranted) -> None:
        """The kernel worker's answer to an ask (from the reader thread)."""
        waiting = self._replies.get(granted.id)
        if waiting is not None:
            waiting.put(granted)

    # -- the client -----------------------------------------------------------------------
    def client(self) -> Client:
        """The session's Dask client, with its workers asked for and joined."""
        with self._lock:
            if self.settings.max_workers <= 0 or self._send is None:
                raise ParallelUnavailable(
                    "parallel cells are off on this kernel (CELLBUS_PARALLEL_MAX_WORKERS=0)"
                )
            if self._client is None or self._client.status in ("closed", "closing"):
                self._start()
            assert self._client is not None
            if self.workers < self.settings.max_workers and not self._asked_recently():
                self._ask_and_wait()
            if self.workers == 0:
                raise ParallelUnavailable(
                    f"no Dask worker could start for this session: {self.note}"
                )
            return self._client

    @property
    def workers(self) -> int:
        """Workers joined to the scheduler now."""
        return len(self._scheduler.workers) if self._scheduler is not None else 0

    @property
    def dashboard(self) -> str:
        return (
            self.settings.dashboard + "/info/main/workers.html" if self.settings.dashboard else ""
        )

    def top_up(self) -> None:
        """While a map waits: ask for workers that were lost, without waiting for them."""
        if (
            self._client is not None
            and self.workers < self.settings.max_workers
            and not self._asked_recently()
        ):
            self._ask(self.settings.max_workers - self.workers)

    def _asked_recently(self) -> bool:
        return self._short and time.monotonic() - self._asked_at < ASK_AGAIN_AFTER

    def _ask(self, count: int) -> queue.SimpleQueue[frames.ParallelGranted]:
        assert self._send is not None and self._scheduler is not None and self._tls is not None
        ask_id = f"parallel-{next(self._ids)}"
        replies: queue.SimpleQueue[frames.ParallelGranted] = queue.SimpleQueue()
        self._replies[ask_id] = replies
        self._asked_at = time.monotonic()
        self._short = True  # until the answer says otherwise
        self._send(
            frames.ParallelWanted(
                id=ask_id, scheduler=self._scheduler.address, dashboard_port=self._dashboard_port,
                tls=self._tls, count=count, sys_path=_workspace_paths(),
            )
        )  # fmt: skip
        return replies

    def _ask_and_wait(self) -> None:
        before = self.workers
        wanted = self.settings.max_workers - before
        replies = self._ask(wanted)
        try:
            granted = replies.get(timeout=WORKERS_TIMEOUT)
        except queue.Empty:
            raise ParallelUnavailable(
                "the kernel worker did not answer the ask for Dask workers in "
                f"{WORKERS_TIMEOUT:.0f} s"
            ) from None
        self._replies.pop(granted.id, None)
        started = granted.local + granted.remote
        self._short = started < wanted
        self.note = granted.note
        if started:
            deadline = time.monotonic() + WORKERS_TIMEOUT
            while self.workers < before + started and time.monotonic() < deadline:
                time.sleep(0.02)

    # -- the scheduler --------------------------------------------------------------------
    def _start(self) -> None:
        from distributed import Client
        from distributed.security import Security

        quiet_dask()

        security = Security.temporary()
        assert security.tls_ca_file and security.tls_scheduler_cert and security.tls_scheduler_key
        self._tls = (security.tls_ca_file, security.tls_scheduler_cert, security.tls_scheduler_key)
        started = threading.Event()
        failure: list[BaseException] = []
        thread = threading.Thread(
            target=self._run_scheduler, args=(security, started, failure),
            name="dask-scheduler", daemon=True,
        )  # fmt: skip
        thread.start()
        started.wait()
        if failure:
            raise failure[0]
        assert self._scheduler is not None
        self._client = Client(self._scheduler.address, security=security, set_as_default=True)

    def _run_scheduler(
        self, security: Any, started: threading.Event, failure: list[BaseException]
    ) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve_scheduler(security, started))
        except BaseException as exc:
            failure.append(exc)
            started.set()

    async def _serve_scheduler(self, security: Any, started: threading.Event) -> None:
        from distributed import Scheduler

        host = self.settings.host
        ports = list(self.settings.ports)
        random.shuffle(ports)
        for port in ports:
            if not _free(host, port):
                continue
            self._dashboard_port = free_port(host, self.settings.http_ports)
            scheduler = Scheduler(
                host=host, port=port, protocol="tls", security=security,
                dashboard_address=f"{host}:{self._dashboard_port}", dashboard=False,
                http_prefix=self.settings.dashboard or "/",
                # the lost worker's tasks run again on the others (Dask's own retry)
                allowed_failures=3,
            )  # fmt: skip
            try:
                await scheduler
            except OSError:
                continue  # taken between the probe and the listen
            self._scheduler = scheduler
            started.set()
            retiring = asyncio.create_task(self._retire_when_idle(scheduler))
            await scheduler.finished()
            retiring.cancel()
            return
        raise ParallelUnavailable("no free port for the Dask scheduler (CELLBUS_PARALLEL_PORTS)")

    def shutdown(self) -> None:
        """Stop the scheduler and its workers (they end when it tells them to)."""
        with self._lock:
            client, self._client = self._client, None
            if client is not None:
                client.shutdown()
            self._scheduler = None
            self._short = False

    async def _retire_when_idle(self, scheduler: Scheduler) -> None:
        """End the workers once the scheduler has been idle for `Settings.idle_seconds` (Dask
        keeps `idle_since`): their cores go back to other sessions. Dask retires none that
        holds the only copy of a result someone still refers to."""
        idle = self.settings.idle_seconds
        while idle > 0:
            await asyncio.sleep(min(idle, 1.0))
            since = scheduler.idle_since
            if scheduler.workers and since is not None and time.time() - since >= idle:
                await scheduler.retire_workers(
                    list(scheduler.workers), close_workers=True, stimulus_id="cellbus-idle"
                )
                self._short = False

    def restart_workers(self, addresses: list[str]) -> None:
        """End these workers at once (a task that ignores a cancel); new ones replace them on
        the next use."""
        assert self._client is not None and self._scheduler is not None
        self._client.run(_exit_now, workers=addresses, wait=False)
        deadline = time.monotonic() + RESTART_WAIT
        while set(addresses) & set(self._scheduler.workers) and time.monotonic() < deadline:
            time.sleep(0.02)
        self._short = False  # ask again at the next use


def quiet_dask() -> None:
    """Dask's INFO lines (every connection, every worker that joins) would land in the cell's
    stderr: only its warnings and errors do."""
    logging.getLogger("distributed").setLevel(logging.WARNING)


async def _exit_now() -> None:
    """On a worker (``Client.run``, in its event loop, while a thread runs the task): end the
    process at once; its kernel worker reaps it."""
    import os

    os._exit(1)


def _workspace_paths() -> list[str]:
    """The session's import folders in its workspace (its own packages), for its workers."""
    import os

    here = os.getcwd()
    return [p for p in sys.path if p and (p == here or p.startswith(here + os.sep))]


def _free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str, ports: list[int]) -> int:
    """A port of `ports` nobody listens on now: the sandbox lets Dask bind only these, and
    Dask, asked for a port that is taken, would try any port instead."""
    candidates = list(ports)
    random.shuffle(candidates)
    for port in candidates:
        if _free(host, port):
            return port
    raise ParallelUnavailable(
        "no free port for the Dask dashboard (CELLBUS_PARALLEL_DASHBOARD_PORTS)"
    )


CLUSTER = Cluster()
"""The session's one cluster."""
