"""A test's view of cellbus: its JSON-RPC API and its feed WebSocket, nothing else."""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

PASSWORD = "correct horse battery"
FEED_TIMEOUT = 30.0
"""How long a test waits for a run on the feed: far more than any run takes on a busy 2-core
machine, so that only a run that never arrives fails."""
_ids = itertools.count(1)


class ApiError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.data = code, message, data


class Client:
    """One person's HTTP client of one web process (bearer token once logged in)."""

    def __init__(self, url: str, token: str | None = None, username: str = "") -> None:
        self.url = url
        self.token = token
        self.username = username
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # an IP host

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def post(
        self, body: Any, headers: dict[str, str] | None = None
    ) -> aiohttp.ClientResponse:
        text = body if isinstance(body, (bytes, str)) else json.dumps(body)
        raw = text.encode() if isinstance(text, str) else text
        response = await self.http.post(
            self.url + "/rpc",
            data=io.BytesIO(raw),  # a stream: aiohttp warns that a large body sent whole blocks
            headers={"Content-Type": "application/json", **self.headers(), **(headers or {})},
        )
        await response.read()
        return response

    async def call(self, method: str, **params: Any) -> Any:
        body = {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params}
        response = await self.post(body)
        reply = await response.json()
        if "error" in reply:
            error = reply["error"]
            raise ApiError(error["code"], error["message"], error.get("data"))
        return reply["result"]

    async def error(self, method: str, **params: Any) -> ApiError:
        """The error `method` must give."""
        try:
            result = await self.call(method, **params)
        except ApiError as exc:
            return exc
        raise AssertionError(f"{method} succeeded: {result!r}")

    async def socket(self, **headers: str) -> Feed:
        ws = await self.http.ws_connect(self.url + "/ws", headers={**self.headers(), **headers})
        return Feed(ws)

    def on(self, url: str) -> Client:
        """The same person talking to another web process."""
        return Client(url, self.token, self.username)

    async def close(self) -> None:
        await self.http.close()


async def new_user(url: str, name: str = "user") -> Client:
    """A freshly registered, logged-in user with a unique name starting with `name`."""
    client = Client(url)
    username = f"{name}-{uuid.uuid4().hex[:6]}"
    try:
        await client.call("auth.register", username=username, password=PASSWORD)
        login = await client.call("auth.login", username=username, password=PASSWORD)
    except BaseException:  # closed here: a failure is not followed by an unclosed session
        await client.close()
        raise
    client.token = login["token"]
    client.username = username
    return client


@dataclass(frozen=True)
class Received:
    """One feed message as a ``messages`` frame delivered it."""

    session: str
    cursor: int
    message: dict[str, Any]


@dataclass
class Feed:
    """A feed WebSocket: what it received, frame by frame, and per session by cursor.

    Feed messages come in ``messages`` frames, several at a time; `received` lists them one
    by one, and `message` reads them in order, as a client handles them."""

    ws: aiohttp.ClientWebSocketResponse
    frames: list[dict[str, Any]] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    cursors: dict[str, int] = field(default_factory=dict)
    _handled: int = 0  # of `received`: the messages `message` has looked at

    async def subscribe(self, cursor: int | str | None = 0, **target: str) -> dict[str, Any]:
        await self.ws.send_json({"op": "subscribe", "cursor": cursor, **target})
        return await self.frame(lambda f: f["type"] in ("subscribed", "error"))

    async def frame(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = FEED_TIMEOUT
    ) -> dict[str, Any]:
        """The next frame that `match`es (frames and messages before it are passed over, and
        kept in `frames` and `received`)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self._next_frame()
                self._handled = len(self.received)
                if match(frame):
                    return frame

    async def _next_frame(self) -> dict[str, Any]:
        msg = await self.ws.receive()
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                        aiohttp.WSMsgType.CLOSING):  # fmt: skip
            raise ConnectionError(f"socket closed: {msg.data} {msg.extra}")
        frame: dict[str, Any] = json.loads(msg.data)
        self.frames.append(frame)
        if frame["type"] == "messages":
            session = frame["session"]
            for item in frame["messages"]:
                self.received.append(Received(session, item["cursor"], item["message"]))
            self.cursors[session] = frame["cursor"]
        return frame

    async def message(
        self, match: Callable[[dict[str, Any]], bool], timeout: float = FEED_TIMEOUT
    ) -> dict[str, Any]:
        """The next Jupyter message that `match`es."""
        async with asyncio.timeout(timeout):
            while True:
                while self._handled < len(self.received):
                    self._handled += 1
                    found = self.received[self._handled - 1].message
                    if match(found):
                        return found
                await self._next_frame()

    async def until_done(self, msg_id: str, timeout: float = FEED_TIMEOUT) -> list[dict[str, Any]]:
        """The messages of request `msg_id`, up to its final idle (or dead) status."""
        await self.message(lambda m: is_end(m, msg_id), timeout)
        return self.of_request(msg_id)

    def messages(self) -> list[dict[str, Any]]:
        return [r.message for r in self.received]

    # -- the worksheet's document -----------------------------------------------------------
    async def doc_sync(self, worksheet: str, state_vector: bytes = b"\0") -> dict[str, Any]:
        """The ``doc_state`` answer (or an ``error``) for a client at `state_vector`."""
        vector = base64.b64encode(state_vector).decode()
        await self.ws.send_json({"op": "doc_sync", "worksheet": worksheet, "state_vector": vector})
        return await self.frame(lambda f: f["type"] in ("doc_state", "error"))

    async def doc_update(self, worksheet: str, update: bytes, ref: int) -> dict[str, Any]:
        """Send an update; its ``doc_ack`` (or the ``error`` naming `ref`)."""
        await self.ws.send_json({"op": "doc_update", "worksheet": worksheet, "ref": ref,
                                 "update": base64.b64encode(update).decode()})  # fmt: skip
        return await self.frame(lambda f: f["type"] in ("doc_ack", "error") and f["ref"] == ref)

    def of_request(self, msg_id: str) -> list[dict[str, Any]]:
        return [m for m in self.messages() if m["parent_header"].get("msg_id") == msg_id]

    async def close(self) -> None:
        await self.ws.close()


def state_in(msg: dict[str, Any]) -> str | None:
    """The session state a feed message announces: a ``status``'s ``execution_state`` or a
    ``session_state``'s ``state``; None for any other message."""
    msg_type, content = msg["header"]["msg_type"], msg["content"]
    if msg_type == "status":
        return str(content["execution_state"])
    if msg_type == "session_state":
        return str(content["state"])
    return None


def is_end(msg: dict[str, Any], msg_id: str) -> bool:
    """The message that ends a request: ``idle`` after its reply, or ``dead``."""
    return msg["parent_header"].get("msg_id") == msg_id and state_in(msg) in ("idle", "dead")


def stdout_of(messages: list[dict[str, Any]]) -> str:
    return "".join(
        m["content"]["text"]
        for m in messages
        if m["header"]["msg_type"] == "stream" and m["content"]["name"] == "stdout"
    )


async def poll_until_done(
    client: Client, session: str, msg_id: str, timeout: float = FEED_TIMEOUT
) -> list[dict[str, Any]]:
    """Long-poll `session`'s feed from its start until request `msg_id` is done."""
    seen: list[dict[str, Any]] = []
    since = None
    async with asyncio.timeout(timeout):
        while not any(is_end(m, msg_id) for m in seen):
            page = await client.call("feed.poll", session=session, since=since, timeout=10)
            seen.extend(page["messages"])
            since = page["cursor"]
    return [m for m in seen if m["parent_header"].get("msg_id") == msg_id]
