"""Every durable record of cellbus, read and written in one place.

`Store` holds the SQL of every operation, written once and run on PostgreSQL or SQLite
(`database`). It checks no permissions: the accounts handlers decide who may do what, and
call the store to do it. Each method is one transaction, so a call either happens whole or
not at all; a database that is away raises `StoreUnavailable` with nothing written.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import migrations
from .database import Connection, Database
from .errors import NotFound, UniqueViolation, VersionConflict
from .logins import LoginAttempts
from .positions import between
from .records import (
    Cell,
    Member,
    Role,
    Token,
    User,
    Worksheet,
    as_role,
    as_time,
    cell_from,
    token_from,
    user_from,
    worksheet_from,
)

_WORKSHEET_COLUMNS = """w.id, w.title, w.session, w.created_at, w.updated_at,
    o.username AS owner, m.role"""
_WORKSHEETS_OF_USER = f"""SELECT {_WORKSHEET_COLUMNS}
    FROM worksheets w
    JOIN memberships m ON m.worksheet_id = w.id
    JOIN users o ON o.id = w.owner_id"""


def _now() -> datetime:
    return datetime.now(UTC)


class Store:
    """The accounts service's data, on the database it is given."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.logins = LoginAttempts(database)  # the login throttle's counts

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
    async def create_worksheet(self, owner: User, title: str, session: str) -> Worksheet:
        return await self.import_worksheet(owner, title, session, [])

    async def import_worksheet(
        self,
        owner: User,
        title: str,
        session: str,
        cells: list[tuple[str, list[dict[str, Any]], int | None]],
    ) -> Worksheet:
        """A new worksheet holding `cells` (source, outputs, execution count) in that order,
        all in one transaction: an import happens whole or not at all."""
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
            position = None
            for source, outputs, execution_count in cells:
                position = between(position, None)
                await db.execute(
                    """INSERT INTO cells (id, worksheet_id, position, source, version, outputs,
                                          execution_count, created_at, updated_at)
                       VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $7)""",
                    uuid.uuid4(), worksheet_id, position, source, outputs, execution_count, now,
                )  # fmt: skip
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

    # -- cells ----------------------------------------------------------------------------
    async def cells(self, worksheet_id: uuid.UUID) -> list[Cell]:
        """The worksheet's cells, in order."""
        async with self.database.transaction() as db:
            rows = await db.fetch(
                "SELECT * FROM cells WHERE worksheet_id = $1 ORDER BY position", worksheet_id
            )
        return [cell_from(row) for row in rows]

    async def cell(self, cell_id: uuid.UUID) -> Cell | None:
        async with self.database.transaction() as db:
            row = await db.fetchrow("SELECT * FROM cells WHERE id = $1", cell_id)
        return None if row is None else cell_from(row)

    async def _position_after(
        self,
        db: Connection,
        worksheet_id: uuid.UUID,
        after: uuid.UUID | None,
        moving: uuid.UUID | None = None,
    ) -> str:
        """A position just after cell `after` (None: at the top), among the cells other than
        `moving`; the caller holds the worksheet's lock."""
        if after is None:
            before_key = None
            next_key = await db.fetchval(
                """SELECT min(position) FROM cells
                   WHERE worksheet_id = $1 AND id IS DISTINCT FROM $2""",
                worksheet_id, moving,
            )  # fmt: skip
        else:
            before_key = await db.fetchval(
                "SELECT position FROM cells WHERE id = $1 AND worksheet_id = $2",
                after, worksheet_id,
            )  # fmt: skip
            if before_key is None:
                raise NotFound(f"no cell {after} in worksheet {worksheet_id}")
            next_key = await db.fetchval(
                """SELECT min(position) FROM cells
                   WHERE worksheet_id = $1 AND position > $2 AND id IS DISTINCT FROM $3""",
                worksheet_id, before_key, moving,
            )  # fmt: skip
        return between(before_key, next_key)

    async def _lock_worksheet(self, db: Connection, worksheet_id: uuid.UUID) -> None:
        """Serialize changes to one worksheet's order (PostgreSQL row lock; SQLite's single
        writer already serializes)."""
        found = await db.fetchval(
            "SELECT id FROM worksheets WHERE id = $1 FOR UPDATE", worksheet_id
        )
        if found is None:
            raise NotFound(f"no worksheet {worksheet_id}")

    async def create_cell(
        self, worksheet_id: uuid.UUID, source: str, after: uuid.UUID | None
    ) -> Cell:
        """A new cell just after `after` (None: at the top). LookupError if `after` is not a
        cell of the worksheet."""
        now = _now()
        async with self.database.transaction() as db:
            await self._lock_worksheet(db, worksheet_id)
            position = await self._position_after(db, worksheet_id, after)
            row = await db.fetchrow(
                """INSERT INTO cells (id, worksheet_id, position, source, version, outputs,
                                      created_at, updated_at)
                   VALUES ($1, $2, $3, $4, 1, $5, $6, $6) RETURNING *""",
                uuid.uuid4(), worksheet_id, position, source, [], now,
            )  # fmt: skip
            await self._touch(db, worksheet_id, now)
        return cell_from(row)

    async def update_cell(self, cell_id: uuid.UUID, source: str, version: int) -> Cell:
        """Set the source if `version` is current; else `VersionConflict` with the cell as it
        is, and nothing written."""
        now = _now()
        async with self.database.transaction() as db:
            row = await db.fetchrow(
                """UPDATE cells SET source = $2, version = version + 1, updated_at = $4
                   WHERE id = $1 AND version = $3 RETURNING *""",
                cell_id, source, version, now,
            )  # fmt: skip
            if row is None:
                current = await db.fetchrow("SELECT * FROM cells WHERE id = $1", cell_id)
                if current is None:
                    raise NotFound(f"no cell {cell_id}")
                raise VersionConflict(cell_from(current))
            await self._touch(db, row["worksheet_id"], now)
        return cell_from(row)

    async def move_cell(self, cell_id: uuid.UUID, after: uuid.UUID | None) -> Cell:
        """Put the cell just after `after` (None: at the top)."""
        if after == cell_id:
            raise ValueError("a cell cannot move after itself")
        now = _now()
        async with self.database.transaction() as db:
            worksheet_id = await db.fetchval(
                "SELECT worksheet_id FROM cells WHERE id = $1", cell_id
            )
            if worksheet_id is None:
                raise NotFound(f"no cell {cell_id}")
            await self._lock_worksheet(db, worksheet_id)
            position = await self._position_after(db, worksheet_id, after, moving=cell_id)
            row = await db.fetchrow(
                "UPDATE cells SET position = $2, updated_at = $3 WHERE id = $1 RETURNING *",
                cell_id, position, now,
            )  # fmt: skip
            await self._touch(db, worksheet_id, now)
        return cell_from(row)

    async def delete_cell(self, cell_id: uuid.UUID) -> None:
        async with self.database.transaction() as db:
            worksheet_id = await db.fetchval(
                "DELETE FROM cells WHERE id = $1 RETURNING worksheet_id", cell_id
            )
            if worksheet_id is None:
                raise NotFound(f"no cell {cell_id}")
            await self._touch(db, worksheet_id, _now())

    async def _touch(self, db: Connection, worksheet_id: Any, now: datetime) -> None:
        await db.execute("UPDATE worksheets SET updated_at = $2 WHERE id = $1", worksheet_id, now)

    # -- runs and saved outputs -----------------------------------------------------------
    async def start_run(self, cell_id: uuid.UUID, msg_id: str, username: str) -> Cell:
        """The cell is being run by request `msg_id`: its outputs start over."""
        async with self.database.transaction() as db:
            row = await db.fetchrow(
                """UPDATE cells SET run_msg_id = $2, run_by = $3, run_at = $4, outputs = $5,
                                    execution_count = NULL
                   WHERE id = $1 RETURNING *""",
                cell_id, msg_id, username, _now(), [],
            )  # fmt: skip
        if row is None:
            raise NotFound(f"no cell {cell_id}")
        return cell_from(row)

    async def cell_by_run(self, msg_id: str) -> Cell | None:
        """The cell whose latest run is execute_request `msg_id`."""
        async with self.database.transaction() as db:
            row = await db.fetchrow("SELECT * FROM cells WHERE run_msg_id = $1", msg_id)
        return None if row is None else cell_from(row)

    async def recent_run_sessions(self, hours: float) -> list[tuple[str, int]]:
        """Sessions with cell runs started in the last `hours`, each with the oldest saved
        cursor among those runs (where saving them may resume)."""
        since = _now() - timedelta(hours=hours)
        async with self.database.transaction() as db:
            rows = await db.fetch(
                """SELECT w.session, min(c.outputs_seq) AS after
                   FROM cells c JOIN worksheets w ON w.id = c.worksheet_id
                   WHERE c.run_msg_id IS NOT NULL AND c.run_at > $1
                   GROUP BY w.session""",
                since,
            )
        return [(row["session"], int(row["after"])) for row in rows]

    async def save_outputs(
        self,
        msg_id: str,
        seq: int,
        outputs: list[dict[str, Any]],
        execution_count: int | None,
    ) -> bool:
        """Store the outputs of run `msg_id` as of feed cursor `seq`.

        Idempotent: a save with a cursor not newer than the last one saved changes nothing
        (a message seen twice, after a restart, is applied once). False if nothing changed.
        """
        async with self.database.transaction() as db:
            row = await db.fetchrow(
                """UPDATE cells SET outputs = $3, execution_count = $4, outputs_seq = $2
                   WHERE run_msg_id = $1 AND outputs_seq < $2 RETURNING id""",
                msg_id, seq, outputs, execution_count,
            )  # fmt: skip
        return row is not None


__all__ = ["Store", "UniqueViolation", "VersionConflict"]
