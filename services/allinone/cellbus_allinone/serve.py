"""``cellbus serve`` (and ``make run``): all of cellbus in one program.

The accounts service, a kernel worker and the web service run in one process on one bus,
exactly as they run apart in a deployment: they still talk only through the bus. With no
settings the bus is the in-process one and the store is SQLite in ``CELLBUS_DATA_DIR``, so
nothing else needs to be installed or running. The in-process bus keeps what a Redis
deployment keeps across a restart (feeds, queues, the session registry, checkpoints) in
``CELLBUS_DATA_DIR/bus.db`` (`cellbus_protocol.bus.persistent`), so stopping and starting the
program, even with SIGKILL, brings every session's variables back from its last checkpoint
and every feed's cursors. Given ``CELLBUS_REDIS_URL`` and
``CELLBUS_DATABASE_URL`` the same program uses Redis and PostgreSQL instead (and can then
share them with separately started services).

Session processes run in the kernel's sandbox (docs/security.md), as this program's user
unless ``CELLBUS_SESSION_USER`` is set; each gets its own folder in
``CELLBUS_DATA_DIR/sessions`` and works in its worksheet's workspace in
``CELLBUS_DATA_DIR/workspaces``; it can read or write nothing else of the data folder: not the
database, not the secret.

Checkpoints are signed with ``CELLBUS_SECRET``; without it, this program makes a random one
the first time and keeps it in ``CELLBUS_DATA_DIR/secret`` (mode 0600), so that checkpoints
made before a restart (on Redis or in bus.db) are still accepted after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import signal
import socket
from collections.abc import Mapping
from pathlib import Path

from aiohttp import web

from cellbus_accounts.config import AccountsSettings
from cellbus_accounts.handlers import Handlers
from cellbus_accounts.saver import OutputSaver
from cellbus_accounts.service import AccountsService
from cellbus_accounts.store import Store, database_for
from cellbus_kernel import sandbox
from cellbus_kernel.config import KernelSettings
from cellbus_kernel.isolation import forbid_inspection
from cellbus_kernel.worker import KernelWorker
from cellbus_protocol.bus import Bus, create_bus
from cellbus_protocol.isolation import Level
from cellbus_protocol.settings import configure_logging, settings_from_env
from cellbus_web.app import create_app
from cellbus_web.config import WebSettings

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Stack:
    """The settings of each service in this program, derived from one environment."""

    bus_url: str
    data_dir: Path
    kernel: KernelSettings
    accounts: AccountsSettings
    web: WebSettings

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Stack:
        data_dir = Path(environ.get("CELLBUS_DATA_DIR") or Path.home() / ".local/share/cellbus")
        # the in-process bus keeps feeds, queues, registries and checkpoints in bus.db
        bus_url = environ.get("CELLBUS_REDIS_URL") or f"memory://{data_dir.resolve()}/bus.db"
        database_url = environ.get("CELLBUS_DATABASE_URL") or f"sqlite:///{data_dir}/cellbus.db"
        accounts = settings_from_env(AccountsSettings, environ)
        kernel = settings_from_env(KernelSettings, environ)
        if not kernel.secret:
            kernel = dataclasses.replace(kernel, secret=data_dir_secret(data_dir))
        if not kernel.sessions_dir:
            kernel = dataclasses.replace(kernel, sessions_dir=str(data_dir / "sessions"))
        web = settings_from_env(WebSettings, environ)
        workspaces = environ.get("CELLBUS_WORKSPACES_DIR") or str(data_dir / "workspaces")
        kernel = dataclasses.replace(kernel, workspaces_dir=workspaces)
        return cls(
            bus_url=bus_url,
            data_dir=data_dir,
            kernel=kernel,
            accounts=dataclasses.replace(accounts, database_url=database_url),
            web=dataclasses.replace(web, workspaces_dir=workspaces),
        )


def data_dir_secret(data_dir: Path) -> str:
    """The checkpoint secret kept in `data_dir` (made, readable by this user only, if none)."""
    path = data_dir / "secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_hex(32)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another program made it first
        return path.read_text().strip()
    with os.fdopen(descriptor, "w") as file:
        file.write(value + "\n")
    return value


class Program:
    """The services of one program, started in dependency order and stopped in reverse."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.bus: Bus = create_bus(
            stack.bus_url,
            namespace=stack.web.namespace,
            feed_retention=stack.kernel.feed_retention,
        )
        self.url = ""
        self._stop = asyncio.Event()

    async def run(self, started: asyncio.Event | None = None) -> None:
        stack = self.stack
        stack.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if stack.kernel.session_user and os.geteuid() == 0:
            # Session users pass through (never list) it to their folders in data/sessions;
            # the sandbox, not this mode, is what keeps them from the database beside them.
            stack.data_dir.chmod(0o711)
        await self.bus.start()
        async with contextlib.AsyncExitStack() as cleanup:
            cleanup.push_async_callback(self.bus.close)
            store = Store(database_for(stack.accounts.database_url))
            await store.open()
            cleanup.push_async_callback(store.close)
            saver = OutputSaver(store, self.bus)
            await saver.start()
            cleanup.push_async_callback(saver.close)
            name = f"{socket.gethostname()}-{os.getpid()}"
            handlers = Handlers(store, self.bus, stack.accounts, saver)
            accounts = AccountsService(handlers, self.bus, f"accounts-{name}")
            worker = KernelWorker(stack.kernel, self.bus)
            tasks = [asyncio.create_task(accounts.run()), asyncio.create_task(worker.run())]
            cleanup.push_async_callback(self._stop_services, accounts, worker, tasks)
            await accounts.ready.wait()
            await worker.ready.wait()
            runner = web.AppRunner(create_app(stack.web, self.bus), access_log=None)
            await runner.setup()
            cleanup.push_async_callback(runner.cleanup)
            site = web.TCPSite(runner, stack.web.host, stack.web.port)
            await site.start()
            port = runner.addresses[0][1]
            self.url = f"http://{stack.web.host}:{port}/"
            if started is not None:
                started.set()
            await self._stop.wait()

    def stop(self) -> None:
        self._stop.set()

    @staticmethod
    async def _stop_services(
        accounts: AccountsService, worker: KernelWorker, tasks: list[asyncio.Task[None]]
    ) -> None:
        accounts.stop()
        worker.stop()
        await asyncio.gather(*tasks, return_exceptions=True)


async def serve(stack: Stack) -> None:
    program = Program(stack)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, program.stop)
    started = asyncio.Event()
    run = asyncio.create_task(program.run(started))
    waiting = asyncio.create_task(started.wait())
    await asyncio.wait({run, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if started.is_set():
        where = "in-process bus" if stack.bus_url.startswith("memory") else stack.bus_url
        print(f"cellbus is running at {program.url}  ({where}; data in {stack.data_dir})")
        print("Open it in a browser, or: cellbus login " + program.url.rstrip("/"))
        isolation = sandbox.probe()
        said = isolation.describe()
        warning = "" if isolation.level is Level.FULL else "WARNING: "
        print(f"{warning}{said[0].upper()}{said[1:]}.", flush=True)
    waiting.cancel()
    await run


async def start(environ: Mapping[str, str]) -> None:
    """Run the program configured by `environ` until SIGTERM or SIGINT."""
    stack = Stack.from_env(environ)
    forbid_inspection()  # session processes must not read this process's memory
    configure_logging(stack.web.log_level)
    await serve(stack)


def main() -> None:
    asyncio.run(start(os.environ))
