"""The accounts service when things go wrong around it: PostgreSQL crashing and coming back
under a stream of writes, or refusing new connections; and the service as a deployment runs
it (a process of its own, stopped with SIGTERM; two of them starting at once on a fresh
database).

Everything is bounded: calls by the client's timeout, phases by `PHASE_TIMEOUT`. PostgreSQL
is crashed only in a cluster of the test's own (`private_postgres`), never the shared one."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from cellbus_accounts.config import AccountsSettings
from cellbus_accounts.handlers import Handlers
from cellbus_accounts.migrations import migrations_for
from cellbus_accounts.service import AccountsService
from cellbus_accounts.store import Postgres, Store
from cellbus_protocol import accounts as a
from cellbus_protocol import keys
from cellbus_protocol.bus import RedisBus
from cellbus_protocol.errors import RemoteError, RequestTimeout

from ..support.documents import Replica
from ..support.postgres import create_database, drop_database
from ..support.private_postgres import PrivatePostgres
from ..support.redis import REDIS_URL
from ..support.workers import service_env

PASSWORD = "correct horse battery"
WRITERS = 4
CALL_TIMEOUT = 20.0  # seconds a call may take before it counts as a hang
PHASE_TIMEOUT = 30.0  # seconds any phase of a test may take
OUTAGE = 1.0  # seconds PostgreSQL stays down
ACKS_PER_PHASE = 5  # acknowledged writes each writer makes before the crash and after it


@pytest.fixture
async def redis_bus_client(namespace: str) -> AsyncIterator[a.AccountsClient]:
    bus = RedisBus(REDIS_URL, namespace=namespace)
    await bus.start()
    yield a.AccountsClient(bus, timeout=CALL_TIMEOUT)
    await bus.close()


@contextlib.asynccontextmanager
async def in_process_service(database_url: str, namespace: str) -> AsyncIterator[a.AccountsClient]:
    """The accounts service in the test's event loop, as test_accounts.py runs it, on Redis in
    the test's namespace and on `database_url`; a client for it."""
    bus = RedisBus(REDIS_URL, namespace=namespace)
    await bus.start()
    store = Store(Postgres(database_url))
    await store.open()
    service = AccountsService(Handlers(store, bus, AccountsSettings()), bus, "accounts-faults")
    service_task = asyncio.create_task(service.run())
    try:
        yield a.AccountsClient(bus, timeout=CALL_TIMEOUT)
    finally:
        service.stop()
        async with asyncio.timeout(PHASE_TIMEOUT):
            await service_task
            await store.close()
            await bus.close()


# -- PostgreSQL restarting under load ----------------------------------------------------------


@dataclass
class Call:
    """One cell.create call of a writer, and what it got."""

    writer: int
    source: str
    started: float
    ended: float = 0.0
    cell_id: str | None = None  # the result: the call was acknowledged
    error: str | None = None  # else the error code (or what went wrong on the client's side)


class Calls:
    """Every call the writers made so far; lets the test wait until they show something."""

    def __init__(self) -> None:
        self.all: list[Call] = []
        self.stop = asyncio.Event()  # the writers finish their call under way, and end
        self._changed = asyncio.Event()

    def add(self, call: Call) -> None:
        self.all.append(call)
        self._changed.set()

    def summary(self) -> str:
        outcomes = collections.Counter(c.error or "ok" for c in self.all)
        return f"{len(self.all)} calls: {dict(outcomes)}"

    async def wait_until(self, what: str, done: Callable[[list[Call]], bool]) -> None:
        try:
            async with asyncio.timeout(PHASE_TIMEOUT):
                while not done(self.all):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"no {what} within {PHASE_TIMEOUT} s; {self.summary()}") from None


def each_writer(test: Callable[[Call], bool], count: int = 1) -> Callable[[list[Call]], bool]:
    """True once every writer has made `count` calls passing `test`."""

    def done(calls: list[Call]) -> bool:
        per_writer = collections.Counter(c.writer for c in calls if test(c))
        return all(per_writer[w] >= count for w in range(WRITERS))

    return done


