"""``session.*``: a session's request channel: run code, complete, inspect, control.

A session runs its worksheet's code (its UID is the worksheet's ``session``), or is bare:
started by ``session.create`` (or ``session.fork``) and owned by whoever started it. Viewers
may ask for ``session.info`` and ``session.kernel_info`` and fork a session; everything else
needs the editor role. Results of ``session.execute`` and ``session.comm`` arrive on the
session's feed; the other requests wait for the session's answer. ``input()`` in an
execution asks its requester (an ``input_request`` on the feed): they answer with
``session.input``.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any, Literal, TypeVar

import msgspec

from cellbus_protocol import accounts as a
from cellbus_protocol import messages as m
from cellbus_protocol.errors import CellbusError

from ..backend import ask_accounts, backend_of, caller, require_role
from ..rpc import INVALID_PARAMS, INVALID_REQUEST, TOO_LARGE, UNAVAILABLE, Api, Call, RpcError


class NewSession(msgspec.Struct, kw_only=True):
    session: str


class Execution(msgspec.Struct, kw_only=True):
    msg_id: str


class Completion(msgspec.Struct, kw_only=True):
    matches: list[str]
    cursor_start: int
    cursor_end: int


class Inspection(msgspec.Struct, kw_only=True):
    found: bool
    data: dict[str, Any]


class Completeness(msgspec.Struct, kw_only=True):
    status: Literal["complete", "incomplete", "invalid", "unknown"]
    indent: str


class History(msgspec.Struct, kw_only=True):
    history: list[list[Any]]


class CommInfo(msgspec.Struct, kw_only=True):
    comms: dict[str, dict[str, str]]


class SessionInfo(msgspec.Struct, kw_only=True):
    session: str
    # The state its feed last announced (m.FeedState: a status's or a session_state's);
    # "stopped": no worker hosts it.
    state: str
    execution_count: int
    running: m.QueuedRequest | None
    queued: list[m.QueuedRequest]


def register(api: Api) -> None:
    for name, method in (
        ("session.create", session_create), ("session.execute", session_execute),
        ("session.complete", session_complete), ("session.inspect", session_inspect),
        ("session.interrupt", session_interrupt), ("session.restart", session_restart),
        ("session.shutdown", session_shutdown), ("session.info", session_info),
        ("session.fork", session_fork), ("session.input", session_input),
        ("session.comm", session_comm), ("session.is_complete", session_is_complete),
        ("session.history", session_history), ("session.kernel_info", session_kernel_info),
        ("session.comm_info", session_comm_info),
    ):  # fmt: skip
        api.method(name)(method)


def _check_cursor(code: str, cursor_pos: int) -> None:
    if not 0 <= cursor_pos <= len(code):
        raise RpcError(INVALID_PARAMS, f"cursor_pos: 0 to {len(code)} (the length of code)")


AnyReply = TypeVar("AnyReply", bound=m.Reply)


def _answered(reply: AnyReply) -> AnyReply:
    if reply.status != "ok":
        raise RpcError(UNAVAILABLE, f"the session could not answer: {reply.ename} {reply.evalue}")
    return reply


async def session_create(call: Call) -> NewSession:
    """Start a bare session (no worksheet) owned by the caller."""
    session = uuid.uuid4().hex
    await ask_accounts(call, a.CreateSession(session=session))
    principal = await caller(call)
    await backend_of(call).kernel(principal).create_session(session)
    return NewSession(session=session)


async def session_fork(call: Call, session: str) -> NewSession:
    """Start a new bare session, owned by the caller, from a copy of `session`'s latest
    checkpoint: its variables as they were saved (after its last execution, give or take
    ``CELLBUS_CHECKPOINT_DELAY``). Needs the viewer role on `session`. A session that has no
    checkpoint (it has run nothing yet, was restarted since, or checkpoints are off) cannot
    be forked: not found."""
    principal = await require_role(call, session, "viewer")
    kernel = backend_of(call).kernel(principal)
    fork = (await kernel.fork_session(session)).session  # the kernel copies the checkpoint
    try:
        await ask_accounts(call, a.CreateSession(session=fork))
    except BaseException:  # nobody may use it: end it (it has nothing of anyone's yet)
        with contextlib.suppress(CellbusError):
            await kernel.end_session(fork)
        raise
    return NewSession(session=fork)


async def session_execute(
    call: Call,
    session: str,
    code: str,
    silent: bool = False,
    store_history: bool = True,
    user_expressions: dict[str, str] | None = None,
    allow_stdin: bool = True,
    stop_on_error: bool = True,
) -> Execution:
    """Queue `code` to run; its outputs and ``execute_reply`` arrive on the feed with the
    returned `msg_id` as their ``parent_header.msg_id``. Not saved on any cell. As Jupyter's
    execute_request: `silent` (no ``execute_input``, no result, no number),
    `store_history`, `user_expressions` (name -> expression, evaluated after it, in the
    reply), `allow_stdin` (false: ``input()`` raises StdinNotImplementedError),
    `stop_on_error` (a failure aborts the executions queued behind it)."""
    principal = await require_role(call, session, "editor")
    backend = backend_of(call)
    request = await backend.kernel(principal).execute(
        session, code, silent=silent, store_history=store_history,
        user_expressions=user_expressions, allow_stdin=allow_stdin, stop_on_error=stop_on_error,
    )  # fmt: skip
    await backend.ensure_session(session, principal)  # after: see ensure_session
    return Execution(msg_id=request.msg_id)


async def session_complete(call: Call, session: str, code: str, cursor_pos: int) -> Completion:
    """Completions at `cursor_pos` (in characters) of `code`, from the live namespace."""
    _check_cursor(code, cursor_pos)
    principal = await require_role(call, session, "editor")
    backend = backend_of(call)
    await backend.ensure_session(session, principal)
    reply = _answered(await backend.kernel(principal).complete(session, code, cursor_pos))
    return Completion(
        matches=reply.matches, cursor_start=reply.cursor_start, cursor_end=reply.cursor_end
    )


async def session_inspect(
    call: Call, session: str, code: str, cursor_pos: int, detail_level: Literal[0, 1] = 0
) -> Inspection:
    """What the session knows of the name at `cursor_pos` (its docstring, signature...;
    `detail_level` 1: its source too, as ``??``)."""
    _check_cursor(code, cursor_pos)
    principal = await require_role(call, session, "editor")
    backend = backend_of(call)
    await backend.ensure_session(session, principal)
    kernel = backend.kernel(principal)
    reply = _answered(await kernel.inspect(session, code, cursor_pos, detail_level))
    return Inspection(found=reply.found, data=reply.data)


async def session_interrupt(call: Call, session: str) -> None:
    """Interrupt the running execution (KeyboardInterrupt); the queue after it is aborted."""
    principal = await require_role(call, session, "editor")
    kernel = backend_of(call).kernel(principal)
    if (await kernel.session_status(session)).hosted:
        _answered(await kernel.interrupt(session))


async def session_restart(call: Call, session: str) -> None:
    """End the session's process and start a fresh one: its variables are lost."""
    principal = await require_role(call, session, "editor")
    backend = backend_of(call)
    kernel = backend.kernel(principal)
    if not (await kernel.discard_session(session)).hosted:  # its checkpoint is gone: no restore
        await backend.ensure_session(session, principal)
        return
    _answered(await kernel.restart(session))


