"""The SQL of named checkpoints of worksheets' documents (``document_checkpoints``).

A checkpoint is the document's cells and metadata as of one of its updates, kept as one Yjs
update of a document holding just that (what `checkpoints.state_of` encodes), with a name,
who saved it and when. A worksheet keeps at most `keep` of them (the caller's cap): saving one
more drops the oldest, in the same transaction, under a lock of the worksheet's checkpoints so
that two saves at once never leave more. Who may do what is the accounts handlers' business.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .database import Database
from .records import as_time, as_uuid

_COLUMNS = """c.id, c.worksheet_id, c.name, c.seq, c.created_at, length(c.data) AS size,
    u.username"""
_CHECKPOINTS = f"""SELECT {_COLUMNS} FROM document_checkpoints c
    LEFT JOIN users u ON u.id = c.user_id"""


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint, without its data."""

    id: uuid.UUID
    worksheet_id: uuid.UUID
    name: str
    seq: int  # the document's last update it includes
    created_at: datetime
    size: int  # bytes of its data
    username: str  # who saved it ("" once their account is deleted)


def _checkpoint_from(row: Any) -> Checkpoint:
    return Checkpoint(
        as_uuid(row["id"]), as_uuid(row["worksheet_id"]), str(row["name"]), int(row["seq"]),
        as_time(row["created_at"]), int(row["size"]), str(row["username"] or ""),
    )  # fmt: skip


class CheckpointRows:
    """Documents' checkpoints, on one database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def save(
        self,
        worksheet_id: uuid.UUID,
        name: str,
        data: bytes,
        seq: int,
        user_id: uuid.UUID | None,
        *,
        keep: int,
    ) -> tuple[Checkpoint, int]:
        """A new checkpoint of the worksheet's document, and how many older ones were dropped
        to keep at most `keep` (the newest, this one among them). `NotFound` if the worksheet
        was deleted meanwhile."""
        checkpoint_id = uuid.uuid4()
        async with self.database.transaction() as db:
            await self.database.lock(db, f"checkpoints:{worksheet_id}")
            await db.execute(
                """INSERT INTO document_checkpoints (id, worksheet_id, name, data, seq, user_id,
                                                     created_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)""",
                checkpoint_id, worksheet_id, name, data, seq, user_id, datetime.now(UTC),
            )  # fmt: skip
            old = await db.fetch(
                """SELECT id FROM document_checkpoints WHERE worksheet_id = $1
                   ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET $2"""
                if self.database.dialect == "sqlite"
                else """SELECT id FROM document_checkpoints WHERE worksheet_id = $1
                   ORDER BY created_at DESC, id DESC OFFSET $2""",
                worksheet_id, keep,
            )  # fmt: skip
            for row in old:
                await db.execute("DELETE FROM document_checkpoints WHERE id = $1", row["id"])
            row = await db.fetchrow(f"{_CHECKPOINTS} WHERE c.id = $1", checkpoint_id)
        assert row is not None
        return _checkpoint_from(row), len(old)

    async def list(self, worksheet_id: uuid.UUID) -> list[Checkpoint]:
        """The worksheet's checkpoints, newest first."""
        async with self.database.transaction() as db:
            rows = await db.fetch(
                f"{_CHECKPOINTS} WHERE c.worksheet_id = $1 ORDER BY c.created_at DESC, c.id DESC",
                worksheet_id,
            )
        return [_checkpoint_from(row) for row in rows]

    async def get(
        self, worksheet_id: uuid.UUID, checkpoint_id: uuid.UUID
    ) -> tuple[Checkpoint, bytes] | None:
        """Checkpoint `checkpoint_id` of the worksheet and its data; None if it has none such
        (a checkpoint of another worksheet is none of this one's)."""
        async with self.database.transaction() as db:
            row = await db.fetchrow(
                f"""SELECT {_COLUMNS}, c.data FROM document_checkpoints c
                    LEFT JOIN users u ON u.id = c.user_id
                    WHERE c.id = $1 AND c.worksheet_id = $2""",
                checkpoint_id, worksheet_id,
            )  # fmt: skip
        return None if row is None else (_checkpoint_from(row), bytes(row["data"]))

    async def delete(self, worksheet_id: uuid.UUID, checkpoint_id: uuid.UUID) -> bool:
        """Delete the worksheet's checkpoint; False if it has none such."""
        async with self.database.transaction() as db:
            row = await db.fetchrow(
                """DELETE FROM document_checkpoints WHERE id = $1 AND worksheet_id = $2
                   RETURNING id""",
                checkpoint_id, worksheet_id,
            )  # fmt: skip
        return row is not None
