"""Outputs of cell runs are saved on the server, watched or not, and survive the accounts
service being away while the cell runs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cellbus_accounts.config import AccountsSettings
from cellbus_accounts.handlers import Handlers
from cellbus_accounts.saver import SAVE_INTERVAL, OutputSaver
from cellbus_accounts.service import AccountsService
from cellbus_accounts.store import Database, DocumentRows, Postgres, Sqlite, Store
from cellbus_protocol import accounts as a
from cellbus_protocol import codec, keys
from cellbus_protocol import messages as m
from cellbus_protocol.envelope import Message, new_message

from ..support.feeds import collect
from ..support.postgres import create_database, drop_database
from .conftest import Kernel

PASSWORD = "correct horse battery"


@pytest.fixture
async def database(kernel: Kernel, tmp_path: Path) -> AsyncIterator[Any]:
    """A database for the accounts service: SQLite with the in-process bus, PostgreSQL with
    Redis; reopened by each `accounts_service`."""
    if kernel.transport == "memory":
        yield lambda: Sqlite(tmp_path / "accounts.db")
        return
    name, url = await create_database()
    yield lambda: Postgres(url)
    await drop_database(name)


class CountingRows(DocumentRows):
    """The store's cell records, counting the writes of saved outputs."""

    writes = 0

    async def save_outputs(
        self, msg_id: str, seq: int, outputs: list[dict[str, Any]], execution_count: int | None
    ) -> bool:
        self.writes += 1
        return await super().save_outputs(msg_id, seq, outputs, execution_count)


class CountingStore(Store):
    """The store, counting the writes of saved outputs (`writes`)."""

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.documents = self.counting = CountingRows(database)

    @property
    def writes(self) -> int:
        return self.counting.writes


@asynccontextmanager
async def accounts_service(
    kernel: Kernel,
    database: Any,
    store: CountingStore | None = None,
    quiet_after: float = 60.0,
    *,
    saving: bool = True,
) -> AsyncIterator[OutputSaver]:
    """The accounts service on the kernel's bus, as its own __main__ starts it (its saver
    follows the runs it starts only if `saving`: else another process saves them)."""
    store = store or CountingStore(database())
    await store.open()
    saver = OutputSaver(store, kernel.bus, quiet_after=quiet_after)
    await saver.start()
    handlers = Handlers(store, kernel.bus, AccountsSettings(), saver if saving else None)
    service = AccountsService(handlers, kernel.bus, "accounts-test")
    task = asyncio.create_task(service.run())
    await service.ready.wait()
    try:
        yield saver
    finally:
        service.stop()
        await task
        await saver.close()
        await store.close()


async def call(kernel: Kernel, request: a.Request[Any], actor: str = "") -> Any:
    """The answer to `request`, as plain JSON values."""
    client = a.AccountsClient(kernel.bus)
    return msgspec.to_builtins(await client.call(msgspec.structs.replace(request, actor=actor)))


