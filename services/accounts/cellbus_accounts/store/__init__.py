"""The accounts store: PostgreSQL in deployments, SQLite embedded for ``make run``.

``open_store(url)`` picks the database by URL scheme: ``postgresql://...`` (asyncpg) or
``sqlite:///path/to/file.db`` / ``sqlite://:memory:`` (aiosqlite).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .checkpoints import Checkpoint, CheckpointRows
from .database import Database, Postgres, Sqlite
from .documents import DocumentRows, History, NewCellRecord
from .errors import NotFound, StoreError, StoreUnavailable, UniqueViolation
from .logins import LoginAttempts, LoginLimits, LoginTicket, Tier
from .records import CellRecord, Member, Role, Token, User, Worksheet
from .store import Store

__all__ = [
    "CellRecord", "Checkpoint", "CheckpointRows", "Database", "DocumentRows", "History",
    "LoginAttempts", "LoginLimits", "LoginTicket", "Member", "NewCellRecord", "NotFound",
    "Postgres", "Role", "Sqlite", "Store",
    "StoreError", "StoreUnavailable", "Tier", "Token", "UniqueViolation", "User", "Worksheet",
    "database_for",
]  # fmt: skip


def database_for(url: str) -> Database:
    """The database for `url`: ``postgresql://`` or ``sqlite://``."""
    scheme = urlsplit(url).scheme
    if scheme in ("postgres", "postgresql"):
        return Postgres(url)
    if scheme == "sqlite":
        path = url.removeprefix("sqlite://")
        return Sqlite(
            ":memory:"
            if path in ("", ":memory:", "/:memory:")
            else path.removeprefix("/")
            if path.startswith("//")
            else path
        )
    raise ValueError(f"unsupported database URL {url!r}: use postgresql:// or sqlite://")
