"""The web service as an aiohttp application: ``POST /rpc``, ``GET /ws``, the frontend.

`create_app` takes its settings and a started bus and holds no other state: every web
process is interchangeable, and clients may move between them (feed cursors are the
feed's own).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from cellbus_protocol import accounts as a
from cellbus_protocol import isolation, keys
from cellbus_protocol.bus import Bus

from . import dashboard
from .backend import BACKEND, Backend
from .config import WebSettings
from .files import http as files_http
from .jupyter import CHANNELS, add_jupyter_api
from .methods import build_api
from .outgoing import Turns
from .ws import SOCKETS, TURNS, close_sockets, feed_socket, revoke_sockets

log = logging.getLogger(__name__)

CHECKOUT_FRONTEND = Path(__file__).resolve().parents[3] / "frontend" / "web" / "dist"

APP_POLICY = "; ".join((
    "default-src 'self'", "script-src 'self'", "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:", "connect-src 'self' ws: wss:", "frame-src 'self'",
    "object-src 'none'", "base-uri 'self'", "form-action 'self'", "frame-ancestors 'none'",
))  # fmt: skip
"""The app's own pages: nothing but its own scripts, and no one may frame it."""

SANDBOX_POLICY = "; ".join((
    "default-src * data: blob: 'unsafe-inline' 'unsafe-eval'", "frame-ancestors 'self'",
))  # fmt: skip
"""/sandbox.html, where HTML and SVG from user code render: anything goes inside it, because
the app frames it with ``sandbox="allow-scripts"`` (no allow-same-origin), which gives it an
opaque origin: it cannot read the app's cookies, storage or DOM, and the API refuses it (its
requests carry no session cookie and an Origin that is not this site)."""

PLACEHOLDER = """<!doctype html><meta charset="utf-8"><title>cellbus</title>
<p>cellbus is running. The browser app is not built here: run <code>make run</code> from a
checkout, or use the API at <code>POST /rpc</code> (see <code>rpc.discover</code>)."""


def create_app(settings: WebSettings, bus: Bus) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[security_headers])
    backend = Backend.create(settings, bus)
    app[BACKEND] = backend
    app[SOCKETS] = set()
    app[TURNS] = Turns()
    api = build_api()
    app.router.add_view("/rpc", api.handler(max_body_bytes=settings.max_body_bytes))
    app.router.add_get("/ws", feed_socket)
    app.router.add_get("/healthz", healthz)
    files_http.add_routes(app)  # GET and PUT /files/{worksheet}/{path}
    dashboard.add_routes(app)  # GET /parallel/{session}/dashboard/...: Dask's pages
    add_jupyter_api(app)  # /api/kernels, /api/sessions, ... (cellbus_web.jupyter)
    add_frontend(app, Path(settings.static_dir) if settings.static_dir else CHECKOUT_FRONTEND)
    backend.roles.on_token_revoked(lambda change: _token_revoked(app, change))
    app.on_startup.append(_start_backend)
    app.on_shutdown.append(close_sockets)
    app.on_cleanup.append(_close_backend)
    return app


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The security headers on every response, errors included: aiohttp's own (404 for an
    unknown path, 405, 413) and ours (401 on ``/ws``) are raised as `web.HTTPException`,
    which is a response; anything else unexpected becomes a 500 with an id that is logged."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _add_security_headers(request, exc)
        raise
    except Exception:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            raise  # its response may be under way already: nothing can be sent instead
        error_id = secrets.token_hex(8)
        log.exception("internal error %s on %s %s", error_id, request.method, request.path)
        response = web.Response(status=500, text=f"internal error {error_id}\n")
    if not response.prepared:  # a WebSocket's headers are gone already
        _add_security_headers(request, response)
    return response


def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path == "/sandbox.html":
        response.headers["Content-Security-Policy"] = SANDBOX_POLICY
    else:
        response.headers.setdefault("Content-Security-Policy", APP_POLICY)
        response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"


async def healthz(request: web.Request) -> web.Response:
    """Alive and able to reach the bus (for load balancers and compose health checks), and
    how well user code is sandboxed."""
    backend = request.app[BACKEND]
    try:
        await backend.bus.last_seq(keys.HEALTH_PROBE)
        sandbox = await isolation.weakest(backend.bus)
    except Exception as exc:
        return web.json_response({"ok": False, "error": type(exc).__name__}, status=503)
    body: dict[str, Any] = {"ok": True, "feeds_followed": backend.hub.followed}
    # How well the weakest live kernel worker sandboxes user code ("unknown": none is alive).
    body["isolation"] = sandbox.level.value if sandbox else "unknown"
    if sandbox and sandbox.missing:
        body["isolation_missing"] = sandbox.missing
    return web.json_response(body)


def add_frontend(app: web.Application, folder: Path) -> None:
    """The built browser app: index.html at / (and at any app route), assets under /assets."""
    index = folder / "index.html"

    async def page(request: web.Request) -> web.StreamResponse:
        if index.is_file():
            return web.FileResponse(index, headers={"Cache-Control": "no-cache"})
        return web.Response(text=PLACEHOLDER, content_type="text/html")

    async def sandbox(request: web.Request) -> web.StreamResponse:
        if (folder / "sandbox.html").is_file():
            return web.FileResponse(folder / "sandbox.html")
        raise web.HTTPNotFound()

    app.router.add_get("/", page)
    app.router.add_get("/w/{worksheet}", page)
    app.router.add_get("/sandbox.html", sandbox)
    if (folder / "assets").is_dir():
        app.router.add_static("/assets", folder / "assets")


def _token_revoked(app: web.Application, change: a.TokenRevoked) -> None:
    """A token was revoked (on any web process): trust none of its user's cached tokens
    without asking again, and close the sockets opened with it."""
    app[BACKEND].authenticator.forget_user(change.user)
    closed = revoke_sockets(app, change.token_hash) + app[CHANNELS].revoke(change.token_hash)
    if closed:
        log.info("token of user %s revoked: closing %d socket(s)", change.user, closed)


async def _start_backend(app: web.Application) -> None:
    await app[BACKEND].roles.start()
    await app[BACKEND].presence.start()


async def _close_backend(app: web.Application) -> None:
    await app[BACKEND].presence.close()
    await app[BACKEND].roles.close()
    await app[BACKEND].hub.close()
