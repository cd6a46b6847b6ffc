"""The SQL of worksheets' documents and of what is kept beside them per cell.

A document is its history: ``document_updates`` (append-only: a Yjs update per commit, with
who and when, numbered 1, 2, ... per worksheet) and ``document_snapshots`` (the whole document
as of some number, so that loading reads one snapshot and the updates after it). Per cell id,
``cell_records`` keeps what is not in the document: the cell's version (how many committed
updates changed it), its saved outputs and its last run. Compare-and-set on a version is done
by the caller, which holds the worksheet's document lock (see `documents.Documents`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .database import Connection, Database
from .errors import UniqueViolation
from .records import CellRecord, as_uuid, cell_record_from


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class History:
    """What loading a document reads: a snapshot (if any, and if it is newer than what the
    reader has) and the updates after it, in order."""

    snapshot: bytes | None
    updates: list[tuple[int, bytes]]  # (seq, update)

    @property
    def last_seq(self) -> int | None:
        return self.updates[-1][0] if self.updates else None


@dataclass(frozen=True)
class NewCellRecord:
    """An imported cell's record: its outputs and last run, as the notebook said."""

    cell_id: str
    outputs: list[dict[str, Any]]
    execution_count: int | None
    run_by: str | None = None
    run_at: datetime | None = None


