"""Every durable record of cellbus, read and written in one place.

`Store` holds the SQL of every operation, written once and run on PostgreSQL or SQLite
(`database`). It checks no permissions: the accounts handlers decide who may do what, and
call the store to do it. Each method is one transaction, so a call either happens whole or
not at all; a database that is away raises `StoreUnavailable` with nothing written.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from .. import migrations
from .checkpoints import CheckpointRows
from .database import Connection, Database
from .documents import DocumentRows, NewCellRecord
from .errors import NotFound, UniqueViolation
from .jupyter import JupyterKernelRows
from .logins import LoginAttempts
from .records import (
    Member,
    Role,
    Token,
    User,
    Worksheet,
    as_role,
    as_time,
    token_from,
    user_from,
    worksheet_from,
)

_WORKSHEET_COLUMNS = """w.id, w.title, w.session, w.created_at, w.updated_at,
    o.username AS owner, m.role, u.username AS member"""
_WORKSHEETS_OF_USER = f"""SELECT {_WORKSHEET_COLUMNS}
    FROM worksheets w
    JOIN memberships m ON m.worksheet_id = w.id
    JOIN users o ON o.id = w.owner_id
    JOIN users u ON u.id = m.user_id"""


def _now() -> datetime:
    return datetime.now(UTC)


class Store:
    """The accounts service's data, on the database it is given."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.logins = LoginAttempts(database)  # the login throttle's counts
        self.documents = DocumentRows(database)  # worksheets' documents and cell records
        self.jupyter_kernels = JupyterKernelRows(database)  # kernels of the Jupyter API
        self.checkpoints = CheckpointRows(database)  # named checkpoints of documents

    async def open(self) -> list[str]:
        """Connect and apply pending migrations; returns the names of those applied."""
        await self.database.open()
        return await migrations.apply(self.database)

    async def close(self) -> None:
        await self.database.close()

    # -- users ----------------------------------------------------------------------------
    async def create_user(self, username: str, password_hash: str) -> User:
        """A new user; the first user of an installation is its admin.

        Raises `UniqueViolation` when the username is taken.
        """
        async with self.database.transaction() as db:
            row = await db.fetchrow(
                """INSERT INTO users (id, username, password_hash, is_admin, created_at)
                   SELECT $1, $2, $3, NOT EXISTS (SELECT 1 FROM users), $4
                   RETURNING id, username, is_admin, created_at""",
                uuid.uuid4(), username, password_hash, _now(),
            )  # fmt: skip
        return user_from(row)

    async def count_users(self) -> int:
        async with self.database.transaction() as db:
            return int(await db.fetchval("SELECT count(*) FROM users"))

    async def user_by_name(self, username: str) -> tuple[User, str] | None:
        """The user and their password hash."""
        async with self.database.transaction() as db:
            row = await db.fetchrow(
                "SELECT id, username, is_admin, created_at, password_hash FROM users "
                "WHERE username = $1",
                username,
            )
        return None if row is None else (user_from(row), row["password_hash"])

    async def user_by_id(self, user_id: uuid.UUID) -> User | None:
        async with self.database.transaction() as db:
            row = await db.fetchrow(
                "SELECT id, username, is_admin, created_at FROM users WHERE id = $1", user_id
            )
        return None if row is None else user_from(row)

    async def list_users(self) -> list[User]:
        async with self.database.transaction() as db:
            rows = await db.fetch(
                "SELECT id, username, is_admin, created_at FROM users ORDER BY username"
            )
        return [user_from(row) for row in rows]

    # -- tokens ---------------------------------------------------------------------------
    async def create_token(
        self, user_id: uuid.UUID, token_hash: bytes, label: str, expires_at: datetime
    ) -> Token:
        async with self.database.transaction() as db:
            row = await db.fetchrow(
                """INSERT INTO api_tokens (id, user_id, token_hash, label, created_at, expires_at)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   RETURNING id, user_id, label, created_at, expires_at, revoked_at""",
                uuid.uuid4(), user_id, token_hash, label, _now(), expires_at,
            )  # fmt: skip
        return token_from(row)

    async def user_by_token(self, token_hash: bytes) -> tuple[Token, User] | None:
        """The token and its user, if the token is neither revoked nor expired."""
        async with self.database.transaction() as db:
            row = await db.fetchrow(
                """SELECT t.id, t.user_id, t.label, t.created_at, t.expires_at, t.revoked_at,
                          u.username, u.is_admin, u.created_at AS user_created_at
                   FROM api_tokens t JOIN users u ON u.id = t.user_id
                   WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > $2""",
                token_hash, _now(),
            )  # fmt: skip
        if row is None:
            return None
        token = token_from(row)
        user = User(
            token.user_id, row["username"], bool(row["is_admin"]), as_time(row["user_created_at"])
        )
        return token, user

    async def list_tokens(self, user_id: uuid.UUID) -> list[Token]:
        async with self.database.transaction() as db:
            rows = await db.fetch(
                """SELECT id, user_id, label, created_at, expires_at, revoked_at
                   FROM api_tokens WHERE user_id = $1 ORDER BY created_at""",
                user_id,
            )
        return [token_from(row) for row in rows]

    async def revoke_token(self, user_id: uuid.UUID, token_id: uuid.UUID) -> bytes | None:
        """Revoke one of `user_id`'s tokens: its hash (to announce the revocation), or None
        if they have no such live token."""
        async with self.database.transaction() as db:
            row = await db.fetchrow(
                """UPDATE api_tokens SET revoked_at = $3
                   WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL RETURNING token_hash""",
                token_id, user_id, _now(),
            )  # fmt: skip
        return None if row is None else bytes(row["token_hash"])

    # -- worksheets and sharing -----------------------------------------------------------
    async def create_worksheet(
        self,
        owner: User,
        title: str,
        session: str,
        document: bytes,
        cells: list[NewCellRecord],
        also: Callable[[Connection, uuid.UUID], Awaitable[None]] | None = None,
    ) -> Worksheet:
        """A new worksheet whose document starts with the update `document` (its ``meta``
        and any imported cells), with the records of those cells (their outputs), all in one
        transaction: an import happens whole or not at all. `also` writes what else belongs
        to the worksheet in the same transaction (a Jupyter API kernel's row)."""
        sheet = None
        now = _now()
        async with self.database.transaction() as db:
            worksheet_id = uuid.uuid4()
            await db.execute(
                """INSERT INTO worksheets (id, title, owner_id, session, created_at, updated_at)
                   VALUES ($1, $2, $3, $4, $5, $5)""",
                worksheet_id, title, owner.id, session, now,
            )  # fmt: skip
            await db.execute(
                "INSERT INTO memberships (worksheet_id, user_id, role) VALUES ($1, $2, 'owner')",
                worksheet_id, owner.id,
            )  # fmt: skip
            await self.documents.first_update(db, worksheet_id, document, owner.id, cells)
            if also is not None:
                await also(db, worksheet_id)
            sheet = await self._worksheet(db, worksheet_id, owner.id)
        assert sheet is not None
        return sheet

    async def _worksheet(
        self, db: Connection, worksheet_id: uuid.UUID, user_id: uuid.UUID
    ) -> Worksheet | None:
        row = await db.fetchrow(
            f"{_WORKSHEETS_OF_USER} WHERE w.id = $1 AND m.user_id = $2", worksheet_id, user_id
        )
        return None if row is None else worksheet_from(row)

    async def worksheet_for(self, worksheet_id: uuid.UUID, user_id: uuid.UUID) -> Worksheet | None:
        """The worksheet as `user_id` sees it (with their role), or None if not theirs."""
        async with self.database.transaction() as db:
            return await self._worksheet(db, worksheet_id, user_id)

    async def worksheets_for(self, user_id: uuid.UUID) -> list[Worksheet]:
        """Every worksheet `user_id` owns or is a member of, most recently changed first."""
        async with self.database.transaction() as db:
            rows = await db.fetch(
                f"{_WORKSHEETS_OF_USER} WHERE m.user_id = $1 ORDER BY w.updated_at DESC, w.id",
                user_id,
            )
        return [worksheet_from(row) for row in rows]

    async def worksheet_by_session(self, session: str) -> uuid.UUID | None:
        async with self.database.transaction() as db:
            value = await db.fetchval("SELECT id FROM worksheets WHERE session = $1", session)
        return None if value is None else uuid.UUID(str(value))

    async def create_bare_session(self, owner_id: uuid.UUID, session: str) -> None:
        """Record `owner_id` as the owner of `session`, a session with no worksheet."""
        async with self.database.transaction() as db:
            await db.execute(
                "INSERT INTO bare_sessions (session, owner_id, created_at) VALUES ($1, $2, $3)",
                session, owner_id, _now(),
            )  # fmt: skip

    async def bare_session_owner(self, session: str) -> uuid.UUID | None:
        async with self.database.transaction() as db:
            value = await db.fetchval(
                "SELECT owner_id FROM bare_sessions WHERE session = $1", session
            )
        return None if value is None else uuid.UUID(str(value))

    async def role_of(self, worksheet_id: uuid.UUID, user_id: uuid.UUID) -> Role | None:
        async with self.database.transaction() as db:
            role = await db.fetchval(
                "SELECT role FROM memberships WHERE worksheet_id = $1 AND user_id = $2",
                worksheet_id, user_id,
            )  # fmt: skip
        return None if role is None else as_role(role)

    async def rename_worksheet(self, worksheet_id: uuid.UUID, title: str) -> None:
        async with self.database.transaction() as db:
            row = await db.fetchrow(
                "UPDATE worksheets SET title = $2, updated_at = $3 WHERE id = $1 RETURNING id",
                worksheet_id, title, _now(),
            )  # fmt: skip
        if row is None:
            raise NotFound(f"no worksheet {worksheet_id}")

    async def delete_worksheet(self, worksheet_id: uuid.UUID) -> None:
        async with self.database.transaction() as db:
            await db.execute("DELETE FROM worksheets WHERE id = $1", worksheet_id)

    async def set_role(
        self, worksheet_id: uuid.UUID, user_id: uuid.UUID, role: Role | None
    ) -> None:
        """Share the worksheet with `user_id` as `role`, or unshare it (None)."""
        async with self.database.transaction() as db:
            if role is None:
                await db.execute(
                    "DELETE FROM memberships WHERE worksheet_id = $1 AND user_id = $2",
                    worksheet_id, user_id,
                )  # fmt: skip
            else:
                await db.execute(
                    """INSERT INTO memberships (worksheet_id, user_id, role) VALUES ($1, $2, $3)
                       ON CONFLICT (worksheet_id, user_id) DO UPDATE SET role = excluded.role""",
                    worksheet_id, user_id, role,
                )  # fmt: skip

    async def members(self, worksheet_id: uuid.UUID) -> list[Member]:
        async with self.database.transaction() as db:
            rows = await db.fetch(
                """SELECT u.username, m.role FROM memberships m JOIN users u ON u.id = m.user_id
                   WHERE m.worksheet_id = $1 ORDER BY u.username""",
                worksheet_id,
            )
        return [Member(row["username"], as_role(row["role"])) for row in rows]


__all__ = ["Store", "UniqueViolation"]
