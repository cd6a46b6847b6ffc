"""Requests as an attacker sends them: every response carries the security headers (errors
too), the Origin check compares scheme, host and port, a body that cannot be decoded is
-32700, and a call on something deleted in the same batch is the ordinary not-found error.

Every test runs on the services apart and on the one program (SQLite).
"""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web

from cellbus_web.app import security_headers

from ..support.api import Client
from ..support.fixtures import both_stacks, signed_in
from ..support.stack import Stack, free_port
from .api_people import batch, code, request

PARSE_ERROR, INTERNAL_ERROR, FORBIDDEN, NOT_FOUND = -32700, -32603, -32003, -32004
SECURITY_HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options",
                    "Referrer-Policy")  # fmt: skip
MAX_BODY_BYTES = 16 * 1024 * 1024  # CELLBUS_MAX_BODY_BYTES's default


stack = both_stacks()


ada = signed_in("ada")


def assert_secured(response: aiohttp.ClientResponse) -> None:
    missing = [name for name in SECURITY_HEADERS if name not in response.headers]
    assert not missing, f"HTTP {response.status} lacks {missing}"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


async def test_error_responses_carry_the_security_headers(stack: Stack) -> None:
    url = stack.urls[0]
    async with aiohttp.ClientSession() as http:
        cases = [
            (404, http.get(url + "/no/such/page")),
            (405, http.put(url + "/rpc", data=b"{}")),
            (401, http.get(url + "/ws")),
            (415, http.post(url + "/rpc", data=b"{}", headers={"Content-Type": "text/plain"})),
            (413, http.post(url + "/rpc", data=io.BytesIO(b" " * (MAX_BODY_BYTES + 1)),
                            headers={"Content-Type": "application/json"})),
            (200, http.get(url + "/healthz")),
        ]  # fmt: skip
        for status, sent in cases:
            async with sent as response:
                assert response.status == status
                assert_secured(response)


async def test_an_unexpected_failure_is_a_500_with_the_security_headers() -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug")

    app = web.Application(middlewares=[security_headers])
    app.router.add_get("/broken", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/broken") as response:
                assert response.status == 500
                assert "a bug" not in await response.text()
                assert_secured(response)
    finally:
        await runner.cleanup()


async def test_the_origin_check_compares_scheme_host_and_port(stack: Stack, ada: Client) -> None:
    browser = Client(stack.urls[0])  # signed in by its cookie only, as a browser is
    await browser.call("auth.login", username=ada.username, password="correct horse battery")
    browser.token = None
    here = urlsplit(stack.urls[0])
    port = here.port or 80

    async def whoami_from(origin: str) -> dict[str, Any]:
        response = await browser.post(request("auth.whoami"), headers={"Origin": origin})
        answer: dict[str, Any] = await response.json()
        return answer

    try:
        assert (await whoami_from(f"http://{here.hostname}:{port}"))["result"]["username"] == (
            ada.username
        )
        for origin in (
            f"https://{here.hostname}:{port}",  # another scheme
            f"http://{here.hostname}:{port + 1}",  # another port
            f"http://{here.hostname}",  # port 80
            f"http://evil.example:{port}",
            "null",
        ):
            assert code(await whoami_from(origin)) == FORBIDDEN, origin
    finally:
        await browser.close()


@pytest.mark.parametrize(
    "body",
    [b"[" * 1000 + b"]" * 1000, b'{"a":' * 1000 + b"1" + b"}" * 1000,
     b"[" * 100_000 + b"]" * 100_000, b'{"jsonrpc": "2.0", "method": "\xff", "id": 1}',
     b'{"jsonrpc": "2.0",'],
    ids=["nested-1000", "objects-1000", "nested-100000", "bad-utf8", "truncated"],
)  # fmt: skip
async def test_a_body_that_cannot_be_decoded_is_a_parse_error(stack: Stack, body: bytes) -> None:
    client = Client(stack.urls[0])
    try:
        response = await client.post(body)
        assert response.status == 200
        assert response.content_type == "application/json"
        reply = await response.json()
        assert reply["error"]["code"] == PARSE_ERROR and reply["id"] is None
        assert_secured(response)
    finally:
        await client.close()


async def test_a_call_on_a_cell_deleted_in_the_same_batch_is_not_found(ada: Client) -> None:
    sheet = await ada.call("worksheet.create", title="Deleted in a batch")
    outcomes = set()
    for _ in range(5):
        cell = await ada.call("cell.create", worksheet=sheet["id"], source="1 + 1")
        calls = [
            request("cell.delete", id=cell["id"]),
            request("cell.evaluate", id=cell["id"]),
            request("cell.update", id=cell["id"], source="2", version=1),
        ]
        deleted, evaluated, updated = await batch(ada, calls)
        assert code(deleted) is None, deleted
        for reply in (evaluated, updated):  # a batch runs concurrently: before or after
            assert code(reply) in (None, NOT_FOUND), json.dumps(reply)
            outcomes.add(code(reply))
        after = await ada.error("cell.evaluate", id=cell["id"])
        assert after.code == NOT_FOUND
    assert NOT_FOUND in outcomes


async def test_a_call_on_a_worksheet_deleted_in_the_same_batch_is_not_found(ada: Client) -> None:
    for _ in range(5):
        sheet = await ada.call("worksheet.create", title="Deleted in a batch")
        calls = [
            request("worksheet.delete", id=sheet["id"]),
            request("worksheet.rename", id=sheet["id"], title="Renamed"),
            request("cell.create", worksheet=sheet["id"], source="x"),
        ]
        replies = await batch(ada, calls)
        assert code(replies[0]) is None
        for reply in replies[1:]:
            assert code(reply) in (None, NOT_FOUND), json.dumps(reply)
