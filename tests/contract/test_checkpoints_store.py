"""The store's named checkpoints of documents (``document_checkpoints``), on PostgreSQL and on
the embedded SQLite alike: saved with their data, listed newest first, capped per worksheet
(the oldest dropped, also when saves race), seen per worksheet only, gone with their
worksheet, kept without an author when the author's account goes."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from cellbus_accounts.store import NotFound, Store

from .test_store import database_url, new_user, sheet_of, store  # noqa: F401  # the fixtures


async def test_a_checkpoint_keeps_its_data_name_author_and_number(store: Store) -> None:  # noqa: F811
    ada = await new_user(store, "ada")
    sheet = await sheet_of(store, ada, "Orbits", uuid.uuid4().hex)
    rows = store.checkpoints
    saved, dropped = await rows.save(sheet.id, "Before", b"\x01state", 7, ada.id, keep=100)
    assert dropped == 0
    assert (saved.name, saved.seq, saved.size, saved.username) == ("Before", 7, 6, "ada")
    assert saved.worksheet_id == sheet.id
    found = await rows.get(sheet.id, saved.id)
    assert found == (saved, b"\x01state")
    assert await rows.list(sheet.id) == [saved]


async def test_checkpoints_are_listed_newest_first_and_the_oldest_go_past_the_cap(
    store: Store,  # noqa: F811
) -> None:
    ada = await new_user(store, "ada")
    sheet = await sheet_of(store, ada, "Orbits", uuid.uuid4().hex)
    rows = store.checkpoints
    names = [f"c{i}" for i in range(5)]
    dropped = [(await rows.save(sheet.id, n, n.encode(), 1, ada.id, keep=3))[1] for n in names]
    assert dropped == [0, 0, 0, 1, 1]
    assert [c.name for c in await rows.list(sheet.id)] == ["c4", "c3", "c2"]


async def test_saves_at_once_never_leave_more_than_the_cap(store: Store) -> None:  # noqa: F811
    ada = await new_user(store, "ada")
    sheet = await sheet_of(store, ada, "Orbits", uuid.uuid4().hex)
    rows = store.checkpoints
    await asyncio.gather(*(rows.save(sheet.id, f"c{i}", b"x", 1, ada.id, keep=4)
                           for i in range(12)))  # fmt: skip
    assert len(await rows.list(sheet.id)) == 4


async def test_a_checkpoint_belongs_to_its_worksheet_only(store: Store) -> None:  # noqa: F811
    ada = await new_user(store, "ada")
    mine = await sheet_of(store, ada, "Mine", uuid.uuid4().hex)
    other = await sheet_of(store, ada, "Other", uuid.uuid4().hex)
    rows = store.checkpoints
    saved, _ = await rows.save(mine.id, "Mine", b"x", 1, ada.id, keep=100)
    assert await rows.get(other.id, saved.id) is None
    assert await rows.list(other.id) == []
    assert not await rows.delete(other.id, saved.id)
    assert await rows.delete(mine.id, saved.id)
    assert not await rows.delete(mine.id, saved.id)
    assert await rows.get(mine.id, saved.id) is None


async def test_checkpoints_go_with_their_worksheet_and_outlive_their_author(
    store: Store,  # noqa: F811
) -> None:
    ada, bob = await new_user(store, "ada"), await new_user(store, "bob")
    sheet = await sheet_of(store, ada, "Orbits", uuid.uuid4().hex)
    rows = store.checkpoints
    saved, _ = await rows.save(sheet.id, "By bob", b"x", 1, bob.id, keep=100)
    async with store.database.transaction() as db:  # no API deletes users: as a migration would
        await db.execute("DELETE FROM users WHERE id = $1", bob.id)
    [kept] = await rows.list(sheet.id)
    assert (kept.id, kept.username) == (saved.id, "")
    await store.delete_worksheet(sheet.id)
    assert await rows.list(sheet.id) == []
    with pytest.raises(NotFound):  # saving on a worksheet deleted meanwhile
        await rows.save(sheet.id, "Late", b"x", 1, ada.id, keep=100)
