"""The Jupyter Server API, served by the web service: kernelspecs, kernels, their channels
WebSocket and sessions, so that jupyter_server (``--gateway-url``), nbclient, papermill,
JupyterLab and VS Code run their code on cellbus sessions. See docs/api.md, "The Jupyter
Server API", for what is implemented and what is not.

- `auth`: tokens as Jupyter clients send them, errors as they expect them, kernel ids;
- `kernelspecs`: the one kernelspec, ``python3``;
- `kernels`, `sessions`: the REST resources (`models`: what they share);
- `channels`: the channels WebSocket (`wire`: its frames).
"""

from __future__ import annotations

import time

from aiohttp import web

from ..backend import BACKEND
from . import channels, kernels, kernelspecs, sessions
from .auth import principal_of
from .channels import CHANNELS

API_VERSION = "2.0.0"
"""The jupyter_server REST API version whose kernels and sessions this follows."""
STARTED = web.AppKey("jupyter_started", str)


async def api_version(request: web.Request) -> web.Response:
    """``GET /api``: public in jupyter_server too (clients probe it before signing in)."""
    return web.json_response({"version": API_VERSION})


async def api_status(request: web.Request) -> web.Response:
    await principal_of(request, request.app[BACKEND])
    registry = request.app[CHANNELS]
    return web.json_response({
        "started": request.app[STARTED], "last_activity": request.app[STARTED],
        "connections": len(registry.sockets),
        "kernels": len({socket.session for socket in registry.sockets}),
    })  # fmt: skip


def add_jupyter_api(app: web.Application) -> None:
    """Every route of the Jupyter Server API that cellbus serves."""
    app[STARTED] = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    app.router.add_get("/api", api_version)
    app.router.add_get("/api/status", api_status)
    kernelspecs.add_routes(app)
    channels.add_routes(app)
    kernels.add_routes(app)
    sessions.add_routes(app)


__all__ = ["CHANNELS", "add_jupyter_api"]
