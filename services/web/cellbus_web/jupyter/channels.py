"""``GET /api/kernels/{id}/channels``: a kernel's Jupyter channels over one WebSocket.

What a Jupyter client sends becomes a request on the session's bus queue, signed by the
authenticated user and kept under the client's own ``msg_id``; what the session publishes on
its feed becomes Jupyter messages on this socket's channels:

- ``execute_request`` and comm messages are queued (`KernelClient.send`; a hibernated session
  is restored after queueing, as ``session.execute`` does). Their ``status`` busy and idle,
  outputs and comm messages come from the kernel on the feed, to ``iopub``; the
  ``execute_reply`` only to the socket that asked, on ``shell``; an ``input_request`` only to
  the socket whose execution asked, on ``stdin``.
- Requests with a direct reply (``kernel_info``, ``complete``, ``inspect``, ``is_complete``,
  ``history``, ``comm_info``) wait for the session's reply, which goes back on the channel it
  was asked on (``kernel_info`` on shell and control both), between a ``status`` busy and idle
  made here with the request as parent, since the kernel publishes none for them and
  JupyterLab waits for both. ``interrupt_request`` and ``shutdown_request`` on control likewise.
- ``input_reply`` on stdin answers the kernel's ``input_request`` (its parent).
- Replies and outputs of this socket's requests carry the client's own header as parent;
  those of others' requests (this kernel is shared) keep theirs.
- Only Jupyter's ``status`` states (busy, idle, starting) and Jupyter's message types reach
  the channels: cellbus's own feed messages (checkpoints, cell runs, document updates,
  worksheet events, ``session_state``) are left out, and ``status`` loses cellbus's ``reason``;
  but a ``session_state`` ``dead`` of a request of this socket's (its process died under it)
  becomes that request's ``status`` ``idle``, so that the client is not left waiting.

Roles: a viewer may connect, watch iopub and ask ``kernel_info``; everything else needs the
editor role (the session's, as for ``session.*``), and is otherwise answered with an error
reply (or, for messages that have no reply, dropped). A frame that is not a Jupyter message
closes the socket (1007) with the reason; a message whose content does not fit its type gets
an error reply and the socket goes on. Frames over `MAX_FRAME_BYTES` close it (1009).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from cellbus_protocol import keys
from cellbus_protocol import messages as m
from cellbus_protocol.envelope import EMPTY_HEADER, PROTOCOL_VERSION, Header, new_msg_id, now_iso
from cellbus_protocol.errors import CellbusError
from cellbus_protocol.roles import Role, role_allows, too_low

from ..auth import Principal
from ..backend import BACKEND, Backend
from ..batches import Batch
from ..feeds import Listener
from ..rpc import RpcError, api_error
from . import wire
from .auth import principal_of, refuse, session_of
from .models import restart, shut_down, visible_kernel

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 16 * 1024 * 1024
"""The largest frame a client may send (code, or a comm message with its buffers)."""
MAX_PENDING = 1000
"""Requests of one socket whose answers are still awaited; the oldest is forgotten past it."""
JUPYTER_STATES = frozenset({"busy", "idle", "starting"})
IOPUB_TYPES = frozenset({
    "execute_input", "stream", "display_data", "update_display_data", "execute_result",
    "error", "clear_output", "comm_open", "comm_msg", "comm_close",
})  # fmt: skip
QUEUED: dict[str, type[m.Content]] = {
    "execute_request": m.ExecuteRequest, "comm_open": m.CommOpen, "comm_msg": m.CommMsg,
    "comm_close": m.CommClose,
}  # fmt: skip
"""Requests queued for the session, answered on its feed."""
DIRECT: dict[str, tuple[type[m.Content], Role]] = {
    "kernel_info_request": (m.KernelInfoRequest, "viewer"),
    "complete_request": (m.CompleteRequest, "editor"),
    "inspect_request": (m.InspectRequest, "editor"),
    "is_complete_request": (m.IsCompleteRequest, "editor"),
    "history_request": (m.HistoryRequest, "editor"),
    "comm_info_request": (m.CommInfoRequest, "editor"),
}
"""Requests the session answers directly, and the role each needs."""


class Refused(Exception):
    """A request this socket does not carry out: answered with an error reply."""

    def __init__(self, ename: str, evalue: str) -> None:
        super().__init__(evalue)
        self.ename, self.evalue = ename, evalue


class _FeedMessage(msgspec.Struct):
    """A feed message as far as routing needs it; the content is passed on as it is."""

    header: Header
    parent_header: Header = EMPTY_HEADER
    metadata: msgspec.Raw = msgspec.Raw(b"{}")
    content: msgspec.Raw = msgspec.Raw(b"{}")


class _State(msgspec.Struct):
    execution_state: str = ""


class _SessionState(msgspec.Struct):
    state: str = ""


_feed_message = msgspec.json.Decoder(_FeedMessage)
_state = msgspec.json.Decoder(_State)
_state_of_session = msgspec.json.Decoder(_SessionState)
_encode = msgspec.json.encode


@dataclass
class Asked:
    """A request of this socket's whose answers are awaited: the client's header (the parent
    of those answers) and whether its ``execute_reply`` and ``input_request`` come here."""

    header: bytes
    execution: bool


class ChannelRegistry:
    """The channels sockets of this web process: counted per kernel, closed on revocation."""

    def __init__(self) -> None:
        self.sockets: set[ChannelsSocket] = set()

    def count(self, session: str) -> int:
        return sum(1 for s in self.sockets if s.session == session)

    def revoke(self, token_hash: str) -> int:
        """Close the sockets opened with the token whose SHA-256 is `token_hash`."""
        sockets = [s for s in self.sockets if s.token_hash == token_hash]
        for socket in sockets:
            socket.end(4001, "signed out: this socket's token was revoked")
        return len(sockets)

    async def close_all(self) -> None:
        for socket in list(self.sockets):
            socket.end(WSCloseCode.GOING_AWAY, "the server is shutting down")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await socket.finished.wait()


CHANNELS = web.AppKey("jupyter_channels", ChannelRegistry)


class ChannelsSocket:
    """One client's channels to one kernel."""

    def __init__(
        self, ws: web.WebSocketResponse, backend: Backend, principal: Principal, session: str
    ) -> None:
        self.ws = ws
        self.backend = backend
        self.principal = principal
        self.session = session
        self.v1 = ws.ws_protocol == wire.V1
        self.kernel = backend.kernel(principal)
        self.asked: OrderedDict[str, Asked] = OrderedDict()
        self.out: asyncio.Queue[bytes] = asyncio.Queue(backend.settings.socket_queue)
        self.token_hash = hashlib.sha256(principal.token.encode()).hexdigest()
        self.closing: tuple[int, str] | None = None
        self._closing = asyncio.Event()
        self.finished = asyncio.Event()
        self._requests: set[asyncio.Task[None]] = set()
        self.input_awaited = ""  # the msg_id of the last input_request sent on stdin

    def end(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = (code, reason)
            self._closing.set()

    # -- from the feed --------------------------------------------------------------------
    def deliver(self, delivered: list[Batch]) -> None:
        """Live feed batches (from `feeds.Listener`), translated and queued without waiting."""
        for batch in delivered:
            if batch.removes and self.principal.user.username in batch.removes:
                self.end(4003, "your access to this kernel was removed")
                return  # nothing more of this kernel is for this user
            for entry in batch.entries:
                frame = self._translate(entry.data)
                if frame is not None:
                    self._queue(frame)

    def _queue(self, frame: bytes) -> None:
        if self.closing is not None:
            return
        try:
            self.out.put_nowait(frame)
        except asyncio.QueueFull:
            log.info("channels of %s to %s overflowed", self.principal.user.username, self.session)
            self.end(WSCloseCode.TRY_AGAIN_LATER, "the client did not keep up")

    def _translate(self, data: bytes) -> bytes | None:
        msg = _feed_message.decode(data)
        msg_type, parent = msg.header.msg_type, msg.parent_header.msg_id
        asked = self.asked.get(parent) if parent else None
        content = msg.content
        if msg_type == "status":
            state = _state.decode(content).execution_state
            if state not in JUPYTER_STATES:
                return None
            content = msgspec.Raw(b'{"execution_state":"%s"}' % state.encode())
            if state == "idle" and asked is not None:
                del self.asked[parent]  # everything of that request is in
            channel = "iopub"
        elif msg_type == "session_state" and asked is not None:
            # The process died under this request: the kernel's own ``dead`` is not Jupyter's,
            # so the request ends the way a client waits for, with ``idle`` (its error and
            # ``execute_reply`` came before).
            if _state_of_session.decode(content).state != "dead":
                return None
            del self.asked[parent]
            content, channel = msgspec.Raw(b'{"execution_state":"idle"}'), "iopub"
            header = self._header("status")
            return wire.frame(channel, header, asked.header, msg.metadata, content, self.v1)
        elif msg_type in IOPUB_TYPES:
            channel = "iopub"
        elif msg_type == "execute_reply" and asked is not None and asked.execution:
            channel = "shell"
        elif msg_type == "input_request" and asked is not None and asked.execution:
            channel = "stdin"
            self.input_awaited = msg.header.msg_id
        else:
            return None  # cellbus's own, or another client's reply
        parent_json = asked.header if asked is not None else _encode(msg.parent_header)
        return wire.frame(channel, _encode(msg.header), parent_json, msg.metadata, content, self.v1)

    # -- from the client ------------------------------------------------------------------
    async def handle(self, data: str | bytes) -> None:
        try:
            msg = wire.parse(data, self.v1)
        except wire.WireError as exc:
            log.info("channels of %s: closed on a bad frame: %s", self.principal.user.username, exc)
            self.end(WSCloseCode.INVALID_TEXT, f"not a Jupyter message: {exc}"[:120])
            return
        if msg.msg_type in QUEUED:
            await self._queued(msg)
        elif msg.msg_type == "input_reply":
            self._spawn(self._input_reply(msg))
        else:
            self._spawn(self._answered(msg))

    def _spawn(self, job: Any) -> None:
        task = asyncio.create_task(job)
        self._requests.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._requests.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("channels request failed", exc_info=task.exception())

    def _remember(self, msg: wire.ClientMessage, execution: bool) -> None:
        self.asked[msg.msg_id] = Asked(msg.header_json, execution)
        while len(self.asked) > MAX_PENDING:
            self.asked.popitem(last=False)

    async def _queued(self, msg: wire.ClientMessage) -> None:
        """An execution or comm message: queued; its answers come on the feed."""
        try:
            await self._require("editor")
            content = _content(msg, QUEUED[msg.msg_type])
            self._remember(msg, msg.msg_type == "execute_request")
            await self.kernel.send(self.session, content, msg_id=msg.msg_id)
            await self.kernel.ensure_session(self.session)  # after: see ensure_session
        except (Refused, RpcError, CellbusError) as exc:
            self.asked.pop(msg.msg_id, None)
            if msg.msg_type == "execute_request":
                await self._reply_error(msg, exc)
            else:  # comm messages have no reply to carry an error
                log.info(
                    "comm message %s of %s refused: %s",
                    msg.msg_id,
                    self.principal.user.username,
                    exc,
                )

    async def _answered(self, msg: wire.ClientMessage) -> None:
        """A request with a direct reply: busy, the reply on its channel, idle."""
        self._status(msg, "busy")
        try:
            reply_type, content, metadata = await self._answer(msg)
            header = self._header(reply_type)
            self._send(msg.channel, header, msg.header_json, _encode(metadata), _encode(content))
        except (Refused, RpcError, CellbusError) as exc:
            await self._reply_error(msg, exc, busy=False)
        finally:
            self._status(msg, "idle")

    async def _answer(self, msg: wire.ClientMessage) -> tuple[str, m.Content, dict[str, Any]]:
        msg_type = msg.msg_type
        if msg_type in DIRECT:
            request_type, needs = DIRECT[msg_type]
            await self._require(needs)
            await self.kernel.ensure_session(self.session)
            reply = await self.kernel.call(
                self.session, _content(msg, request_type), msg_id=msg.msg_id
            )
            return reply.msg_type, reply.content, reply.metadata
        if msg_type == "interrupt_request" and msg.channel == "control":
            await self._require("editor")
            if (await self.kernel.session_status(self.session)).hosted:
                await self.kernel.interrupt(self.session)
            return "interrupt_reply", m.InterruptReply(), {}
        if msg_type == "shutdown_request" and msg.channel == "control":
            await self._require("editor")
            request = _content(msg, m.ShutdownRequest)
            if request.restart:
                await restart(self.backend, self.principal, self.session)
            else:
                await shut_down(self.backend, self.principal, self.session)
            return "shutdown_reply", m.ShutdownReply(restart=request.restart), {}
        raise Refused(
            "NotImplementedError", f"cellbus does not answer {msg_type[:64]} on {msg.channel}"
        )

    async def _input_reply(self, msg: wire.ClientMessage) -> None:
        """The answer to the kernel's ``input_request``: its parent, or the last one sent on
        this socket's stdin if it names none (jupyter_client's ``input()`` sends no parent:
        a ZMQ kernel reads its answer off its own stdin socket)."""
        try:
            await self._require("editor")
            content = _content(msg, m.InputReply)
            awaited = msg.parent_header.get("msg_id") or self.input_awaited
            metadata = {"cellbus": {"input_request": awaited if isinstance(awaited, str) else ""}}
            reply = await self.kernel.call(
                self.session, content, metadata=metadata, msg_id=msg.msg_id
            )
            if getattr(reply.content, "status", "ok") != "ok":
                log.info(
                    "input_reply %s not taken: %s", msg.msg_id, getattr(reply.content, "evalue", "")
                )
        except (Refused, RpcError, CellbusError) as exc:
            log.info(
                "input_reply %s of %s refused: %s", msg.msg_id, self.principal.user.username, exc
            )

    async def _require(self, needs: Role) -> None:
        role = await self.backend.role(self.principal, self.session)
        if not role_allows(role, needs):
            raise Refused("PermissionError", too_low(role, needs))

    # -- what this socket sends itself ----------------------------------------------------
    def _send(
        self, channel: str, header: bytes, parent: bytes, metadata: bytes, content: bytes
    ) -> None:
        self._queue(wire.frame(channel, header, parent, metadata, content, self.v1))

    def _header(self, msg_type: str) -> bytes:
        """The header of a message this socket makes (a reply, a status)."""
        header = Header(
            msg_id=new_msg_id(), msg_type=msg_type, session=self.session,
            username=self.principal.user.username, date=now_iso(), version=PROTOCOL_VERSION,
        )  # fmt: skip
        return _encode(header)

    def _status(self, msg: wire.ClientMessage, state: m.ExecutionState) -> None:
        content = b'{"execution_state":"%s"}' % state.encode()
        self._send("iopub", self._header("status"), msg.header_json, b"{}", content)

    async def _reply_error(
        self, msg: wire.ClientMessage, exc: Exception, busy: bool = True
    ) -> None:
        """An error reply to `msg` (with busy and idle around it unless already sent), so that
        the client is not left waiting."""
        refused = exc if isinstance(exc, Refused) else _refusal(exc)
        ename, evalue = refused.ename, refused.evalue
        reply_type = msg.msg_type.removesuffix("_request") + "_reply"
        content: dict[str, Any] = {
            "status": "error",
            "ename": ename,
            "evalue": evalue,
            "traceback": [],
        }
        if reply_type == "execute_reply":
            content.update(execution_count=None, user_expressions={}, payload=[])
        if busy:
            self._status(msg, "busy")
        self._send(msg.channel, self._header(reply_type), msg.header_json, b"{}", _encode(content))
        if busy:
            self._status(msg, "idle")

    # -- the socket's life ----------------------------------------------------------------
    async def serve(self) -> None:
        listener: Listener | None = None
        try:
            cursor = await self.backend.bus.last_seq(keys.feed(self.session))
            listener = await self.backend.hub.follow(self.session, cursor, self.deliver)
            await self._run()
        finally:
            if listener is not None:
                with contextlib.suppress(CellbusError):
                    await self.backend.hub.unfollow(listener)
            for task in list(self._requests):
                task.cancel()
            await asyncio.gather(*self._requests, return_exceptions=True)
            self.finished.set()

    async def _run(self) -> None:
        jobs = [
            asyncio.create_task(job) for job in (self._write(), self._read(), self._closing.wait())
        ]
        try:
            await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
        if self.closing is not None:
            code, reason = self.closing
            with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
                async with asyncio.timeout(5):
                    await self.ws.close(code=code, message=reason.encode()[:120])

    async def _write(self) -> None:
        kind = WSMsgType.BINARY if self.v1 else WSMsgType.TEXT
        while True:
            await self.ws.send_frame(await self.out.get(), kind)

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                await self.handle(frame.data)
            elif frame.type == WSMsgType.ERROR:
                break


def _content(msg: wire.ClientMessage, content_type: type[Any]) -> Any:
    try:
        return msgspec.convert(msg.content, content_type)
    except msgspec.ValidationError as exc:
        raise Refused("ValueError", f"bad {msg.msg_type} content: {exc}") from None


def _refusal(exc: Exception) -> Refused:
    """What a client is told of a service's failure (as the API tells it)."""
    error = api_error(exc)
    return Refused(type(exc).__name__, error.message if error else "internal error")


async def channels_socket(request: web.Request) -> web.WebSocketResponse:
    backend = request.app[BACKEND]
    principal = await principal_of(request, backend)
    session = session_of(request.match_info["kernel_id"])
    try:
        await visible_kernel(backend, principal, session)
    except (RpcError, CellbusError) as exc:
        refuse(exc)
    ws = web.WebSocketResponse(
        protocols=(wire.V1,), heartbeat=backend.settings.ping_interval, max_msg_size=MAX_FRAME_BYTES
    )
    await ws.prepare(request)
    socket = ChannelsSocket(ws, backend, principal, session)
    registry = request.app[CHANNELS]
    registry.sockets.add(socket)
    try:
        await socket.serve()
    finally:
        registry.sockets.discard(socket)
        await ws.close()
    return ws


def add_routes(app: web.Application) -> None:
    app[CHANNELS] = ChannelRegistry()
    app.router.add_get("/api/kernels/{kernel_id}/channels", channels_socket)
    app.on_shutdown.append(lambda app: app[CHANNELS].close_all())
