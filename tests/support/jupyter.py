"""A test's Jupyter client of cellbus's Jupyter Server API: REST calls and the channels
WebSocket, in either of its formats, written from Jupyter's documents (not from cellbus's
code) so that the tests check what a Jupyter client sees."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp

V1 = "v1.kernel.websocket.jupyter.org"
TIMEOUT = 30.0


def encode_v1(msg: dict[str, Any]) -> bytes:
    """A message in the v1 binary framing (little-endian 64-bit offsets)."""
    parts = [msg["channel"].encode()] + [
        json.dumps(msg[name]).encode()
        for name in ("header", "parent_header", "metadata", "content")
    ]
    offsets = [8 * (len(parts) + 2)]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    head = len(offsets).to_bytes(8, "little") + b"".join(o.to_bytes(8, "little") for o in offsets)
    return head + b"".join(parts)


def decode_v1(data: bytes) -> dict[str, Any]:
    count = int.from_bytes(data[:8], "little")
    offsets = [int.from_bytes(data[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(count)]
    parts = [data[offsets[i] : offsets[i + 1]] for i in range(count - 1)]
    msg: dict[str, Any] = {"channel": parts[0].decode(), "buffers": parts[5:]}
    for name, part in zip(
        ("header", "parent_header", "metadata", "content"), parts[1:5], strict=True
    ):
        msg[name] = json.loads(part)
    return msg


def request(msg_type: str, content: dict[str, Any], channel: str = "shell") -> dict[str, Any]:
    """A client message as jupyter_client makes one."""
    header = {
        "msg_id": f"{uuid.uuid4()}_{msg_type}", "msg_type": msg_type, "session": "test-client",
        "username": "someone-else", "date": "2026-12-03T00:00:00.000000Z", "version": "5.3",
    }  # fmt: skip
    return {"channel": channel, "header": header, "parent_header": {}, "metadata": {},
            "content": content, "buffers": []}  # fmt: skip


class Channels:
    """One channels WebSocket: everything received is kept, in order, per message."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.v1 = ws.protocol == V1
        self.received: list[dict[str, Any]] = []

    async def send(self, msg: dict[str, Any]) -> str:
        if self.v1:
            await self.ws.send_bytes(encode_v1(msg))
        else:
            await self.ws.send_str(json.dumps(msg))
        return str(msg["header"]["msg_id"])

    async def ask(self, msg_type: str, channel: str = "shell", /, **content: Any) -> str:
        return await self.send(request(msg_type, content, channel))

    async def next(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        frame = await self.ws.receive(timeout)
        if frame.type == aiohttp.WSMsgType.TEXT:
            msg: dict[str, Any] = json.loads(frame.data)
        elif frame.type == aiohttp.WSMsgType.BINARY:
            msg = decode_v1(frame.data)
        else:
            raise ConnectionError(f"the socket closed: {frame.type} {frame.data} {frame.extra}")
        self.received.append(msg)
        return msg

    async def until_idle(self, msg_id: str, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """The messages answering `msg_id`, up to its iopub ``idle`` and its reply (in
        whichever order they come)."""
        got: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while not _done(got):
                msg = await self.next()
                if msg["parent_header"].get("msg_id") == msg_id:
                    got.append(msg)
        return got

    async def close(self) -> None:
        await self.ws.close()


def _done(got: list[dict[str, Any]]) -> bool:
    types = [m["header"]["msg_type"] for m in got]
    idle = any(t == "status" and m["content"]["execution_state"] == "idle"
               for t, m in zip(types, got, strict=True))  # fmt: skip
    return idle and any(t.endswith("_reply") for t in types)


def of_type(messages: list[dict[str, Any]], msg_type: str) -> list[dict[str, Any]]:
    return [m for m in messages if m["header"]["msg_type"] == msg_type]


def stdout(messages: list[dict[str, Any]]) -> str:
    return "".join(m["content"]["text"] for m in of_type(messages, "stream"))


class JupyterApi:
    """One person's client of the Jupyter Server API (``Authorization: token``)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.http = aiohttp.ClientSession()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    async def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        async with self.http.request(
            method, self.url + path, json=body, headers=self.headers
        ) as response:
            text = await response.text()
            assert response.status == expect, f"{method} {path}: {response.status} {text}"
            return json.loads(text) if response.content_type == "application/json" else text

    async def start_kernel(self, **body: Any) -> dict[str, Any]:
        model: dict[str, Any] = await self.call("POST", "/api/kernels", body or {}, 201)
        return model

    async def channels(self, kernel_id: str, v1: bool = False) -> Channels:
        ws = await self.http.ws_connect(
            f"{self.url}/api/kernels/{kernel_id}/channels",
            headers=self.headers, protocols=(V1,) if v1 else (), max_msg_size=64 * 1024 * 1024,
        )  # fmt: skip
        return Channels(ws)

    async def close(self) -> None:
        await self.http.close()
