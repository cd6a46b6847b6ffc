"""``/api/sessions``: which notebook (path) runs on which kernel, as VS Code and JupyterLab
keep it on the server.

A session model is ``{id, path, name, type, kernel: <kernel model>, notebook: {path,
name}}``. cellbus keeps a Jupyter session on its kernel's record (accounts' ``jupyter.*``
requests), so a kernel has at most one session. Creating a session for a path that has one
returns that one (as jupyter_server does); creating one with ``kernel.id`` attaches it to
that kernel, with ``kernel.name`` starts a new kernel. Changing a session's kernel shuts the
old kernel down; deleting a session shuts its kernel down (the worksheets stay).
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from aiohttp import web

from cellbus_protocol import accounts as a

from ..auth import Principal
from ..backend import Backend
from .auth import json_error, session_of
from .channels import CHANNELS
from .kernels import start_kernel
from .models import handler, json_body, kernel_model, shut_down, visible_kernel


def _text(body: dict[str, Any], name: str, default: str = "") -> str:
    value = body.get(name, default)
    if not isinstance(value, str):
        raise json_error(400, f"{name}: a string")
    return value


async def _sessions(backend: Backend, principal: Principal) -> list[a.JupyterKernelView]:
    views = await backend.accounts.call(a.ListJupyterKernels(actor=principal.user.id))
    return [v for v in views if v.jupyter_session is not None]


async def _session(
    backend: Backend, principal: Principal, jupyter_session: str
) -> a.JupyterKernelView:
    for view in await _sessions(backend, principal):
        if view.jupyter_session == jupyter_session.lower():
            return view
    raise json_error(404, f"no session {jupyter_session[:64]!r}")


async def _model(
    request: web.Request, backend: Backend, principal: Principal, view: a.JupyterKernelView
) -> dict[str, Any]:
    kernel = await kernel_model(backend, principal, view, request.app[CHANNELS].count(view.session))
    return {
        "id": view.jupyter_session, "path": view.path, "name": view.session_name,
        "type": view.session_type, "kernel": kernel,
        "notebook": {"path": view.path, "name": view.session_name},
    }  # fmt: skip


def _fields(
    body: dict[str, Any],
    session: str,
    jupyter_session: str | None,
    base: a.JupyterKernelView | None = None,
) -> a.SetJupyterSession:
    given = body.get("notebook")  # (jupyter_server 1's name for the path)
    notebook: dict[str, Any] = given if isinstance(given, dict) else {}
    path = _text(body, "path", base.path if base else _text(notebook, "path"))
    return a.SetJupyterSession(
        session=session, jupyter_session=jupyter_session, path=path,
        session_name=_text(body, "name", base.session_name if base else ""),
        session_type=_text(body, "type", base.session_type if base else "notebook"),
    )  # fmt: skip


def _kernel_of(body: dict[str, Any]) -> dict[str, Any]:
    kernel = body.get("kernel") or {}
    if not isinstance(kernel, dict):
        raise json_error(400, "kernel: an object with an id or a name")
    return kernel


async def _attach(
    backend: Backend, principal: Principal, fields: a.SetJupyterSession, kernel: dict[str, Any]
) -> a.JupyterKernelView:
    """`fields` attached to the kernel `kernel` names by id, or to a new one."""
    if kernel.get("id"):
        session = session_of(str(kernel["id"]))
        await visible_kernel(backend, principal, session)
        request = msgspec.structs.replace(fields, session=session, actor=principal.user.id)
        return await backend.accounts.call(request)
    return await start_kernel(backend, principal, kernel, fields)


def _same_kernel(kernel: dict[str, Any], before: a.JupyterKernelView) -> bool:
    """Whether a PATCH's `kernel` leaves the session on its kernel (a name starts a new one,
    as in jupyter_server)."""
    if not kernel:
        return True
    return bool(kernel.get("id")) and session_of(str(kernel["id"])) == before.session


@handler
async def get_sessions(
    request: web.Request, backend: Backend, principal: Principal
) -> web.StreamResponse:
    views = await _sessions(backend, principal)
    return web.json_response([await _model(request, backend, principal, v) for v in views])


@handler
async def get_session(
    request: web.Request, backend: Backend, principal: Principal
) -> web.StreamResponse:
    view = await _session(backend, principal, request.match_info["session_id"])
    return web.json_response(await _model(request, backend, principal, view))


@handler
async def post_sessions(
    request: web.Request, backend: Backend, principal: Principal
) -> web.StreamResponse:
    body = await json_body(request)
    fields = _fields(body, "", str(uuid.uuid4()))
    for view in await _sessions(backend, principal):
        if fields.path and view.path == fields.path:
            return web.json_response(await _model(request, backend, principal, view), status=201)
    view = await _attach(backend, principal, fields, _kernel_of(body))
    model = await _model(request, backend, principal, view)
    return web.json_response(
        model, status=201, headers={"Location": f"/api/sessions/{model['id']}"}
    )


@handler
async def patch_session(
    request: web.Request, backend: Backend, principal: Principal
) -> web.StreamResponse:
    body = await json_body(request)
    before = await _session(backend, principal, request.match_info["session_id"])
    fields = _fields(body, before.session, before.jupyter_session, before)
    kernel = _kernel_of(body)
    if _same_kernel(kernel, before):
        view = await backend.accounts.call(msgspec.structs.replace(fields, actor=principal.user.id))
        return web.json_response(await _model(request, backend, principal, view))
    detach = a.SetJupyterSession(
        session=before.session, jupyter_session=None, actor=principal.user.id
    )
    await backend.accounts.call(detach)
    view = await _attach(backend, principal, fields, kernel)
    await backend.accounts.call(
        a.ForgetJupyterKernel(session=before.session, actor=principal.user.id)
    )
    await shut_down(backend, principal, before.session)
    return web.json_response(await _model(request, backend, principal, view))


@handler
async def delete_session(
    request: web.Request, backend: Backend, principal: Principal
) -> web.StreamResponse:
    view = await _session(backend, principal, request.match_info["session_id"])
    await backend.accounts.call(
        a.ForgetJupyterKernel(session=view.session, actor=principal.user.id)
    )
    await shut_down(backend, principal, view.session)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/sessions", get_sessions)
    app.router.add_post("/api/sessions", post_sessions)
    app.router.add_get("/api/sessions/{session_id}", get_session)
    app.router.add_patch("/api/sessions/{session_id}", patch_session)
    app.router.add_delete("/api/sessions/{session_id}", delete_session)
