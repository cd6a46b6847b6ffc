"""Who is calling: bearer tokens and the session cookie, the CSRF defence, login throttling.

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
Logging out drops the token from this process's cache at once.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from cellbus_protocol import accounts as a

from .config import WebSettings
from .rpc import FORBIDDEN, RATE_LIMITED, UNAUTHENTICATED, RpcError

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


def origin_allowed(request: web.BaseRequest, settings: WebSettings) -> bool:
    """Whether the request's Origin is this server itself or a configured public origin."""
    origin = request.headers.get("Origin")
    if not origin:
        return False
    if origin.rstrip("/") in settings.origins():
        return True
    return urlsplit(origin).netloc == request.host


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
        user = await self.accounts.call(a.Authenticate(token=token), a.UserView)
        if len(self._cache) > 10_000:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[token] = (now + self.settings.auth_cache_seconds, user)
        return user

    def forget(self, token: str) -> None:
        self._cache.pop(token, None)

    def forget_user(self, user_id: str) -> None:
        """Drop every cached token of a user (one of them was revoked by its id)."""
        self._cache = {k: v for k, v in self._cache.items() if v[1].id != user_id}

    async def principal(self, request: web.BaseRequest) -> Principal:
        """The caller of `request`, or `RpcError` (unauthenticated, or forbidden for a
        cookie from a foreign origin)."""
        presented = presented_token(request)
        if presented is None:
            raise RpcError(UNAUTHENTICATED, "sign in first: no token and no session cookie")
        token, via_cookie = presented
        if via_cookie and not origin_allowed(request, self.settings):
            raise RpcError(FORBIDDEN, "a cookie-authenticated request must come from this site")
        return Principal(await self.user_for(token), token, via_cookie)


class LoginThrottle:
    """Refuses logins for a while after repeated failures, per username and per address.

    A username gets `attempts` failures per `window`; an address gets ten times as many, as
    many people may share one (an office behind one NAT) while one attacker may try many
    usernames. Kept in each web process's memory: with N web processes an attacker gets at
    most N times as many guesses, which is still a wall against guessing passwords.
    """

    ADDRESS_FACTOR = 10

    def __init__(self, attempts: int, window: float) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def check(self, username: str, address: str) -> None:
        """`RpcError` rate_limited if the username or the address failed too often lately."""
        now = time.monotonic()
        for key, limit in ((username, self.attempts),
                           (address, self.attempts * self.ADDRESS_FACTOR)):  # fmt: skip
            failures = self._recent(key, now)
            if len(failures) >= limit:
                retry_after = round(failures[0] + self.window - now, 1)
                raise RpcError(
                    RATE_LIMITED,
                    f"too many failed logins; try again in {retry_after:g} s",
                    {"retry_after": retry_after},
                )

    def failed(self, *keys: str) -> None:
        """Count a failure against each of `keys` (the username and the address)."""
        now = time.monotonic()
        for key in keys:
            self._recent(key, now).append(now)
        if len(self._failures) > 100_000:
            self._failures = {k: v for k, v in self._failures.items() if v}

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures
