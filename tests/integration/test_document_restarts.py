"""A hundred restarts of the accounts and web services while people type: no cell is lost
and none is there twice.

The services run in this test's process (on the real Redis and a PostgreSQL database of
the test's own) so that a restart takes milliseconds rather than a process start: each
cycle stops the web app (every socket drops) and the accounts service, and starts new ones
with nothing in memory, which read the documents back from the database. The clients are
`support.doc_client.DocClient`s, which reconnect as a browser does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestServer

from cellbus_accounts.config import AccountsSettings
from cellbus_accounts.handlers import Handlers
from cellbus_accounts.service import AccountsService
from cellbus_accounts.store import Postgres, Store
from cellbus_protocol.bus import RedisBus
from cellbus_web.app import create_app
from cellbus_web.config import WebSettings

from ..support.api import new_user
from ..support.doc_client import Typists
from ..support.postgres import create_database, drop_database
from ..support.redis import REDIS_URL, delete_namespace, new_namespace, require_redis
from ..support.stack import free_port

CYCLES = 100


@dataclass
class Services:
    """An accounts service and a web app in this process, on one port, restartable."""

    database_url: str
    namespace: str
    port: int
    bus: RedisBus | None = None
    store: Store | None = None
    accounts: AccountsService | None = None
    accounts_task: asyncio.Task[None] | None = None
    web: TestServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.bus = RedisBus(REDIS_URL, namespace=self.namespace)
        await self.bus.start()
        self.store = Store(Postgres(self.database_url))
        await self.store.open()
        handlers = Handlers(self.store, self.bus, AccountsSettings())
        self.accounts = AccountsService(handlers, self.bus, "accounts-cycles")
        self.accounts_task = asyncio.create_task(self.accounts.run())
        await self.accounts.ready.wait()
        app = create_app(WebSettings(), self.bus)
        # (a web process given SIGTERM waits for requests in flight; here a restart is quick)
        self.web = TestServer(app, host="127.0.0.1", port=self.port, shutdown_timeout=0.2)
        await self.web.start_server()

    async def stop(self) -> None:
        assert self.web and self.accounts and self.accounts_task and self.store and self.bus
        await self.web.close()
        self.accounts.stop()
        await self.accounts_task
        await self.store.close()
        await self.bus.close()

    async def restart(self) -> None:
        await self.stop()
        await self.start()


@pytest.fixture
async def services() -> AsyncIterator[Services]:
    require_redis()
    name, url = await create_database()
    namespace = new_namespace()
    system = Services(url, namespace, free_port())
    await system.start()
    try:
        yield system
    finally:
        await system.stop()
        await drop_database(name)
        delete_namespace(namespace)


@pytest.mark.timeout(300)  # a hundred restarts, each waited for: about a minute
async def test_a_hundred_restarts_while_people_type_lose_and_duplicate_no_cell(
    services: Services,
) -> None:
    people = [await new_user(services.url, f"p{i}") for i in range(3)]
    sheet = await people[0].call("worksheet.create", title="Through restarts")
    for i in range(3):
        await people[0].call("cell.create", worksheet=sheet["id"], source=f"cell {i}")
    for person in people[1:]:
        await people[0].call("worksheet.share", id=sheet["id"], username=person.username,
                             role="editor")  # fmt: skip
    # two of the three people type (the third only watches)
    typists = Typists.of([p.token for p in people[:2]], sheet["id"], [services.url], seed=100)
    typists.start()
    try:
        for _ in range(CYCLES):
            await typists.caught_up()  # what was typed went through; then everything restarts
            await services.restart()
    finally:
        await typists.stop()
    assert all(c.reconnects >= CYCLES for c in typists.clients)
    seen = await typists.check(services.database_url, sheet["id"])
    assert len(seen["cells"]) >= 1
    await typists.close()
    for person in people:
        await person.close()
