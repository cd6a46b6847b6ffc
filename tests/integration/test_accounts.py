"""The accounts service over the bus: sign-up and tokens, worksheets, sharing, cells, and
every permission rule; on the embedded stack (in-process bus, SQLite) and the deployed one
(Redis, PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import msgspec
import pytest

from cellbus_accounts.config import AccountsSettings
from cellbus_accounts.handlers import AccountsError, Handlers
from cellbus_accounts.service import CONCURRENCY, AccountsService
from cellbus_accounts.store import Postgres, Sqlite, Store
from cellbus_protocol import accounts as a
from cellbus_protocol import codec, keys
from cellbus_protocol.bus import Bus, InMemoryBus, RedisBus
from cellbus_protocol.errors import RemoteError

from ..support.documents import Replica
from ..support.polling import eventually
from ..support.postgres import create_database, drop_database
from ..support.redis import REDIS_URL

PASSWORD = "correct horse battery"
NO_SUCH_ID = "00000000-0000-0000-0000-000000000001"
R = TypeVar("R")


@dataclass
class Accounts:
    bus: Bus
    client: a.AccountsClient
    service: AccountsService
    running: asyncio.Task[None]

    async def call(self, request: a.Request[R], actor: a.UserView | None = None) -> R:
        """Call the service as `actor` (as the web service does once it has authenticated)."""
        if actor is not None:
            request = msgspec.structs.replace(request, actor=actor.id)
        return await self.client.call(request)

    async def user(self, name: str) -> a.UserView:
        return await self.call(a.Register(username=name, password=PASSWORD))


async def error_of(call: Awaitable[Any]) -> str:
    with pytest.raises(RemoteError) as raised:
        await call
    return raised.value.code


@pytest.fixture(params=["embedded", "deployed"])
async def accounts(
    request: pytest.FixtureRequest, tmp_path: Path, namespace: str
) -> AsyncIterator[Accounts]:
    settings = AccountsSettings(max_source_bytes=10_000)
    if request.param == "embedded":
        bus: Bus = InMemoryBus()
        store = Store(Sqlite(tmp_path / "accounts.db"))
        database = None
    else:
        bus = RedisBus(REDIS_URL, namespace=namespace)
        database, url = await create_database()
        store = Store(Postgres(url))
    await bus.start()
    await store.open()
    service = AccountsService(Handlers(store, bus, settings), bus, "accounts-test")
    task = asyncio.create_task(service.run())
    await service.ready.wait()
    system = Accounts(bus, a.AccountsClient(bus), service, task)
    yield system
    system.service.stop()  # the one running now (a test may have replaced it)
    await system.running
    await store.close()
    await bus.close()
    if database is not None:
        await drop_database(database)


# -- sign-up and tokens ----------------------------------------------------------------------


async def test_sign_up_log_in_and_tokens(accounts: Accounts) -> None:
    ada = await accounts.user("ada")
    assert ada.is_admin is True
    assert (await accounts.user("brian")).is_admin is False
    assert await error_of(accounts.user("ada")) == "taken"
    login = await accounts.call(a.Login(username="ada", password=PASSWORD))
    assert login.user.username == "ada"
    who = await accounts.call(a.Authenticate(token=login.token))
    assert who.id == ada.id
    assert (await accounts.call(a.WhoAmI(), ada)).username == "ada"
    tokens = await accounts.call(a.ListTokens(), ada)
    assert len(tokens) == 1 and tokens[0].revoked is False
    await accounts.call(a.Logout(token=login.token))
    assert await error_of(accounts.call(a.Authenticate(token=login.token))) == "unauthenticated"
    wrong = a.Login(username="ada", password="not the password")
    assert await error_of(accounts.call(wrong)) == "unauthenticated"
    assert await error_of(accounts.call(a.Login(username="nobody", password=PASSWORD))) == (
        "unauthenticated"
    )


@pytest.mark.parametrize(
    ("username", "password"),
    [("a", PASSWORD), ("has space", PASSWORD), ("-dash", PASSWORD), ("x" * 33, PASSWORD),
     ("fine", "short")],
)  # fmt: skip
async def test_bad_usernames_and_passwords_are_invalid(
    accounts: Accounts, username: str, password: str
) -> None:
    assert await error_of(accounts.call(a.Register(username=username, password=password))) == (
        "invalid"
    )


async def test_every_call_but_sign_up_and_log_in_needs_a_user(accounts: Accounts) -> None:
    for request in (a.WhoAmI(), a.ListUsers(), a.ListWorksheets(), a.CreateWorksheet(title="x"),
                    a.WhoAmI(actor="not-a-uuid"), a.WhoAmI(actor=NO_SUCH_ID)):  # fmt: skip
        assert await error_of(accounts.call(request)) == "unauthenticated", request


async def test_a_malformed_request_is_invalid_and_the_service_goes_on(accounts: Accounts) -> None:
    for data in (b"not json", b'{"op": "format.disk"}', b'{"op": "auth.register"}'):
        reply = msgspec.json.decode(
            await accounts.bus.request(keys.ACCOUNTS, data, timeout=10), type=a.Reply
        )
        assert reply.error is not None and reply.error.code == "invalid"
    assert (await accounts.user("still-here")).username == "still-here"


class HeldHandlers(Handlers):
    """The handlers of `like`, each call held at `gate` once it has begun."""

    def __init__(self, like: Handlers) -> None:
        super().__init__(like.store, like.bus, like.settings)
        self.gate = asyncio.Event()
        self.begun = 0
        self.changed = asyncio.Condition()

    async def handle(self, request: a.Request[Any]) -> Any:
        async with self.changed:
            self.begun += 1
            self.changed.notify_all()
        await self.gate.wait()
        return await super().handle(request)


async def run_service(accounts: Accounts, handlers: Handlers, name: str) -> AccountsService:
    service = AccountsService(handlers, accounts.bus, name)
    accounts.running = asyncio.create_task(service.run())
    await service.ready.wait()
    return service


async def test_a_stopping_service_answers_every_request_it_took(accounts: Accounts) -> None:
    """A process stopped (SIGTERM, a rolling update) with more requests in hand than it
    serves at once answers each one it took, and what it did not take is left on the queue
    for the next process: no request times out."""
    ada = await accounts.user("ada")
    accounts.service.stop()
    await accounts.running
    count = CONCURRENCY + 8
    calls = [asyncio.create_task(accounts.call(a.WhoAmI(), ada)) for _ in range(count)]

    async def all_queued() -> bool:  # before the next process reads
        return await accounts.bus.queue_size(keys.ACCOUNTS) == count

    await eventually(all_queued)
    held = HeldHandlers(accounts.service.handlers)
    stopping = await run_service(accounts, held, "accounts-stopping")
    async with asyncio.timeout(10), held.changed:  # every slot busy, and then it stops
        await held.changed.wait_for(lambda: held.begun == CONCURRENCY)
    stopping.stop()
    held.gate.set()
    async with asyncio.timeout(10):
        await accounts.running
    accounts.service = await run_service(accounts, accounts.service.handlers, "accounts-next")
    answers = await asyncio.gather(*calls)
    assert [user.username for user in answers] == ["ada"] * count


# -- worksheets, cells, sharing ----------------------------------------------------------------


async def test_worksheet_life(accounts: Accounts) -> None:
    ada, brian = await accounts.user("ada"), await accounts.user("brian")
    sheet = await accounts.call(a.CreateWorksheet(title="  Orbits "), ada)
    assert (sheet.title, sheet.owner, sheet.role) == ("Orbits", "ada", "owner")
    assert len(sheet.session) == 32
    first = await accounts.call(a.CreateCell(worksheet=sheet.id, source="x = 1"), ada)
    await accounts.call(a.CreateCell(worksheet=sheet.id, source="x + 1", after=first.id), ada)
    await accounts.call(a.ShareWorksheet(id=sheet.id, username="brian", role="viewer"), ada)
    seen = await accounts.call(a.GetWorksheet(id=sheet.id), brian)
    assert [c.source for c in seen.cells] == ["x = 1", "x + 1"]
    assert seen.role == "viewer"
    session = await accounts.call(a.GetWorksheetSession(id=sheet.id), brian)
    assert session == a.WorksheetSession(worksheet=sheet.id, session=sheet.session, role="viewer")
    assert [(x.username, x.role) for x in seen.members] == [
        ("ada", "owner"), ("brian", "viewer"),
    ]  # fmt: skip
    assert [w.title for w in await accounts.call(a.ListWorksheets(), brian)] == ["Orbits"]
    await accounts.call(a.RenameWorksheet(id=sheet.id, title="Orbits II"), ada)
    assert (await accounts.call(a.GetWorksheet(id=sheet.id), brian)).title == "Orbits II"
    await accounts.call(a.DeleteWorksheet(id=sheet.id), ada)
    assert await accounts.call(a.ListWorksheets(), brian) == []
    assert await error_of(accounts.call(a.GetWorksheet(id=sheet.id), ada)) == "not_found"


async def test_an_import_creates_the_cells_in_order_with_their_outputs(accounts: Accounts) -> None:
    ada = await accounts.user("ada")
    shown = [{"output_type": "stream", "name": "stdout", "text": "hi\n"}]
    cells = [a.NotebookCell(id="c1", cell_type="code", source="print('hi')", outputs=shown,
                            execution_count=1, metadata={"tags": ["parameters"]}),
             a.NotebookCell(id="c2", cell_type="markdown", source="# Notes",
                            attachments={"a.png": {"image/png": "iVBO"}}),
             a.NotebookCell(id="c3", cell_type="raw", source="\\LaTeX",
                            metadata={"raw_mimetype": "text/latex"})]  # fmt: skip
    metadata = {"kernelspec": {"name": "python3", "display_name": "Py"}, "widgets": {"x": 1}}
    request = a.ImportWorksheet(title="Imported", cells=cells, metadata=metadata)
    sheet = await accounts.call(request, ada)
    seen = await accounts.call(a.GetWorksheet(id=sheet.id), ada)
    assert [(c.id, c.cell_type, c.source, c.metadata, c.attachments, c.outputs,
             c.execution_count) for c in seen.cells] == [
        ("c1", "code", "print('hi')", {"tags": ["parameters"]}, None, shown, 1),
        ("c2", "markdown", "# Notes", {}, {"a.png": {"image/png": "iVBO"}}, [], None),
        ("c3", "raw", "\\LaTeX", {"raw_mimetype": "text/latex"}, None, [], None),
    ]  # fmt: skip
    assert seen.metadata == metadata
    big = a.NotebookCell(id="c4", cell_type="code", source="#" * 10_001)
    too_big = a.ImportWorksheet(title="Big", cells=[*cells, big])
    assert await error_of(accounts.call(too_big, ada)) == "too_large"
    twice = a.ImportWorksheet(title="Twice", cells=[cells[0], cells[0]])
    assert await error_of(accounts.call(twice, ada)) == "invalid"
    assert [w.title for w in await accounts.call(a.ListWorksheets(), ada)] == ["Imported"]


async def test_a_bare_session_belongs_to_whoever_started_it(accounts: Accounts) -> None:
    ada, brian = await accounts.user("ada"), await accounts.user("brian")
    await accounts.call(a.CreateSession(session="ab" * 16), ada)
    assert await accounts.call(a.SessionRole(session="ab" * 16), ada) == "owner"
    assert await error_of(accounts.call(a.SessionRole(session="ab" * 16), brian)) == "not_found"
    assert await error_of(accounts.call(a.CreateSession(session="ab" * 16), brian)) == "taken"
    assert await error_of(accounts.call(a.CreateSession(session="../x"), ada)) == "invalid"
    assert await error_of(accounts.call(a.CreateSession(session="cd" * 16))) == "unauthenticated"


async def test_bad_titles_sources_and_ids(accounts: Accounts) -> None:
    ada = await accounts.user("ada")
    for title in ("", "   ", "x" * 201, "tab\there"):
        assert await error_of(accounts.call(a.CreateWorksheet(title=title), ada)) == "invalid"
    sheet = await accounts.call(a.CreateWorksheet(title="Limits"), ada)
    big = a.CreateCell(worksheet=sheet.id, source="#" * 10_001)
    assert await error_of(accounts.call(big, ada)) == "too_large"
    for request in (
        a.GetWorksheet(id="nope"),
        a.DeleteCell(id="not-a-uuid"),
        a.UpdateCell(id=NO_SUCH_ID, source="", version=1),
        a.CreateCell(worksheet=sheet.id, after=NO_SUCH_ID),
        a.ShareWorksheet(id=sheet.id, username="nobody", role="viewer"),
    ):
        assert await error_of(accounts.call(request, ada)) == "not_found", request


async def test_a_stale_edit_is_a_conflict_carrying_the_current_cell(accounts: Accounts) -> None:
    ada = await accounts.user("ada")
    sheet = await accounts.call(a.CreateWorksheet(title="Edits"), ada)
    cell = await accounts.call(a.CreateCell(worksheet=sheet.id, source="v1"), ada)
    await accounts.call(a.UpdateCell(id=cell.id, source="ada's", version=1), ada)
    with pytest.raises(RemoteError) as raised:
        await accounts.call(a.UpdateCell(id=cell.id, source="brian's", version=1), ada)
    assert raised.value.code == "conflict"
    assert (raised.value.data["source"], raised.value.data["version"]) == ("ada's", 2)


async def test_changes_are_announced_on_the_feed_with_who_made_them(accounts: Accounts) -> None:
    ada, brian = await accounts.user("ada"), await accounts.user("brian")
    sheet = await accounts.call(a.CreateWorksheet(title="Live"), ada)
    await accounts.call(a.ShareWorksheet(id=sheet.id, username="brian", role="editor"), ada)
    after = await accounts.bus.last_seq(keys.feed(sheet.session))
    cell = await accounts.call(a.CreateCell(worksheet=sheet.id, source="1 + 1"), brian)
    await accounts.call(a.UpdateCell(id=cell.id, source="2 + 2", version=1), brian)
    await accounts.call(a.UpdateCell(id=cell.id, source="2 + 2"), brian)  # no change: no update
    await accounts.call(a.DeleteCell(id=cell.id), ada)
    entries = await accounts.bus.read_feed(keys.feed(sheet.session), after)
    messages = [codec.decode(e.data) for e in entries]
    seen = [(m.msg_type, m.header.username) for m in messages]
    assert seen == [("doc_update", "brian"), ("doc_update", "brian"), ("doc_update", "ada")]
    watcher, shown = Replica(), []  # a watcher's copy, from the feed alone
    for message in messages:
        watcher.take([message])
        shown.append(watcher.sources)
    assert shown == [["1 + 1"], ["2 + 2"], []]


# -- permissions -----------------------------------------------------------------------------

Op = Callable[[a.WorksheetView, a.CellView], a.Request[Any]]
OPERATIONS: dict[str, tuple[str, Op]] = {
    # name: (the least role it needs, the request given the worksheet and a cell)
    "worksheet.get": ("viewer", lambda w, c: a.GetWorksheet(id=w.id)),
    "worksheet.session": ("viewer", lambda w, c: a.GetWorksheetSession(id=w.id)),
    "session.role": ("viewer", lambda w, c: a.SessionRole(session=w.session)),
    "cell.create": ("editor", lambda w, c: a.CreateCell(worksheet=w.id, source="new")),
    "cell.update": ("editor", lambda w, c: a.UpdateCell(id=c.id, source="edit", version=1)),
    "document.update": ("editor", lambda w, c: a.ApplyUpdate(worksheet=w.id, update=b"\0\0")),
    "document.sync": ("viewer", lambda w, c: a.SyncDocument(worksheet=w.id, state_vector=b"\0")),
    "cell.move": ("editor", lambda w, c: a.MoveCell(id=c.id, after=None)),
    "cell.delete": ("editor", lambda w, c: a.DeleteCell(id=c.id)),
    "cell.run": ("editor", lambda w, c: a.StartRun(id=c.id, msg_id="m1")),
    "worksheet.rename": ("owner", lambda w, c: a.RenameWorksheet(id=w.id, title="New")),
    "worksheet.share": ("owner",
                        lambda w, c: a.ShareWorksheet(id=w.id, username="ada", role="owner")),
    "worksheet.delete": ("owner", lambda w, c: a.DeleteWorksheet(id=w.id)),
}  # fmt: skip
RANK = {"stranger": 0, "viewer": 1, "editor": 2, "owner": 3}


async def test_every_operation_for_every_role(accounts: Accounts) -> None:
    ada = await accounts.user("ada")
    people = {role: await accounts.user(f"the-{role}") for role in RANK}
    outcomes: dict[tuple[str, str], str] = {}
    for role, person in people.items():
        for name, (_, make) in OPERATIONS.items():
            sheet = await accounts.call(a.CreateWorksheet(title=f"{role} {name}"), ada)
            cell = await accounts.call(a.CreateCell(worksheet=sheet.id, source="x"), ada)
            if role != "stranger":
                given = cast(a.Role, role)
                share = a.ShareWorksheet(id=sheet.id, username=person.username, role=given)
                await accounts.call(share, ada)
            try:
                await accounts.call(make(sheet, cell), person)
                outcomes[role, name] = "ok"
            except RemoteError as exc:
                outcomes[role, name] = exc.code
    expected = {
        (role, name): "ok" if RANK[role] >= RANK[needs]
        else "not_found" if role == "stranger" else "forbidden"
        for role in RANK for name, (needs, _) in OPERATIONS.items()
    }  # fmt: skip
    assert outcomes == expected


async def test_closed_sign_up_still_lets_the_first_user_in(tmp_path: Path) -> None:
    store = Store(Sqlite(tmp_path / "closed.db"))
    await store.open()
    handlers = Handlers(store, InMemoryBus(), AccountsSettings(open_signup=False))
    first = await handlers.handle(a.Register(username="admin", password=PASSWORD))
    assert first.is_admin
    with pytest.raises(AccountsError) as refused:
        await handlers.handle(a.Register(username="guest", password=PASSWORD))
    assert refused.value.code == "forbidden"
    assert await store.count_users() == 1
    await store.close()
