"""Schema migrations: numbered SQL files, one folder per database, applied at start.

``postgres/0001_init.sql`` and ``sqlite/0001_init.sql`` describe the same tables in each
dialect. `apply` runs, in one transaction under a lock that every starting accounts process
takes (an advisory lock in PostgreSQL, the write lock in SQLite), every file not yet recorded
in ``schema_migrations``. Two processes starting at once apply each migration exactly once;
a failing migration leaves nothing behind.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

from ..store.database import Database

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

_LEDGER = {
    "postgres": """CREATE TABLE IF NOT EXISTS schema_migrations (
        version integer PRIMARY KEY, name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now())""",
    "sqlite": """CREATE TABLE IF NOT EXISTS schema_migrations (
        version INTEGER PRIMARY KEY, name TEXT NOT NULL,
        applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)""",
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations_for(dialect: str) -> list[Migration]:
    """The migration files of `dialect`, in order."""
    folder = resources.files(__package__).joinpath(dialect)
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text()))
    return sorted(found, key=lambda m: m.version)


async def apply(database: Database) -> list[str]:
    """Apply the migrations `database` lacks; returns the names of those applied."""
    applied: list[str] = []
    async with database.transaction() as connection:
        await database.lock_for_migrations(connection)
        await connection.execute(_LEDGER[database.dialect])
        done = {row[0] for row in await connection.fetch("SELECT version FROM schema_migrations")}
        for migration in migrations_for(database.dialect):
            if migration.version in done:
                continue
            log.info("applying migration %s", migration.name)
            await connection.run_script(migration.sql)
            await connection.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied.append(migration.name)
    return applied
