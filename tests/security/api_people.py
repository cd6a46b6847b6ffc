"""People for the API tests: clients calling from an address of their choice (any of
127.0.0.0/8 reaches a server listening on 127.0.0.1), and raw JSON-RPC batches."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import aiohttp

from ..support.api import PASSWORD, Client

_ids = itertools.count(1)


class From(Client):
    """A `Client` whose connections come from `address` (say ``127.0.0.2``)."""

    def __init__(self, url: str, address: str, token: str | None = None) -> None:
        self.url, self.token, self.username = url, token, ""
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(address, 0), force_close=True),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
        )


def request(method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params}


async def batch(client: Client, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The responses to `calls`, sent as one JSON-RPC batch, in the order of `calls`."""
    response = await client.post(calls)
    assert response.status == 200, await response.text()
    by_id = {reply["id"]: reply for reply in await response.json()}
    return [by_id[call["id"]] for call in calls]


def code(reply: dict[str, Any]) -> int | None:
    """A reply's error code, or None for a result."""
    return reply["error"]["code"] if "error" in reply else None


async def registered(url: str, name: str) -> str:
    """A new username (registered with `PASSWORD` from a throwaway address)."""
    username = f"{name}-{uuid.uuid4().hex[:6]}"
    client = From(url, "127.0.0.200")
    try:
        await client.call("auth.register", username=username, password=PASSWORD)
    finally:
        await client.close()
    return username
