"""The two databases the store runs on, behind one small interface.

The store writes each query once, in PostgreSQL's style (``$1`` placeholders). `Postgres`
runs it on an asyncpg pool; `Sqlite` (the embedded store for ``make run``) rewrites the
placeholders to SQLite's numbered ``?1`` and converts values (UUIDs, times, JSON) to the
types it keeps. Both map their drivers' errors onto `errors`, so the store above never sees
asyncpg or sqlite3.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg
from asyncpg.pool import PoolConnectionProxy

from .errors import NotFound, StoreUnavailable, UniqueViolation

Row = Any  # asyncpg.Record or sqlite3.Row: both index by column name

_PG_UNAVAILABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,  # 53300: no slot for a new connection, for now
    TimeoutError,
)


class Connection(abc.ABC):
    """One transaction's view of the database."""

    @abc.abstractmethod
    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchrow(sql, *args)
        return None if row is None else row[0]

    @abc.abstractmethod
    async def execute(self, sql: str, *args: Any) -> None: ...

    @abc.abstractmethod
    async def run_script(self, sql: str) -> None:
        """Run several statements (a migration file)."""


class Database(abc.ABC):
    dialect: str

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        """A transaction: committed when the block ends, rolled back if it raises."""

    @abc.abstractmethod
    async def lock_for_migrations(self, connection: Connection) -> None:
        """Serialize migrations between processes for the rest of the transaction."""

    @abc.abstractmethod
    async def lock(self, connection: Connection, key: str) -> None:
        """Serialize, between processes, the transactions that take `key`, for the rest of
        this transaction (a read-decide-write, such as counting a login attempt)."""


# -- PostgreSQL --------------------------------------------------------------------------


class _PgConnection(Connection):
    def __init__(
        self, connection: asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
    ) -> None:
        self._connection = connection

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with _pg_errors():
            return await self._connection.fetch(sql, *args)

    async def execute(self, sql: str, *args: Any) -> None:
        with _pg_errors():
            await self._connection.execute(sql, *args)

    async def run_script(self, sql: str) -> None:
        with _pg_errors():
            await self._connection.execute(sql)


@contextlib.contextmanager
def _pg_errors() -> Any:
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise UniqueViolation(str(exc)) from exc
    except asyncpg.ForeignKeyViolationError as exc:  # what it refers to was deleted meanwhile
        raise NotFound(f"a record it refers to is gone: {exc}") from exc
    except _PG_UNAVAILABLE as exc:
        raise StoreUnavailable(f"PostgreSQL unavailable: {exc}") from exc


async def _init_pg_connection(connection: asyncpg.Connection) -> None:
    await connection.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
    )


class Postgres(Database):
    """An asyncpg pool. Connections that break are replaced by the pool on the next call."""

    dialect = "postgres"
    MIGRATION_LOCK = 0x63656C6C  # "cell": the advisory lock key for migrations

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 10):
        self.url = url
        self._min_size, self._max_size, self._timeout = min_size, max_size, timeout
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        with _pg_errors():
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._timeout,
                command_timeout=self._timeout,
                init=_init_pg_connection,
            )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        if self._pool is None:
            raise StoreUnavailable("the store is not open")
        with _pg_errors():
            async with self._pool.acquire(timeout=self._timeout) as connection:
                async with connection.transaction():
                    yield _PgConnection(connection)

    async def lock_for_migrations(self, connection: Connection) -> None:
        await connection.execute("SELECT pg_advisory_xact_lock($1)", self.MIGRATION_LOCK)

    async def lock(self, connection: Connection, key: str) -> None:
        """An advisory lock on the key's 64-bit hash (a collision only serializes more)."""
        await connection.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", key)


# -- SQLite ------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\$(\d+)")
_PG_ONLY = re.compile(r"\bFOR UPDATE\b|\bCOLLATE \"C\"")


def _to_sqlite(sql: str) -> str:
    return _PG_ONLY.sub("", _PLACEHOLDER.sub(r"?\1", sql))


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    if isinstance(value, bool):
        return int(value)
    return value


class _SqliteConnection(Connection):
    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        with _sqlite_errors():
            cursor = await self._connection.execute(_to_sqlite(sql), _params(args))
            return list(await cursor.fetchall())

    async def execute(self, sql: str, *args: Any) -> None:
        with _sqlite_errors():
            await self._connection.execute(_to_sqlite(sql), _params(args))

    async def run_script(self, sql: str) -> None:
        # One statement at a time: executescript() would commit the open transaction.
        with _sqlite_errors():
            for statement in _statements(sql):
                await self._connection.execute(statement)


_COMMENT = re.compile(r"--[^\n]*")


def _statements(sql: str) -> list[str]:
    """The statements of a migration file (which keeps ``--`` and ``;`` out of its strings)."""
    return [s.strip() for s in _COMMENT.sub("", sql).split(";") if s.strip()]


def _params(args: Sequence[Any]) -> list[Any]:
    return [_sqlite_value(arg) for arg in args]


@contextlib.contextmanager
def _sqlite_errors() -> Any:
    try:
        yield
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" in str(exc):
            raise UniqueViolation(str(exc)) from exc
        if "FOREIGN KEY" in str(exc):  # what it refers to was deleted meanwhile
            raise NotFound(f"a record it refers to is gone: {exc}") from exc
        raise
    except sqlite3.OperationalError as exc:
        raise StoreUnavailable(f"SQLite unavailable: {exc}") from exc


class Sqlite(Database):
    """One SQLite file (or ``:memory:``), with transactions taken one at a time."""

    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._connection: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        with _sqlite_errors():
            self._connection = await aiosqlite.connect(self.path, isolation_level=None)
            self._connection.row_factory = sqlite3.Row
            await self._connection.execute("PRAGMA foreign_keys = ON")
            await self._connection.execute("PRAGMA busy_timeout = 10000")
            if self.path != ":memory:":
                await self._use_wal()

    async def _use_wal(self) -> None:
        """Switch the file to write-ahead logging (readers never wait for the writer)."""
        await self._execute_when_unlocked("PRAGMA journal_mode = WAL")

    async def _execute_when_unlocked(self, sql: str) -> None:
        """Run `sql`, waiting while another connection holds the file. SQLite's busy timeout
        does not cover every case (a connection switching the file to WAL makes others'
        BEGIN IMMEDIATE fail at once), so wait here too, for as long as the busy timeout."""
        assert self._connection is not None
        for _ in range(200):
            try:
                await self._connection.execute(sql)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    raise StoreUnavailable(f"SQLite unavailable: {exc}") from exc
                await asyncio.sleep(0.05)
        raise StoreUnavailable(f"SQLite file {self.path} stays locked")

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        if self._connection is None:
            raise StoreUnavailable("the store is not open")
        async with self._lock:
            await self._execute_when_unlocked("BEGIN IMMEDIATE")
            try:
                yield _SqliteConnection(self._connection)
            except BaseException:
                await self._connection.execute("ROLLBACK")
                raise
            else:
                with _sqlite_errors():
                    await self._connection.execute("COMMIT")

    async def lock_for_migrations(self, connection: Connection) -> None:
        """BEGIN IMMEDIATE already holds SQLite's one write lock."""

    async def lock(self, connection: Connection, key: str) -> None:
        """BEGIN IMMEDIATE already holds SQLite's one write lock."""