async def write_cells(
    client: a.AccountsClient, actor: str, worksheet: str, writer: int, calls: Calls
) -> None:
    """Create cells one after another, as fast as the service answers, until told to stop.

    (Told, not cancelled: redis-py may swallow a cancellation on Python 3.11, see
    `cellbus_protocol.bus.redis._raise_if_cancelled`, and a writer would then go on.)"""
    n = 0
    while not calls.stop.is_set():
        call = Call(writer, f"writer {writer} cell {n}", time.monotonic())
        n += 1
        request = a.CreateCell(worksheet=worksheet, source=call.source, actor=actor)
        try:
            call.cell_id = (await client.call(request)).id
        except RemoteError as exc:
            call.error = exc.code
        except RequestTimeout:
            call.error = "no reply (hang)"
        except Exception as exc:  # recorded, so the test reports it rather than hanging
            call.error = f"client failure {exc!r}"
        call.ended = time.monotonic()
        calls.add(call)


async def stop_writers(calls: Calls, writers: list[asyncio.Task[None]]) -> None:
    calls.stop.set()
    if writers:
        _, late = await asyncio.wait(writers, timeout=CALL_TIMEOUT + 5)
        for task in late:
            task.cancel()
        assert not late, f"{len(late)} writers did not stop; {calls.summary()}"
        for task in writers:
            task.result()


async def test_postgres_crashing_and_coming_back_under_a_stream_of_writes(
    private_postgres: PrivatePostgres, namespace: str
) -> None:
    pg = private_postgres
    calls = Calls()
    writers: list[asyncio.Task[None]] = []
    async with in_process_service(pg.url, namespace) as client:
        try:
            ada = await client.call(a.Register(username="ada", password=PASSWORD))
            sheet = await client.call(a.CreateWorksheet(title="Under load", actor=ada.id))
            writers = [
                asyncio.create_task(write_cells(client, ada.id, sheet.id, w, calls))
                for w in range(WRITERS)
            ]
            await calls.wait_until(
                "writes before the crash", each_writer(lambda c: c.error is None, ACKS_PER_PHASE)
            )

            crash_began = time.monotonic()
            await asyncio.to_thread(pg.stop, "immediate")
            down = time.monotonic()
            # The writers go on while PostgreSQL is down: each must be told "unavailable".
            await calls.wait_until(
                "refused writes during the outage",
                each_writer(lambda c: c.started >= down and c.error is not None),
            )
            await asyncio.sleep(max(0.0, down + OUTAGE - time.monotonic()))  # the outage itself
            restart_began = time.monotonic()
            await asyncio.to_thread(pg.start)
            back = time.monotonic()
            await calls.wait_until(
                "writes after the restart",
                each_writer(lambda c: c.started >= back and c.error is None, ACKS_PER_PHASE),
            )
        finally:
            await stop_writers(calls, writers)

        made = calls.all
        # Every call was answered, with a result or "unavailable": nothing else, no hang.
        assert {c.error for c in made} <= {None, "unavailable"}, calls.summary()
        # Some were made while PostgreSQL was down (the test did test an outage)...
        during = [c for c in made if c.started >= down and c.ended <= restart_began]
        assert during and all(c.error == "unavailable" for c in during), calls.summary()
        # ...and none failed once it was back: the service reconnected by itself.
        after = [c for c in made if c.started >= back]
        assert after and all(c.error is None for c in after), calls.summary()

        # Every acknowledged cell is in the database, once. The only cells there that were
        # not acknowledged are ones whose call was under way at the crash (their commit may
        # have been done when the connection was cut, the reply not).
        seen = await client.call(a.GetWorksheet(id=sheet.id, actor=ada.id))
        fresh = Store(Postgres(pg.url))
        await fresh.open()
        try:  # the document as its history in the database says, read afresh
            history, _ = await fresh.documents.history(uuid.UUID(sheet.id), 0)
        finally:
            await fresh.close()
        replica = Replica()
        for _, update in history.updates:
            replica.apply(update)
        stored = replica.cells
        stored_ids = [cell.id for cell in stored]
        assert sorted(stored_ids) == sorted(c.id for c in seen.cells)
        assert len(set(stored_ids)) == len(stored_ids)
        sources = collections.Counter(cell.source for cell in stored)
        assert [s for s, n in sources.items() if n > 1] == [], "a write was applied twice"
        stored_by_id = {cell.id: cell.source for cell in stored}
        acked = {c.cell_id: c.source for c in made if c.cell_id is not None}
        missing = {i: s for i, s in acked.items() if stored_by_id.get(i) != s}
        assert missing == {}, f"{len(missing)} acknowledged cells are not in the database"
        by_source = {c.source: c for c in made}
        for cell in stored:
            call = by_source[cell.source]
            if call.cell_id is None:
                assert call.started < down and call.ended > crash_began, call


