"""What the store returns: plain frozen records, the same from PostgreSQL and SQLite."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from cellbus_protocol.roles import ROLE_RANK
from cellbus_protocol.roles import Role as Role  # re-exported: the store's records carry roles


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    username: str
    is_admin: bool
    created_at: datetime


@dataclass(frozen=True)
class Token:
    id: uuid.UUID
    user_id: uuid.UUID
    label: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class Worksheet:
    id: uuid.UUID
    title: str
    owner: str  # the username of its creator
    session: str
    role: Role  # the role of the user it was read for
    member: str  # the username of the user it was read for
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Member:
    username: str
    role: Role


@dataclass(frozen=True)
class CellRecord:
    """What is kept beside a worksheet's document for one of its cells (by cell id)."""

    worksheet_id: uuid.UUID
    cell_id: str
    version: int  # committed document updates that changed the cell
    outputs: list[dict[str, Any]]
    execution_count: int | None
    run_msg_id: str | None
    run_by: str | None
    run_at: datetime | None
    outputs_seq: int


# -- conversions from database rows (asyncpg gives Python types, SQLite gives text) ---------


def as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def as_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def as_optional_time(value: Any) -> datetime | None:
    return None if value is None else as_time(value)


def as_role(value: Any) -> Role:
    """A role read from the database (its CHECK constraint allows only these)."""
    if value not in ROLE_RANK:
        raise ValueError(f"not a role: {value!r}")
    return cast(Role, value)


def as_json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def user_from(row: Any) -> User:
    return User(
        as_uuid(row["id"]), row["username"], bool(row["is_admin"]), as_time(row["created_at"])
    )


def token_from(row: Any) -> Token:
    return Token(
        as_uuid(row["id"]),
        as_uuid(row["user_id"]),
        row["label"],
        as_time(row["created_at"]),
        as_time(row["expires_at"]),
        as_optional_time(row["revoked_at"]),
    )


def worksheet_from(row: Any) -> Worksheet:
    return Worksheet(
        as_uuid(row["id"]),
        row["title"],
        row["owner"],
        row["session"],
        as_role(row["role"]),
        row["member"],
        as_time(row["created_at"]),
        as_time(row["updated_at"]),
    )


def cell_record_from(row: Any) -> CellRecord:
    return CellRecord(
        as_uuid(row["worksheet_id"]),
        str(row["cell_id"]),
        int(row["version"]),
        as_json(row["outputs"]),
        row["execution_count"],
        row["run_msg_id"],
        row["run_by"],
        as_optional_time(row["run_at"]),
        int(row["outputs_seq"]),
    )
