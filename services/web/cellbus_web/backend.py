"""What the API methods talk to.

The web service keeps no state: every method turns into calls to the accounts service (who
may do what, and every durable record), requests to a session (through `KernelClient`), or
reads of a session's feed (`FeedHub`). It only remembers the accounts service's answers about
who is calling (`Authenticator`) and their roles on sessions (`RoleCache`), until they may have
changed, and which of its sockets watch which session (`Presence`), and relays what people do live
(`WorksheetRelay`). `Backend` holds those for
one web process; `caller` and `ask_accounts` are the few lines every method starts with.

Methods let the failures of the services behind them (`RemoteError`, `BusError`) propagate:
`rpc.api_error` turns them into API errors once, where the method was dispatched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import msgspec
from aiohttp import web

from cellbus_protocol import accounts as a
from cellbus_protocol.bus import Bus
from cellbus_protocol.kernel_client import KernelClient
from cellbus_protocol.roles import Role, role_allows, too_low

from .auth import Authenticator, Principal
from .config import WebSettings
from .feeds import FeedHub
from .presence import Presence
from .relay import WorksheetRelay
from .roles import RoleCache
from .rpc import FORBIDDEN, UNAUTHENTICATED, Call, RpcError

T = TypeVar("T")


@dataclass
class Backend:
    settings: WebSettings
    bus: Bus
    accounts: a.AccountsClient
    authenticator: Authenticator
    hub: FeedHub
    roles: RoleCache
    presence: Presence
    relay: WorksheetRelay

    @classmethod
    def create(cls, settings: WebSettings, bus: Bus) -> Backend:
        accounts = a.AccountsClient(bus, timeout=settings.call_timeout)
        return cls(
            settings=settings,
            bus=bus,
            accounts=accounts,
            authenticator=Authenticator(accounts, settings),
            hub=FeedHub(bus),
            roles=RoleCache(bus, settings.auth_cache_seconds),
            presence=Presence(bus),
            relay=WorksheetRelay(bus),
        )

    async def role(self, principal: Principal, session: str) -> Role:
        """The caller's role on `session` (remembered; see `roles`); the accounts service's
        `RemoteError` not found if none, as for a session that does not exist."""
        user = principal.user.id

        async def ask() -> Role:
            return await self.accounts.call(a.SessionRole(session=session, actor=user))

        return await self.roles.role(user, session, ask)

    async def worksheet_session(self, principal: Principal, worksheet: str) -> a.WorksheetSession:
        """The worksheet's session and the caller's role on it (viewers and up; else the
        accounts service's `RemoteError` not found), in one cheap query: ``worksheet.get``
        would also read every cell and its outputs."""
        request = a.GetWorksheetSession(id=worksheet, actor=principal.user.id)
        return await self.accounts.call(request)

    def kernel(self, principal: Principal) -> KernelClient:
        """A client for sessions that signs its requests with the caller's username."""
        return KernelClient(self.bus, principal.user.username, timeout=self.settings.call_timeout)

    async def ensure_session(self, session: str, principal: Principal) -> None:
        """Have a worker host `session` if none does (a worksheet's session starts on first
        use; a shut-down one starts again; a hibernated one is restored). Duplicate starts
        are harmless: the session's lease lets one worker host it. For an execution, call it
        after queueing the request (see `KernelClient.ensure_session`)."""
        await self.kernel(principal).ensure_session(session)


BACKEND = web.AppKey("backend", Backend)


def backend_of(call: Call) -> Backend:
    return call.request.app[BACKEND]


async def caller(call: Call) -> Principal:
    """The authenticated caller (the API's authenticate hook has already run)."""
    principal = call.state.get("principal")
    if not isinstance(principal, Principal):  # pragma: no cover - public methods do not call this
        raise RpcError(UNAUTHENTICATED, "sign in first")
    return principal


async def authenticate(call: Call) -> None:
    """The `Api` hook run before every non-public method, once per HTTP request."""
    if "principal" not in call.state:
        backend = backend_of(call)
        call.state["principal"] = await backend.authenticator.principal(call.request)


async def ask_accounts(call: Call, request: a.Request[T]) -> T:
    """Call the accounts service as the authenticated caller; the result has the request's
    result type."""
    principal = await caller(call)
    request = msgspec.structs.replace(request, actor=principal.user.id)
    return await backend_of(call).accounts.call(request)


async def require_role(call: Call, session: str, needs: Role) -> Principal:
    """The caller, if their role on `session` is at least `needs`; else `RpcError`."""
    principal = await caller(call)
    role = await backend_of(call).role(principal, session)
    if not role_allows(role, needs):
        raise RpcError(FORBIDDEN, too_low(role, needs))
    return principal
