"""``GET /ws``: the feed WebSocket that relays session feeds to browsers.

A client subscribes to sessions (or worksheets, meaning their sessions) with the cursor it
last saw and gets everything after it, then live messages; see docs/api.md for the frames.

- Authenticated like the API (bearer token or session cookie); the Origin must be this site
  for a cookie, so another site cannot open a socket with the user's cookie.
- Every subscription is checked with the accounts service (viewer role at least). A user
  whose role is taken away while subscribed (``worksheet_shared`` with role ``none``) stops
  receiving that feed at once.
- Feed entries are relayed as the bytes the kernel published, wrapped without decoding.
- Back-pressure: catching up waits for room in the socket's queue; live messages never wait.
  A socket whose queue of live messages overflows is closed (code 4000) after an
  ``overflow`` frame with the cursor of the last message it was sent for each session, so
  the client resubscribes from there: a slow browser never holds up the others.
- Keep-alive pings every ``CELLBUS_PING_INTERVAL`` seconds keep proxies from dropping idle
  sockets. On shutdown each socket gets a ``closing`` frame with its cursors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from cellbus_protocol import accounts as a
from cellbus_protocol import codec, keys
from cellbus_protocol.bus import FeedEntry
from cellbus_protocol.errors import CellbusError

from .auth import Principal
from .backend import BACKEND, Backend, translate
from .feeds import Listener
from .rpc import FORBIDDEN, INVALID_REQUEST, RpcError

log = logging.getLogger(__name__)

OVERFLOW_CLOSE = 4000
MAX_FRAME_BYTES = 64 * 1024
PRESENCE_INTERVAL = 2.0  # seconds between presence checks (and renewals) of a socket
PRESENCE_TTL = 15.0  # a socket that stops renewing (its process died) leaves after this
SOCKETS = web.AppKey("sockets", set)


class Subscribe(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    op: str
    session: str | None = None
    worksheet: str | None = None
    cursor: int | str | None = None


_frame = msgspec.json.Decoder(Subscribe)


def _json(value: Any) -> bytes:
    return msgspec.json.encode(value)


class FeedSocket:
    """One client's WebSocket: its subscriptions, its bounded queue and its writer."""

    def __init__(self, ws: web.WebSocketResponse, backend: Backend, principal: Principal):
        self.ws = ws
        self.backend = backend
        self.principal = principal
        self.queue: asyncio.Queue[tuple[str, int, bytes]] = asyncio.Queue(
            backend.settings.socket_queue
        )
        self.listeners: dict[str, Listener] = {}
        self.subscribed: set[str] = set()  # as soon as a subscription starts catching up
        self.sent: dict[str, int] = {}  # session -> cursor of the last message sent
        self.overflowed = asyncio.Event()
        self.presence_id = f"{principal.user.username} {uuid.uuid4().hex[:12]}"
        self._present: dict[str, list[str]] = {}  # session -> the watchers last sent
        self.wake_presence = asyncio.Event()  # a new subscription: report it now

    # -- what arrives from the feeds ------------------------------------------------------
    def _frame(self, session: str, entry: FeedEntry) -> bytes:
        return b'{"type":"message","session":"%s","cursor":%d,"message":%s}' % (
            session.encode(),
            entry.seq,
            entry.data,
        )

    def deliver(self, session: str, entry: FeedEntry) -> None:
        if self.overflowed.is_set():
            return
        if b'"worksheet_shared"' in entry.data and self._access_removed(entry):
            self.queue.put_nowait((session, -1, b""))  # see _write: ends the subscription
        try:
            self.queue.put_nowait((session, entry.seq, self._frame(session, entry)))
        except asyncio.QueueFull:
            log.info("socket of %s overflowed; closing it", self.principal.user.username)
            self.overflowed.set()

    async def catch_up(self, session: str, entry: FeedEntry) -> None:
        await self.queue.put((session, entry.seq, self._frame(session, entry)))

    def _access_removed(self, entry: FeedEntry) -> bool:
        msg = codec.decode(entry.data)
        content = msg.content
        return content.username == self.principal.user.username and content.role == "none"

    # -- what the client asks -------------------------------------------------------------
    async def handle(self, data: str | bytes) -> None:
        frame: Subscribe | None = None
        try:  # (frames over MAX_FRAME_BYTES never get here: aiohttp closes with 1009)
            frame = _frame.decode(data)
            if frame.op == "subscribe":
                await self.subscribe(frame)
            elif frame.op == "unsubscribe":
                if not frame.session:
                    raise RpcError(INVALID_REQUEST, "unsubscribe needs a session")
                await self.unsubscribe(frame.session)
            elif frame.op == "ping":
                await self.queue.put(("", 0, b'{"type":"pong"}'))
            else:
                raise RpcError(INVALID_REQUEST, f"unknown op {frame.op!r}")
        except msgspec.DecodeError as exc:
            await self._error(INVALID_REQUEST, f"bad frame: {exc}", None)
        except RpcError as exc:
            await self._error(exc.code, exc.message, frame)

    async def _error(self, code: int, message: str, about: Subscribe | None) -> None:
        reply = {"type": "error", "code": code, "message": message,
                 "session": about.session if about else None}  # fmt: skip
        if about is not None and about.worksheet:
            reply["worksheet"] = about.worksheet
        await self.queue.put(("", 0, _json(reply)))

    async def subscribe(self, frame: Subscribe) -> None:
        session = await self._session_of(frame)
        bus = self.backend.bus
        if frame.cursor == "now":
            cursor = await translate(bus.last_seq(keys.feed(session)))
        elif frame.cursor is None or (isinstance(frame.cursor, int) and frame.cursor >= 0):
            cursor = frame.cursor or 0
        else:
            raise RpcError(INVALID_REQUEST, "cursor: a cursor (integer >= 0), null or 'now'")
        await self.unsubscribe(session)
        reply = {"type": "subscribed", "session": session, "cursor": cursor}
        if frame.worksheet:
            reply["worksheet"] = frame.worksheet
        await self.queue.put(("", 0, _json(reply)))
        self.sent[session] = cursor
        self.subscribed.add(session)
        self.listeners[session] = await translate(
            self.backend.hub.follow(session, cursor, self.deliver, self.catch_up)
        )
        self.wake_presence.set()

    async def _session_of(self, frame: Subscribe) -> str:
        user = self.principal.user.id
        accounts = self.backend.accounts
        if frame.worksheet:
            sheet = await translate(accounts.call(a.GetWorksheet(id=frame.worksheet, actor=user)))
            return sheet["session"]
        if not frame.session:
            raise RpcError(INVALID_REQUEST, "subscribe needs a session or a worksheet")
        await self.backend.role(self.principal, frame.session)
        return frame.session

    async def unsubscribe(self, session: str) -> None:
        self.subscribed.discard(session)
        self._present.pop(session, None)
        self.sent.pop(session, None)
        listener = self.listeners.pop(session, None)
        if listener is not None:
            await self.backend.hub.unfollow(listener)
            with contextlib.suppress(CellbusError):
                await self.backend.bus.remove_load(keys.presence(session), self.presence_id)

    # -- who else is watching -------------------------------------------------------------
    async def presence(self) -> None:
        """Keep this socket listed as a watcher of each session it follows, and tell the
        client who watches them whenever that changes (across every web process)."""
        bus = self.backend.bus
        while True:
            self.wake_presence.clear()
            for session in list(self.listeners):
                try:
                    table = keys.presence(session)
                    await bus.report_load(table, self.presence_id, 1, PRESENCE_TTL)
                    watchers = sorted({m.split(" ")[0] for m in await bus.loads(table)})
                except CellbusError as exc:
                    log.warning("presence of %s: %s", session, exc)
                    continue
                if session in self.listeners and self._present.get(session) != watchers:
                    self._present[session] = watchers
                    frame = {"type": "presence", "session": session, "users": watchers}
                    await self.queue.put(("", 0, _json(frame)))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PRESENCE_INTERVAL):
                    await self.wake_presence.wait()

    # -- writing to the client ------------------------------------------------------------
    async def write(self) -> None:
        """Send what is queued, in order, until the socket closes or overflows."""
        while True:
            session, seq, data = await self.queue.get()
            if seq < 0:
                await self.unsubscribe(session)
                frame = {"type": "error", "code": FORBIDDEN, "session": session,
                         "message": "your access to this worksheet was removed"}  # fmt: skip
                await self.ws.send_str(_json(frame).decode())
                continue
            if session and session not in self.subscribed and seq:
                continue  # unsubscribed since it was queued
            if seq:  # before the send: it writes the frame at once, then may wait to drain
                self.sent[session] = seq
            await self.ws.send_str(data.decode())

    async def close(self, frame_type: str, code: int) -> None:
        """Tell the client where it got to, then close."""
        with contextlib.suppress(Exception):
            await self.ws.send_str(_json({"type": frame_type, "cursors": dict(self.sent)}).decode())
        await self.ws.close(code=code)

    async def release(self) -> None:
        for session in list(self.listeners):
            await self.unsubscribe(session)


