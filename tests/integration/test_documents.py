"""A worksheet's document, edited by many clients at once through the real WebSocket.

Clients are `support.doc_client.DocClient`: pycrdt documents synced over the feed
WebSocket, as the browser's yjs is, spread over two web processes, with Redis and PostgreSQL
behind them (docs/protocol.md, "The worksheet document").
"""

from __future__ import annotations

import asyncio
import base64
import random
from collections.abc import AsyncIterator, Iterator

import pytest

from ..support.api import Client, new_user
from ..support.doc_client import DocClient, contains, notebook_json, stored_document
from ..support.documents import Replica
from ..support.stack import ServicesStack

CLIENTS = 10
EDITS = 1_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServicesStack]:
    with ServicesStack(tmp_path_factory.mktemp("logs")) as system:
        yield system


@pytest.fixture
async def ada(stack: ServicesStack) -> AsyncIterator[Client]:
    client = await new_user(stack.urls[0], "ada")
    yield client
    await client.close()


async def shared_sheet(
    owner: Client, stack: ServicesStack, people: int
) -> tuple[str, list[Client]]:
    """A worksheet of `owner`'s with one cell, shared with `people` - 1 more editors."""
    sheet = await owner.call("worksheet.create", title="Together")
    await owner.call("cell.create", worksheet=sheet["id"], source="start")
    others = [await new_user(stack.urls[i % 2], f"p{i}") for i in range(1, people)]
    for other in others:
        await owner.call("worksheet.share", id=sheet["id"], username=other.username, role="editor")
    return sheet["id"], [owner, *others]


@pytest.mark.timeout(300)  # 10,000 updates, each committed to PostgreSQL: about a minute
async def test_ten_clients_editing_at_random_with_disconnects_converge_and_lose_nothing(
    stack: ServicesStack, ada: Client
) -> None:
    worksheet, people = await shared_sheet(ada, stack, CLIENTS)
    rng = random.Random(15)
    clients = [DocClient(p.token or "", worksheet, stack.urls, random.Random(rng.random()))
               for p in people]  # fmt: skip

    async def work(client: DocClient) -> None:
        await client.connect()
        for _ in range(EDITS):
            if client.rng.random() < 0.01:
                await client.reconnect()
            await client.edit()
            if len(client.pending) > 16:  # a browser does not wait; this keeps it fair
                await client.until_acked(8)
        await client.until_acked()

    await asyncio.gather(*(work(client) for client in clients))
    for client in clients:  # the handshake closes any gap: everyone has everything
        await client.sync()
    stored = await stored_document(stack.database_url, worksheet)
    expected = notebook_json(stored)
    for client in clients:
        assert client.errors == []
        assert client.notebook_json() == expected
        assert contains(stored, client.all_acked()), "an acknowledged edit is missing"
    assert sum(len(c.acked) for c in clients) >= CLIENTS * EDITS * 0.9
    assert sum(c.reconnects for c in clients) > 0
    assert len({cell[0] for cell in expected["cells"]}) == len(expected["cells"])
    for client in clients:
        await client.close()
    for person in people[1:]:
        await person.close()


async def test_awareness_goes_to_the_others_on_any_process_and_leaves_with_its_socket(
    stack: ServicesStack, ada: Client
) -> None:
    worksheet, (_, bea) = await shared_sheet(ada, stack, 2)
    bea_elsewhere = bea.on(stack.urls[1])  # bea talks to the other web process
    ada_feed, bea_feed = await ada.socket(), await bea_elsewhere.socket()
    for feed in (ada_feed, bea_feed):
        await feed.subscribe(worksheet=worksheet, cursor="now")
    # y-protocols: one client (id 7, clock 1) with a JSON state
    state = b'{"user":{"name":"ada"},"cell":"c1"}'
    update = bytes([1, 7, 1, len(state)]) + state
    await ada_feed.ws.send_json({"op": "awareness", "worksheet": worksheet,
                                 "update": base64.b64encode(update).decode()})  # fmt: skip
    heard = await bea_feed.frame(lambda f: f["type"] == "awareness")
    assert (heard["worksheet"], base64.b64decode(heard["update"])) == (worksheet, update)
    await ada_feed.close()  # gone without a word: bea is told client 7 left (clock 2, null)
    gone = await bea_feed.frame(lambda f: f["type"] == "awareness")
    assert base64.b64decode(gone["update"]) == bytes([1, 7, 2, 4]) + b"null"
    assert not [f for f in ada_feed.frames if f["type"] == "awareness"]  # never its own back
    await bea_feed.close()
    await bea_elsewhere.close()
    await bea.close()


async def test_an_update_reaches_the_others_at_once_and_a_viewers_never(
    stack: ServicesStack, ada: Client
) -> None:
    """An editor's update goes to the others' sockets as a ``doc_update`` frame before it is
    committed (then the committed one comes on the feed); a viewer's goes nowhere."""
    worksheet, (_, bea) = await shared_sheet(ada, stack, 2)
    carol = await new_user(stack.urls[1], "carol")
    await ada.call("worksheet.share", id=worksheet, username=carol.username, role="viewer")
    feeds = [await ada.socket(), await bea.socket(), await carol.socket()]
    for feed in feeds:
        await feed.subscribe(worksheet=worksheet, cursor="now")
    ada_feed, bea_feed, carol_feed = feeds
    replica = Replica()
    replica.apply((await ada_feed.doc_sync(worksheet))["update"])
    before = replica.notebook.doc.get_state()
    with replica.notebook.doc.transaction():
        replica.notebook.set_source(0, "start, and more")
    update = replica.notebook.doc.get_update(before)
    assert (await ada_feed.doc_update(worksheet, update, ref=1))["type"] == "doc_ack"
    for feed in (bea_feed, carol_feed):  # both watch: both get it, live then committed
        live = await feed.frame(lambda f: f["type"] == "doc_update")
        assert base64.b64decode(live["update"]) == update
        committed = await feed.message(lambda m: m["header"]["msg_type"] == "doc_update")
        assert base64.b64decode(committed["content"]["update"]) == update
    assert not [f for f in ada_feed.frames if f["type"] == "doc_update"]  # not its own
    refused = await carol_feed.doc_update(worksheet, update, ref=2)  # a viewer's: refused
    assert refused["type"] == "error"
    await ada_feed.ws.send_json({"op": "ping"})
    await ada_feed.frame(lambda f: f["type"] == "pong")
    assert [f for f in ada_feed.frames if f["type"] == "doc_update"] == []
    for feed in feeds:
        await feed.close()
    await bea.close()
    await carol.close()
