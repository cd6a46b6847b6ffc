"""Who is calling: bearer tokens and the session cookie, and the CSRF defence.

Every API call except ``auth.register``, ``auth.login`` and ``rpc.discover`` and every
WebSocket needs a token, given in one of two ways:

- ``Authorization: Bearer <token>``, for the command-line client and other programs;
- the ``cellbus_session`` cookie (HttpOnly, SameSite=Lax) set by ``auth.login``, for browsers.
  A cookie is sent by the browser whatever page asks, so a cookie-authenticated request must
  also show that it comes from the app: it must carry an ``Origin`` header naming this server
  (or one of ``CELLBUS_PUBLIC_ORIGINS``), and API calls must be ``application/json``, which a
  cross-site form cannot send without a CORS preflight that this server never grants.

The accounts service decides whether a token is good; the answer is trusted for
``CELLBUS_AUTH_CACHE_SECONDS`` so that a busy client does not cost a bus round trip per call.
A revoked token (a logout, ``auth.revoke``) is announced by the accounts service on the bus and
dropped from every web process's cache at once (`roles.RoleCache` follows the announcements).

Login throttling is the accounts service's (cellbus_accounts/store/logins.py): it is shared by
every web process, and decided in the same transaction that counts the attempt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from cellbus_protocol import accounts as a

from .config import WebSettings
from .rpc import FORBIDDEN, UNAUTHENTICATED, RpcError

COOKIE = "cellbus_session"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the user, the token they showed, and how they showed it."""

    user: a.UserView
    token: str
    via_cookie: bool


def presented_token(request: web.BaseRequest) -> tuple[str, bool] | None:
    """The token of the request and whether it came in the cookie; None if there is none."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise RpcError(UNAUTHENTICATED, "the Authorization header must be 'Bearer <token>'")
        return token.strip(), False
    cookie = request.cookies.get(COOKIE)
    return (cookie, True) if cookie else None


DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def origin_key(origin: str) -> tuple[str, str, int] | None:
    """An origin as (scheme, host, port), the default port filled in; None if malformed."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def origin_allowed(request: web.BaseRequest, settings: WebSettings) -> bool:
    """Whether the request's Origin is this server itself or a configured public origin,
    comparing scheme, host and port (``http://host`` is not ``https://host``)."""
    origin = origin_key(request.headers.get("Origin", ""))
    if origin is None:
        return False
    if origin in {origin_key(allowed) for allowed in settings.origins()}:
        return True
    return origin == origin_key(f"{request.scheme}://{request.host}")


class Authenticator:
    """Turns tokens into users by asking the accounts service, with a short cache."""

    def __init__(self, accounts: a.AccountsClient, settings: WebSettings) -> None:
        self.accounts = accounts
        self.settings = settings
        self._cache: dict[str, tuple[float, a.UserView]] = {}

    async def user_for(self, token: str) -> a.UserView:
        """The token's user (`accounts.RemoteError` ``unauthenticated`` if none)."""
        now = time.monotonic()
        cached = self._cache.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        user = await self.accounts.call(a.Authenticate(token=token))
        if len(self._cache) > 10_000:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[token] = (now + self.settings.auth_cache_seconds, user)
        return user

    def forget(self, token: str) -> None:
        self._cache.pop(token, None)

    def forget_user(self, user_id: str) -> None:
        """Drop every cached token of a user (one of them was revoked by its id)."""
        self._cache = {k: v for k, v in self._cache.items() if v[1].id != user_id}

    async def principal(self, request: web.BaseRequest, *, link: bool = False) -> Principal:
        """The caller of `request`, or `RpcError` (unauthenticated, or forbidden for a
        cookie from a foreign origin).

        `link`: a GET that the app's page opens as a link (a download, a dashboard page) is
        also taken by cookie without an ``Origin`` (a navigation sends none), unless the
        browser says it comes from another site (``Sec-Fetch-Site``). The SameSite=Lax cookie
        is not sent with another site's subresource requests anyway, and such a page could
        not read the answer."""
        presented = presented_token(request)
        if presented is None:
            raise RpcError(UNAUTHENTICATED, "sign in first: no token and no session cookie")
        token, via_cookie = presented
        if via_cookie and not origin_allowed(request, self.settings):
            cross_site = request.headers.get("Sec-Fetch-Site", "") in ("cross-site", "same-site")
            if not link or "Origin" in request.headers or cross_site:
                raise RpcError(FORBIDDEN, "a cookie-authenticated request must come from this site")
        return Principal(await self.user_for(token), token, via_cookie)
