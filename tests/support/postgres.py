"""The real PostgreSQL the tests use: a fresh database per test, dropped afterwards."""

from __future__ import annotations

import os
import uuid

import asyncpg

ADMIN_URL = os.environ.get("CELLBUS_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def create_database() -> tuple[str, str]:
    """A new empty database: (name, url)."""
    name = f"cellbus_test_{uuid.uuid4().hex[:10]}"
    try:
        connection = await asyncpg.connect(ADMIN_URL, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(
            f"PostgreSQL is not answering at {ADMIN_URL}; run the suite with `make test`"
        ) from exc
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return name, ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


async def drop_database(name: str) -> None:
    connection = await asyncpg.connect(ADMIN_URL, timeout=10)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()
