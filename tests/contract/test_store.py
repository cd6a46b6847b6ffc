"""The accounts store's contract, on PostgreSQL and on the embedded SQLite alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cellbus_accounts.store import (
    Postgres,
    Sqlite,
    Store,
    StoreUnavailable,
    UniqueViolation,
    User,
    VersionConflict,
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


# -- migrations ------------------------------------------------------------------------------


async def test_migrations_apply_once(database_url: str) -> None:
    first = Store(database(database_url))
    assert await first.open() == [
        "0001_init.sql",
        "0002_bare_sessions.sql",
        "0003_login_attempts.sql",
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
        ["0001_init.sql", "0002_bare_sessions.sql", "0003_login_attempts.sql"],
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
    sheet = await store.create_worksheet(ada, "Orbits", "session-1")
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
    sheet = await store.create_worksheet(ada, "Draft", "session-2")
    await store.create_cell(sheet.id, "x = 1", None)
    await store.rename_worksheet(sheet.id, "Final")
    renamed = await store.worksheet_for(sheet.id, ada.id)
    assert renamed is not None and renamed.title == "Final"
    assert renamed.updated_at >= sheet.updated_at
    await store.delete_worksheet(sheet.id)
    assert await store.worksheets_for(ada.id) == []
    assert await store.cells(sheet.id) == []


async def test_a_session_belongs_to_one_worksheet(store: Store) -> None:
    ada = await new_user(store, "ada")
    await store.create_worksheet(ada, "One", "shared-session")
    with pytest.raises(UniqueViolation):
        await store.create_worksheet(ada, "Two", "shared-session")


# -- cells -----------------------------------------------------------------------------------


async def sources(store: Store, worksheet_id: uuid.UUID) -> list[str]:
    return [cell.source for cell in await store.cells(worksheet_id)]


async def test_cells_keep_the_order_they_are_put_in(store: Store) -> None:
    ada = await new_user(store, "ada")
    sheet = await store.create_worksheet(ada, "Order", "s-order")
    b = await store.create_cell(sheet.id, "b", None)
    a = await store.create_cell(sheet.id, "a", None)  # at the top
    d = await store.create_cell(sheet.id, "d", b.id)
    await store.create_cell(sheet.id, "c", b.id)  # between b and d
    assert await sources(store, sheet.id) == ["a", "b", "c", "d"]
    await store.move_cell(a.id, d.id)
    assert await sources(store, sheet.id) == ["b", "c", "d", "a"]
    await store.move_cell(d.id, None)
    assert await sources(store, sheet.id) == ["d", "b", "c", "a"]
    await store.delete_cell(b.id)
    assert await sources(store, sheet.id) == ["d", "c", "a"]
    with pytest.raises(ValueError):
        await store.move_cell(a.id, a.id)
    with pytest.raises(LookupError):
        await store.create_cell(sheet.id, "x", uuid.uuid4())
    with pytest.raises(LookupError):
        await store.delete_cell(b.id)


async def test_concurrent_inserts_keep_a_total_order(store: Store) -> None:
    ada = await new_user(store, "ada")
    sheet = await store.create_worksheet(ada, "Busy", "s-busy")
    first = await store.create_cell(sheet.id, "first", None)
    # Twenty people insert after the same cell at once, and ten at the top.
    after_first = [store.create_cell(sheet.id, f"after-{i}", first.id) for i in range(20)]
    at_top = [store.create_cell(sheet.id, f"top-{i}", None) for i in range(10)]
    created = await asyncio.gather(*after_first, *at_top)
    cells = await store.cells(sheet.id)
    assert len(cells) == 31 and len({c.position for c in cells}) == 31
    assert {c.id for c in created} | {first.id} == {c.id for c in cells}
    order = [c.source for c in cells]
    assert order.index("first") == 10  # all ten top inserts went above it
    # Reading twice gives the same order: it is total, not an accident of the query.
    assert [c.source for c in await store.cells(sheet.id)] == order


async def test_a_stale_version_is_refused_with_the_current_cell(store: Store) -> None:
    ada = await new_user(store, "ada")
    sheet = await store.create_worksheet(ada, "Edits", "s-edits")
    cell = await store.create_cell(sheet.id, "v1", None)
    assert cell.version == 1
    updated = await store.update_cell(cell.id, "v2 by ada", 1)
    assert (updated.source, updated.version) == ("v2 by ada", 2)
    with pytest.raises(VersionConflict) as conflict:
        await store.update_cell(cell.id, "v2 by brian", 1)
    assert (conflict.value.current.source, conflict.value.current.version) == ("v2 by ada", 2)
    current = await store.cell(cell.id)
    assert current is not None and current.source == "v2 by ada"
    with pytest.raises(LookupError):
        await store.update_cell(uuid.uuid4(), "x", 1)


async def test_concurrent_edits_of_one_version_let_exactly_one_win(store: Store) -> None:
    ada = await new_user(store, "ada")
    sheet = await store.create_worksheet(ada, "Race", "s-race")
    cell = await store.create_cell(sheet.id, "start", None)
    results = await asyncio.gather(
        *(store.update_cell(cell.id, f"edit {i}", 1) for i in range(8)), return_exceptions=True
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, VersionConflict) for r in results if isinstance(r, Exception))
    current = await store.cell(cell.id)
    assert current is not None and current.source == winners[0].source


# -- saved outputs ---------------------------------------------------------------------------


async def test_saving_outputs_is_idempotent_per_message(store: Store) -> None:
    ada = await new_user(store, "ada")
    sheet = await store.create_worksheet(ada, "Runs", "s-runs")
    cell = await store.create_cell(sheet.id, "print(1)", None)
    started = await store.start_run(cell.id, "msg-1", "ada")
    assert (started.run_msg_id, started.run_by, started.outputs) == ("msg-1", "ada", [])
    one = [{"output_type": "stream", "name": "stdout", "text": "1\n"}]
    assert await store.save_outputs("msg-1", 5, one, 1)
    assert not await store.save_outputs("msg-1", 3, [], None)  # older: ignored
    assert not await store.save_outputs("msg-1", 5, [], None)  # seen again: ignored
    saved = await store.cell(cell.id)
    assert saved is not None and (saved.outputs, saved.execution_count) == (one, 1)
    assert not await store.save_outputs("msg-unknown", 9, one, 1)
