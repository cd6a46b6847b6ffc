"""A socket never outlives its token: logging out or revoking a token closes the WebSockets
opened with it at once, with a ``revoked`` frame and close code 4001, on every web process.

The services run apart with two web processes (the socket on one, the logout on the other).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ..support.api import FEED_TIMEOUT, PASSWORD, Client, Feed, new_user
from ..support.documents import Replica
from ..support.stack import ServicesStack

REVOKED_CLOSE = 4001


opened: list[Client] = []


@pytest.fixture
async def ada(stack: ServicesStack) -> AsyncIterator[Client]:
    client = await new_user(stack.urls[0], "ada")
    yield client
    await client.close()
    while opened:
        await opened.pop().close()


async def closed_with(feed: Feed) -> tuple[list[dict[str, Any]], int | None]:
    """The frames a socket gets until it closes, and the code of the server's close frame
    (not `ws.close_code`, which aiohttp sets to 1006 if its own close reply finds the
    connection already shut)."""
    frames = []
    async with asyncio.timeout(FEED_TIMEOUT):
        while True:
            msg = await feed.ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                frames.append(json.loads(msg.data))
            elif msg.type == aiohttp.WSMsgType.CLOSE:
                return frames, msg.data
            elif msg.type == aiohttp.WSMsgType.CLOSED:
                return frames, None


async def watching(client: Client, url: str) -> tuple[Feed, dict[str, Any]]:
    """A socket of `client` on web process `url`, subscribed to a new worksheet of theirs
    (its HTTP client is kept in `opened`, so that it lives as long as the test)."""
    sheet = await client.call("worksheet.create", title="Watched")
    there = client.on(url)
    opened.append(there)
    feed = await there.socket()
    subscribed = await feed.subscribe(worksheet=sheet["id"])
    assert subscribed["type"] == "subscribed"
    return feed, sheet


@pytest.mark.parametrize("web", [0, 1], ids=["same-web-process", "other-web-process"])
async def test_logging_out_closes_the_tokens_sockets_at_once(
    stack: ServicesStack, ada: Client, web: int
) -> None:
    feed, _ = await watching(ada, stack.urls[web])
    await ada.call("auth.logout")
    frames, close_code = await closed_with(feed)
    assert close_code == REVOKED_CLOSE
    assert frames[-1]["type"] == "revoked"
    assert "revoked" in frames[-1]["message"]


async def test_revoking_a_token_closes_its_sockets_and_no_others(
    stack: ServicesStack, ada: Client
) -> None:
    laptop = Client(stack.urls[1])
    login = {"username": ada.username, "password": PASSWORD, "label": "lost laptop"}
    laptop.token = (await laptop.call("auth.login", **login))["token"]
    lost, _ = await watching(laptop, stack.urls[1])
    kept, sheet = await watching(ada, stack.urls[1])
    token_id = next(t["id"] for t in await ada.call("auth.tokens") if t["label"] == "lost laptop")
    await ada.call("auth.revoke", id=token_id)
    _, close_code = await closed_with(lost)
    assert close_code == REVOKED_CLOSE
    # the other token's socket goes on: it still subscribes and sees new edits
    cell = await ada.call("cell.create", worksheet=sheet["id"], source="x = 1")
    created = await kept.message(lambda m: m["header"]["msg_type"] == "doc_update")
    replica = Replica()
    replica.take([created])
    assert [(c.id, c.source) for c in replica.cells] == [(cell["id"], "x = 1")]
    await kept.close()
    await laptop.close()


async def test_a_logged_out_socket_cannot_subscribe_to_anything(
    stack: ServicesStack, ada: Client
) -> None:
    """Even a socket whose close were missed (say the announcement was lost) cannot subscribe:
    each subscription checks the token again."""
    bob = await new_user(stack.urls[0], "bob")
    theirs = await bob.call("worksheet.create", title="Bob's")
    await bob.call("worksheet.share", id=theirs["id"], username=ada.username, role="viewer")
    feed, _ = await watching(ada, stack.urls[0])
    await ada.call("auth.logout")
    with contextlib.suppress(ConnectionResetError):  # closed already: nothing to subscribe
        await feed.ws.send_json({"op": "subscribe", "worksheet": theirs["id"], "cursor": 0})
    frames, close_code = await closed_with(feed)
    assert close_code == REVOKED_CLOSE
    assert not [f for f in frames if f["type"] == "subscribed"]
    await bob.close()
