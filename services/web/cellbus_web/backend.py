"""What the API methods talk to, and how its failures become API errors.

The web service keeps no state: every method turns into calls to the accounts service (who
may do what, and every durable record), requests to a session (through `KernelClient`), or
reads of a session's feed (`FeedHub`). It only remembers the accounts service's answers about
who is calling (`Authenticator`) and their roles on sessions (`RoleCache`), until they may have
changed, and which of its sockets watch which session (`Presence`). `Backend` holds those for
one web process; `caller` and `ask_accounts` are the few lines every method starts with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from cellbus_protocol import accounts as a
from cellbus_protocol.bus import Bus
from cellbus_protocol.errors import BusUnavailable, RemoteError, RequestTimeout
from cellbus_protocol.kernel_client import KernelClient

from .auth import Authenticator, Principal
from .config import WebSettings
from .feeds import FeedHub
from .presence import Presence
from .roles import RoleCache
from .rpc import APPLICATION_ERRORS, UNAVAILABLE, Call, RpcError

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
        )

    async def role(self, principal: Principal, session: str) -> str:
        """The caller's role on `session` (remembered; see `roles`), or `RpcError` not found
        if none, as for a session that does not exist."""
        user = principal.user.id

        async def ask() -> str:
            return await translate(
                self.accounts.call(a.SessionRole(session=session, actor=user), str)
            )

        return await self.roles.role(user, session, ask)

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
    if principal is None:  # pragma: no cover - public methods do not call this
        raise RpcError(APPLICATION_ERRORS["unauthenticated"], "sign in first")
    return principal


async def authenticate(call: Call) -> None:
    """The `Api` hook run before every non-public method, once per HTTP request."""
    if "principal" not in call.state:
        backend = backend_of(call)
        call.state["principal"] = await translate(backend.authenticator.principal(call.request))


async def translate(awaitable: Any) -> Any:
    """Await `awaitable`, turning failures of the services behind into API errors."""
    try:
        return await awaitable
    except RemoteError as exc:
        code = APPLICATION_ERRORS.get(exc.code)
        if code is None:  # logged, with an id for the client, by the JSON-RPC layer
            raise RuntimeError(f"a service failed: {exc.code}: {exc.message}") from exc
        raise RpcError(code, exc.message, exc.data) from None
    except (BusUnavailable, RequestTimeout) as exc:
        raise RpcError(UNAVAILABLE, "a service is not answering; try again shortly") from exc


async def ask_accounts(call: Call, request: a.Request, result_type: type[T] | Any = Any) -> T:
    """Call the accounts service as the authenticated caller."""
    principal = await caller(call)
    request = msgspec.structs.replace(request, actor=principal.user.id)
    return await translate(backend_of(call).accounts.call(request, result_type))


async def require_role(call: Call, session: str, needs: str) -> Principal:
    rank = {"viewer": 1, "editor": 2, "owner": 3}
    role = await backend_of(call).role(await caller(call), session)
    if rank[role] < rank[needs]:
        raise RpcError(
            APPLICATION_ERRORS["forbidden"],
            f"this needs the {needs} role; you are {'an' if role == 'editor' else 'a'} {role}",
        )
    return await caller(call)
