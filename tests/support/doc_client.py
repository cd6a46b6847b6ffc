"""A collaborative client of a worksheet's document, as a browser is: pycrdt over the real
feed WebSocket.

It keeps its own copy of the document, makes random edits of the kinds people make (type and
delete text, add, move and delete cells, change metadata), sends each as a ``doc_update``
and keeps it until its ``doc_ack``, applies what others do from the feed, and after a
disconnect reconnects (to any web process), resubscribes from its cursor, does the sync
handshake again and re-sends what was never acknowledged. docs/protocol.md, "The worksheet
document", is the protocol it follows.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from pycrdt import Array, Doc, Map, Text, merge_updates

from cellbus_accounts.notebook_doc import NotebookDoc
from cellbus_accounts.store import Store, database_for

FRAME_TIMEOUT = 30.0
ACK_PATIENCE = 2.0  # acks not coming for this long: reconnect, and so send the updates again
SYNC_TIMEOUT = 10.0  # a sync not answered by then: try again (a service may be restarting)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class DocClient:
    """One person's client of one worksheet."""

    token: str
    worksheet: str
    urls: list[str]
    rng: random.Random
    notebook: NotebookDoc = field(default_factory=NotebookDoc)
    pending: dict[int, bytes] = field(default_factory=dict)  # ref -> update, until acked
    acked: list[bytes] = field(default_factory=list)
    cursor: int | None = None
    reconnects: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    _refs: int = 0
    _ws: aiohttp.ClientWebSocketResponse | None = None
    _http: aiohttp.ClientSession | None = None
    _reader: asyncio.Task[None] | None = None
    _synced: asyncio.Event = field(default_factory=asyncio.Event)
    _acks: asyncio.Condition = field(default_factory=asyncio.Condition)
    _made: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._subscription = self.notebook.doc.observe(self._on_transaction)
        self._remote = False

    def _on_transaction(self, event: Any) -> None:
        if not self._remote:
            self._made.append(event.update)

    # -- connection ---------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return (
            self._ws is not None and not self._ws.closed
            and self._reader is not None and not self._reader.done()
        )  # fmt: skip

    async def ensure_connected(self, timeout: float = 60.0) -> None:
        """Reconnect (to any web process) until it works, as a browser does after a
        service failure; `timeout` at most."""
        async with asyncio.timeout(timeout):
            delay = 0.02
            while not self.connected:
                try:
                    await self.reconnect()
                except (OSError, aiohttp.ClientError, TimeoutError, ConnectionError):
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.5)

    async def connect(self) -> None:
        """Connect to a web process (chosen at random), subscribe from the cursor, sync."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        url = self.rng.choice(self.urls)
        headers = {"Authorization": f"Bearer {self.token}"}
        self._ws = await self._http.ws_connect(url + "/ws", headers=headers, max_msg_size=0)
        self._synced.clear()
        await self._ws.send_json(
            {"op": "subscribe", "worksheet": self.worksheet, "cursor": self.cursor}
        )
        await self._ws.send_json({"op": "doc_sync", "worksheet": self.worksheet,
                                  "state_vector": b64(self.notebook.doc.get_state())})  # fmt: skip
        self._reader = asyncio.create_task(self._read(self._ws))
        async with asyncio.timeout(SYNC_TIMEOUT):
            await self._synced.wait()
        for ref, update in list(self.pending.items()):  # never acknowledged: send again
            await self._send(ref, update)

    async def disconnect(self) -> None:
        """Drop the connection abruptly (what a network failure does)."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._ws is not None:
            await self._ws.close()
        self._ws = None

    async def reconnect(self) -> None:
        self.reconnects += 1
        await self.disconnect()
        await self.connect()

    async def close(self) -> None:
        await self.disconnect()
        if self._http is not None:
            await self._http.close()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            await self._handle(json.loads(msg.data))

    async def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "messages":
            for item in frame["messages"]:
                message = item["message"]
                if message["header"]["msg_type"] == "doc_update":
                    self._apply(base64.b64decode(message["content"]["update"]))
            self.cursor = frame["cursor"]
        elif kind == "subscribed":
            self.cursor = frame["cursor"] if self.cursor is None else self.cursor
        elif kind == "doc_state":
            self._apply(base64.b64decode(frame["update"]))
            missing = self.notebook.doc.get_update(base64.b64decode(frame["state_vector"]))
            self._synced.set()
            if len(missing) > 2:  # the server lacks some of ours: send it like an edit
                await self._send(self._next_ref(), missing)
        elif kind == "doc_ack":
            async with self._acks:
                update = self.pending.pop(frame["ref"], None)
                if update is not None:
                    self.acked.append(update)
                self._acks.notify_all()
        elif kind == "error":
            self.errors.append(frame)

    def _apply(self, update: bytes) -> None:
        self._remote = True
        try:
            self.notebook.doc.apply_update(update)
        finally:
            self._remote = False

    @property
    def last_ref(self) -> int:
        """The ref of the last update sent (refs count up from 1)."""
        return self._refs

    def _next_ref(self) -> int:
        self._refs += 1
        return self._refs

    async def _send(self, ref: int, update: bytes) -> None:
        self.pending[ref] = update
        if self._ws is None:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):  # sent again on reconnect
            await self._ws.send_json({"op": "doc_update", "worksheet": self.worksheet,
                                      "update": b64(update), "ref": ref})  # fmt: skip

    async def until_acked(self, at_most: int = 0, timeout: float = 90.0) -> None:
        """Wait until at most `at_most` updates are unacknowledged, reconnecting (and so
        sending them again) whenever the connection is lost or acks stop coming."""
        async with asyncio.timeout(timeout):
            while len(self.pending) > at_most:
                await self.ensure_connected()
                try:  # (a request in flight when its service stopped is never answered)
                    async with asyncio.timeout(ACK_PATIENCE), self._acks:
                        await self._acks.wait_for(lambda: len(self.pending) <= at_most)
                except TimeoutError:  # a request lost with a service that died: again
                    await self.disconnect()

    async def sync(self) -> None:
        """The handshake again (what a reconnect does), without reconnecting."""
        assert self._ws is not None
        self._synced.clear()
        await self._ws.send_json({"op": "doc_sync", "worksheet": self.worksheet,
                                  "state_vector": b64(self.notebook.doc.get_state())})  # fmt: skip
        async with asyncio.timeout(FRAME_TIMEOUT):
            await self._synced.wait()

    # -- edits --------------------------------------------------------------------------------
    async def edit(self) -> None:
        """One random edit, sent as one update (after reconnecting, if it must)."""
        if not self.connected:
            await self.ensure_connected()
        self._made.clear()
        with self.notebook.doc.transaction():
            self._random_edit()
        if self._made:
            update = self._made[0] if len(self._made) == 1 else merge_updates(*self._made)
            await self._send(self._next_ref(), update)

    def _random_edit(self) -> None:
        cells: Array[Any] = self.notebook.cells
        rng = self.rng
        count = len(cells)
        choice = rng.random()
        if count == 0 or choice < 0.08:
            source = Text("".join(rng.choices("abcdef xyz\n", k=rng.randint(0, 12))))
            cell = Map({"id": uuid.uuid4().hex[:12], "cell_type": rng.choice(["code", "markdown"]),
                        "source": source, "metadata": Map({})})  # fmt: skip
            cells.insert(rng.randint(0, count), cell)
            return
        index = rng.randrange(count)
        cell = cells[index]
        text = cell.get("source") if isinstance(cell, Map) else None
        if choice < 0.12 and count > 1:
            self.notebook.move(index, rng.randrange(count))
        elif choice < 0.16 and count > 3:
            self.notebook.delete(index)
        elif choice < 0.22 and isinstance(cell, Map):
            metadata = cell.get("metadata")
            if isinstance(metadata, Map):
                metadata[rng.choice(["tags", "collapsed", "x"])] = rng.choice([["a"], True, 3])
        elif isinstance(text, Text):
            length = len(text)
            if choice < 0.40 and length > 0:
                start = rng.randrange(length)
                del text[start : min(length, start + rng.randint(1, 4))]
            else:
                word = "".join(rng.choices("abcdefghij ", k=rng.randint(1, 5)))
                text.insert(rng.randint(0, length), word)

    # -- what it sees ---------------------------------------------------------------------------
    def notebook_json(self) -> dict[str, Any]:
        return notebook_json(self.notebook)

    def all_acked(self) -> bytes:
        """Every acknowledged update, as one."""
        return merge_updates(*self.acked) if self.acked else b"\x00\x00"


