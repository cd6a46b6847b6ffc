"""``GET /ws``: the feed WebSocket that relays session feeds to browsers.

A client subscribes to sessions (or worksheets, meaning their sessions) with the cursor it
last saw and gets everything after it, then live messages; see docs/api.md for the frames.

- Authenticated like the API (bearer token or session cookie); the Origin must be this site
  for a cookie, so another site cannot open a socket with the user's cookie.
- Every subscription is checked with the accounts service (viewer role at least). A user
  whose role is taken away while subscribed (``worksheet_shared`` with role ``none``) stops
  receiving that feed at once.
- Feed messages go out as ``messages`` frames, a batch of one session's messages each,
  built once per batch for every socket of the session (`batches`, `feeds.SharedFeed`), the
  kernel's bytes spliced in without decoding: one write per batch and socket.
- One path to the client: everything a socket is sent is a typed item (a `batches.Batch`,
  `outgoing.Send`, `outgoing.Revoke`) on the socket's one bounded queue, written in order by
  its one writer task through aiohttp's public API (``send_frame``), compressed or not. The
  process's writers take turns (`outgoing.Turns`), a group per step of the event loop, and a
  writer sends the batches of a session queued together as one frame. A socket runs three
  tasks: the writer, the reader of the client's frames, and the token's watcher; when one
  ends (or the socket is told to close), the others are stopped, and all are awaited.
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
- Closing (`outgoing.Close`) overtakes whatever is still queued: the writer is stopped, the
  last frame says which cursors the client was sent, and the socket is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from cellbus_protocol import accounts as a
from cellbus_protocol import keys
from cellbus_protocol.errors import CellbusError
from cellbus_protocol.roles import role_allows

from .auth import Principal
from .backend import BACKEND, Backend
from .batches import Batch
from .feeds import Listener
from .outgoing import Close, Item, Outgoing, Revoke, Send, Turns
from .relay import AwarenessError, WorksheetRelay, is_update
from .rpc import FORBIDDEN, INVALID_REQUEST, UNAUTHENTICATED, UNAVAILABLE, RpcError, api_error

log = logging.getLogger(__name__)

REVOKED_MESSAGE = "signed out: this socket's token was revoked or has expired"
OVERFLOW = Close("overflow", 4000)
REVOKED = Close("revoked", 4001, REVOKED_MESSAGE)
SHUTDOWN = Close("closing", 1001)
GOODBYE_SECONDS = 5.0
"""The most a closing socket spends on its last frame and the close handshake."""
MAX_FRAME_BYTES = 2 * 1024 * 1024
"""The largest frame a client may send: a document update of 1 MiB, in base64, fits."""
PONG = b'{"type":"pong"}'
ACCESS_REMOVED = "your access to this worksheet was removed"
SOCKETS: web.AppKey[set[FeedSocket]] = web.AppKey("sockets")
TURNS = web.AppKey("turns", Turns)


class Subscribe(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A frame from the client about feeds: ``subscribe``, ``unsubscribe``, ``ping``."""

    op: str
    session: str | None = None
    worksheet: str | None = None
    cursor: int | str | None = None
    epoch: str | None = None  # the bus's epoch when the client got `cursor`


class DocSync(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``doc_sync``: the Yjs sync handshake's step 1 (the client's state vector)."""

    op: str
    worksheet: str
    state_vector: bytes  # base64 in JSON


class DocUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``doc_update``: an editor's update of the worksheet's document, acknowledged by
    ``doc_ack`` with the same `ref` once committed."""

    op: str
    worksheet: str
    update: bytes
    ref: int


