"""``GET /ws``: the feed WebSocket that relays session feeds to browsers.

A client subscribes to sessions (or worksheets, meaning their sessions) with the cursor it
last saw and gets everything after it, then live messages; see docs/api.md for the frames.

- Authenticated like the API (bearer token or session cookie); the Origin must be this site
  for a cookie, so another site cannot open a socket with the user's cookie.
- Every subscription is checked with the accounts service (viewer role at least). A user
  whose role is taken away while subscribed (``worksheet_shared`` with role ``none``) stops
  receiving that feed at once.
- Feed entries are relayed as the bytes the kernel published, wrapped without decoding; the
  wrapped frame is built once per entry for all the sockets of its session (`_Frames`).
- A live frame for a socket with nothing queued waits in the socket's ``pending`` list for
  the process's `outbox.Outbox`, which writes a group of sockets per step of the event loop,
  all of a socket's pending frames in one write. Other frames go through the socket's queue
  and its writer task, which sends every frame already queued before it waits again.
- Who else watches (``presence`` frames) is kept by the process's one `presence.Presence`
  loop, which each subscription joins.
- Back-pressure: catching up waits for room in the socket's queue; live messages never wait.
  A socket whose queue of live messages overflows is closed (code 4000) after an
  ``overflow`` frame with the cursor of the last message it was sent for each session, so
  the client resubscribes from there: a slow browser never holds up the others.
- Keep-alive pings every ``CELLBUS_PING_INTERVAL`` seconds keep proxies from dropping idle
  sockets. On shutdown each socket gets a ``closing`` frame with its cursors.
- A socket never outlives its token: when the token is revoked (a logout or ``auth.revoke``,
  announced on the bus to every web process, see `revoke_sockets`) the socket gets a
  ``revoked`` frame and is closed with code 4001 at once. Each subscription checks the token
  again, and so does the socket every ``CELLBUS_PING_INTERVAL`` (an expired token, or a
  revocation announced while this process was not following the bus).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Any, NamedTuple

import msgspec
from aiohttp import WSMsgType, web

from cellbus_protocol import accounts as a
from cellbus_protocol import codec, keys
from cellbus_protocol.bus import FeedEntry
from cellbus_protocol.errors import CellbusError, ValidationError

from .auth import Principal
from .backend import BACKEND, Backend, translate
from .feeds import Listener
from .outbox import Outbox, text_frame
from .rpc import FORBIDDEN, INVALID_REQUEST, UNAUTHENTICATED, RpcError

log = logging.getLogger(__name__)

OVERFLOW_CLOSE = 4000
REVOKED_CLOSE = 4001
REVOKED_MESSAGE = "signed out: this socket's token was revoked or has expired"
MAX_FRAME_BYTES = 64 * 1024
SOCKETS = web.AppKey("sockets", set)
OUTBOX = web.AppKey("outbox", Outbox)


class Subscribe(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    op: str
    session: str | None = None
    worksheet: str | None = None
    cursor: int | str | None = None


_frame = msgspec.json.Decoder(Subscribe)


def _json(value: Any) -> bytes:
    return msgspec.json.encode(value)


def _message_frame(session: str, entry: FeedEntry) -> bytes:
    """The ``message`` frame of a feed entry: its bytes as the kernel published them,
    wrapped without decoding."""
    return b'{"type":"message","session":"%s","cursor":%d,"message":%s}' % (
        session.encode(),
        entry.seq,
        entry.data,
    )


class Wrapped(NamedTuple):
    """Some entries of a session's feed, ready to send."""

    cursors: list[int]
    frames: list[bytes]  # their ``message`` frames
    wire: bytes  # those frames as WebSocket text frames, back to back
    revoked: list[str | None]  # for each, the user whose access it removes, if any
    revokes: bool  # any of them does