class DocumentRows:
    """Documents' updates and snapshots, and cell records, on one database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    # -- history ----------------------------------------------------------------------------
    async def history(self, worksheet_id: uuid.UUID, after: int) -> tuple[History, int]:
        """What a reader that has applied updates up to `after` still needs, and the seq it
        is at then: for a new reader (`after` 0) the newest snapshot and the updates after
        it; otherwise the updates after `after` (updates are never deleted, so that is all
        of it, in one query)."""
        async with self.database.transaction() as db:
            snapshot = None
            if after == 0:
                snapshot = await db.fetchrow(
                    "SELECT seq, data FROM document_snapshots WHERE worksheet_id = $1",
                    worksheet_id,
                )
            start = int(snapshot["seq"]) if snapshot is not None else after
            rows = await db.fetch(
                """SELECT seq, data FROM document_updates WHERE worksheet_id = $1 AND seq > $2
                   ORDER BY seq""",
                worksheet_id, start,
            )  # fmt: skip
        updates = [(int(row["seq"]), bytes(row["data"])) for row in rows]
        found = History(bytes(snapshot["data"]) if snapshot is not None else None, updates)
        return found, found.last_seq or start

    async def append(
        self,
        worksheet_id: uuid.UUID,
        update: bytes,
        user_id: uuid.UUID | None,
        changed: set[str],
        *,
        expect_seq: int,
    ) -> int | None:
        """Commit `update` as the worksheet's update number ``expect_seq + 1``, and count it
        in the version of each cell in `changed`, in one transaction. None (nothing written)
        if that number is taken (another process committed first, or the caller's copy is
        behind): the caller reads what it missed and tries again. The numbers' primary key
        is the arbiter, so no lock is taken."""
        now = _now()
        seq = expect_seq + 1
        try:
            async with self.database.transaction() as db:
                await db.execute(
                    """INSERT INTO document_updates (worksheet_id, seq, data, user_id, created_at)
                       VALUES ($1, $2, $3, $4, $5)""",
                    worksheet_id, seq, update, user_id, now,
                )  # fmt: skip
                await self._count_changes(db, worksheet_id, changed)
                await db.execute(
                    "UPDATE worksheets SET updated_at = $2 WHERE id = $1", worksheet_id, now
                )
        except UniqueViolation:  # that number is taken: by another accounts process
            return None
        return seq

    async def _count_changes(
        self, db: Connection, worksheet_id: uuid.UUID, changed: set[str]
    ) -> None:
        for cell_id in sorted(changed):
            await db.execute(
                """INSERT INTO cell_records (worksheet_id, cell_id) VALUES ($1, $2)
                   ON CONFLICT (worksheet_id, cell_id)
                   DO UPDATE SET version = cell_records.version + 1""",
                worksheet_id, cell_id,
            )  # fmt: skip

    async def first_update(
        self,
        db: Connection,
        worksheet_id: uuid.UUID,
        update: bytes,
        user_id: uuid.UUID | None,
        cells: list[NewCellRecord],
    ) -> bool:
        """In the caller's transaction: the document's update number 1 and its cells'
        records. False (nothing written) if the document has a history already."""
        exists = await db.fetchval(
            "SELECT 1 FROM document_updates WHERE worksheet_id = $1 LIMIT 1", worksheet_id
        )
        if exists:
            return False
        await db.execute(
            """INSERT INTO document_updates (worksheet_id, seq, data, user_id, created_at)
               VALUES ($1, 1, $2, $3, $4)""",
            worksheet_id, update, user_id, _now(),
        )  # fmt: skip
        for cell in cells:
            await db.execute(
                """INSERT INTO cell_records (worksheet_id, cell_id, outputs, execution_count,
                                             run_by, run_at)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (worksheet_id, cell_id) DO NOTHING""",
                worksheet_id, cell.cell_id, cell.outputs, cell.execution_count, cell.run_by,
                cell.run_at,
            )  # fmt: skip
        return True

    async def save_snapshot(self, worksheet_id: uuid.UUID, seq: int, data: bytes) -> None:
        """The whole document as of update `seq` (never replacing a newer snapshot)."""
        async with self.database.transaction() as db:
            await db.execute(
                """INSERT INTO document_snapshots (worksheet_id, seq, data, created_at)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (worksheet_id) DO UPDATE
                   SET seq = excluded.seq, data = excluded.data, created_at = excluded.created_at
                   WHERE document_snapshots.seq < excluded.seq""",
                worksheet_id, seq, data, _now(),
            )  # fmt: skip

    # -- the old cells, converted once ------------------------------------------------------
    async def worksheets_without_document(self) -> list[uuid.UUID]:
        async with self.database.transaction() as db:
            rows = await db.fetch(
                """SELECT w.id FROM worksheets w WHERE NOT EXISTS
                   (SELECT 1 FROM document_updates d WHERE d.worksheet_id = w.id)"""
            )
        return [as_uuid(row["id"]) for row in rows]

    async def convert(
        self, worksheet_id: uuid.UUID, build: Any, user_id: uuid.UUID | None = None
    ) -> bool:
        """Turn the worksheet's rows in the old ``cells`` table into its document, in one
        transaction: `build` gets [(cell id, source)] in order and returns the first update.
        False if the worksheet has a document already (converted meanwhile, elsewhere)."""
        async with self.database.transaction() as db:
            await self.database.lock(db, f"document:{worksheet_id}")
            rows = await db.fetch(
                "SELECT id, source FROM cells WHERE worksheet_id = $1 ORDER BY position",
                worksheet_id,
            )
            cells = [(str(row["id"]), str(row["source"])) for row in rows]
            return await self.first_update(db, worksheet_id, build(cells), user_id, [])

    # -- cell records -----------------------------------------------------------------------
    async def records(self, worksheet_id: uuid.UUID) -> dict[str, CellRecord]:
        async with self.database.transaction() as db:
            rows = await db.fetch(
                "SELECT * FROM cell_records WHERE worksheet_id = $1", worksheet_id
            )
        return {row["cell_id"]: cell_record_from(row) for row in rows}

    async def record(self, worksheet_id: uuid.UUID, cell_id: str) -> CellRecord | None:
        async with self.database.transaction() as db:
            row = await db.fetchrow(
                "SELECT * FROM cell_records WHERE worksheet_id = $1 AND cell_id = $2",
                worksheet_id, cell_id,
            )  # fmt: skip
        return None if row is None else cell_record_from(row)

    async def worksheets_with_cell(self, cell_id: str) -> list[uuid.UUID]:
        """The worksheets that hold (or held) a cell with this id."""
        async with self.database.transaction() as db:
            rows = await db.fetch(
                "SELECT worksheet_id FROM cell_records WHERE cell_id = $1", cell_id
            )
        return [as_uuid(row["worksheet_id"]) for row in rows]

    # -- runs and saved outputs -------------------------------------------------------------
    async def start_run(
        self, worksheet_id: uuid.UUID, cell_id: str, msg_id: str, username: str
    ) -> CellRecord:
        """The cell is being run by request `msg_id`: its outputs start over."""
        async with self.database.transaction() as db:
            row = await db.fetchrow(
                """INSERT INTO cell_records (worksheet_id, cell_id, run_msg_id, run_by, run_at)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (worksheet_id, cell_id) DO UPDATE
                   SET run_msg_id = excluded.run_msg_id, run_by = excluded.run_by,
                       run_at = excluded.run_at, outputs = '[]', execution_count = NULL
                   RETURNING *""",
                worksheet_id, cell_id, msg_id, username, _now(),
            )  # fmt: skip
        assert row is not None
        return cell_record_from(row)

    async def clear_outputs(
        self, worksheet_id: uuid.UUID, cell_ids: list[str], up_to: int
    ) -> list[str]:
        """Clear the saved outputs, execution count and who ran them last of cells `cell_ids`
        (as if never run), in one transaction. Returns the ids of the runs those cells had
        (a saver following one of them starts its outputs over).

        `up_to` is the session feed's cursor when the clear was asked for: the cells' saved
        cursor moves up to it, so a save of what a run printed before the clear (a saver
        behind the feed folds it in later) changes nothing (`save_outputs` keeps only newer)."""
        runs = []
        async with self.database.transaction() as db:
            for cell_id in cell_ids:
                row = await db.fetchrow(
                    """UPDATE cell_records SET outputs = '[]', execution_count = NULL,
                                               run_by = NULL, run_at = NULL,
                           outputs_seq = CASE WHEN outputs_seq < $3 THEN $3
                                              ELSE outputs_seq END
                       WHERE worksheet_id = $1 AND cell_id = $2 RETURNING run_msg_id""",
                    worksheet_id, cell_id, up_to,
                )  # fmt: skip
                if row is not None and row["run_msg_id"]:
                    runs.append(str(row["run_msg_id"]))
        return runs

    async def by_run(self, msg_id: str) -> CellRecord | None:
        """The cell whose latest run is execute_request `msg_id`."""
        async with self.database.transaction() as db:
            row = await db.fetchrow("SELECT * FROM cell_records WHERE run_msg_id = $1", msg_id)
        return None if row is None else cell_record_from(row)

    async def recent_run_sessions(self, hours: float) -> list[tuple[str, int]]:
        """Sessions with cell runs started in the last `hours`, each with the oldest saved
        cursor among those runs (where saving them may resume)."""
        since = _now() - timedelta(hours=hours)
        async with self.database.transaction() as db:
            rows = await db.fetch(
                """SELECT w.session, min(c.outputs_seq) AS after
                   FROM cell_records c JOIN worksheets w ON w.id = c.worksheet_id
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
                """UPDATE cell_records SET outputs = $3, execution_count = $4, outputs_seq = $2
                   WHERE run_msg_id = $1 AND outputs_seq < $2 RETURNING cell_id""",
                msg_id, seq, outputs, execution_count,
            )  # fmt: skip
        return row is not None
