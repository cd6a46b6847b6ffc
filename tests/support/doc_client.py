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
from pycrdt import Array, Map, Text, merge_updates

from cellbus_accounts.notebook_doc import NotebookDoc

FRAME_TIMEOUT = 30.0


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
        async with asyncio.timeout(FRAME_TIMEOUT):
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

    async def until_acked(self, at_most: int = 0) -> None:
        """Wait until at most `at_most` updates are unacknowledged."""
        async with asyncio.timeout(FRAME_TIMEOUT), self._acks:
            await self._acks.wait_for(lambda: len(self.pending) <= at_most)

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
        """One random edit, sent as one update."""
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