class _Frames:
    """The frames of the last entries relayed, built once for all the sockets of their
    session: the relay hands the same list of entries to every listener in a row."""

    __slots__ = ("entries", "session", "wrapped")

    def __init__(self) -> None:
        self.session = ""
        self.entries: list[FeedEntry] | None = None  # held, so its id is not reused
        self.wrapped = Wrapped([], [], b"", [], False)

    def of(self, session: str, entries: list[FeedEntry]) -> Wrapped:
        if entries is not self.entries or session != self.session:
            frames = [_message_frame(session, entry) for entry in entries]
            wire = b"".join(text_frame(frame) for frame in frames)
            revoked = [_access_removed(entry.data) for entry in entries]
            self.session, self.entries = session, entries
            cursors = [entry.seq for entry in entries]
            self.wrapped = Wrapped(cursors, frames, wire, revoked, any(revoked))
        return self.wrapped


def _direct_writes(ws: web.WebSocketResponse) -> bool:
    """Whether the outbox may write a socket's live frames to its transport: the socket has
    no compression (with permessage-deflate, frames go through aiohttp and the writer task).
    Looks inside aiohttp's WebSocket writer, which is not public API (the version is pinned
    in uv.lock): if that changes shape, frames go through the writer task too."""
    try:
        writer = ws._writer
        return bool(writer and not writer.compress and writer.protocol and writer.transport)
    except AttributeError:
        return False


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

    def __init__(
        self, ws: web.WebSocketResponse, backend: Backend, principal: Principal, outbox: Outbox
    ):
        self.ws = ws
        self.backend = backend
        self.principal = principal
        self.outbox = outbox
        self.queue: asyncio.Queue[tuple[str, int, bytes]] = asyncio.Queue(
            backend.settings.socket_queue
        )
        self.listeners: dict[str, Listener] = {}
        self.subscribed: set[str] = set()  # as soon as a subscription starts catching up
        self.sent: dict[str, int] = {}  # session -> cursor of the last message sent
        self.overflowed = asyncio.Event()
        self.revoked = asyncio.Event()  # its token is no longer good: close it
        self.token_hash = hashlib.sha256(principal.token.encode()).hexdigest()
        self.username = principal.user.username
        self.pending: list[tuple[str, Wrapped]] = []  # live frames for the outbox, by session
        self._writing = False  # the writer task is sending (so new frames must queue)
        self._direct = _direct_writes(ws)  # live frames may go through the outbox

    # -- what arrives from the feeds ------------------------------------------------------
    def deliver(self, session: str, entries: list[FeedEntry]) -> None:
        if self.overflowed.is_set() or self.revoked.is_set():
            return
        wrapped = _frames.of(session, entries)
        if self._direct and not self._writing and not wrapped.revokes and self.queue.empty():
            if not self.pending:
                self.outbox.add(self)
            self.pending.append((session, wrapped))
            return
        try:
            for entry, frame, revoked in zip(entries, wrapped.frames, wrapped.revoked, strict=True):
                if revoked is not None and revoked == self.username:  # see `_send_queued`
                    self.queue.put_nowait((session, -1, b""))
                self.queue.put_nowait((session, entry.seq, frame))
        except asyncio.QueueFull:
            self._overflow()

    def _overflow(self) -> None:
        log.info("socket of %s overflowed; closing it", self.username)
        self.overflowed.set()

    def _transport(self) -> asyncio.Transport | None:
        """The connection to write frames to now, or None if it is closed or its buffer is
        full (then the writer task sends them, waiting for room). Only for a socket with
        `_direct` writes (see `_direct_writes`)."""
        writer = self.ws._writer
        if self.ws.closed or writer is None or writer.protocol.writing_paused:
            return None
        transport = writer.transport
        return None if transport.is_closing() else transport

    def flush(self) -> None:
        """Write the pending frames in one write (the outbox calls this). If the socket
        cannot take them now, its writer task sends them, before anything queued later."""
        pending = [p for p in self.pending if p[0] in self.subscribed]
        self.pending = []
        if not pending:
            return
        transport = self._transport()
        if transport is not None:
            wires = [wrapped.wire for _, wrapped in pending]
            transport.write(wires[0] if len(wires) == 1 else b"".join(wires))
            for session, wrapped in pending:
                self.sent[session] = wrapped.cursors[-1]
            return
        self.pending = pending
        try:
            self.queue.put_nowait(("", 0, b""))  # wakes the writer, which sends them first
        except asyncio.QueueFull:
            self._overflow()

    async def catch_up(self, session: str, entry: FeedEntry) -> None:
        await self.queue.put((session, entry.seq, _message_frame(session, entry)))

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
        await self.check_token()
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

    async def check_token(self) -> None:
        """`RpcError` unauthenticated (and the socket marked revoked) if its token is no
        longer good; a revocation is announced, so this is mostly the process's cache."""
        if not self.revoked.is_set():
            try:
                await translate(self.backend.authenticator.user_for(self.principal.token))
                return
            except RpcError as exc:
                if exc.code != UNAUTHENTICATED:
                    raise
                self.revoked.set()
        raise RpcError(UNAUTHENTICATED, REVOKED_MESSAGE)

    async def watch_token(self) -> None:
        """Check the token every ping interval; returns once it is no longer good."""
        while not self.revoked.is_set():
            await asyncio.sleep(self.backend.settings.ping_interval)
            with contextlib.suppress(RpcError):
                await self.check_token()

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
        """Send what is queued, in order, until the socket closes or overflows; pending
        frames (which came before anything queued) go first."""
        while True:
            if self.queue.empty():
                self._writing = False  # live frames may go through the outbox meanwhile
            item = await self.queue.get()  # returns at once if the queue has some
            self._writing = True
            await self._send_pending()
            await self._send_queued(*item)

    async def _send_queued(self, session: str, seq: int, data: bytes) -> None:
        if seq < 0:  # see `deliver`: the user's access was removed
            await self.unsubscribe(session)
            frame = {"type": "error", "code": FORBIDDEN, "session": session,
                     "message": "your access to this worksheet was removed"}  # fmt: skip
            await self.ws.send_frame(_json(frame), WSMsgType.TEXT)
        elif not data:
            pass  # it only woke the writer for the pending frames
        elif not session or session in self.subscribed:  # else: unsubscribed since
            if seq:  # before the send: it writes the frame at once, may then drain
                self.sent[session] = seq
            await self.ws.send_frame(data, WSMsgType.TEXT)

    async def _send_pending(self) -> None:
        """Send the pending frames through aiohttp (for the writer task: they came before
        anything queued), each socket cursor set as its frame goes, as in `write`."""
        if not self.pending:
            return
        self.outbox.discard(self)
        pending, self.pending = self.pending, []
        for session, wrapped in pending:
            for cursor, frame in zip(wrapped.cursors, wrapped.frames, strict=True):
                if session in self.subscribed:
                    self.sent[session] = cursor
                    await self.ws.send_frame(frame, WSMsgType.TEXT)

    async def close(self, frame_type: str, code: int, **details: Any) -> None:
        """Tell the client where it got to (and `details`), then close."""
        with contextlib.suppress(Exception):
            frame = _json({"type": frame_type, "cursors": dict(self.sent), **details})
            await self.ws.send_frame(frame, WSMsgType.TEXT)
        await self.ws.close(code=code, message=details.get("message", "").encode()[:120])

    async def release(self) -> None:
        self.outbox.discard(self)
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
    socket = FeedSocket(ws, backend, principal, request.app[OUTBOX])
    request.app[SOCKETS].add(socket)
    writer = asyncio.create_task(socket.write())
    overflow = asyncio.create_task(socket.overflowed.wait())
    revoked = asyncio.create_task(socket.revoked.wait())
    watcher = asyncio.create_task(socket.watch_token())
    reader = asyncio.create_task(_read(socket))
    tasks = (writer, overflow, revoked, watcher, reader)
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if socket.revoked.is_set():
            writer.cancel()
            log.info("socket of %s: token revoked or expired; closing it", socket.username)
            await socket.close("revoked", REVOKED_CLOSE, message=REVOKED_MESSAGE)
        elif overflow in done:
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


def revoke_sockets(app: web.Application, token_hash: str) -> int:
    """Close this process's sockets opened with the token whose SHA-256 is `token_hash`
    (each one's task sends the ``revoked`` frame and closes); how many there were."""
    sockets = [s for s in app[SOCKETS] if s.token_hash == token_hash]
    for socket in sockets:
        socket.revoked.set()
    return len(sockets)


async def close_sockets(app: web.Application) -> None:
    """On shutdown: give every client its cursors so it resumes on another web process."""
    for socket in list(app[SOCKETS]):
        await socket.close("closing", 1001)