def notebook_json(notebook: NotebookDoc) -> dict[str, Any]:
    """What a person sees of the document: its cells in order, and the notebook metadata."""
    return {
        "cells": [
            (c.id, c.cell_type, c.source, c.metadata, c.attachments) for c in notebook.read_cells()
        ],
        "metadata": notebook.metadata(),
    }


async def stored_document(database_url: str, worksheet: str) -> NotebookDoc:
    """The document as the database holds it (its history, read afresh)."""
    store = Store(database_for(database_url))
    await store.open()
    try:
        history, _ = await store.documents.history(uuid.UUID(worksheet), 0)
    finally:
        await store.close()
    notebook = NotebookDoc()
    if history.snapshot is not None:
        notebook.doc.apply_update(history.snapshot)
    for _, update in history.updates:
        notebook.doc.apply_update(update)
    return notebook


def contains(notebook: NotebookDoc, update: bytes) -> bool:
    """Whether `update` is already in `notebook`: applying it to a copy changes nothing."""
    copy: Doc[Any] = Doc(skip_gc=True)
    copy.apply_update(notebook.doc.get_update())
    before = (copy.get_state(), notebook_json(NotebookDoc(copy)))
    copy.apply_update(update)
    return (copy.get_state(), notebook_json(NotebookDoc(copy))) == before