# -- PostgreSQL refusing connections -------------------------------------------------------


async def outcome(call: Any) -> str:
    try:
        await call
    except RemoteError as exc:
        return exc.code
    return "ok"


async def test_postgres_refusing_connections_as_too_many_is_unavailable_until_it_takes_them(
    private_postgres: PrivatePostgres, namespace: str
) -> None:
    """PostgreSQL refuses new connections with "too many connections" (SQLSTATE 53300: all
    slots taken, or the role's limit reached) while the service has to reconnect."""
    admin = await asyncpg.connect(private_postgres.url, timeout=10)
    try:
        await admin.execute("CREATE ROLE accounts LOGIN")
        await admin.execute("CREATE DATABASE accounts OWNER accounts")
        url = private_postgres.url.replace("postgres@", "accounts@").rsplit("/", 1)[0]
        async with in_process_service(f"{url}/accounts", namespace) as client:
            ada = await client.call(a.Register(username="ada", password=PASSWORD))
            sheet = await client.call(a.CreateWorksheet(title="Crowded", actor=ada.id))
            create = a.CreateCell(worksheet=sheet.id, source="x", actor=ada.id)
            # No more connections for the service, and those it has are cut (waiting until
            # they are gone): it must connect again, and PostgreSQL refuses.
            await admin.execute("ALTER ROLE accounts CONNECTION LIMIT 0")
            await admin.execute(
                """SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity
                   WHERE usename = 'accounts'"""
            )
            assert [await outcome(client.call(create)) for _ in range(3)] == ["unavailable"] * 3
            await admin.execute("ALTER ROLE accounts CONNECTION LIMIT -1")
            assert await outcome(client.call(create)) == "ok"
            seen = await client.call(a.GetWorksheet(id=sheet.id, actor=ada.id))
            assert [c.source for c in seen.cells] == ["x"]
    finally:
        await admin.close()


# -- the service as a process ------------------------------------------------------------------


class AccountsProcess:
    """``python -m cellbus_accounts``, as a deployment starts it, logging to a file."""

    def __init__(self, process: asyncio.subprocess.Process, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    @classmethod
    async def start(cls, namespace: str, database_url: str, log_path: Path) -> AccountsProcess:
        env = service_env(namespace, database_url=database_url)
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-P", "-m", "cellbus_accounts", env=env, stdout=log, stderr=log
            )
        finally:
            os.close(log)
        return cls(process, log_path)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_for_log(self, text: str) -> None:
        """Until the log shows `text` (the log is what shows the process's state here)."""
        async with asyncio.timeout(PHASE_TIMEOUT):
            while text not in self.log_text():
                if self.process.returncode is not None:
                    raise AssertionError(f"the service exited:\n{self.log_text()}")
                await asyncio.sleep(0.02)

    async def terminate(self) -> int:
        """SIGTERM; the exit status, which must come within 10 s."""
        self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                return await self.process.wait()
        except TimeoutError:
            raise AssertionError(
                f"the service did not exit within 10 s of SIGTERM:\n{self.log_text()}"
            ) from None

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def serving(processes: list[AccountsProcess], call: Any) -> Any:
    """Await a call to the service, failing with the logs if a process has died meanwhile."""
    try:
        return await call
    except RequestTimeout:
        logs = "\n".join(f"-- {p.log_path.name} --\n{p.log_text()}" for p in processes)
        raise AssertionError(f"no reply from the accounts service:\n{logs}") from None


async def applied_migrations(url: str) -> list[tuple[int, str]]:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        rows = await connection.fetch("SELECT version, name FROM schema_migrations ORDER BY 1")
    finally:
        await connection.close()
    return [(row["version"], row["name"]) for row in rows]


