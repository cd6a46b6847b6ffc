"""The SQL of the kernels started through the Jupyter Server API (``jupyter_kernels``).

Such a kernel is the session of a worksheet made for it (the row is written in the same
transaction as the worksheet, see `Store.create_worksheet`); the row only says that the
Jupyter API lists it, as which kernelspec, and which Jupyter session (/api/sessions) is
attached. Who may see it is the worksheet's membership, as for any session.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .database import Connection, Database
from .records import Role, as_role, as_time, as_uuid


@dataclass(frozen=True)
class JupyterSessionFields:
    """A Jupyter session as /api/sessions describes it (its id, and the notebook's path,
    name and type); an empty `id` means none is attached."""

    id: str | None = None
    path: str = ""
    name: str = ""
    type: str = ""


@dataclass(frozen=True)
class JupyterKernel:
    session: str
    worksheet_id: uuid.UUID
    name: str
    created_at: datetime
    jupyter: JupyterSessionFields
    role: Role  # of the user it was read for


_COLUMNS = """k.session, k.worksheet_id, k.name, k.created_at, k.jupyter_session, k.path,
    k.session_name, k.session_type, m.role"""
_VISIBLE = f"""SELECT {_COLUMNS} FROM jupyter_kernels k
    JOIN memberships m ON m.worksheet_id = k.worksheet_id"""


def _kernel_from(row: Any) -> JupyterKernel:
    jupyter = JupyterSessionFields(
        row["jupyter_session"], row["path"], row["session_name"], row["session_type"]
    )
    return JupyterKernel(
        row["session"], as_uuid(row["worksheet_id"]), row["name"], as_time(row["created_at"]),
        jupyter, as_role(row["role"]),
    )  # fmt: skip


class JupyterKernelRows:
    """The Jupyter API's kernels, on one database."""

    def __init__(self, database: Database) -> None:
        self.database = database

    @staticmethod
    async def add(
        db: Connection, session: str, worksheet_id: uuid.UUID, name: str,
        jupyter: JupyterSessionFields,
    ) -> None:  # fmt: skip
        """The row of a new kernel, in the transaction that creates its worksheet."""
        await db.execute(
            """INSERT INTO jupyter_kernels (session, worksheet_id, name, created_at,
                   jupyter_session, path, session_name, session_type)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            session, worksheet_id, name, datetime.now(UTC), jupyter.id, jupyter.path,
            jupyter.name, jupyter.type,
        )  # fmt: skip

    async def visible_to(self, user_id: uuid.UUID) -> list[JupyterKernel]:
        """The kernels on worksheets `user_id` is a member of, oldest first."""
        async with self.database.transaction() as db:
            rows = await db.fetch(
                f"{_VISIBLE} WHERE m.user_id = $1 ORDER BY k.created_at, k.session", user_id
            )
        return [_kernel_from(row) for row in rows]

    async def get(self, session: str, user_id: uuid.UUID) -> JupyterKernel | None:
        """The kernel `session` as `user_id` sees it; None if there is none or it is not
        theirs to see."""
        async with self.database.transaction() as db:
            row = await db.fetchrow(
                f"{_VISIBLE} WHERE k.session = $1 AND m.user_id = $2", session, user_id
            )
        return None if row is None else _kernel_from(row)

    async def forget(self, session: str) -> None:
        async with self.database.transaction() as db:
            await db.execute("DELETE FROM jupyter_kernels WHERE session = $1", session)

    async def attach(self, session: str, jupyter: JupyterSessionFields) -> None:
        """Attach `jupyter` to kernel `session` (taken off any other kernel first), or
        detach the kernel's with an empty id."""
        async with self.database.transaction() as db:
            if jupyter.id is not None:
                await db.execute(
                    """UPDATE jupyter_kernels SET jupyter_session = NULL
                       WHERE jupyter_session = $1 AND session <> $2""",
                    jupyter.id, session,
                )  # fmt: skip
            await db.execute(
                """UPDATE jupyter_kernels SET jupyter_session = $2, path = $3,
                       session_name = $4, session_type = $5 WHERE session = $1""",
                session, jupyter.id, jupyter.path, jupyter.name, jupyter.type,
            )  # fmt: skip
