"""Clearing saved outputs (``worksheet.clear_outputs``): the records, the document's execution
counts and every page told on the feed, on both buses and both databases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc

from cellbus_accounts.notebook_doc import NotebookDoc
from cellbus_accounts.saver import OutputSaver
from cellbus_accounts.store import Database, Postgres, Sqlite
from cellbus_protocol import accounts as a
from cellbus_protocol import codec, keys
from cellbus_protocol import messages as m
from cellbus_protocol.envelope import Message
from cellbus_protocol.errors import RemoteError

from ..support.feeds import collect
from ..support.polling import eventually
from ..support.postgres import create_database, drop_database
from .conftest import Kernel
from .test_saved_outputs import (
    EXPECTED,
    PASSWORD,
    CountingRows,
    CountingStore,
    accounts_service,
    call,
    new_worksheet,
    run_cell,
)


@pytest.fixture
async def database(kernel: Kernel, tmp_path: Path) -> AsyncIterator[Any]:
    """SQLite with the in-process bus, PostgreSQL with Redis (as test_saved_outputs)."""
    if kernel.transport == "memory":
        yield lambda: Sqlite(tmp_path / "accounts.db")
        return
    name, url = await create_database()
    yield lambda: Postgres(url)
    await drop_database(name)


async def next_of_type(kernel: Kernel, session: str, after: int, msg_type: str) -> Message:
    """The first message of `msg_type` on the session's feed after cursor `after`."""
    async with asyncio.timeout(20), await kernel.bus.subscribe(keys.feed(session), after) as feed:
        while True:
            entry = await feed.next(timeout=20)
            assert entry is not None, f"no {msg_type} on the feed"
            msg = codec.decode(entry.data)
            if msg.msg_type == msg_type:
                return msg


async def test_clearing_outputs_clears_the_record_the_count_and_tells_the_feed(
    kernel: Kernel, database: Any
) -> None:
    async with accounts_service(kernel, database):
        actor, sheet, cell = await new_worksheet(kernel)
        notes = await call(
            kernel,
            a.CreateCell(
                worksheet=sheet["id"], source="# Notes", cell_type="markdown", after=cell["id"]
            ),
            actor,
        )
        await run_cell(kernel, cell, sheet["session"], actor)
        await saved_cell_with_outputs(kernel, sheet["id"], actor)
        after = await kernel.bus.last_seq(keys.feed(sheet["session"]))

        request = a.ClearOutputs(worksheet=sheet["id"], cells=[cell["id"], notes["id"], "nope"])
        cleared = await call(kernel, request, actor)
        assert cleared == [cell["id"]]  # a Markdown cell has no outputs, "nope" is not here

        announced = await next_of_type(kernel, sheet["session"], after, "outputs_cleared")
        assert isinstance(announced.content, m.OutputsCleared)
        assert announced.content.cells == [cell["id"]]
        assert announced.header.username == "ada"
        got = (await call(kernel, a.GetWorksheet(id=sheet["id"]), actor))["cells"][0]
        assert (got["outputs"], got["execution_count"]) == ([], None)
        assert (got["run_by"], got["run_at"]) == (None, None)

        # Every code cell when none are named; a viewer may not.
        await run_cell(kernel, cell, sheet["session"], actor)
        await saved_cell_with_outputs(kernel, sheet["id"], actor, count=2)
        bob = await call(kernel, a.Register(username="bob", password=PASSWORD))
        await call(kernel, a.ShareWorksheet(id=sheet["id"], username="bob", role="viewer"), actor)
        with pytest.raises(RemoteError) as raised:
            await call(kernel, a.ClearOutputs(worksheet=sheet["id"]), bob["id"])
        assert raised.value.code == "forbidden"
        assert (await saved_cell_with_outputs(kernel, sheet["id"], actor, count=2))["outputs"]
        assert await call(kernel, a.ClearOutputs(worksheet=sheet["id"]), actor) == [cell["id"]]
        got = (await call(kernel, a.GetWorksheet(id=sheet["id"]), actor))["cells"][0]
        assert (got["outputs"], got["execution_count"]) == ([], None)


async def saved_cell_with_outputs(
    kernel: Kernel, worksheet: str, actor: str, count: int = 1
) -> dict[str, Any]:
    """The worksheet's first cell once its run (the `count`th) is saved whole."""
    result = {"data": {"text/plain": "42"}, "metadata": {}, "execution_count": count}
    expected = [EXPECTED[0], {"output_type": "execute_result", **result}]
    return await first_cell_when(
        kernel,
        worksheet,
        actor,
        lambda got: got["outputs"] == expected and got["execution_count"] == count,
    )


SLOW = "import time\nprint('before', flush=True)\ntime.sleep(5)\nprint('after')"
AFTER = [{"output_type": "stream", "name": "stdout", "text": "after\n"}]


async def test_a_run_cleared_while_it_goes_on_saves_only_what_comes_after(
    kernel: Kernel, database: Any
) -> None:
    async with accounts_service(kernel, database):
        actor, sheet, cell = await new_worksheet(kernel)
        # what the run printed before the clear is gone
        assert await cleared_while_it_runs(kernel, actor, sheet, cell) == AFTER