async def session_shutdown(call: Call, session: str) -> None:
    """End the session's process and delete its checkpoint; the next request starts it
    again, empty."""
    principal = await require_role(call, session, "editor")
    kernel = backend_of(call).kernel(principal)
    if (await kernel.discard_session(session)).hosted:  # else: its checkpoint is gone
        _answered(await kernel.shutdown(session))


async def session_info(call: Call, session: str) -> SessionInfo:
    """The session's state, the execution running and those queued with who sent them,
    and the next execution count."""
    principal = await require_role(call, session, "viewer")
    kernel = backend_of(call).kernel(principal)
    if not (await kernel.session_status(session)).hosted:
        return SessionInfo(
            session=session, state="stopped", execution_count=1, running=None, queued=[]
        )
    reply = _answered(await kernel.session_info(session))
    return SessionInfo(
        session=session, state=reply.state, execution_count=reply.execution_count,
        running=reply.running, queued=reply.queued,
    )  # fmt: skip


async def session_input(call: Call, session: str, value: str, input_request: str) -> None:
    """Answer ``input()``: `value` is the line typed (without its newline), `input_request`
    the msg_id of the ``input_request`` it answers. Only the person whose execution asked
    may answer, and only while it waits."""
    if len(value) > m.MAX_INPUT_CHARS:
        raise RpcError(TOO_LARGE, f"value: at most {m.MAX_INPUT_CHARS:,} characters")
    principal = await require_role(call, session, "editor")
    kernel = backend_of(call).kernel(principal)
    if not (await kernel.session_status(session)).hosted:
        raise RpcError(INVALID_REQUEST, NO_INPUT_AWAITED)
    ack = await kernel.input(session, value, input_request)
    if ack.status != "ok":
        raise RpcError(INVALID_REQUEST, NO_INPUT_AWAITED)


