"""``GET /parallel/{session}/dashboard/{tail}``: a session's Dask dashboard, through the web
service.

A session that uses `cellbus.parallel` runs a Dask scheduler inside its own (sandboxed)
process; its kernel worker registers the scheduler's HTTP address in
`keys.PARALLEL_DASHBOARDS`. The scheduler serves its pages under the prefix
``/parallel/<session>/dashboard``, so this proxy forwards the request's own path (and query)
to that address. Sandboxes may bind the dashboard ports but never connect to them: only the
services reach a dashboard, and people reach it here, signed in as for any other request (a
bearer token, or the session cookie as for a download: `Authenticator.principal` with
``link=True``) and with at least the viewer role on the session (`Backend.role`, the same
check as a feed subscription; someone with no role is told the session is not found).

What comes back was made by the session's code, which may serve anything on that port: it is
hostile. So it never runs as a page of the app's origin: every proxied answer is sent with
`PROXIED_HEADERS` (a CSP sandbox with no scripts at all, nosniff, no framing), only its
``Content-Type`` is kept from upstream (no ``Set-Cookie``, no hop-by-hop headers), it may
redirect only within its own prefix, and it is cut off at `MAX_BYTES`. Nothing of the
caller's (cookie, Authorization) is sent upstream.

Errors are the files API's: ``{"error": {"code", "message"}}`` with an HTTP status: 401, 404
(no such session for this caller, or no dashboard registered: no parallel use yet, or the
session ended), 400 (a malformed session id or path), and 502 (the scheduler did not answer,
or answered too much).
"""

from __future__ import annotations

import logging
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import yarl
from aiohttp import web

from cellbus_protocol import keys
from cellbus_protocol.roles import role_allows, too_low

from .backend import BACKEND
from .files.http import answering_errors, error_response
from .rpc import FORBIDDEN, INVALID_PARAMS, NOT_FOUND, UNAVAILABLE, RpcError

log = logging.getLogger(__name__)

ROUTE = "/parallel/{session}/dashboard{tail:(?s:/.*)?}"
MAX_BYTES = 16 * 1024 * 1024
"""The largest answer passed on; beyond it the client gets a 502."""
TIMEOUT = aiohttp.ClientTimeout(total=30, sock_connect=5)
HOME = "/info/main/workers.html"
"""Where the dashboard's bare prefix leads (Dask's own home, ``/status``, needs bokeh)."""

PROXIED_HEADERS = {
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "private, no-cache",
}
"""On every answer that carries the upstream's content (and its redirects)."""

CLIENT = web.AppKey("dashboard_client", aiohttp.ClientSession)


def add_routes(app: web.Application) -> None:
    app.router.add_get(ROUTE, dashboard)  # and HEAD; any other method: 405
    app.on_startup.append(_open_client)
    app.on_cleanup.append(_close_client)


async def _open_client(app: web.Application) -> None:
    # No cookie jar: nothing the upstream sets is kept or sent back.
    app[CLIENT] = aiohttp.ClientSession(
        timeout=TIMEOUT, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=True
    )


async def _close_client(app: web.Application) -> None:
    await app[CLIENT].close()


def prefix(session: str) -> str:
    return f"/parallel/{session}/dashboard"


def upstream_path(session: str, tail: str) -> str:
    """The path asked of the scheduler: always under the session's prefix. `tail` (decoded)
    is taken segment by segment; ``.`` and ``..`` are refused, and every segment is sent
    percent-encoded, so nothing in it can climb out of the prefix."""
    segments = tail.split("/")[1:] if tail else []
    for segment in segments:
        if segment in (".", "..") or "\\" in segment or "\x00" in segment:
            raise RpcError(INVALID_PARAMS, f"the dashboard path {tail!r} is not allowed")
    return prefix(session) + "".join("/" + quote(s, safe="!$&'()*+,;=:@~-._") for s in segments)


def _address(registered: str) -> yarl.URL:
    """The registered ``http://host:port``, checked to be no more than that."""
    parts = urlsplit(registered)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError(f"not an http://host:port address: {registered!r}")
    if parts.query or parts.fragment or parts.username or parts.password or not parts.port:
        raise ValueError(f"not an http://host:port address: {registered!r}")
    return yarl.URL.build(scheme="http", host=parts.hostname, port=parts.port)


def _bad_gateway(message: str) -> web.Response:
    return error_response(RpcError(UNAVAILABLE, message), status=502)


@answering_errors
async def dashboard(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    principal = await backend.authenticator.principal(request, link=True)
    session = request.match_info["session"]
    try:
        keys.check_session_id(session)
    except ValueError:
        raise RpcError(INVALID_PARAMS, f"{session!r} is not a session id") from None
    role = await backend.role(principal, session)  # not found if they have none
    if not role_allows(role, "viewer"):
        raise RpcError(FORBIDDEN, too_low(role, "viewer"))
    tail = request.match_info["tail"]
    if tail in ("", "/"):
        raise web.HTTPFound(prefix(session) + HOME, headers=PROXIED_HEADERS)
    path = upstream_path(session, tail)
    registered = await backend.bus.get_entry(keys.PARALLEL_DASHBOARDS, session)
    if registered is None:
        message = (
            "this session has no Dask dashboard: it has not used cellbus.parallel since it "
            "started, or it has ended"
        )
        raise RpcError(NOT_FOUND, message)
    try:
        base = _address(registered)
    except ValueError:
        log.warning("session %s registered a bad dashboard address %r", session, registered)
        return _bad_gateway("the session's Dask dashboard address is not valid")
    query = urlencode(list(request.query.items()))
    url = yarl.URL(f"{base}{path}" + (f"?{query}" if query else ""), encoded=True)
    return await _forward(request, session, url)


async def _forward(request: web.Request, session: str, url: yarl.URL) -> web.StreamResponse:
    headers = {"Accept": request.headers.get("Accept", "*/*")}
    try:
        async with request.app[CLIENT].get(url, headers=headers, allow_redirects=False) as got:
            if got.content_length is not None and got.content_length > MAX_BYTES:
                return _too_large()
            body = bytearray()
            async for chunk in got.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > MAX_BYTES:
                    return _too_large()
            status, content_type = got.status, got.headers.get("Content-Type", "")
            location = got.headers.get("Location", "")
    except (TimeoutError, aiohttp.ClientError) as exc:
        log.info("dashboard of session %s at %s: %s", session, url.origin(), exc or type(exc))
        return _bad_gateway(
            "the session's Dask scheduler is not answering (its parallel work may have ended); "
            "run a parallel cell again"
        )
    answer = web.Response(status=status, body=bytes(body), headers=PROXIED_HEADERS)
    answer.headers["Content-Type"] = content_type or "application/octet-stream"
    if 300 <= status < 400 and location:
        target = yarl.URL(location)
        if target.is_absolute():
            if target.origin() != url.origin():
                return _bad_gateway("the session's Dask dashboard redirected elsewhere")
            target = target.relative()
        inside = target.path.startswith(prefix(session) + "/")
        if not inside or ".." in target.path.split("/"):
            return _bad_gateway("the session's Dask dashboard redirected out of its pages")
        answer.headers["Location"] = str(target)
    return answer


def _too_large() -> web.Response:
    return _bad_gateway(f"the Dask dashboard's answer is over {MAX_BYTES // (1024 * 1024)} MiB")