@pytest.fixture
async def fresh_database() -> AsyncIterator[str]:
    """A new, empty database on the shared PostgreSQL; its URL."""
    name, url = await create_database()
    yield url
    await drop_database(name)


EXPECTED_MIGRATIONS = [(m.version, m.name) for m in migrations_for("postgres")]


async def test_the_service_process_migrates_serves_and_exits_cleanly_on_sigterm(
    namespace: str,
    fresh_database: str,
    redis_bus_client: a.AccountsClient,
    tmp_path: Path,
) -> None:
    client = redis_bus_client
    first = await AccountsProcess.start(namespace, fresh_database, tmp_path / "first.log")
    try:
        # No waiting for readiness: the requests wait in the queue until the service reads.
        ada = await serving([first], client.call(a.Register(username="ada", password=PASSWORD)))
        login = await client.call(a.Login(username="ada", password=PASSWORD))
        assert login.user.id == ada.id
        assert (await client.call(a.Authenticate(token=login.token))).username == "ada"
        assert await first.terminate() == 0, first.log_text()
    finally:
        await first.kill()
    log = first.log_text()
    for _, name in EXPECTED_MIGRATIONS:
        assert f"applying migration {name}" in log, log
    assert "Traceback" not in log, log
    assert await applied_migrations(fresh_database) == EXPECTED_MIGRATIONS

    # Started again on the same database: nothing to apply, and the data is there.
    second = await AccountsProcess.start(namespace, fresh_database, tmp_path / "second.log")
    try:
        again = await serving([second], client.call(a.Login(username="ada", password=PASSWORD)))
        assert again.user.id == ada.id
        assert await second.terminate() == 0, second.log_text()
    finally:
        await second.kill()
    log = second.log_text()
    assert "accounts service ready" in log and "applying migration" not in log, log
    assert "Traceback" not in log, log
    assert await applied_migrations(fresh_database) == EXPECTED_MIGRATIONS


async def test_two_processes_starting_at_once_on_a_fresh_database_both_serve(
    namespace: str,
    fresh_database: str,
    redis_bus_client: a.AccountsClient,
    tmp_path: Path,
) -> None:
    client = redis_bus_client
    both = list(
        await asyncio.gather(
            AccountsProcess.start(namespace, fresh_database, tmp_path / "one.log"),
            AccountsProcess.start(namespace, fresh_database, tmp_path / "two.log"),
        )
    )
    try:
        ada = await serving(both, client.call(a.Register(username="ada", password=PASSWORD)))
        for process in both:
            await process.wait_for_log("accounts service ready")
        # Each migration was applied once, by one of them; the other found it done.
        assert await applied_migrations(fresh_database) == EXPECTED_MIGRATIONS
        logs = [p.log_text() for p in both]
        for _, name in EXPECTED_MIGRATIONS:
            assert sum(log.count(f"applying migration {name}") for log in logs) == 1, logs

        # Both serve. A request that does not decode is answered "invalid", and logged (before
        # the answer) by the process that took it: send such requests, each marked, until
        # each process has answered one.
        answered = [0, 0]
        for _ in range(100):
            marker = f"probe-{uuid.uuid4().hex}"
            data = b'{"op": "%s"}' % marker.encode()
            reply = await client.bus.request(keys.ACCOUNTS, data, timeout=CALL_TIMEOUT)
            assert b'"invalid"' in reply
            takers = [i for i, p in enumerate(both) if marker in p.log_text()]
            assert len(takers) == 1, takers
            answered[takers[0]] += 1
            if all(answered):
                break
        assert all(answered), f"requests answered by each process: {answered}"
        # Fewer at once than the login budget: a running check counts against it too.
        logins = await asyncio.gather(
            *(client.call(a.Login(username="ada", password=PASSWORD)) for _ in range(5))
        )
        assert {login.user.id for login in logins} == {ada.id}
        codes = await asyncio.gather(*(p.terminate() for p in both))
        assert codes == [0, 0], [p.log_text() for p in both]
    finally:
        for process in both:
            await process.kill()
    for process in both:
        assert "Traceback" not in process.log_text(), process.log_text()
