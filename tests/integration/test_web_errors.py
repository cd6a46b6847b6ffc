"""What a client is told when a service behind the API fails in the middle of a method.

The web app and the accounts service run in this process on the in-memory bus (SQLite behind
accounts), so that a test can make one bus operation fail at the moment it wants: the Redis
blip that a real deployment sees now and then. Errors are mapped once, where the RPC layer
dispatches a method (`cellbus_web.rpc.api_error`), so every method answers such a blip with
UNAVAILABLE (-32050, "try again"), never with an internal error.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cellbus_accounts.config import AccountsSettings
from cellbus_accounts.handlers import Handlers
from cellbus_accounts.service import AccountsService
from cellbus_accounts.store import Sqlite, Store
from cellbus_protocol import keys
from cellbus_protocol.bus import InMemoryBus
from cellbus_protocol.errors import BusUnavailable
from cellbus_web.app import create_app
from cellbus_web.config import WebSettings
from cellbus_web.rpc import UNAVAILABLE

PASSWORD = "correct horse battery"


@dataclass
class Web:
    bus: InMemoryBus
    client: TestClient[web.Request, web.Application]
    token: str = ""

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """The JSON-RPC response to `method` (its result or its error), as the caller's."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        async with self.client.post("/rpc", json=body, headers=headers) as response:
            reply: dict[str, Any] = await response.json()
            return reply


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Web]:
    bus = InMemoryBus()
    await bus.start()
    store = Store(Sqlite(tmp_path / "accounts.db"))
    await store.open()
    service = AccountsService(Handlers(store, bus, AccountsSettings()), bus, "accounts-test")
    task = asyncio.create_task(service.run())
    await service.ready.wait()
    client = TestClient(TestServer(create_app(WebSettings(), bus)))
    await client.start_server()
    try:
        yield Web(bus, client)
    finally:
        await client.close()
        service.stop()
        await task
        await store.close()
        await bus.close()


async def test_a_bus_failure_during_worksheet_delete_is_unavailable(
    served: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    await served.call("auth.register", username="ada", password=PASSWORD)
    login = await served.call("auth.login", username="ada", password=PASSWORD)
    served.token = login["result"]["token"]
    sheet = (await served.call("worksheet.create", title="Doomed"))["result"]

    enqueue = served.bus.enqueue

    async def redis_blip(queue: str, data: bytes, **kwargs: Any) -> str:
        if queue == keys.KERNEL_CONTROL:
            raise BusUnavailable("connection reset by peer")
        return await enqueue(queue, data, **kwargs)

    # After the accounts service has deleted the worksheet, the web service asks the kernel
    # to end its session: that is where the blip hits.
    monkeypatch.setattr(served.bus, "enqueue", redis_blip)
    reply = await served.call("worksheet.delete", id=sheet["id"])

    assert reply["error"]["code"] == UNAVAILABLE
    assert "try again" in reply["error"]["message"]
    assert "connection reset" not in reply["error"]["message"]