NO_INPUT_AWAITED = "no input is awaited from you for that request"


async def session_comm(
    call: Call,
    session: str,
    comm_id: str,
    data: dict[str, Any],
    kind: Literal["open", "msg", "close"] = "msg",
    target_name: str | None = None,
) -> Execution:
    """Send a comm message to the session (a widget's change: ``{"method": "update",
    "state": {...}}``); `kind` open needs `target_name`. The session handles it between
    executions: ``busy``, what it publishes (a widget's ``echo_update``, seen by every
    watcher) and ``idle`` arrive on the feed with the returned `msg_id` as parent."""
    if kind == "open" and not target_name:
        raise RpcError(INVALID_PARAMS, "target_name: needed to open a comm")
    if len(msgspec.json.encode(data)) > m.MAX_COMM_BYTES:
        raise RpcError(TOO_LARGE, f"data: at most {m.MAX_COMM_BYTES:,} bytes of JSON")
    principal = await require_role(call, session, "editor")
    backend = backend_of(call)
    request = await backend.kernel(principal).comm(session, comm_id, data, kind, target_name)
    await backend.ensure_session(session, principal)  # after: see ensure_session
    return Execution(msg_id=request.msg_id)


async def session_is_complete(call: Call, session: str, code: str) -> Completeness:
    """Whether `code` is ready to run (``complete``), needs more lines (``incomplete``, with
    the `indent` of the next), cannot run (``invalid``), or the session cannot tell."""
    principal = await require_role(call, session, "editor")
    backend = backend_of(call)
    await backend.ensure_session(session, principal)
    reply = await backend.kernel(principal).is_complete(session, code)
    return Completeness(status=reply.status, indent=reply.indent)


async def session_history(
    call: Call,
    session: str,
    hist_access_type: Literal["range", "tail", "search"] = "tail",
    n: int | None = None,
    output: bool = False,
    raw: bool = True,
    start: int = 0,
    stop: int | None = None,
    pattern: str = "",
    unique: bool = False,
) -> History:
    """The session's input history, as Jupyter's history_request: `tail` (the last `n`),
    `range` (`start` to `stop`) or `search` (`pattern`, a glob); entries are
    ``[session, line, input]`` (``[session, line, [input, output]]`` with `output`). Kept
    with the session's checkpoint."""
    principal = await require_role(call, session, "editor")
    backend = backend_of(call)
    await backend.ensure_session(session, principal)
    request = m.HistoryRequest(
        hist_access_type=hist_access_type, n=n, output=output, raw=raw, start=start,
        stop=stop, pattern=pattern, unique=unique,
    )  # fmt: skip
    reply = _answered(await backend.kernel(principal).history(session, request))
    return History(history=reply.history)


async def session_kernel_info(call: Call, session: str) -> m.KernelInfoReply:
    """The kernel_info_reply: protocol version, implementation, language_info, banner."""
    principal = await require_role(call, session, "viewer")
    backend = backend_of(call)
    await backend.ensure_session(session, principal)  # a Jupyter client asks it first
    return _answered(await backend.kernel(principal).kernel_info(session))


async def session_comm_info(call: Call, session: str, target_name: str | None = None) -> CommInfo:
    """The session's open comms (comm_id -> ``{"target_name": ...}``), of one target if
    `target_name` is given."""
    principal = await require_role(call, session, "editor")
    backend = backend_of(call)
    await backend.ensure_session(session, principal)
    reply = _answered(await backend.kernel(principal).comm_info(session, target_name))
    return CommInfo(comms=reply.comms)
