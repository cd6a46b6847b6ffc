"""``auth.*`` and ``user.*``: accounts, logging in and out, tokens."""

from __future__ import annotations

from cellbus_protocol import accounts as a

from ..auth import COOKIE, origin_allowed, presented_token
from ..backend import ask_accounts, backend_of, caller
from ..rpc import FORBIDDEN, Api, Call, RpcError

SESSION_COOKIE_DAYS = 30


def register(api: Api) -> None:
    api.method("auth.register", public=True)(auth_register)
    api.method("auth.login", public=True)(auth_login)
    api.method("auth.logout", public=True)(auth_logout)
    api.method("auth.whoami")(auth_whoami)
    api.method("auth.tokens")(auth_tokens)
    api.method("auth.revoke")(auth_revoke)
    api.method("user.list")(user_list)


async def auth_register(call: Call, username: str, password: str) -> a.UserView:
    """Create an account. The first account of a server is its admin.

    Usernames have 2 to 32 letters, digits, '.', '_' or '-'; passwords at least 8
    characters, not the username, not one of the most common passwords (the error names
    the rule). Sign-up may be closed by the server (forbidden)."""
    backend = backend_of(call)
    request = a.Register(username=username, password=password)
    return await backend.accounts.call(request)


async def auth_login(call: Call, username: str, password: str, label: str = "") -> a.LoginResult:
    """Log in: returns a token (for the Authorization header) and sets the session cookie.

    Every call counts against the username's and the address's login budget, a batch's calls
    each; past it, logins are refused for a while without checking the password (rate
    limited, with ``data.retry_after`` in seconds). See docs/security.md."""
    backend = backend_of(call)
    label = label or call.request.headers.get("User-Agent", "")[:100]
    address = call.request.remote or ""
    request = a.Login(username=username, password=password, label=label, address=address)
    result = await backend.accounts.call(request)
    call.set_cookie(
        COOKIE, result.token, httponly=True, samesite="Lax", path="/",
        secure=backend.settings.secure_cookies, max_age=SESSION_COOKIE_DAYS * 86400,
    )  # fmt: skip
    return result


async def auth_logout(call: Call) -> None:
    """Revoke the token this request was made with and clear the session cookie.

    Needs no valid token: a browser holding an expired cookie must be able to drop it (the
    cookie is HttpOnly, so only the server can)."""
    backend = backend_of(call)
    presented = presented_token(call.request)
    if presented is None:
        call.del_cookie(COOKIE, path="/")
        return
    token, via_cookie = presented
    if via_cookie and not origin_allowed(call.request, backend.settings):
        raise RpcError(FORBIDDEN, "a cookie-authenticated request must come from this site")
    call.del_cookie(COOKIE, path="/")
    await backend.accounts.call(a.Logout(token=token))
    backend.authenticator.forget(token)


async def auth_whoami(call: Call) -> a.UserView:
    """The signed-in user."""
    return await ask_accounts(call, a.WhoAmI())


async def auth_tokens(call: Call) -> list[a.TokenView]:
    """The signed-in user's tokens (their secrets are never shown again)."""
    return await ask_accounts(call, a.ListTokens())


async def auth_revoke(call: Call, id: str) -> None:
    """Revoke one of the signed-in user's tokens (say, a lost laptop's)."""
    await ask_accounts(call, a.RevokeToken(id=id))
    backend_of(call).authenticator.forget_user((await caller(call)).user.id)


async def user_list(call: Call) -> list[a.UserView]:
    """The users one may share a worksheet with."""
    return await ask_accounts(call, a.ListUsers())