class Typists:
    """Several clients typing into one worksheet until stopped, each at a person's pace."""

    @classmethod
    def of(cls, tokens: list[str | None], worksheet: str, urls: list[str], seed: int) -> Typists:
        """One client per token (each person's), with random edits from `seed`."""
        rng = random.Random(seed)
        return cls([DocClient(token or "", worksheet, urls, random.Random(rng.random()))
                    for token in tokens])  # fmt: skip

    def __init__(self, clients: list[DocClient]) -> None:
        self.clients = clients
        self._stop = asyncio.Event()
        self._progress = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._type(client)) for client in self.clients]

    async def _type(self, client: DocClient) -> None:
        await client.ensure_connected()
        while not self._stop.is_set():
            await client.edit()
            await asyncio.sleep(0.01)  # typing speed
            if len(client.pending) > 32:
                await client.until_acked(16)
            async with self._progress:
                self._progress.notify_all()

    async def acked_more(self, count: int, timeout: float = 60.0) -> None:
        """Wait until every client has `count` more updates acknowledged than now."""
        target = [len(c.acked) + count for c in self.clients]

        def reached() -> bool:
            return all(len(c.acked) >= t for c, t in zip(self.clients, target, strict=True))

        async with asyncio.timeout(timeout), self._progress:
            await self._progress.wait_for(reached)

    async def caught_up(self, timeout: float = 60.0) -> None:
        """Wait until every client is connected and has had everything it sent so far
        acknowledged (it goes on typing meanwhile)."""
        async with asyncio.timeout(timeout):
            for client in self.clients:
                await client.ensure_connected()
                target = client.last_ref

                def done(client: DocClient = client, target: int = target) -> bool:
                    return not any(ref <= target for ref in client.pending)

                async with self._progress:
                    await self._progress.wait_for(done)

    async def stop(self) -> None:
        """Stop typing; then every client's updates acknowledged, and the handshake done."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        for client in self.clients:  # everyone's acknowledged first: a handshake before
            await client.until_acked()  # another's last update is committed would miss it
        for client in self.clients:
            await client.ensure_connected()
            await client.sync()

    async def check(self, database_url: str, worksheet: str) -> dict[str, Any]:
        """Everyone sees what the database holds, every acknowledged update is in it, and
        each cell is there once; returns what they see."""
        stored = await stored_document(database_url, worksheet)
        expected = notebook_json(stored)
        for client in self.clients:
            seen = client.notebook_json()
            assert seen == expected, _difference(seen, expected)
            assert contains(stored, client.all_acked()), "an acknowledged update was lost"
        ids = [cell[0] for cell in expected["cells"]]
        assert len(ids) == len(set(ids)), "a cell is there twice"
        return expected

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


def _difference(seen: dict[str, Any], stored: dict[str, Any]) -> str:
    """Where a client's notebook differs from the stored one: the cells that differ."""
    seen_cells, stored_cells = seen.get("cells", []), stored.get("cells", [])
    different = [
        (i, a, b) for i, (a, b) in enumerate(zip(seen_cells, stored_cells, strict=False)) if a != b
    ]
    return (
        f"a client's notebook is not the stored one: {len(seen_cells)} cells against "
        f"{len(stored_cells)}; first differences (index, client, stored): {different[:3]}"
    )
