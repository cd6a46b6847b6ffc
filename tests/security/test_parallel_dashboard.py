"""A session's Dask dashboard through the web service (``GET /parallel/{session}/dashboard/...``)
as an attacker tries it: nobody without a role on the session gets in, the session's own code
(which serves whatever it likes on its scheduler's HTTP port) never runs as a page of the app,
sets no cookie on the app's origin and cannot redirect elsewhere, and no path leaves the
session's prefix upstream.

Every test runs on the services apart and on the one program. The hostile pages are added to
the session's real scheduler by the worksheet's own code (Dask's Tornado application is in the
session process).
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import yarl

from ..support.api import PASSWORD, Client, new_user, stdout_of
from ..support.fixtures import both_stacks, signed_in
from ..support.stack import Stack

UNAUTHENTICATED, FORBIDDEN, NOT_FOUND, INVALID_PARAMS = -32001, -32003, -32004, -32602
REQUEST_TIMEOUT = 30.0
SANDBOX = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:"
WORKERS_PAGE = "info/main/workers.html"

HOSTILE = """
import re
import tornado.web
from cellbus.parallel import CLUSTER

PREFIX = CLUSTER.settings.dashboard

class Evil(tornado.web.RequestHandler):
    def get(self):
        self.set_header("Set-Cookie", "cellbus_session=planted; Path=/")
        self.set_header("Access-Control-Allow-Origin", "*")
        self.set_header("Content-Security-Policy", "default-src *")
        self.write("<script>document.title='pwned'</script><p>evil " + self.request.path)

class Away(tornado.web.RequestHandler):
    def get(self):
        self.redirect("http://evil.example/steal")

class Huge(tornado.web.RequestHandler):
    def get(self):
        for _ in range(17):
            self.write(b"x" * (1024 * 1024))

