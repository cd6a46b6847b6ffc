"""`FeedSocket` against a small feed WebSocket server written here that drops and misbehaves.

The server serves one session's feed of ten messages over several connections: the first is
cut mid-stream, the next replays a message already delivered and ends with `overflow`, the
next ends with `closing`, one is refused with HTTP 503. The client must reconnect by itself,
subscribe again from the last cursor it handed out, and deliver each message exactly once, in
order. Also: "now" resumes from the cursor the server gave, an `error` frame fails `subscribe`
or ends the feed, and a refused token or a closed port fail the first connection.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

from cellbus_cli.errors import RpcError, ServerUnreachable
from cellbus_cli.feed import FeedSocket, ws_url

SESSION = "s1"
FEED = [
    {"header": {"msg_type": "stream", "msg_id": f"m{n}"}, "content": {"text": f"line {n}\n"}}
    for n in range(1, 11)
]

Plan = Callable[[web.WebSocketResponse, web.Request, Any], Awaitable[None]]


class FeedServer:
    """Answers the n-th connection with the n-th plan; records every subscribe it was sent."""

    def __init__(self, plans: list[Plan | int]) -> None:
        self.plans = plans
        self.subscribes: list[Any] = []
        self.tokens: list[str | None] = []

    async def handler(self, request: web.Request) -> web.StreamResponse:
        self.tokens.append(request.headers.get("Authorization"))
        plan = self.plans.pop(0) if self.plans else hold
        if isinstance(plan, int):
            return web.Response(status=plan, text="refused")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        frame = await ws.receive()
        assert frame.type is WSMsgType.TEXT
        op = json.loads(frame.data)
        assert op["op"] == "subscribe" and op["session"] == SESSION
        self.subscribes.append(op["cursor"])
        await plan(ws, request, op["cursor"])
        return ws


async def send(ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
    await ws.send_str(json.dumps(frame))


async def messages(ws: web.WebSocketResponse, first: int, last: int) -> None:
    """Messages `first` to `last` in ``messages`` frames of two (a batch may start with a
    message the client has: it must hand out only the rest)."""
    for start in range(first, last + 1, 2):
        cursors = range(start, min(start + 1, last) + 1)
        batch = [{"cursor": c, "message": FEED[c - 1]} for c in cursors]
        frame = {"type": "messages", "session": SESSION, "cursor": cursors[-1]}
        await send(ws, {**frame, "messages": batch})


def subscribed(cursor: int) -> dict[str, Any]:
    return {"type": "subscribed", "session": SESSION, "cursor": cursor}


async def cut_after_3(ws: web.WebSocketResponse, request: web.Request, cursor: Any) -> None:
    await send(ws, subscribed(cursor))
    await messages(ws, cursor + 1, 3)
    assert request.transport is not None
    request.transport.abort()  # dropped mid-stream, no close frame


async def replay_then_overflow(ws: web.WebSocketResponse, _: web.Request, cursor: Any) -> None:
    await send(ws, subscribed(cursor))
    await messages(ws, cursor, 6)  # starts one early: message `cursor` again
    await send(ws, {"type": "overflow", "cursors": {SESSION: 6}})
    await ws.close()


async def then_closing(ws: web.WebSocketResponse, _: web.Request, cursor: Any) -> None:
    await send(ws, subscribed(cursor))
    await messages(ws, cursor + 1, 8)
    await send(ws, {"type": "closing", "cursors": {SESSION: 8}})
    await ws.close()


async def hold(ws: web.WebSocketResponse, _: web.Request, cursor: Any) -> None:
    await send(ws, subscribed(cursor))
    await messages(ws, cursor + 1, len(FEED))
    async for _frame in ws:  # stay open until the client leaves
        pass


async def now_then_cut(ws: web.WebSocketResponse, request: web.Request, cursor: Any) -> None:
    assert cursor == "now"
    await send(ws, subscribed(5))
    await asyncio.sleep(0.05)
    assert request.transport is not None
    request.transport.abort()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[FeedServer], Awaitable[str]]]:
    """Starts a FeedServer's app; the URL to reach it. Servers are closed afterwards."""
    servers: list[TestServer] = []

    async def start(feed_server: FeedServer) -> str:
        app = web.Application()
        app.router.add_get("/ws", feed_server.handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return str(server.make_url("")).rstrip("/")

    yield start
    for server in servers:
        await server.close()


def fast_socket(url: str, token: str | None = "t0k3n") -> FeedSocket:
    return FeedSocket(url, token, backoff_initial=0.01, backoff_max=0.05, connect_timeout=2)


async def collect(feed: FeedSocket, count: int) -> list[tuple[int, str]]:
    got = []
    async with asyncio.timeout(5):
        for _ in range(count):
            event = await feed.next()
            assert event.session == SESSION
            got.append((event.cursor, event.message["content"]["text"]))
    return got


async def test_resumes_across_drops_without_duplicates_or_gaps(serve: Any) -> None:
    server = FeedServer([cut_after_3, replay_then_overflow, 503, then_closing, hold])
    url = await serve(server)
    async with fast_socket(url) as feed:
        assert await feed.subscribe(SESSION, 0) == 0
        got = await collect(feed, 10)
        # nothing more arrives: the replayed message was dropped, not queued
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await feed.next()
    assert got == [(n, f"line {n}\n") for n in range(1, 11)]
    assert server.subscribes == [0, 3, 6, 8]
    assert feed.connections == 4
    assert set(server.tokens) == {"Bearer t0k3n"}


async def test_now_resumes_from_the_cursor_the_server_gave(serve: Any) -> None:
    server = FeedServer([now_then_cut, hold])
    url = await serve(server)
    async with fast_socket(url) as feed:
        assert await feed.subscribe(SESSION, "now") == 5
        got = await collect(feed, 5)
    assert [cursor for cursor, _ in got] == [6, 7, 8, 9, 10]
    assert server.subscribes == ["now", 5]


async def test_an_error_frame_fails_subscribe(serve: Any) -> None:
    async def refuse(ws: web.WebSocketResponse, _: web.Request, cursor: Any) -> None:
        await send(
            ws, {"type": "error", "code": -32003, "message": "forbidden", "session": SESSION}
        )
        async for _frame in ws:
            pass

    url = await serve(FeedServer([refuse]))
    async with fast_socket(url) as feed:
        with pytest.raises(RpcError) as caught:
            await feed.subscribe(SESSION, 0)
    assert caught.value.code == -32003
    assert SESSION not in feed.cursors


async def test_a_later_error_frame_ends_the_feed(serve: Any) -> None:
    async def expire(ws: web.WebSocketResponse, _: web.Request, cursor: Any) -> None:
        await send(ws, subscribed(cursor))
        await messages(ws, 1, 2)
        await send(
            ws, {"type": "error", "code": -32001, "message": "token expired", "session": None}
        )
        async for _frame in ws:
            pass

    url = await serve(FeedServer([expire]))
    async with fast_socket(url) as feed:
        await feed.subscribe(SESSION, 0)
        assert len(await collect(feed, 2)) == 2
        for _ in range(2):  # and it stays ended
            with pytest.raises(RpcError, match="expired"):
                await feed.next()


async def test_a_refused_token_fails_the_first_connection(serve: Any) -> None:
    url = await serve(FeedServer([401]))
    with pytest.raises(RpcError) as caught:
        await fast_socket(url).connect()
    assert caught.value.code == -32001


async def test_a_closed_port_is_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ServerUnreachable):
        await fast_socket(f"http://127.0.0.1:{port}").connect()


def test_ws_url() -> None:
    assert ws_url("http://h:8000/") == "ws://h:8000/ws"
    assert ws_url("https://h/base") == "wss://h/base/ws"
