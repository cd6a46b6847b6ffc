"""Who calls the Jupyter Server API, as Jupyter clients say it, and the answers they expect.

Jupyter clients present a token in ways cellbus's own API does not take: ``Authorization:
token <t>`` (jupyter_server's GatewayClient, VS Code), ``Authorization: Bearer <t>``, or
``?token=<t>`` in the URL (JupyterLab's WebSockets, and any client that cannot set a
header). The token is a cellbus API token (``auth.login``), checked by the same
`auth.Authenticator`. The session cookie works too, with the same Origin check as the rest of
the API (`auth.origin_allowed`), so a page of another site cannot use it.

Errors are JSON ``{"message": ..., "reason": ...}`` with an HTTP status, as jupyter_server
answers: 401 without a good token, 403 for a cookie from another site, 404 for a kernel or
session that does not exist or is not the caller's to see.
"""

from __future__ import annotations

import json
import uuid
from typing import NoReturn

from aiohttp import web

from cellbus_protocol.errors import CellbusError

from ..auth import COOKIE, Principal, origin_allowed
from ..backend import Backend
from ..rpc import (
    CONFLICT,
    FORBIDDEN,
    INVALID_PARAMS,
    INVALID_REQUEST,
    NOT_FOUND,
    RATE_LIMITED,
    TOO_LARGE,
    UNAUTHENTICATED,
    RpcError,
    api_error,
)

SCHEMES = ("token", "bearer")
"""The Authorization schemes taken, lower-cased."""

STATUS_OF: dict[int, int] = {
    UNAUTHENTICATED: 401, FORBIDDEN: 403, NOT_FOUND: 404, INVALID_PARAMS: 400,
    INVALID_REQUEST: 400, CONFLICT: 409, TOO_LARGE: 413, RATE_LIMITED: 429,
}  # fmt: skip
"""The HTTP status of an API error code; any other (a service away) is a 503."""

_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest, 401: web.HTTPUnauthorized, 403: web.HTTPForbidden,
    404: web.HTTPNotFound, 409: web.HTTPConflict, 413: web.HTTPRequestEntityTooLarge,
    429: web.HTTPTooManyRequests, 503: web.HTTPServiceUnavailable,
}  # fmt: skip


def json_error(status: int, message: str) -> web.HTTPException:
    """A jupyter_server-style error response, to raise."""
    cls = _ERRORS.get(status, web.HTTPServiceUnavailable)
    body = json.dumps({"message": message, "reason": cls.__name__.removeprefix("HTTP")})
    return cls(text=body, content_type="application/json")


def refuse(exc: BaseException) -> NoReturn:
    """Raise the HTTP error a Jupyter client is told for `exc` (a failure of a service
    behind this one, or a refusal), or `exc` itself if it is a bug."""
    error = api_error(exc)
    if error is None:
        raise exc
    raise json_error(STATUS_OF.get(error.code, 503), error.message) from None


def presented_token(request: web.BaseRequest) -> tuple[str, bool] | None:
    """The request's token, Jupyter's ways first, and whether it came in the cookie."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() not in SCHEMES or not token.strip():
            raise json_error(401, "the Authorization header must be 'token <t>' or 'Bearer <t>'")
        return token.strip(), False
    token = request.query.get("token", "")
    if token:
        return token, False
    cookie = request.cookies.get(COOKIE)
    return (cookie, True) if cookie else None


async def principal_of(request: web.Request, backend: Backend) -> Principal:
    """The caller, or the 401/403 a Jupyter client expects."""
    presented = presented_token(request)
    if presented is None:
        raise json_error(401, "sign in first: send 'Authorization: token <cellbus API token>'")
    token, via_cookie = presented
    if via_cookie and not origin_allowed(request, backend.settings):
        raise json_error(403, "a cookie-authenticated request must come from this site")
    try:
        return Principal(await backend.authenticator.user_for(token), token, via_cookie)
    except (RpcError, CellbusError) as exc:
        refuse(exc)


def kernel_id(session: str) -> str:
    """A session's id as a Jupyter kernel id: the dashed UUID of its hex (jupyter_server's
    URLs only match ids of that shape)."""
    return str(uuid.UUID(hex=session))


def session_of(kernel: str) -> str:
    """The session of a kernel id, or 404 if it is not a dashed UUID."""
    try:
        parsed = uuid.UUID(kernel)
    except ValueError:
        raise json_error(404, f"no kernel {kernel[:64]!r}") from None
    if str(parsed) != kernel.lower():
        raise json_error(404, f"no kernel {kernel[:64]!r}")
    return parsed.hex
