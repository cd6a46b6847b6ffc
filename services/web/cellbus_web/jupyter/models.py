"""Kernel models as the Jupyter Server API gives them, and what the REST handlers share.

A kernel model is ``{id, name, last_activity, execution_state, connections}``:

- ``execution_state`` is the session's (``session_info``) when a worker hosts it; a session
  no worker hosts (hibernated, or shut down) is ``idle``, because the next request starts or
  restores it;
- ``last_activity`` is the date of the newest message on the session's feed (or when the
  kernel was started, if it has none);
- ``connections`` counts the channels WebSockets to it on this web process.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from cellbus_protocol import accounts as a
from cellbus_protocol import keys
from cellbus_protocol.envelope import Header
from cellbus_protocol.errors import CellbusError
from cellbus_protocol.roles import Role, role_allows, too_low

from ..auth import Principal
from ..backend import BACKEND, Backend
from ..rpc import RpcError
from .auth import json_error, kernel_id, principal_of, refuse

JUPYTER_STATES = ("starting", "idle", "busy", "restarting", "dead")
JUPYTER_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
"""The only form of time jupyter_server's GatewayKernelManager parses."""
MAX_TITLE = 200
"""A worksheet title's limit (the accounts service's)."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Dated(msgspec.Struct):
    header: Header


_dated = msgspec.json.Decoder(_Dated)


def jupyter_time(iso: str) -> str:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC).strftime(JUPYTER_TIME)


def handler(
    method: Callable[[web.Request, Backend, Principal], Awaitable[web.StreamResponse]],
) -> Handler:
    """A REST handler: the caller authenticated, and services' errors turned into the
    statuses Jupyter clients expect."""

    @functools.wraps(method)
    async def handle(request: web.Request) -> web.StreamResponse:
        backend = request.app[BACKEND]
        principal = await principal_of(request, backend)
        try:
            return await method(request, backend, principal)
        except (RpcError, CellbusError) as exc:
            refuse(exc)

    return handle


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (an empty body is ``{}``), or 400."""
    text = await request.text()
    if not text.strip():
        return {}
    try:
        body = json.loads(text)
    except ValueError:
        raise json_error(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise json_error(400, "the body must be a JSON object")
    return body


def title_of(*candidates: Any) -> str:
    """A worksheet title from the first non-empty string given (a path, a name)."""
    for value in candidates:
        if isinstance(value, str) and value.strip():
            return value.strip()[:MAX_TITLE]
    return "Jupyter kernel"


async def visible_kernel(
    backend: Backend, principal: Principal, session: str
) -> a.JupyterKernelView:
    """The kernel, if the caller may see it (404 otherwise, as for one that does not exist)."""
    request = a.GetJupyterKernel(session=session, actor=principal.user.id)
    return await backend.accounts.call(request)


async def require(backend: Backend, principal: Principal, session: str, needs: Role) -> None:
    """403 unless the caller's role on the kernel's session is at least `needs`."""
    role = await backend.role(principal, session)
    if not role_allows(role, needs):
        raise json_error(403, too_low(role, needs))


async def execution_state(backend: Backend, principal: Principal, session: str) -> str:
    kernel = backend.kernel(principal)
    if not (await kernel.session_status(session)).hosted:
        return "idle"
    state = (await kernel.session_info(session)).state
    return state if state in JUPYTER_STATES else "busy"


async def last_activity(backend: Backend, view: a.JupyterKernelView) -> str:
    feed = keys.feed(view.session)
    seq = await backend.bus.last_seq(feed)
    entries = await backend.bus.read_feed(feed, seq - 1, 1) if seq else []
    if entries:
        try:
            return jupyter_time(_dated.decode(entries[-1].data).header.date)
        except (msgspec.DecodeError, ValueError):
            pass
    return jupyter_time(view.created_at)


async def kernel_model(
    backend: Backend, principal: Principal, view: a.JupyterKernelView, connections: int,
    state: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    if state is None:
        state = await execution_state(backend, principal, view.session)
    return {
        "id": kernel_id(view.session), "name": view.name,
        "last_activity": await last_activity(backend, view), "execution_state": state,
        "connections": connections,
    }  # fmt: skip


async def shut_down(backend: Backend, principal: Principal, session: str) -> None:
    """End the session's process and delete its checkpoint, as ``session.shutdown`` does."""
    kernel = backend.kernel(principal)
    if (await kernel.discard_session(session)).hosted:  # else: its checkpoint is gone
        await kernel.shutdown(session)


async def restart(backend: Backend, principal: Principal, session: str) -> None:
    """A fresh process for the session, its variables lost, as ``session.restart`` does."""
    kernel = backend.kernel(principal)
    if not (await kernel.discard_session(session)).hosted:  # its checkpoint is gone
        await kernel.ensure_session(session)
        return
    reply = await kernel.restart(session)
    if reply.status != "ok":
        raise json_error(503, f"the kernel could not restart: {reply.ename} {reply.evalue}")
