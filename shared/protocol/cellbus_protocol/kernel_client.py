"""The client side of a session's request channel: what the web service and the tests use to
create sessions and send them requests.

Executions and comm messages return at once with their request message; their outputs,
``execute_reply`` and ``idle`` arrive on the session's feed (`feed_messages`). Completion,
inspection, is_complete, history, comm info, input replies, interrupt, restart, shutdown and
kernel info wait for a direct reply, with a deadline.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal, TypeVar

import msgspec

from . import codec, keys
from . import messages as m
from .bus import Bus
from .envelope import Message, new_message, now_iso
from .errors import ProtocolError, RemoteError

ResultT = TypeVar("ResultT")
ReplyT = TypeVar("ReplyT", bound=m.Content)
CommKind = Literal["open", "msg", "close"]
_control_reply = msgspec.json.Decoder(m.ControlReply)


class KernelClient:
    """Sends requests to sessions on behalf of one user."""

    def __init__(self, bus: Bus, username: str, *, timeout: float = 10.0) -> None:
        self.bus = bus
        self.username = username
        self.timeout = timeout

    async def create_session(self, session: str | None = None, *, fork_of: str = "") -> str:
        """Start a session (a new random UID unless `session`, a worksheet's, is given); a
        worker takes it and starts its process, restoring its checkpoint if it has one
        (`fork_of`: the session whose checkpoint was copied to it)."""
        session = keys.check_session_id(session) if session else uuid.uuid4().hex
        record = m.SessionOpen(
            session=session, username=self.username, date=now_iso(), fork_of=fork_of
        )
        await self.bus.enqueue(keys.NEW_SESSIONS, codec.encode_record(record))
        return session

    async def ensure_session(self, session: str) -> bool:
        """Have a worker host `session` if none does (one that hibernated, shut down, or was
        never started); True if it was not hosted. Duplicate starts are harmless: the lease
        lets one worker host it. Call it after queueing a request: a session that hibernates
        meanwhile either sees the request on its queue or has already released its lease."""
        if await self.bus.lease_holder(keys.session_host(session)) is not None:
            return False
        await self.create_session(session)
        return True

    async def send(
        self,
        session: str,
        content: m.Content,
        *,
        metadata: dict[str, Any] | None = None,
        msg_id: str | None = None,
    ) -> Message:
        """Enqueue a request without waiting for anything; returns the request message
        (whose id is `msg_id` if given: a Jupyter client's own, see the web's jupyter API)."""
        msg = new_message(
            content, session=session, username=self.username, metadata=metadata, msg_id=msg_id
        )
        await self.bus.enqueue(keys.requests(session), codec.encode(msg))
        return msg

    async def execute(
        self,
        session: str,
        code: str,
        *,
        silent: bool = False,
        store_history: bool = True,
        stop_on_error: bool = True,
        cell_id: str | None = None,
        user_expressions: dict[str, str] | None = None,
        allow_stdin: bool = False,
    ) -> Message:
        """Queue `code` for execution; results arrive on the feed with this message as parent.
        With `cell_id` (a worksheet cell's), the session announces the run (``cell_run``).
        With `allow_stdin`, ``input()`` asks this user (``input_request``; answer: `input`)."""
        request = m.ExecuteRequest(
            code=code, silent=silent, store_history=store_history, stop_on_error=stop_on_error,
            user_expressions=user_expressions or {}, allow_stdin=allow_stdin,
        )  # fmt: skip
        metadata = None if cell_id is None else {"cellbus": {"cell_id": cell_id}}
        return await self.send(session, request, metadata=metadata)

    async def call(
        self,
        session: str,
        content: m.Content,
        timeout: float | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        msg_id: str | None = None,
    ) -> Message:
        """Send a request that has a direct reply and wait for it (`RequestTimeout` if none);
        `metadata` and `msg_id` as for `send`."""
        msg = new_message(
            content, session=session, username=self.username, metadata=metadata, msg_id=msg_id
        )
        data = await self.bus.request(
            keys.requests(session), codec.encode(msg), timeout=timeout or self.timeout
        )
        reply = codec.decode(data)
        if reply.parent_header.msg_id != msg.msg_id:
            raise ProtocolError(f"reply to {reply.parent_header.msg_id}, expected {msg.msg_id}")
        return reply

    async def answer(
        self,
        session: str,
        content: m.Content,
        reply_type: type[ReplyT],
        timeout: float | None = None,
        *,
        metadata: dict[str, Any] | None = None,
    ) -> ReplyT:
        """`call`, returning the reply's content, checked to be a `reply_type`."""
        reply = (await self.call(session, content, timeout, metadata=metadata)).content
        if not isinstance(reply, reply_type):
            raise ProtocolError(f"{type(reply).__name__} to a {type(content).__name__}")
        return reply

    async def complete(self, session: str, code: str, cursor_pos: int) -> m.CompleteReply:
        request = m.CompleteRequest(code=code, cursor_pos=cursor_pos)
        return await self.answer(session, request, m.CompleteReply)

    async def inspect(
        self, session: str, code: str, cursor_pos: int, detail_level: Literal[0, 1] = 0
    ) -> m.InspectReply:
        request = m.InspectRequest(code=code, cursor_pos=cursor_pos, detail_level=detail_level)
        return await self.answer(session, request, m.InspectReply)

    async def interrupt(self, session: str) -> m.InterruptReply:
        return await self.answer(session, m.InterruptRequest(), m.InterruptReply)

    async def restart(self, session: str, timeout: float = 60.0) -> m.RestartReply:
        return await self.answer(session, m.RestartRequest(), m.RestartReply, timeout)

    async def shutdown(self, session: str) -> m.ShutdownReply:
        return await self.answer(session, m.ShutdownRequest(), m.ShutdownReply)

    async def kernel_info(self, session: str) -> m.KernelInfoReply:
        return await self.answer(session, m.KernelInfoRequest(), m.KernelInfoReply)

    async def session_info(self, session: str) -> m.SessionInfoReply:
        return await self.answer(session, m.SessionInfoRequest(), m.SessionInfoReply)

    async def is_complete(self, session: str, code: str) -> m.IsCompleteReply:
        return await self.answer(session, m.IsCompleteRequest(code=code), m.IsCompleteReply)

    async def history(self, session: str, request: m.HistoryRequest) -> m.HistoryReply:
        return await self.answer(session, request, m.HistoryReply)

    async def comm_info(self, session: str, target_name: str | None = None) -> m.CommInfoReply:
        request = m.CommInfoRequest(target_name=target_name)
        return await self.answer(session, request, m.CommInfoReply)

    async def widget_state(self, session: str) -> m.WidgetStateReply:
        return await self.answer(session, m.WidgetStateRequest(), m.WidgetStateReply)

    async def input(self, session: str, value: str, input_request: str) -> m.InputAck:
        """Answer the ``input_request`` whose msg_id is `input_request` (only the user whose
        execution asked may: ``NoInputAwaited`` otherwise)."""
        metadata = {"cellbus": {"input_request": input_request}}
        return await self.answer(session, m.InputReply(value=value), m.InputAck, metadata=metadata)

    async def cancel_input(self, session: str, input_request: str, reason: str) -> m.InputAck:
        """End this user's wait for input `input_request` without a line: the execution
        gets an error saying `reason` (they left)."""
        metadata = {"cellbus": {"input_request": input_request, "cancelled": reason}}
        return await self.answer(session, m.InputReply(value=""), m.InputAck, metadata=metadata)

    async def comm(
        self,
        session: str,
        comm_id: str,
        data: dict[str, Any],
        kind: CommKind = "msg",
        target_name: str | None = None,
    ) -> Message:
        """Send a comm message (no reply: ``busy``, what its handler publishes, and ``idle``
        arrive on the feed with it as parent). `target_name` is needed to open one."""
        content: m.Content
        if kind == "open":
            content = m.CommOpen(comm_id=comm_id, target_name=target_name or "", data=data)
        elif kind == "close":
            content = m.CommClose(comm_id=comm_id, data=data)
        else:
            content = m.CommMsg(comm_id=comm_id, data=data)
        return await self.send(session, content)

    # -- control: requests about a whole session, answered by any worker -------------------
    async def fork_session(self, session: str) -> m.Forked:
        """A new session started from a copy of `session`'s checkpoint (`RemoteError`
        ``not_found`` if it has none)."""
        return await self.control(m.ForkSession(session=session, username=self.username), m.Forked)

    async def session_status(self, session: str) -> m.SessionStatus:
        """Whether a worker hosts `session` (``hosted``) or none does (``stopped``)."""
        return await self.control(
            m.GetSessionStatus(session=session, username=self.username), m.SessionStatus
        )

    async def discard_session(self, session: str) -> m.Discarded:
        """Delete the checkpoint of `session` if no worker hosts it (``hosted`` False);
        a hosted session is left to its own restart or shutdown request."""
        return await self.control(
            m.DiscardSession(session=session, username=self.username), m.Discarded
        )

    async def end_session(self, session: str) -> m.Ended:
        """Shut `session` down wherever it is and delete its checkpoint (its worksheet is
        gone)."""
        return await self.control(m.EndSession(session=session, username=self.username), m.Ended)

    async def end_session_later(self, session: str) -> None:
        """`end_session` without waiting: the request waits on the control queue until a
        worker takes it (for a caller that must not wait on the kernel: a worksheet that is
        deleted is gone whatever becomes of its session)."""
        request = m.EndSession(session=keys.check_session_id(session), username=self.username)
        await self.bus.enqueue(keys.KERNEL_CONTROL, codec.encode_record(request))

    async def control(self, request: m.ControlRequest, result: type[ResultT]) -> ResultT:
        """Send a control request to the kernel workers and return its typed result;
        `RemoteError` with the kernel's error code, `RequestTimeout` if none answers."""
        keys.check_session_id(request.session)
        data = await self.bus.request(
            keys.KERNEL_CONTROL, codec.encode_record(request), timeout=self.timeout
        )
        try:
            reply = _control_reply.decode(data)
            if reply.error is not None:
                raise RemoteError(reply.error.code, reply.error.message)
            return msgspec.json.decode(reply.result, type=result)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"bad reply from the kernel: {exc}") from None

    async def feed_messages(
        self, session: str, after: int | None = 0
    ) -> AsyncIterator[tuple[int, Message]]:
        """(seq, message) for every message of the session's feed after cursor `after`."""
        async with await self.bus.subscribe(keys.feed(session), after) as subscription:
            async for entry in subscription:
                yield entry.seq, codec.decode(entry.data)