async def feed_socket(request: web.Request) -> web.WebSocketResponse:
    backend = request.app[BACKEND]
    try:
        principal = await translate(backend.authenticator.principal(request))
    except RpcError as exc:
        status = web.HTTPForbidden if exc.code == FORBIDDEN else web.HTTPUnauthorized
        raise status(text=exc.message) from None
    ws = web.WebSocketResponse(
        heartbeat=backend.settings.ping_interval, max_msg_size=MAX_FRAME_BYTES
    )
    await ws.prepare(request)
    socket = FeedSocket(ws, backend, principal)
    request.app[SOCKETS].add(socket)
    writer = asyncio.create_task(socket.write())
    overflow = asyncio.create_task(socket.overflowed.wait())
    reader = asyncio.create_task(_read(socket))
    presence = asyncio.create_task(socket.presence())
    tasks = (writer, overflow, reader, presence)
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if overflow in done:
            writer.cancel()
            await socket.close("overflow", OVERFLOW_CLOSE)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                if not isinstance(task.exception(), (ConnectionError, CellbusError)):
                    log.error("feed socket failed", exc_info=task.exception())
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await socket.release()
        request.app[SOCKETS].discard(socket)
        await ws.close()
    return ws


async def _read(socket: FeedSocket) -> None:
    async for msg in socket.ws:
        if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            await socket.handle(msg.data)
        elif msg.type == WSMsgType.ERROR:
            break


async def close_sockets(app: web.Application) -> None:
    """On shutdown: give every client its cursors so it resumes on another web process."""
    for socket in list(app[SOCKETS]):
        await socket.close("closing", 1001)