async def cleared_while_it_runs(
    kernel: Kernel, actor: str, sheet: dict[str, Any], cell: dict[str, Any]
) -> list[dict[str, Any]]:
    """Run `SLOW` in `cell`, clear the worksheet's outputs once what it printed first is
    saved; the cell's saved outputs once the run has ended."""
    cell = await call(kernel, a.UpdateCell(id=cell["id"], source=SLOW, version=1), actor)
    await run_cell(kernel, cell, sheet["session"], actor)
    before = [{"output_type": "stream", "name": "stdout", "text": "before\n"}]
    await first_cell_when(kernel, sheet["id"], actor, lambda got: got["outputs"] == before)
    assert await call(kernel, a.ClearOutputs(worksheet=sheet["id"]), actor) == [cell["id"]]
    got = await first_cell_when(
        kernel, sheet["id"], actor, lambda got: got["execution_count"] is not None
    )
    return list(got["outputs"])


async def test_a_run_saved_by_another_accounts_process_keeps_only_what_comes_after_a_clear(
    kernel: Kernel, database: Any
) -> None:
    """With several accounts processes, the one that saves a run's outputs may not be the one
    that takes the clear: it learns of it from the feed (``outputs_cleared`` and its cursor),
    so the cell ends with what the run printed after the clear only (it used to save what it
    had folded in before the clear along with it)."""
    store = CountingStore(database())
    await store.open()
    saving = OutputSaver(store, kernel.bus)  # another process: it saves, and is not told
    try:
        async with accounts_service(kernel, database, saving=False):
            actor, sheet, cell = await new_worksheet(kernel)
            session = sheet["session"]
            saving.follow(session, await kernel.bus.last_seq(keys.feed(session)))
            assert await cleared_while_it_runs(kernel, actor, sheet, cell) == AFTER
    finally:
        await saving.close()
        await store.close()


async def first_cell_when(
    kernel: Kernel, worksheet: str, actor: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The worksheet's first cell, once `done` says so of it."""
    async with asyncio.timeout(30):
        while True:
            got: dict[str, Any] = (await call(kernel, a.GetWorksheet(id=worksheet), actor))[
                "cells"
            ][0]
            if done(got):
                return got
            await asyncio.sleep(0.05)


class HeldRows(CountingRows):
    """The cell records, with the saver's first read of a run (`by_run`) or its writes of
    outputs (`save_outputs`) held until `opened`: a saver behind the feed, as under load."""

    def __init__(self, database: Database, held: str) -> None:
        super().__init__(database)
        self.held = held
        self.reached = asyncio.Event()  # the saver is waiting at the gate
        self.opened = asyncio.Event()

    async def _gate(self, name: str) -> None:
        if name == self.held:
            self.reached.set()
            await self.opened.wait()

    async def by_run(self, msg_id: str) -> Any:
        await self._gate("by_run")
        return await super().by_run(msg_id)

    async def save_outputs(
        self, msg_id: str, seq: int, outputs: list[dict[str, Any]], execution_count: int | None
    ) -> bool:
        await self._gate("save_outputs")
        return await super().save_outputs(msg_id, seq, outputs, execution_count)


class HeldStore(CountingStore):
    def __init__(self, database: Database, held: str) -> None:
        super().__init__(database)
        self.documents = self.counting = self.held = HeldRows(database, held)


@pytest.mark.parametrize("held", ["by_run", "save_outputs"])
async def test_outputs_cleared_before_the_saver_has_them_stay_cleared(
    kernel: Kernel, database: Any, held: str
) -> None:
    """A run's outputs cleared before the saver has read them (`by_run`: it is behind the
    feed) or while it writes them (`save_outputs`) are not saved after all: the cell, reloaded,
    shows none and no count, in its record and in its document (a browser test saw the output
    come back on a reload under load)."""
    store = HeldStore(database(), held)
    async with accounts_service(kernel, database, store) as saver:
        actor, sheet, cell = await new_worksheet(kernel)
        request = await run_cell(kernel, cell, sheet["session"], actor)
        await collect(kernel.bus, request)  # the run has ended on the feed
        async with asyncio.timeout(20):
            await store.held.reached.wait()
        assert await call(kernel, a.ClearOutputs(worksheet=sheet["id"]), actor) == [cell["id"]]
        store.held.opened.set()
        await caught_up(kernel, saver, sheet["session"])

        got = (await call(kernel, a.GetWorksheet(id=sheet["id"]), actor))["cells"][0]
        assert (got["outputs"], got["execution_count"]) == ([], None)
        assert await document_counts(kernel, sheet["id"], actor) == [None]
        # The saver carries on: the next run is saved whole, its count in the document.
        await run_cell(kernel, cell, sheet["session"], actor)
        await saved_cell_with_outputs(kernel, sheet["id"], actor, count=2)
        await caught_up(kernel, saver, sheet["session"])
        assert await document_counts(kernel, sheet["id"], actor) == [2]


async def caught_up(kernel: Kernel, saver: OutputSaver, session: str) -> None:
    """Once the saver has read the session's feed as far as it goes now, and saved it."""
    end = await kernel.bus.last_seq(keys.feed(session))

    async def done() -> bool:
        follower = saver.follower(session)
        saving = follower is not None and follower.save_due is not None
        return saver.cursors.get(session, 0) >= end and not saving

    await eventually(done, timeout=20)


async def document_counts(kernel: Kernel, worksheet: str, actor: str) -> list[int | None]:
    """The execution counts of the worksheet's cells in its document, as a client syncs it."""
    client = a.AccountsClient(kernel.bus)
    state = await client.call(a.SyncDocument(worksheet=worksheet, state_vector=b"\0", actor=actor))
    doc: Doc[Any] = Doc()
    doc.apply_update(state.update)
    return [cell.execution_count for cell in NotebookDoc(doc).read_cells()]
