"""``/api/kernels``: start, list, get, delete, interrupt and restart kernels.

A kernel started here is the session of a new worksheet of the caller's (titled from the
``path`` asked for, else "Jupyter kernel"): an ordinary cellbus session, which its owner can
share and others watch live in cellbus, and which keeps cellbus's checkpoints, hibernation and
failover. Deleting the kernel shuts its session down and takes it off this list; the worksheet
stays. Its id is the session's UID as a dashed UUID (`auth.kernel_id`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cellbus_protocol import accounts as a

from ..auth import Principal
from ..backend import Backend
from .auth import kernel_id, session_of
from .channels import CHANNELS
from .kernelspecs import known
from .models import (
    handler,
    json_body,
    kernel_model,
    require,
    restart,
    shut_down,
    title_of,
    visible_kernel,
)


async def start_kernel(
    backend: Backend,
    principal: Principal,
    body: dict[str, Any],
    jupyter: a.SetJupyterSession | None = None,
) -> a.JupyterKernelView:
    """A new kernel (with `jupyter`'s session attached, if given), its process starting."""
    name = known(body.get("name"))
    jupyter = jupyter or a.SetJupyterSession(session="", jupyter_session=None)
    title = title_of(jupyter.path, jupyter.session_name, body.get("path"))
    request = a.StartJupyterKernel(
        name=name, title=title, actor=principal.user.id, jupyter_session=jupyter.jupyter_session,
        path=jupyter.path, session_name=jupyter.session_name, session_type=jupyter.session_type,
    )  # fmt: skip
    view = await backend.accounts.call(request)
    await backend.kernel(principal).create_session(view.session)
    return view


@handler
async def post_kernels(
    request: web.Request, backend: Backend, principal: Principal
) -> web.StreamResponse:
    view = await start_kernel(backend, principal, await json_body(request))
    model = await kernel_model(backend, principal, view, 0, "starting")
    location = f"/api/kernels/{model['id']}"
    return web.json_response(model, status=201, headers={"Location": location})


@handler
async def get_kernels(
    request: web.Request, backend: Backend, principal: Principal
) -> web.StreamResponse:
    views = await backend.accounts.call(a.ListJupyterKernels(actor=principal.user.id))
    counts = request.app[CHANNELS]
    models = [await kernel_model(backend, principal, v, counts.count(v.session)) for v in views]
    return web.json_response(models)


@handler
async def get_kernel(
    request: web.Request, backend: Backend, principal: Principal
) -> web.StreamResponse:
    session = session_of(request.match_info["kernel_id"])
    view = await visible_kernel(backend, principal, session)
    count = request.app[CHANNELS].count(session)
    return web.json_response(await kernel_model(backend, principal, view, count))


@handler
async def delete_kernel(
    request: web.Request, backend: Backend, principal: Principal
) -> web.StreamResponse:
    session = session_of(request.match_info["kernel_id"])
    await backend.accounts.call(a.ForgetJupyterKernel(session=session, actor=principal.user.id))
    await shut_down(backend, principal, session)
    return web.Response(status=204)


@handler
async def interrupt_kernel(
    request: web.Request, backend: Backend, principal: Principal
) -> web.StreamResponse:
    session = session_of(request.match_info["kernel_id"])
    await visible_kernel(backend, principal, session)
    await require(backend, principal, session, "editor")
    kernel = backend.kernel(principal)
    if (await kernel.session_status(session)).hosted:
        await kernel.interrupt(session)
    return web.Response(status=204)


@handler
async def restart_kernel(
    request: web.Request, backend: Backend, principal: Principal
) -> web.StreamResponse:
    session = session_of(request.match_info["kernel_id"])
    view = await visible_kernel(backend, principal, session)
    await require(backend, principal, session, "editor")
    await restart(backend, principal, session)
    count = request.app[CHANNELS].count(session)
    return web.json_response(await kernel_model(backend, principal, view, count))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/kernels", get_kernels)
    app.router.add_post("/api/kernels", post_kernels)
    app.router.add_get("/api/kernels/{kernel_id}", get_kernel)
    app.router.add_delete("/api/kernels/{kernel_id}", delete_kernel)
    app.router.add_post("/api/kernels/{kernel_id}/interrupt", interrupt_kernel)
    app.router.add_post("/api/kernels/{kernel_id}/restart", restart_kernel)


__all__ = ["add_routes", "kernel_id", "start_kernel"]
