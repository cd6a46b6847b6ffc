"""The accounts store's contract, on PostgreSQL and on the embedded SQLite alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cellbus_accounts import migrations
from cellbus_accounts.store import (
    History,
    NewCellRecord,
    Postgres,
    Sqlite,
    Store,
    StoreUnavailable,
    UniqueViolation,
    User,
    Worksheet,
)

from ..support.postgres import create_database, drop_database


@pytest.fixture(params=["postgres", "sqlite"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'accounts.db'}"
        return
    name, url = await create_database()
    yield url
    await drop_database(name)


def database(url: str) -> Postgres | Sqlite:
    return Sqlite(url.removeprefix("sqlite://")) if url.startswith("sqlite") else Postgres(url)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    instance = Store(database(database_url))
    await instance.open()
    yield instance
    await instance.close()


async def new_user(store: Store, name: str) -> User:
    return await store.create_user(name, f"hash-of-{name}")


async def sheet_of(
    store: Store, owner: User, title: str, session: str, first: bytes = b"first"
) -> Worksheet:
    """A new worksheet whose document's first update is `first` (any bytes: the store
    does not read them)."""
    return await store.create_worksheet(owner, title, session, first, [])


# -- migrations ------------------------------------------------------------------------------


async def test_migrations_apply_once(database_url: str) -> None:
    first = Store(database(database_url))
    assert await first.open() == [
        "0001_init.sql",
        "0002_bare_sessions.sql",
        "0003_login_attempts.sql",
        "0004_documents.sql",
        "0005_jupyter_kernels.sql",
        "0006_document_checkpoints.sql",
    ]
    await first.close()
    again = Store(database(database_url))
    assert await again.open() == []
    await again.close()


async def test_migrations_started_concurrently_apply_exactly_once(database_url: str) -> None:
    stores = [Store(database(database_url)) for _ in range(4)]
    applied = await asyncio.gather(*(s.open() for s in stores))
    assert sorted(applied, key=len) == [
        [],
        [],
        [],
        [
            "0001_init.sql",
            "0002_bare_sessions.sql",
            "0003_login_attempts.sql",
            "0004_documents.sql",
            "0005_jupyter_kernels.sql",
            "0006_document_checkpoints.sql",
        ],
    ]
    assert await stores[0].count_users() == 0
    for s in stores:
        await s.close()


async def test_an_unreachable_database_is_unavailable() -> None:
    with pytest.raises(StoreUnavailable):
        await Store(Postgres("postgresql://postgres@127.0.0.1:1/none")).open()


# -- users and tokens ------------------------------------------------------------------------


async def test_the_first_user_is_the_admin(store: Store) -> None:
    first = await new_user(store, "ada")
    second = await new_user(store, "brian")
    assert (first.is_admin, second.is_admin) == (True, False)
    found = await store.user_by_name("ada")
    assert found is not None and found[0] == first and found[1] == "hash-of-ada"
    assert await store.user_by_id(second.id) == second
    assert [u.username for u in await store.list_users()] == ["ada", "brian"]


async def test_a_taken_username_is_refused(store: Store) -> None:
    await new_user(store, "ada")
    with pytest.raises(UniqueViolation):
        await new_user(store, "ada")
    assert await store.count_users() == 1


async def test_tokens_expire_and_can_be_revoked(store: Store) -> None:
    ada, brian = await new_user(store, "ada"), await new_user(store, "brian")
    later = datetime.now(UTC) + timedelta(days=1)
    token = await store.create_token(ada.id, b"h" * 32, "laptop", later)
    found = await store.user_by_token(b"h" * 32)
    assert found is not None and found[0].id == token.id and found[1].username == "ada"
    await store.create_token(ada.id, b"e" * 32, "old", datetime.now(UTC) - timedelta(seconds=1))
    assert await store.user_by_token(b"e" * 32) is None  # expired
    assert not await store.revoke_token(brian.id, token.id)  # not brian's
    assert await store.revoke_token(ada.id, token.id)
    assert await store.user_by_token(b"h" * 32) is None
    assert [t.label for t in await store.list_tokens(ada.id)] == ["laptop", "old"]


# -- worksheets and sharing ------------------------------------------------------------------


async def test_worksheets_are_seen_by_their_members_only(store: Store) -> None:
    ada, brian = await new_user(store, "ada"), await new_user(store, "brian")
    sheet = await sheet_of(store, ada, "Orbits", "session-1")
    assert (sheet.title, sheet.owner, sheet.role, sheet.session) == (
        "Orbits", "ada", "owner", "session-1",
    )  # fmt: skip
    assert await store.worksheets_for(brian.id) == []
    assert await store.worksheet_for(sheet.id, brian.id) is None
    await store.set_role(sheet.id, brian.id, "viewer")
    shared = await store.worksheet_for(sheet.id, brian.id)
    assert shared is not None and shared.role == "viewer" and shared.owner == "ada"
    await store.set_role(sheet.id, brian.id, "editor")
    assert await store.role_of(sheet.id, brian.id) == "editor"
    assert [(m.username, m.role) for m in await store.members(sheet.id)] == [
        ("ada", "owner"), ("brian", "editor"),
    ]  # fmt: skip
    await store.set_role(sheet.id, brian.id, None)
    assert await store.worksheets_for(brian.id) == []
    assert await store.worksheet_by_session("session-1") == sheet.id


async def test_rename_and_delete(store: Store) -> None:
    ada = await new_user(store, "ada")
    sheet = await sheet_of(store, ada, "Draft", "session-2")
    await store.rename_worksheet(sheet.id, "Final")
    renamed = await store.worksheet_for(sheet.id, ada.id)
    assert renamed is not None and renamed.title == "Final"
    assert renamed.updated_at >= sheet.updated_at
    await store.delete_worksheet(sheet.id)
    assert await store.worksheets_for(ada.id) == []
    assert await store.documents.history(sheet.id, 0) == (History(None, []), 0)


async def test_a_session_belongs_to_one_worksheet(store: Store) -> None:
    ada = await new_user(store, "ada")
    await sheet_of(store, ada, "One", "shared-session")
    with pytest.raises(UniqueViolation):
        await sheet_of(store, ada, "Two", "shared-session")


# -- documents and cell records ---------------------------------------------------------------
# The store keeps documents' updates as opaque bytes (only the accounts service's documents.py
# knows Yjs), so these tests use any bytes.


async def test_a_document_is_its_updates_in_order_then_a_snapshot_and_what_follows(
    store: Store,
) -> None:
    ada = await new_user(store, "ada")
    sheet = await sheet_of(store, ada, "Doc", "s-doc", b"u1")
    rows = store.documents
    assert await rows.append(sheet.id, b"u2", ada.id, set(), expect_seq=1) == 2
    assert await rows.append(sheet.id, b"late", ada.id, set(), expect_seq=1) is None
    history, seq = await rows.history(sheet.id, 0)
    assert (history.snapshot, history.updates, seq) == (None, [(1, b"u1"), (2, b"u2")], 2)
    await rows.save_snapshot(sheet.id, 2, b"state-2")
    await rows.save_snapshot(sheet.id, 1, b"older")  # never replaces a newer snapshot
    assert await rows.append(sheet.id, b"u3", None, set(), expect_seq=2) == 3
    history, seq = await rows.history(sheet.id, 0)
    assert (history.snapshot, history.updates, seq) == (b"state-2", [(3, b"u3")], 3)
    history, seq = await rows.history(sheet.id, 2)  # a reader past the snapshot
    assert (history.snapshot, history.updates, seq) == (None, [(3, b"u3")], 3)
    history, seq = await rows.history(sheet.id, 3)
    assert (history.snapshot, history.updates, seq) == (None, [], 3)


async def test_concurrent_commits_of_one_number_let_exactly_one_win(store: Store) -> None:
    ada = await new_user(store, "ada")
    sheet = await sheet_of(store, ada, "Race", "s-race", b"u1")
    results = await asyncio.gather(
        *(store.documents.append(sheet.id, f"u{i}".encode(), ada.id, {"c"}, expect_seq=1)
          for i in range(8))
    )  # fmt: skip
    assert sorted(results, key=lambda r: r or 0) == [None] * 7 + [2]
    record = await store.documents.record(sheet.id, "c")
    assert record is not None and record.version == 1  # only the commit that won counted


async def test_a_cells_version_counts_the_commits_that_changed_it(store: Store) -> None:
    ada = await new_user(store, "ada")
    sheet = await sheet_of(store, ada, "Versions", "s-versions", b"u1")
    rows = store.documents
    for seq, changed in enumerate(({"a", "b"}, {"a"}, set(), {"a"}), start=1):
        assert await rows.append(sheet.id, b"u", ada.id, changed, expect_seq=seq) == seq + 1
    records = await rows.records(sheet.id)
    assert {cell: r.version for cell, r in records.items()} == {"a": 3, "b": 1}
    assert await rows.worksheets_with_cell("a") == [sheet.id]


async def test_an_import_writes_the_first_update_and_the_cells_records_at_once(
    store: Store,
) -> None:
    ada = await new_user(store, "ada")
    one = [{"output_type": "stream", "name": "stdout", "text": "1\n"}]
    ran = datetime(2026, 1, 2, tzinfo=UTC)
    cells = [NewCellRecord("c1", one, 4, "grace", ran), NewCellRecord("c2", [], None)]
    sheet = await store.create_worksheet(ada, "Imported", "s-import", b"first", cells)
    history, seq = await store.documents.history(sheet.id, 0)
    assert (history.updates, seq) == ([(1, b"first")], 1)
    record = await store.documents.record(sheet.id, "c1")
    assert record is not None
    assert (record.outputs, record.execution_count, record.run_by, record.run_at) == (
        one, 4, "grace", ran,
    )  # fmt: skip
    with pytest.raises(UniqueViolation):  # the session is taken: nothing at all is written
        await store.create_worksheet(ada, "Again", "s-import", b"first", cells)
    assert len(await store.worksheets_for(ada.id)) == 1


async def test_old_cells_become_a_document_once(store: Store) -> None:
    ada = await new_user(store, "ada")
    sheet = await store.create_worksheet(ada, "Old", "s-old", b"x", [])
    # A worksheet made before documents: its cells in the old table, no history.
    async with store.database.transaction() as db:
        await db.execute("DELETE FROM document_updates WHERE worksheet_id = $1", sheet.id)
        now = datetime.now(UTC)
        for position, source in (("b", "second"), ("a", "first")):
            await db.execute(
                """INSERT INTO cells (id, worksheet_id, position, source, version, outputs,
                                      created_at, updated_at)
                   VALUES ($1, $2, $3, $4, 1, $5, $6, $6)""",
                uuid.uuid4(), sheet.id, position, source, [], now,
            )  # fmt: skip
    assert await store.documents.worksheets_without_document() == [sheet.id]
    seen: list[list[tuple[str, str]]] = []

    def build(cells: list[tuple[str, str]]) -> bytes:
        seen.append(cells)
        return b"converted"

    converted = await asyncio.gather(*(store.documents.convert(sheet.id, build) for _ in range(3)))
    assert sorted(converted) == [False, False, True]
    assert [source for _, source in seen[0]] == ["first", "second"]
    history, _ = await store.documents.history(sheet.id, 0)
    assert history.updates == [(1, b"converted")]
    assert await store.documents.worksheets_without_document() == []


async def test_migrating_keeps_each_old_cells_outputs_under_its_id(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = Store(database(database_url))
    dialect = old.database.dialect
    older_release = [m for m in migrations.migrations_for(dialect) if m.version < 4]
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "migrations_for", lambda _: older_release)
        assert len(await old.open()) == 3
    ada = await old.create_user("ada", "hash")
    worksheet_id, cell_id, now = uuid.uuid4(), uuid.uuid4(), datetime.now(UTC)
    one = [{"output_type": "stream", "name": "stdout", "text": "1\n"}]
    async with old.database.transaction() as db:
        await db.execute(
            """INSERT INTO worksheets (id, title, owner_id, session, created_at, updated_at)
               VALUES ($1, 'Old', $2, 's-migrate', $3, $3)""",
            worksheet_id, ada.id, now,
        )  # fmt: skip
        await db.execute(
            """INSERT INTO cells (id, worksheet_id, position, source, version, outputs,
                                  execution_count, run_msg_id, run_by, run_at, outputs_seq,
                                  created_at, updated_at)
               VALUES ($1, $2, 'a', 'print(1)', 3, $3, 7, 'm1', 'ada', $4, 12, $4, $4)""",
            cell_id, worksheet_id, one, now,
        )  # fmt: skip
    await old.close()
    store = Store(database(database_url))
    assert await store.open() == [
        "0004_documents.sql",
        "0005_jupyter_kernels.sql",
        "0006_document_checkpoints.sql",
    ]
    record = await store.documents.record(worksheet_id, str(cell_id))
    assert record is not None
    assert (record.version, record.outputs, record.execution_count, record.run_msg_id,
            record.outputs_seq) == (3, one, 7, "m1", 12)  # fmt: skip
    await store.close()


# -- saved outputs ---------------------------------------------------------------------------


async def test_saving_outputs_is_idempotent_per_message(store: Store) -> None:
    ada = await new_user(store, "ada")
    sheet = await sheet_of(store, ada, "Runs", "s-runs", b"u1")
    rows = store.documents
    started = await rows.start_run(sheet.id, "c1", "msg-1", "ada")
    assert (started.run_msg_id, started.run_by, started.outputs) == ("msg-1", "ada", [])
    one = [{"output_type": "stream", "name": "stdout", "text": "1\n"}]
    assert await rows.save_outputs("msg-1", 5, one, 1)
    assert not await rows.save_outputs("msg-1", 3, [], None)  # older: ignored
    assert not await rows.save_outputs("msg-1", 5, [], None)  # seen again: ignored
    saved = await rows.record(sheet.id, "c1")
    assert saved is not None and (saved.outputs, saved.execution_count) == (one, 1)
    assert not await rows.save_outputs("msg-unknown", 9, one, 1)
    found = await rows.by_run("msg-1")
    assert found is not None and found.cell_id == "c1"
    assert await rows.recent_run_sessions(1) == [("s-runs", 5)]


async def test_clearing_outputs_forgets_them_and_who_ran_the_cell(store: Store) -> None:
    ada = await new_user(store, "ada")
    sheet = await sheet_of(store, ada, "Clear", "s-clear", b"u1")
    rows = store.documents
    one = [{"output_type": "stream", "name": "stdout", "text": "1\n"}]
    for cell_id, msg_id in (("c1", "msg-1"), ("c2", "msg-2")):
        await rows.start_run(sheet.id, cell_id, msg_id, "ada")
        assert await rows.save_outputs(msg_id, 5, one, 1)
    assert await rows.clear_outputs(sheet.id, ["c1", "c-none"], 8) == ["msg-1"]
    cleared = await rows.record(sheet.id, "c1")
    assert cleared is not None
    assert (cleared.outputs, cleared.execution_count, cleared.run_by, cleared.run_at) == (
        [], None, None, None,
    )  # fmt: skip
    kept = await rows.record(sheet.id, "c2")
    assert kept is not None and (kept.outputs, kept.execution_count) == (one, 1)
    # a save of what the run printed up to the clear's cursor (a saver behind the feed)
    # changes nothing; what it makes later is saved, alone
    assert not await rows.save_outputs("msg-1", 8, one, 1)
    two = [{"output_type": "stream", "name": "stdout", "text": "2\n"}]
    assert await rows.save_outputs("msg-1", 9, two, None)
    again = await rows.record(sheet.id, "c1")
    assert again is not None and again.outputs == two
    # a clear never moves a cell's saved cursor back
    assert await rows.clear_outputs(sheet.id, ["c2"], 3) == ["msg-2"]
    assert not await rows.save_outputs("msg-2", 5, one, 1)
