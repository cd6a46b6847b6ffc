"""`RpcClient` against a tiny JSON-RPC server written here: results, errors, failures to reach.

The server answers like the contract: a result, or an error object {code, message, data}. The
client must send the bearer token and named params, raise `RpcError` with the code, message and
data of every contract error, retry a short rate limit once it has passed, and raise
`ServerUnreachable` for a closed port, a timeout or a gateway's HTML error page.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from cellbus_cli.client import RpcClient
from cellbus_cli.errors import RpcError, ServerUnreachable

CONTRACT_ERRORS = [
    (-32700, "parse error", None),
    (-32600, "invalid request", None),
    (-32601, "method not found", None),
    (-32602, "invalid params: a username is letters and digits", None),
    (-32603, "internal error", {"error_id": "e-42"}),
    (-32001, "not authenticated", None),
    (-32003, "forbidden", None),
    (-32004, "no such worksheet", None),
    (-32009, "conflict", {"id": "c1", "source": "x", "version": 7}),
    (-32010, "the username 'bob' is taken", None),
    (-32013, "too large", None),
    (-32029, "rate limited", {"retry_after": 60}),
    (-32050, "unavailable", None),
]


class Script:
    """What the test server answers, per method; and what it was asked."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Any]] = {}
        self.seen: list[dict[str, Any]] = []

    async def rpc(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.seen.append({"body": body, "auth": request.headers.get("Authorization")})
        answer = self.answers[body["method"]].pop(0)
        if isinstance(answer, web.StreamResponse):
            return answer
        if answer == "hang":
            await asyncio.sleep(10)
        if isinstance(answer, tuple):
            code, message, data = answer
            error = {"code": code, "message": message, "data": data}
            return web.json_response({"jsonrpc": "2.0", "id": body["id"], "error": error})
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": answer})


@pytest.fixture
async def served() -> AsyncIterator[tuple[Script, str]]:
    script = Script()
    app = web.Application()
    app.router.add_post("/rpc", script.rpc)
    async with TestServer(app, host="127.0.0.1") as server:
        yield script, str(server.make_url("")).rstrip("/")


async def test_result_with_token_and_named_params(served: tuple[Script, str]) -> None:
    script, url = served
    script.answers["worksheet.get"] = [{"id": "w1", "title": "Plots"}]
    async with RpcClient(url + "/", "t0k3n") as rpc:
        assert await rpc.call("worksheet.get", id="w1") == {"id": "w1", "title": "Plots"}
    (seen,) = script.seen
    assert seen["auth"] == "Bearer t0k3n"
    assert seen["body"]["jsonrpc"] == "2.0"
    assert seen["body"]["method"] == "worksheet.get"
    assert seen["body"]["params"] == {"id": "w1"}


async def test_no_token_no_authorization_header(served: tuple[Script, str]) -> None:
    script, url = served
    script.answers["auth.login"] = [{"token": "t", "user": {"username": "a"}}]
    async with RpcClient(url) as rpc:
        await rpc.call("auth.login", username="a", password="p")
    assert script.seen[0]["auth"] is None


@pytest.mark.parametrize(("code", "message", "data"), CONTRACT_ERRORS)
async def test_contract_errors_become_rpc_errors(
    served: tuple[Script, str], code: int, message: str, data: Any
) -> None:
    script, url = served
    script.answers["m"] = [(code, message, data)]
    async with RpcClient(url, "t") as rpc:
        with pytest.raises(RpcError) as caught:
            await rpc.call("m")
    assert (caught.value.code, caught.value.message, caught.value.data) == (code, message, data)
    assert "\n" not in caught.value.describe()


def test_error_descriptions_say_what_data_adds() -> None:
    assert RpcError(-32603, "internal error", {"error_id": "e-42"}).describe() == (
        "internal error (error id e-42)"
    )
    assert RpcError(-32029, "rate limited", {"retry_after": 3}).describe() == (
        "rate limited (retry after 3 s)"
    )
    assert "version 7" in RpcError(-32009, "conflict", {"version": 7}).describe()
    assert RpcError(-32004, "no such\nworksheet").describe() == "no such worksheet"


async def test_a_short_rate_limit_is_retried(served: tuple[Script, str]) -> None:
    script, url = served
    script.answers["m"] = [(-32029, "slow down", {"retry_after": 0.01}), "ok"]
    async with RpcClient(url, "t") as rpc:
        assert await rpc.call("m") == "ok"
    assert len(script.seen) == 2


async def test_a_persistent_rate_limit_is_raised(served: tuple[Script, str]) -> None:
    script, url = served
    script.answers["m"] = [(-32029, "slow down", {"retry_after": 0.01})] * 3
    async with RpcClient(url, "t", rate_limit_retries=2) as rpc:
        with pytest.raises(RpcError) as caught:
            await rpc.call("m")
    assert caught.value.code == -32029 and len(script.seen) == 3


async def test_gateway_page_is_unreachable_other_junk_is_internal(
    served: tuple[Script, str],
) -> None:
    script, url = served
    script.answers["m"] = [
        web.Response(status=502, text="<html>Bad Gateway</html>", content_type="text/html"),
        web.Response(status=200, text="hello", content_type="text/plain"),
    ]
    async with RpcClient(url, "t") as rpc:
        with pytest.raises(ServerUnreachable, match="502"):
            await rpc.call("m")
        with pytest.raises(RpcError) as caught:
            await rpc.call("m")
    assert caught.value.code == -32603


async def test_a_timeout_is_unreachable(served: tuple[Script, str]) -> None:
    script, url = served
    script.answers["m"] = ["hang"]
    async with RpcClient(url, "t", timeout=0.1) as rpc:
        with pytest.raises(ServerUnreachable, match="no answer"):
            await rpc.call("m")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_a_closed_port_is_unreachable() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    async with RpcClient(url, "t") as rpc:
        with pytest.raises(ServerUnreachable) as caught:
            await rpc.call("auth.whoami")
    assert caught.value.url == url
