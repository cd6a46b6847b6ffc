"""Who may do what on a session, remembered by each web process until it changes.

Every session request (`session.execute`, `feed.poll`, a socket's subscription...) needs the
caller's role on the session, which the accounts service answers with three queries. Asking
once per request was a quarter of an execution's CPU (see docs/performance.md), so each web
process keeps the answers, and forgets them when they may have changed:

- The accounts service publishes the session id on the ``access:changes`` feed
  (`keys.ACCESS_CHANGES`) whenever a worksheet's members change or a worksheet is deleted.
  Every web process follows that feed and drops what it knew about that session, within
  milliseconds and on every process.
- An answer is trusted for at most ``CELLBUS_AUTH_CACHE_SECONDS`` in any case, and not at all
  while this process is not following the feed (the bus is away): then every request asks.
- An answer that was in flight while any change was announced is not kept (`changes`), so a
  reply computed before a revocation cannot outlive it. Changes are rare; such a miss only
  costs asking again.

Only roles are kept; "not found" is asked again every time, so access granted elsewhere
works at once.

The same feed announces revoked tokens (`accounts.TokenRevoked`, on a logout or
``auth.revoke``); they are handed to `on_token_revoked`'s listeners, which forget the cached
token and close its WebSockets (see app.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from cellbus_protocol import keys
from cellbus_protocol.accounts import AccessChanged, TokenRevoked, decode_access_change
from cellbus_protocol.bus import Bus, Subscription
from cellbus_protocol.errors import CellbusError, ValidationError
from cellbus_protocol.roles import Role

from . import tasks

log = logging.getLogger(__name__)

MAX_ENTRIES = 100_000
"""Beyond this many (user, session) pairs the expired ones are dropped, then all."""


class RoleCache:
    """Roles of users on sessions, for one web process."""

    def __init__(self, bus: Bus, ttl: float) -> None:
        self.bus = bus
        self.ttl = ttl
        self._roles: dict[tuple[str, str], tuple[float, Role]] = {}  # -> (deadline, role)
        self.changes = 0  # announcements taken in (and times everything was forgotten)
        self._following = False
        self._task: asyncio.Task[None] | None = None
        self._token_listeners: list[Callable[[TokenRevoked], None]] = []

    def on_token_revoked(self, listener: Callable[[TokenRevoked], None]) -> None:
        """Call `listener` with each token revocation announced from now on."""
        self._token_listeners.append(listener)

    async def role(self, user_id: str, session: str, ask: Callable[[], Awaitable[Role]]) -> Role:
        """`user_id`'s role on `session`: remembered, or asked with `ask` (whose errors,
        such as not found, pass through and are not remembered)."""
        key = (user_id, session)
        now = time.monotonic()
        cached = self._roles.get(key)
        if cached is not None and cached[0] > now and self._following:
            return cached[1]
        changes = self.changes
        role = await ask()
        if self._following and changes == self.changes:
            self._remember(key, role, now)
        return role

    def forget_session(self, session: str) -> None:
        """The session's members changed: every role on it must be asked again."""
        self.changes += 1
        for key in [k for k in self._roles if k[1] == session]:
            del self._roles[key]

    def forget_all(self) -> None:
        self.changes += 1
        self._roles.clear()

    def _remember(self, key: tuple[str, str], role: Role, now: float) -> None:
        if len(self._roles) >= MAX_ENTRIES:
            self._roles = {k: v for k, v in self._roles.items() if v[0] > now}
            if len(self._roles) >= MAX_ENTRIES:
                self._roles.clear()
        self._roles[key] = (now + self.ttl, role)

    # -- following the changes ------------------------------------------------------------
    async def start(self) -> None:
        """Follow `keys.ACCESS_CHANGES` from now on (returns once following)."""
        subscription = await self.bus.subscribe(keys.ACCESS_CHANGES, None)
        self._following = True
        self._task = asyncio.create_task(self._follow(subscription), name="access changes")

    async def _follow(self, subscription: Subscription) -> None:
        try:
            while True:
                try:
                    async for entry in subscription:
                        self._changed(entry.data)
                    return
                except CellbusError as exc:
                    log.warning("access changes: %s; asking for every role until back", exc)
                    self._following = False
                    with contextlib.suppress(CellbusError):
                        await subscription.close()
                    subscription = await self._subscribe_again()
        finally:
            self._following = False
            with contextlib.suppress(Exception):
                await subscription.close()

    async def _subscribe_again(self) -> Subscription:
        while True:
            await asyncio.sleep(1.0)
            with contextlib.suppress(CellbusError):
                subscription = await self.bus.subscribe(keys.ACCESS_CHANGES, None)
                self.forget_all()  # what changed while away is unknown
                self._following = True
                return subscription

    def _changed(self, data: bytes) -> None:
        try:
            change = decode_access_change(data)
        except ValidationError:
            log.warning("malformed access change %r: forgetting every role", data[:200])
            self.forget_all()
            return
        if isinstance(change, AccessChanged):
            self.forget_session(change.session)
            return
        self.changes += 1
        for listener in self._token_listeners:
            try:
                listener(change)
            except Exception:
                log.exception("a token revocation listener failed (user %s)", change.user)

    async def close(self) -> None:
        self._following = False
        await tasks.stop(self._task)