async def saved_cell(
    kernel: Kernel, worksheet: str, actor: str, expected: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The cell as the accounts service has it once it shows the whole run (the saver follows
    the feed a moment behind); after 20 s, as it is."""
    cell: dict[str, Any] = {}
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(20):
            while True:
                (cell,) = (await call(kernel, a.GetWorksheet(id=worksheet), actor))["cells"]
                if cell["outputs"] == (expected or EXPECTED):
                    return cell
                await asyncio.sleep(0.02)
    return cell


async def run_cell(kernel: Kernel, cell: dict[str, Any], session: str, actor: str) -> Any:
    """What the web service does for cell.evaluate: mark the run, send the request."""
    request = new_message(
        m.ExecuteRequest(code=cell["source"]), session=session, username="ada",
        metadata={"cellbus": {"cell_id": cell["id"]}},
    )  # fmt: skip
    await call(kernel, a.StartRun(id=cell["id"], msg_id=request.msg_id), actor)
    await kernel.bus.enqueue(keys.requests(session), codec.encode(request))
    await kernel.client.ensure_session(session)
    return request


EXPECTED = [
    {"output_type": "stream", "name": "stdout", "text": "0\n1\n2\n"},
    {"output_type": "execute_result", "data": {"text/plain": "42"}, "metadata": {},
     "execution_count": 1},
]  # fmt: skip
CODE = "for i in range(3): print(i)\n42"


async def new_worksheet(kernel: Kernel) -> tuple[str, dict[str, Any], dict[str, Any]]:
    user = await call(kernel, a.Register(username="ada", password=PASSWORD))
    sheet = await call(kernel, a.CreateWorksheet(title="Saved"), user["id"])
    cell = await call(kernel, a.CreateCell(worksheet=sheet["id"], source=CODE), user["id"])
    await kernel.client.create_session(sheet["session"])
    return user["id"], sheet, cell


async def test_outputs_are_saved_with_nobody_watching(kernel: Kernel, database: Any) -> None:
    async with accounts_service(kernel, database):
        actor, sheet, cell = await new_worksheet(kernel)
        await run_cell(kernel, cell, sheet["session"], actor)
        saved = await saved_cell(kernel, sheet["id"], actor)
    assert saved["outputs"] == EXPECTED
    assert (saved["execution_count"], saved["run_by"]) == (1, "ada")


async def test_outputs_made_while_the_accounts_service_was_away_are_saved(
    kernel: Kernel, database: Any
) -> None:
    async with accounts_service(kernel, database):
        actor, sheet, cell = await new_worksheet(kernel)
        # The run starts, then the accounts service goes away before any output.
        request = await run_cell(kernel, cell, sheet["session"], actor)
    await collect(kernel.bus, request)  # the cell runs to the end with no accounts service
    async with accounts_service(kernel, database):  # back: it resumes from the feed
        saved = await saved_cell(kernel, sheet["id"], actor)
        assert saved["outputs"] == EXPECTED
        # Another accounts process reading the whole feed again changes nothing.
        async with accounts_service(kernel, database) as second:
            second.follow(sheet["session"], 0)
            end = await kernel.bus.last_seq(keys.feed(sheet["session"]))
            async with asyncio.timeout(20):  # until it has read the feed to its end
                while True:
                    if second.cursors.get(sheet["session"], 0) >= end:
                        break
                    await asyncio.sleep(0.02)
            assert second.saved == 0
            assert (await saved_cell(kernel, sheet["id"], actor))["outputs"] == EXPECTED


LINES = 20_000
LONG_RUN = f"""
import time
for i in range({LINES}):
    print(i)
    if i % 100 == 99:
        time.sleep(0.015)
"""


async def test_a_long_run_is_saved_a_bounded_number_of_times(kernel: Kernel, database: Any) -> None:
    store = CountingStore(database())
    async with accounts_service(kernel, database, store):
        actor, sheet, cell = await new_worksheet(kernel)
        cell = await call(kernel, a.UpdateCell(id=cell["id"], source=LONG_RUN, version=1), actor)
        started = time.monotonic()
        request = await run_cell(kernel, cell, sheet["session"], actor)
        run = await collect(kernel.bus, request)
        seconds = time.monotonic() - started
        expected = [{"output_type": "stream", "name": "stdout", "text": run.stdout}]
        saved = await saved_cell(kernel, sheet["id"], actor, expected)
    assert run.stdout == "".join(f"{i}\n" for i in range(LINES))
    assert saved["outputs"] == expected
    print(f"{len(run.of_type('stream'))} stream messages in {seconds:.1f} s: {store.writes} saves")
    assert store.writes <= 2 + seconds / SAVE_INTERVAL


async def test_a_follower_stops_after_its_session_ends(kernel: Kernel, database: Any) -> None:
    async with accounts_service(kernel, database, quiet_after=0.5) as saver:
        actor, sheet, cell = await new_worksheet(kernel)
        session = sheet["session"]
        await run_cell(kernel, cell, session, actor)
        assert (await saved_cell(kernel, sheet["id"], actor))["outputs"] == EXPECTED
        follower = saver.follower(session)
        assert follower is not None and follower.task is not None
        await kernel.client.shutdown(session)
        async with asyncio.timeout(20):
            await follower.task  # it ends by itself, half a second after the session's last word
        assert saver.follower(session) is None
        # The next run on the session (started again) is followed and saved as before.
        cell = await call(
            kernel, a.UpdateCell(id=cell["id"], source="print('again')", version=1), actor
        )
        request = await run_cell(kernel, cell, session, actor)
        await collect(kernel.bus, request)
        again = [{"output_type": "stream", "name": "stdout", "text": "again\n"}]
        assert (await saved_cell(kernel, sheet["id"], actor, again))["outputs"] == again


async def first_output(kernel: Kernel, request: Message) -> None:
    """Wait until the feed has `request`'s first output."""
    async with await kernel.bus.subscribe(keys.feed(request.session), 0) as feed:
        async with asyncio.timeout(20):
            async for entry in feed:
                msg = codec.decode(entry.data)
                if msg.parent_header.msg_id == request.msg_id and msg.msg_type == "stream":
                    return


async def test_outputs_survive_the_accounts_service_stopping_mid_run(
    kernel: Kernel, database: Any
) -> None:
    code = "import time\nprint('working', flush=True)\ntime.sleep(1)\nprint('finished')"
    expected = [{"output_type": "stream", "name": "stdout", "text": "working\nfinished\n"}]
    async with accounts_service(kernel, database):
        actor, sheet, cell = await new_worksheet(kernel)
        cell = await call(kernel, a.UpdateCell(id=cell["id"], source=code, version=1), actor)
        request = await run_cell(kernel, cell, sheet["session"], actor)
        await first_output(kernel, request)  # read by the saver, maybe not saved yet: it stops
    await collect(kernel.bus, request)  # the rest of the run, with no accounts service
    async with accounts_service(kernel, database):  # back: it resumes from the feed
        assert (await saved_cell(kernel, sheet["id"], actor, expected))["outputs"] == expected