CLUSTER._scheduler.http_application.add_handlers(r".*", [
    (PREFIX + "/evil", Evil), (PREFIX + "/away", Away), (PREFIX + "/huge", Huge),
    (r"(?!" + re.escape(PREFIX) + r"/).*", Evil),  # outside the prefix: never to be reached
])
print(PREFIX)
"""

stack = both_stacks()
ada = signed_in("ada")
mallory = signed_in("mallory")


@dataclass(frozen=True)
class Got:
    status: int
    headers: dict[str, str]
    cookies: list[str]  # every Set-Cookie
    body: bytes

    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = json.loads(self.body)["error"]
        return error


async def run(client: Client, session: str, code: str) -> str:
    feed = await client.socket()
    try:
        await feed.subscribe(session=session, cursor="now")
        started = await client.call("session.execute", session=session, code=code)
        messages = await feed.until_done(started["msg_id"], timeout=120)
    finally:
        await feed.close()
    errors = [m["content"] for m in messages if m["header"]["msg_type"] == "error"]
    assert not errors, errors
    return stdout_of(messages)


async def get(
    who: Client | aiohttp.ClientSession,
    url: str | yarl.URL,
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> Got:
    http = who.http if isinstance(who, Client) else who
    sent = {**(who.headers() if isinstance(who, Client) else {}), **(headers or {})}

    async def send() -> Got:
        async with http.request(method, url, headers=sent, allow_redirects=False) as response:
            body = await response.read()
            return Got(
                response.status,
                dict(response.headers),
                response.headers.getall("Set-Cookie", []),
                body,
            )

    return await asyncio.wait_for(send(), REQUEST_TIMEOUT)


def page(client: Client, session: str, tail: str) -> yarl.URL:
    """The URL exactly as written (``..`` and ``%2e`` sent as they are)."""
    return yarl.URL(f"{client.url}/parallel/{session}/dashboard/{tail}", encoded=True)


@dataclass(frozen=True)
class Shared:
    """Ada's worksheet that has run a parallel map (its dashboard is registered), shared with
    bob as a viewer, with the hostile pages added to its scheduler: made once per stack (its
    Dask workers hold the kernel worker's cores while the session lives)."""

    session: str
    worksheet: str
    ada: Client
    bob: Client


async def _prepare(url: str) -> tuple[str, str, tuple[str, str], tuple[str, str]]:
    ada, bob = await new_user(url, "ada"), await new_user(url, "bob")
    try:
        sheet = await ada.call("worksheet.create", title="dashboard under attack")
        session = sheet["session"]
        code = "from cellbus import parallel\nprint(sum(parallel.map(abs, range(-5, 5))))"
        assert (await run(ada, session, code)).strip() == "25"
        printed = await run(ada, session, textwrap.dedent(HOSTILE))
        assert printed.strip() == f"/parallel/{session}/dashboard"
        await ada.call("worksheet.share", id=sheet["id"], username=bob.username, role="viewer")
        assert ada.token and bob.token
        return session, sheet["id"], (ada.token, ada.username), (bob.token, bob.username)
    finally:
        await ada.close()
        await bob.close()


@pytest.fixture(scope="module")
def prepared(stack: Stack) -> tuple[str, str, tuple[str, str], tuple[str, str]]:
    return asyncio.run(_prepare(stack.urls[0]))


@pytest.fixture
async def parallel_sheet(
    stack: Stack, prepared: tuple[str, str, tuple[str, str], tuple[str, str]]
) -> AsyncIterator[Shared]:
    session, worksheet, (ada_token, ada_name), (bob_token, bob_name) = prepared
    ada = Client(stack.urls[0], ada_token, ada_name)
    bob = Client(stack.urls[-1], bob_token, bob_name)  # another web process, if any
    yield Shared(session, worksheet, ada, bob)
    await ada.close()
    await bob.close()


async def test_owner_and_viewer_see_the_workers_page_sandboxed(parallel_sheet: Shared) -> None:
    ada = parallel_sheet.ada
    for who in (ada, parallel_sheet.bob):
        got = await get(who, page(who, parallel_sheet.session, WORKERS_PAGE))
        assert got.status == 200, got
        assert b"<table" in got.body  # Dask's page
        assert got.headers["Content-Security-Policy"] == SANDBOX
        assert got.headers["X-Content-Type-Options"] == "nosniff"
        assert got.headers["X-Frame-Options"] == "DENY"
        assert got.headers["Cache-Control"] == "private, no-cache"
        assert got.headers["Referrer-Policy"] == "same-origin"
        assert got.cookies == []
        head = await get(who, page(who, parallel_sheet.session, WORKERS_PAGE), "HEAD")
        assert head.status == 200 and head.body == b""
    # The bare prefix leads to the workers page.
    home = await get(ada, f"{ada.url}/parallel/{parallel_sheet.session}/dashboard")
    assert home.status == 302
    assert (
        home.headers["Location"] == f"/parallel/{parallel_sheet.session}/dashboard/{WORKERS_PAGE}"
    )


async def test_what_the_session_serves_runs_in_a_sandbox_and_sets_no_cookie(
    parallel_sheet: Shared,
) -> None:
    ada = parallel_sheet.ada
    got = await get(ada, page(ada, parallel_sheet.session, "evil?x=1"))
    assert got.status == 200 and b"<script>" in got.body  # passed on, but inert:
    assert got.headers["Content-Security-Policy"] == SANDBOX
    assert got.cookies == [] and "Access-Control-Allow-Origin" not in got.headers
    assert got.body.endswith(f"evil /parallel/{parallel_sheet.session}/dashboard/evil".encode())

    away = await get(ada, page(ada, parallel_sheet.session, "away"))
    assert away.status == 502 and "Location" not in away.headers, away
    assert "redirected elsewhere" in away.error()["message"]

    huge = await get(ada, page(ada, parallel_sheet.session, "huge"))
    assert huge.status == 502 and "over 16 MiB" in huge.error()["message"], huge.status


async def test_no_path_leaves_the_session_prefix(parallel_sheet: Shared) -> None:
    ada = parallel_sheet.ada
    session = parallel_sheet.session
    for tail in (
        "../../../evil", "..%2f..%2f..%2fevil", "%2e%2e/%2e%2e/%2e%2e/evil",
        "info/%2e%2e/%2e%2e/%2e%2e/%2e%2e/evil", "info/..%5c..%5c..%5cevil",
        "%2e%2e%2f%2e%2e%2fevil",
        "info/main/../../../../../evil",
    ):  # fmt: skip
        got = await get(ada, page(ada, session, tail))
        assert got.status == 400 and got.error()["code"] == INVALID_PARAMS, (tail, got)
        assert "is not allowed" in got.error()["message"]
        assert b"evil /" not in got.body, (tail, got.body[:200])


async def test_strangers_and_the_signed_out_are_refused(
    stack: Stack, mallory: Client, parallel_sheet: Shared
) -> None:
    ada = parallel_sheet.ada
    url = page(ada, parallel_sheet.session, WORKERS_PAGE)
    got = await get(mallory, url)
    assert got.status == 404 and got.error()["code"] == NOT_FOUND, got
    assert b"<table" not in got.body

    async with aiohttp.ClientSession() as nobody:
        got = await get(nobody, url)
        assert got.status == 401 and got.error()["code"] == UNAUTHENTICATED
        got = await get(nobody, url, headers={"Authorization": "Bearer not-a-token"})
        assert got.status == 401 and got.error()["code"] == UNAUTHENTICATED

    # Ada's browser, by its cookie: a link from the app's page (no Origin) works; a request
    # another site's page makes does not.
    browser = Client(stack.urls[0])
    try:
        await browser.call("auth.login", username=ada.username, password=PASSWORD)
        browser.token = None
        assert (await get(browser, url)).status == 200
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            got = await get(browser, url, headers=headers)
            assert got.status == 403 and got.error()["code"] == FORBIDDEN, headers
    finally:
        await browser.close()

    # Only GET and HEAD.
    for method in ("POST", "PUT", "DELETE"):
        assert (await get(ada, url, method)).status == 405, method


async def test_no_dashboard_and_bad_session_ids(ada: Client) -> None:
    sheet = await ada.call("worksheet.create", title="no parallel here")
    got = await get(ada, page(ada, sheet["session"], WORKERS_PAGE))
    assert got.status == 404 and got.error()["code"] == NOT_FOUND
    assert "has no Dask dashboard" in got.error()["message"]
    for bad in ("a.b", "x" * 65, "%2e%2e", "a%20b"):
        got = await get(ada, yarl.URL(f"{ada.url}/parallel/{bad}/dashboard/x", encoded=True))
        assert got.status in (400, 404), (bad, got)
        if got.status == 400:
            assert got.error()["code"] == INVALID_PARAMS


STOP_SERVING = """
import asyncio
from cellbus.parallel import CLUSTER

async def stop():
    server = CLUSTER._scheduler.http_server
    server.stop()  # no new connections
    await server.close_all_connections()  # nor the web service's kept-alive ones

asyncio.run_coroutine_threadsafe(stop(), CLUSTER._loop).result(10)
print("stopped")
"""


async def test_a_dashboard_that_does_not_answer_is_a_bad_gateway(parallel_sheet: Shared) -> None:
    """The session's code stops its scheduler's web server (last: the other tests need it)."""
    ada = parallel_sheet.ada
    assert (await run(ada, parallel_sheet.session, STOP_SERVING)).strip() == "stopped"
    got = await get(ada, page(ada, parallel_sheet.session, WORKERS_PAGE))
    assert got.status == 502 and "is not answering" in got.error()["message"], got
