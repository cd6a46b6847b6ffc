"""``GET /ws``: the feed WebSocket that relays session feeds to browsers.

A client subscribes to sessions (or worksheets, meaning their sessions) with the cursor it
last saw and gets everything after it, then live messages; see docs/api.md for the frames.

- Authenticated like the API (bearer token or session cookie); the Origin must be this site
  for a cookie, so another site cannot open a socket with the user's cookie.
- Every subscription is checked with the accounts service (viewer role at least). A user
  whose role is taken away while subscribed (``worksheet_shared`` with role ``none``) stops
  receiving that feed at once.
- Feed entries are relayed as the bytes the kernel published, wrapped without decoding; the
  wrapped frame is built once per entry for all the sockets of its session (`_Frames`) and
  sent as bytes. The writer sends every frame already queued before it waits again.
- Who else watches (``presence`` frames) is kept by the process's one `presence.Presence`
  loop, which each subscription joins.
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
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from cellbus_protocol import accounts as a
from cellbus_protocol import codec, keys
from cellbus_protocol.bus import FeedEntry
from cellbus_protocol.errors import CellbusError, ValidationError

from .auth import Principal
from .backend import BACKEND, Backend, translate
from .feeds import Listener
from .rpc import FORBIDDEN, INVALID_REQUEST, RpcError

log = logging.getLogger(__name__)

OVERFLOW_CLOSE = 4000
MAX_FRAME_BYTES = 64 * 1024
SOCKETS = web.AppKey("sockets", set)


class Subscribe(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    op: str
    session: str | None = None
    worksheet: str | None = None
    cursor: int | str | None = None


_frame = msgspec.json.Decoder(Subscribe)


def _json(value: Any) -> bytes:
    return msgspec.json.encode(value)


class _Frames:
    """The ``message`` frame of the last feed entry wrapped, and whose access it removes.

    The relay offers each live entry to every listener of its session in a row, so all the
    sockets of a session share one frame per entry instead of building it each."""

    __slots__ = ("data", "frame", "revoked", "seq", "session")

    def __init__(self) -> None:
        self.session = ""
        self.seq = -1
        self.data = b""
        self.frame = b""
        self.revoked: str | None = None

    def of(self, session: str, entry: FeedEntry) -> tuple[bytes, str | None]:
        """The frame of `entry` and the username whose access it removes, if any."""
        if entry.data is not self.data or entry.seq != self.seq or session != self.session:
            self.frame = b'{"type":"message","session":"%s","cursor":%d,"message":%s}' % (
                session.encode(),
                entry.seq,
                entry.data,
            )
            self.revoked = _access_removed(entry.data)
            self.session, self.seq, self.data = session, entry.seq, entry.data
        return self.frame, self.revoked


def _access_removed(data: bytes) -> str | None:
    """The user whose access to the session a feed entry takes away (a ``worksheet_shared``
    with role ``none``), if it is one."""
    if b'"worksheet_shared"' not in data:
        return None
    try:
        msg = codec.decode(data)
    except ValidationError:
        return None
    if msg.header.msg_type != "worksheet_shared" or msg.content.role != "none":
        return None
    return msg.content.username


_frames = _Frames()


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
        self.username = principal.user.username
        self._writing = False  # the writer task is sending (so new frames must queue)

    # -- what arrives from the feeds ------------------------------------------------------
    def deliver(self, session: str, entry: FeedEntry) -> None:
        if self.overflowed.is_set():
            return
        frame, revoked = _frames.of(session, entry)
        if revoked is None and not self._writing and self.queue.empty() and self._send_now(frame):
            self.sent[session] = entry.seq
            return
        try:
            if revoked is not None and revoked == self.username:
                self.queue.put_nowait((session, -1, b""))  # see write: ends the subscription
            self.queue.put_nowait((session, entry.seq, frame))
        except asyncio.QueueFull:
            log.info("socket of %s overflowed; closing it", self.username)
            self.overflowed.set()

    def _send_now(self, frame: bytes) -> bool:
        """Write `frame` to the socket in this step if that needs no waiting: the writer is
        idle, nothing is queued, the frame is not compressed and the socket's buffer has room.
        Saves waking the writer task for each socket of each live message (fan-out). Uses
        aiohttp's frame writer, which is not public API (the version is pinned in uv.lock): if
        it changes shape, frames queue as before."""
        try:
            writer = self.ws._writer
            if self.ws.closed or not writer or writer.compress or writer.protocol.writing_paused:
                return False
            writer._write_websocket_frame(frame, WSMsgType.TEXT, 0)
        except (ConnectionError, AttributeError):  # closed (the writer task ends the socket),
            return False  # or aiohttp's internals changed
        return True

    async def catch_up(self, session: str, entry: FeedEntry) -> None:
        await self.queue.put((session, entry.seq, _frames.of(session, entry)[0]))

    def show_presence(self, session: str, frame: bytes) -> bool:
        """Queue a presence frame (from `presence.Presence`); False if there is no room."""
        if self.overflowed.is_set():
            return True
        try:
            self.queue.put_nowait((session, 0, frame))
        except asyncio.QueueFull:
            return False
        return True

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
        self.backend.presence.join(session, self)

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
        self.sent.pop(session, None)
        listener = self.listeners.pop(session, None)
        if listener is not None:
            await self.backend.hub.unfollow(listener)
            await self.backend.presence.leave(session, self)

    # -- writing to the client ------------------------------------------------------------
    async def write(self) -> None:
        """Send what is queued, in order, until the socket closes or overflows: every frame
        already queued is sent before waiting for the next (one wake-up for several)."""
        queue, send, text = self.queue, self.ws.send_frame, WSMsgType.TEXT
        while True:
            self._writing = False
            session, seq, data = await queue.get()
            self._writing = True
            while True:
                if seq < 0:
                    await self.unsubscribe(session)
                    frame = {"type": "error", "code": FORBIDDEN, "session": session,
                             "message": "your access to this worksheet was removed"}  # fmt: skip
                    await send(_json(frame), text)
                elif not session or session in self.subscribed:  # else: unsubscribed since
                    if seq:  # before the send: it writes the frame at once, may then drain
                        self.sent[session] = seq
                    await send(data, text)
                try:
                    session, seq, data = queue.get_nowait()
                except asyncio.QueueEmpty:
                    break

    async def close(self, frame_type: str, code: int) -> None:
        """Tell the client where it got to, then close."""
        with contextlib.suppress(Exception):
            frame = _json({"type": frame_type, "cursors": dict(self.sent)})
            await self.ws.send_frame(frame, WSMsgType.TEXT)
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
    tasks = (writer, overflow, reader)
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