class Awareness(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``awareness``: a y-protocols awareness update, relayed to the worksheet's other
    sockets (`relay.WorksheetRelay`)."""

    op: str
    worksheet: str
    update: bytes


class Op(msgspec.Struct):
    """Only the op of a frame, to choose how to decode the rest."""

    op: str = ""


Frame = Subscribe | DocSync | DocUpdate | Awareness
_op = msgspec.json.Decoder(Op)
_frames: dict[str, msgspec.json.Decoder[Any]] = {
    "doc_sync": msgspec.json.Decoder(DocSync),
    "doc_update": msgspec.json.Decoder(DocUpdate),
    "awareness": msgspec.json.Decoder(Awareness),
}
_subscribe = msgspec.json.Decoder(Subscribe)


def decode_frame(data: str | bytes) -> Frame:
    """The client's frame, by its op; `msgspec.DecodeError` if it is malformed."""
    decoder = _frames.get(_op.decode(data).op, _subscribe)
    frame: Frame = decoder.decode(data)
    return frame


def _json(value: Any) -> bytes:
    return msgspec.json.encode(value)


class FeedSocket:
    """One client's WebSocket: its subscriptions, its queue and its tasks."""

    def __init__(
        self, ws: web.WebSocketResponse, backend: Backend, principal: Principal, turns: Turns
    ):
        self.ws = ws
        self.backend = backend
        self.principal = principal
        self.outgoing = Outgoing(backend.settings.socket_queue, turns)
        self.listeners: dict[str, Listener] = {}
        self.worksheets: dict[str, str] = {}  # worksheet -> its session, subscribed by worksheet
        self.socket_id = WorksheetRelay.new_socket_id()
        # session -> cursor of the last message sent, for every session subscribed to (as
        # soon as its subscription starts catching up)
        self.sent: dict[str, int] = {}
        self.ending: Close | None = None
        self.finished = asyncio.Event()  # `serve` has returned
        self._ended = asyncio.Event()  # `ending` is set
        self.token_hash = hashlib.sha256(principal.token.encode()).hexdigest()
        self.username = principal.user.username
        # session -> the last input_requests it was sent that ask this user: if the user
        # leaves while one waits, the wait ends (`_end_input_waits`), not hangs.
        self.asked: dict[str, list[str]] = {}

    def end(self, close: Close) -> None:
        """Close the socket as `close` says, overtaking what is still queued (the first
        reason given wins)."""
        if self.ending is None:
            self.ending = close
            self._ended.set()

    # -- what arrives from the feeds ------------------------------------------------------
    def deliver(self, delivered: list[Batch]) -> None:
        """Live batches (from `feeds.Listener`): queued without waiting. (Called for every
        socket of a session for every batch: kept lean.)"""
        for batch in delivered:
            if self.ending is not None:
                return
            if batch.removes and self.username in batch.removes:
                self._access_removed(batch)
                return  # what follows is not for this user
            if batch.inputs:
                self._note_inputs(batch)
            if not self.outgoing.offer(batch):
                self._overflowed()

    def _note_inputs(self, batch: Batch) -> None:
        asked = [msg_id for username, msg_id in batch.inputs if username == self.username]
        if asked:
            self.asked[batch.session] = [*self.asked.get(batch.session, []), *asked][-4:]

    def _access_removed(self, batch: Batch) -> None:
        before = batch.before_removal_of(self.username)
        if before is not None:
            self._offer(before)
        self._offer(Revoke(batch.session))

    def _offer(self, item: Item) -> None:
        if self.ending is None and not self.outgoing.offer(item):
            self._overflowed()

    def _overflowed(self) -> None:
        log.info("socket of %s overflowed; closing it", self.username)
        self.end(OVERFLOW)

    async def catch_up(self, page: list[Batch]) -> None:
        """Retained batches while a subscription joins: they wait for room."""
        for batch in page:
            if batch.inputs:
                self._note_inputs(batch)
            await self.outgoing.put(batch)

    def show_live(self, frame: bytes) -> None:
        """Queue a relayed frame (awareness, an update not yet committed); dropped if there is
        no room (the committed update follows on the feed; the next awareness will do)."""
        if self.ending is None:
            self.outgoing.offer(Send(frame))

    def show_presence(self, session: str, frame: bytes) -> bool:
        """Queue a presence frame (from `presence.Presence`); False if there is no room."""
        return self.ending is not None or self.outgoing.offer(Send(frame))

    # -- what the client asks -------------------------------------------------------------
    async def handle(self, data: str | bytes) -> None:
        """Carry out one frame from the client; a refusal is an ``error`` frame."""
        frame: Frame | None = None
        try:  # (frames over MAX_FRAME_BYTES never get here: aiohttp closes with 1009)
            frame = decode_frame(data)
            await self._carry_out(frame)
        except msgspec.DecodeError as exc:
            await self._error(INVALID_REQUEST, f"bad frame: {exc}", None)
        except (RpcError, CellbusError) as exc:
            error = api_error(exc)
            if error is None:
                raise
            await self._error(error.code, error.message, frame)

    async def _carry_out(self, frame: Frame) -> None:
        match frame:
            case DocSync():
                await self.doc_sync(frame)
            case DocUpdate():
                await self.doc_update(frame)
            case Awareness():
                await self.relay_awareness(frame)
            case Subscribe(op="subscribe"):
                await self.subscribe(frame)
            case Subscribe(op="unsubscribe", session=str(session)) if session:
                await self.unsubscribe(session)
            case Subscribe(op="unsubscribe"):
                raise RpcError(INVALID_REQUEST, "unsubscribe needs a session")
            case Subscribe(op="ping"):
                await self.outgoing.put(Send(PONG))
            case _:
                raise RpcError(INVALID_REQUEST, f"unknown op {frame.op!r}")

    async def _error(self, code: int, message: str, about: Frame | None) -> None:
        session = about.session if isinstance(about, Subscribe) else None
        reply: dict[str, Any] = {"type": "error", "code": code, "message": message,
                                 "session": session}  # fmt: skip
        if about is not None and about.worksheet:
            reply["worksheet"] = about.worksheet
        if isinstance(about, DocUpdate):
            reply["ref"] = about.ref
        await self.outgoing.put(Send(_json(reply)))

    # -- the worksheet's document -----------------------------------------------------------
    async def doc_sync(self, frame: DocSync) -> None:
        """Sync step 2 (what the client lacks) and the server's state vector."""
        request = a.SyncDocument(
            worksheet=frame.worksheet, state_vector=frame.state_vector,
            actor=self.principal.user.id,
        )  # fmt: skip
        state = await self.backend.accounts.call(request)
        reply = {"type": "doc_state", "worksheet": frame.worksheet, "update": state.update,
                 "state_vector": state.state_vector}  # fmt: skip
        await self.outgoing.put(Send(_json(reply)))

    async def doc_update(self, frame: DocUpdate) -> None:
        """Relay an editor's update to the others at once, then have it committed; ``doc_ack``
        once it is (the accounts service publishes it on the feed before it answers)."""
        await self._relay_update(frame)
        request = a.ApplyUpdate(
            worksheet=frame.worksheet, update=frame.update, actor=self.principal.user.id
        )
        await self.backend.accounts.call(request)
        reply = {"type": "doc_ack", "worksheet": frame.worksheet, "ref": frame.ref}
        await self.outgoing.put(Send(_json(reply)))

    async def _relay_update(self, frame: DocUpdate) -> None:
        """The update to the worksheet's other sockets before its commit (`relay`), if this
        socket follows the worksheet, its user may edit it (the role this process remembers,
        which an access change makes it forget) and it is a Yjs update. Otherwise, or if the
        bus is away, it reaches them only once committed."""
        session = self.worksheets.get(frame.worksheet)
        if session is None or not self.backend.relay.joined(session, self):
            return
        if not role_allows(await self.backend.role(self.principal, session), "editor"):
            return  # the accounts service refuses it next, with the reason
        if not is_update(frame.update):
            return
        try:
            await self.backend.relay.document_update(session, frame.worksheet, self, frame.update)
        except CellbusError as exc:
            log.info("update not relayed ahead of its commit: %s", exc)

    async def relay_awareness(self, frame: Awareness) -> None:
        session = self.worksheets.get(frame.worksheet)  # (set only while subscribed)
        if session is None:
            raise RpcError(INVALID_REQUEST, "awareness: subscribe to the worksheet first")
        try:
            await self.backend.relay.awareness(session, frame.worksheet, self, frame.update)
        except AwarenessError as exc:
            raise RpcError(INVALID_REQUEST, f"awareness: {exc}") from None

    async def subscribe(self, frame: Subscribe) -> None:
        await self.check_token()
        session = await self._session_of(frame)
        cursor = await self._start_of(frame, session)
        epoch = await self.backend.bus.epoch()
        await self.unsubscribe(session)
        # Before `subscribed`: relayed messages are not kept, so the socket must be listening
        # by the time the client hears it is subscribed (feed messages are caught up instead).
        await self.backend.relay.join(session, self)
        reply: dict[str, Any] = {
            "type": "subscribed", "session": session, "cursor": cursor, "epoch": epoch
        }  # fmt: skip
        if frame.worksheet:
            reply["worksheet"] = frame.worksheet
        if isinstance(frame.cursor, int) and cursor != frame.cursor:
            # the feed no longer has what the client saw after `cursor` (see _start_of)
            reply.update(reset=True, asked=frame.cursor)
        await self.outgoing.put(Send(_json(reply)))
        self.sent[session] = cursor
        try:
            hub = self.backend.hub
            self.listeners[session] = await hub.follow(session, cursor, self.deliver, self.catch_up)
        except BaseException:
            self.sent.pop(session, None)
            await self.backend.relay.leave(session, self, None)
            raise
        self.backend.presence.join(session, self)
        if frame.worksheet:
            self.worksheets[frame.worksheet] = session

    async def _start_of(self, frame: Subscribe, session: str) -> int:
        """The cursor a subscription starts after. A cursor the client got in another epoch
        (the server restarted since, docs/protocol.md "Epochs") starts where the feed still
        has what the client saw: at the cursor itself, or before it if the feed lost entries
        the client saw (or all of them: 0)."""
        if frame.cursor == "now":
            return await self.backend.bus.last_seq(keys.feed(session))
        if frame.cursor is None or (isinstance(frame.cursor, int) and frame.cursor >= 0):
            cursor = frame.cursor or 0
            if cursor and frame.epoch is not None:
                return await self.backend.bus.resume_point(keys.feed(session), cursor, frame.epoch)
            return cursor
        raise RpcError(INVALID_REQUEST, "cursor: a cursor (integer >= 0), null or 'now'")

    async def check_token(self) -> None:
        """`RpcError` unauthenticated (and the socket told to close) if its token is no
        longer good; a revocation is announced, so this is mostly the process's cache."""
        if self.ending != REVOKED:
            try:
                await self.backend.authenticator.user_for(self.principal.token)
                return
            except (RpcError, CellbusError) as exc:
                error = api_error(exc)
                if error is None or error.code != UNAUTHENTICATED:
                    raise
                self.end(REVOKED)
        raise RpcError(UNAUTHENTICATED, REVOKED_MESSAGE)

    async def _watch_token(self) -> None:
        """Check the token every ping interval, until it is no longer good."""
        while self.ending is None:
            await asyncio.sleep(self.backend.settings.ping_interval)
            with contextlib.suppress(RpcError, CellbusError):
                await self.check_token()

    async def _session_of(self, frame: Subscribe) -> str:
        if frame.worksheet:
            return (await self.backend.worksheet_session(self.principal, frame.worksheet)).session
        if not frame.session:
            raise RpcError(INVALID_REQUEST, "subscribe needs a session or a worksheet")
        await self.backend.role(self.principal, frame.session)
        return frame.session

    async def unsubscribe(self, session: str) -> None:
        self.sent.pop(session, None)
        listener = self.listeners.pop(session, None)
        if listener is not None:
            await self.backend.hub.unfollow(listener)
            await self.backend.presence.leave(session, self)
            worksheets = [w for w, s in self.worksheets.items() if s == session]
            for worksheet in worksheets:
                del self.worksheets[worksheet]
            await self.backend.relay.leave(session, self, next(iter(worksheets), None))

    # -- the socket's tasks ---------------------------------------------------------------
    async def serve(self) -> None:
        """Write, read and watch the token until one of them ends or the socket is told to
        close; then say why (if there is a reason) and close."""
        try:
            await self._run()
            if self.ending is not None:
                await self._goodbye(self.ending)
        finally:
            try:
                await self._release()
            finally:
                self.finished.set()  # even if the release was cut short

    async def _run(self) -> None:
        """The socket's tasks, until the first ends; then the others are stopped and all
        are awaited. (Not a TaskGroup: on Python 3.11 a TaskGroup whose task fails while it
        exits leaves its parent task marked as cancelling, and the release that follows
        would stop at its first await; fixed in 3.12.)"""
        jobs = [
            asyncio.create_task(job)
            for job in (self._write(), self._read(), self._watch_token(), self._ended.wait())
        ]
        try:
            await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for job in jobs:
                job.cancel()
            outcomes = await asyncio.gather(*jobs, return_exceptions=True)
        for outcome in outcomes:
            # the client went, or a service did not answer while a subscription was set up
            expected = (asyncio.CancelledError, ConnectionError, CellbusError)
            if isinstance(outcome, BaseException) and not isinstance(outcome, expected):
                log.error("feed socket of %s failed", self.username, exc_info=outcome)

    async def _write(self) -> None:
        """The one writer: what is queued, in order."""
        while True:
            match await self.outgoing.get():
                case Batch() as batch:
                    await self._deliver(batch)
                case Send(frame):
                    await self.ws.send_frame(frame, WSMsgType.TEXT)
                case Revoke(session):
                    await self.unsubscribe(session)
                    removed = {"type": "error", "code": FORBIDDEN, "session": session,
                               "message": ACCESS_REMOVED}  # fmt: skip
                    await self.ws.send_frame(_json(removed), WSMsgType.TEXT)

    async def _deliver(self, batch: Batch) -> None:
        """Send `batch`, and in the same frame the batches of its session queued right
        behind it (see `outgoing.Turns`: with many sockets, most writers find an
        execution's output behind its ``busy`` by the time it is their turn)."""
        batch = self.outgoing.join_following(batch)
        if batch.session in self.sent:  # else: unsubscribed since
            self.sent[batch.session] = batch.cursor  # the frame is written now
            await self.ws.send_frame(batch.frame, WSMsgType.TEXT)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await self.handle(msg.data)
            elif msg.type == WSMsgType.ERROR:
                break

    async def _goodbye(self, close: Close) -> None:
        """Tell the client where it got to (and why), then close."""
        details = {"message": close.message} if close.message else {}
        frame = _json({"type": close.frame_type, "cursors": dict(self.sent), **details})
        with contextlib.suppress(TimeoutError, ConnectionError, RuntimeError):
            async with asyncio.timeout(GOODBYE_SECONDS):
                await self.ws.send_frame(frame, WSMsgType.TEXT)
                await self.ws.close(code=close.code, message=close.message.encode()[:120])

    async def _release(self) -> None:
        for session in list(self.listeners):
            with contextlib.suppress(CellbusError):
                await self.unsubscribe(session)
        await self._end_input_waits()

    async def _end_input_waits(self) -> None:
        """The user left: an ``input()`` waiting for them would wait for good, so it ends
        with an error, unless they still watch the session from another socket, or come
        back within CELLBUS_INPUT_LEAVE_GRACE (a reload). A socket closed by the server
        (shutting down, overflowed) is not a leave: its client resumes. (Waits already over
        are refused by the kernel, harmlessly.)"""
        if not self.asked or self.ending in (SHUTDOWN, OVERFLOW):
            return
        await asyncio.sleep(self.backend.settings.input_leave_grace)
        kernel = self.backend.kernel(self.principal)
        for session, asked in self.asked.items():
            with contextlib.suppress(CellbusError):
                if await self.backend.presence.watches(session, self.username):
                    continue
                if not (await kernel.session_status(session)).hosted:
                    continue
                why = f"{self.username} left the session before answering."
                for msg_id in asked:
                    await kernel.cancel_input(session, msg_id, why)


async def feed_socket(request: web.Request) -> web.WebSocketResponse:
    backend = request.app[BACKEND]
    try:
        principal = await backend.authenticator.principal(request)
    except (RpcError, CellbusError) as exc:
        error = api_error(exc)
        if error is None:
            raise
        # 503 while the bus or the accounts service is away: the client retries, where a 401
        # would tell it to sign in again.
        statuses: dict[int, type[web.HTTPError]] = {
            FORBIDDEN: web.HTTPForbidden,
            UNAVAILABLE: web.HTTPServiceUnavailable,
        }
        status = statuses.get(error.code, web.HTTPUnauthorized)
        raise status(text=error.message) from None
    ws = web.WebSocketResponse(
        heartbeat=backend.settings.ping_interval, max_msg_size=MAX_FRAME_BYTES
    )
    await ws.prepare(request)
    socket = FeedSocket(ws, backend, principal, request.app[TURNS])
    request.app[SOCKETS].add(socket)
    try:
        await socket.serve()
    finally:
        request.app[SOCKETS].discard(socket)
        await ws.close()
    return ws


def revoke_sockets(app: web.Application, token_hash: str) -> int:
    """Close this process's sockets opened with the token whose SHA-256 is `token_hash`
    (each sends the ``revoked`` frame and closes); how many there were."""
    sockets = [s for s in app[SOCKETS] if s.token_hash == token_hash]
    for socket in sockets:
        socket.end(REVOKED)
    return len(sockets)


async def close_sockets(app: web.Application) -> None:
    """On shutdown: give every client its cursors so it resumes on another web process."""
    open_now: set[FeedSocket] = app[SOCKETS]
    sockets = list(open_now)
    for socket in sockets:
        socket.end(SHUTDOWN)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(GOODBYE_SECONDS + 1):
            for socket in sockets:
                await socket.finished.wait()
