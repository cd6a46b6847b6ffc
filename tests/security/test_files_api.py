"""The files API as a hostile user tries it: the ``files.*`` methods and ``GET``/``PUT
/files/{worksheet}/{path}`` must keep every request inside one worksheet's workspace, whatever
path is sent and whatever the worksheet's own code planted there (symbolic links to the
machine's or the test's files and folders, a FIFO), and must let nobody in who has no role,
no valid token, or only a cookie on another site's page. A download never runs as a page.

Every test runs on the services apart and on the one program (SQLite). What the web process
might have touched outside a workspace is a file and a folder of this test's own
(``tmp_path``): the links point there, and the test checks them after each attempt.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import pytest
import yarl

from ..support.api import PASSWORD, ApiError, Client, stdout_of
from ..support.files import Answer
from ..support.fixtures import both_stacks, signed_in
from ..support.stack import Stack

INVALID_PARAMS, UNAUTHENTICATED, FORBIDDEN, NOT_FOUND = -32602, -32001, -32003, -32004
REQUEST_TIMEOUT = 10.0
"""Seconds any one request may take: a request that hangs (on a FIFO, say) fails the test."""
LINK = "is a symbolic link: links are not followed"
SPECIAL = "is not a regular file or folder (a FIFO): refused"
VIEWER = "this needs the editor role; you are a viewer"

stack = both_stacks()
ada = signed_in("ada")
mallory = signed_in("mallory")

T = TypeVar("T")


async def within(action: Awaitable[T]) -> T:
    return await asyncio.wait_for(action, REQUEST_TIMEOUT)


async def new_sheet(client: Client) -> dict[str, Any]:
    return dict(await client.call("worksheet.create", title="files under attack"))


async def printed(client: Client, session: str, code: str) -> str:
    """Run `code` in the worksheet's session (its working directory is the workspace)."""
    feed = await client.socket()
    try:
        await feed.subscribe(session=session, cursor="now")
        started = await client.call("session.execute", session=session, code=textwrap.dedent(code))
        messages = await feed.until_done(started["msg_id"], timeout=120)
    finally:
        await feed.close()
    errors = [m["content"] for m in messages if m["header"]["msg_type"] == "error"]
    assert not errors, errors
    return stdout_of(messages)


async def refused(client: Client, method: str, **params: Any) -> ApiError:
    """The error `method` must give, within the time limit."""
    return await within(client.error(method, **params))


def raw_url(client: Client, worksheet: str, path: str) -> yarl.URL:
    """The file's URL exactly as an attacker writes it: `..` and `//` are sent as they are
    (an ordinary client would resolve them before sending)."""
    return yarl.URL(f"{client.url}/files/{worksheet}/{quote(path)}", encoded=True)


async def http(
    client: Client | aiohttp.ClientSession,
    method: str,
    url: yarl.URL,
    data: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[Answer, bytes]:
    """One GET or PUT, within the time limit: its answer (JSON body if any) and its bytes."""
    session = client.http if isinstance(client, Client) else client
    sent = {**(client.headers() if isinstance(client, Client) else {}), **(headers or {})}

    async def send() -> tuple[Answer, bytes]:
        async with session.request(
            method, url, data=data if method == "PUT" else None, headers=sent
        ) as response:
            content = await response.read()
            body = await response.json() if response.content_type == "application/json" else None
            return Answer(response.status, dict(response.headers), body), content

    return await within(send())


async def download(client: Client, worksheet: str, path: str) -> tuple[Answer, bytes]:
    return await http(client, "GET", raw_url(client, worksheet, path))


async def upload(client: Client, worksheet: str, path: str, data: bytes) -> Answer:
    return (await http(client, "PUT", raw_url(client, worksheet, path), data))[0]


async def names(client: Client, worksheet: str, path: str = "") -> list[str]:
    return [e["name"] for e in await client.call("files.list", worksheet=worksheet, path=path)]


def outside(tmp_path: Path) -> tuple[Path, Path]:
    """A file and a folder (holding a file) of the test's own, outside every workspace."""
    mine = tmp_path / "mine.txt"
    mine.write_text("the test's own file\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "precious.txt").write_text("precious\n")
    return mine, folder


def unchanged(tmp_path: Path) -> None:
    """The test's own file and folder are as `outside` made them, and nothing was added."""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "mine.txt"]
    assert (tmp_path / "mine.txt").read_text() == "the test's own file\n"
    assert sorted(p.name for p in (tmp_path / "folder").iterdir()) == ["precious.txt"]
    assert (tmp_path / "folder" / "precious.txt").read_text() == "precious\n"


# -- paths that leave the workspace ---------------------------------------------------------

BAD_PATHS = [
    ("../x", ".. is not allowed in a path inside the workspace"),
    ("a/../../etc/passwd", ".. is not allowed in a path inside the workspace"),
    ("./x", ". is not allowed in a path inside the workspace"),
    ("/etc/passwd", "an absolute path; give a path inside the workspace"),
    ("a//b", "an empty name is not allowed in a path inside the workspace"),
    ("a/", "an empty name is not allowed in a path inside the workspace"),
    ("a\0b", "a path may not contain NUL"),
    ("x" * 256, "a name is longer than 255 bytes"),
    ("é" * 128, "a name is longer than 255 bytes"),  # 128 characters, 256 bytes
    ("/".join(["d" * 200] * 21), "the path is longer than 4096 bytes"),
]


@pytest.mark.parametrize(("path", "problem"), BAD_PATHS, ids=lambda v: repr(v)[:24])
async def test_a_path_out_of_the_workspace_is_refused_by_every_method_and_transfer(
    ada: Client, path: str, problem: str
) -> None:
    w = (await new_sheet(ada))["id"]
    await ada.call("files.write", worksheet=w, path="ok.txt", text="kept")
    for method, params in (
        ("files.list", {"path": path}), ("files.stat", {"path": path}),
        ("files.read", {"path": path}), ("files.write", {"path": path, "text": "x"}),
        ("files.mkdir", {"path": path}), ("files.delete", {"path": path}),
        ("files.move", {"source": path, "destination": "moved.txt"}),
        ("files.move", {"source": "ok.txt", "destination": path}),
    ):  # fmt: skip
        error = await refused(ada, method, worksheet=w, **params)
        assert error.code == INVALID_PARAMS and problem in error.message, (method, error)
    got, _ = await download(ada, w, path)
    assert got.status == 400 and problem in got.message, got
    put = await upload(ada, w, path, b"x")
    assert put.status == 400 and problem in put.message, put
    assert await names(ada, w) == ["ok.txt"]
    assert (await ada.call("files.read", worksheet=w, path="ok.txt"))["text"] == "kept"


async def test_dot_dot_sent_percent_encoded_is_refused_too(ada: Client) -> None:
    w = (await new_sheet(ada))["id"]
    await ada.call("files.write", worksheet=w, path="ok.txt", text="kept")
    for encoded, problem in (
        ("%2E%2E/%2E%2E/etc/passwd", ".. is not allowed"), ("%2e%2e%2fx", ".. is not allowed"),
        ("a%2F%2Fb", "an empty name is not allowed"), ("%2Fetc%2Fpasswd", "an absolute path"),
    ):  # fmt: skip
        url = yarl.URL(f"{ada.url}/files/{w}/{encoded}", encoded=True)
        got, data = await http(ada, "GET", url)
        assert got.status == 400 and problem in got.message, (encoded, got)
        assert b"root:" not in data
        put, _ = await http(ada, "PUT", url, b"x")
        assert put.status == 400 and problem in put.message, (encoded, put)
    assert await names(ada, w) == ["ok.txt"]


# -- what the worksheet's own code plants in its workspace ----------------------------------


async def test_symbolic_links_are_never_followed(ada: Client, tmp_path: Path) -> None:
    mine, folder = outside(tmp_path)
    sheet = await new_sheet(ada)
    w = sheet["id"]
    await printed(
        ada,
        sheet["session"],
        f"""
        import os
        os.symlink("/etc/passwd", "passwd")
        os.symlink("/etc", "linkdir")
        os.symlink({str(mine)!r}, "mine")
        os.symlink({str(folder)!r}, "mydir")
        """,
    )
    listing = await ada.call("files.list", worksheet=w)
    assert {e["name"]: e["type"] for e in listing} == {
        "linkdir": "link", "mine": "link", "mydir": "link", "passwd": "link",
    }  # fmt: skip
    described = await ada.call("files.stat", worksheet=w, path="passwd")  # the link itself
    assert described["type"] == "link" and described["size"] == len("/etc/passwd")

    # Reading, through a link to a file or through a linked folder in the middle of a path.
    for path, link in (
        ("passwd", "passwd"), ("mine", "mine"), ("linkdir/passwd", "linkdir"),
        ("mydir/precious.txt", "mydir"),
    ):  # fmt: skip
        read = await refused(ada, "files.read", worksheet=w, path=path)
        assert read.code == FORBIDDEN and f"{link} {LINK}" in read.message, (path, read)
        got, data = await download(ada, w, path)
        assert got.status == 403 and f"{link} {LINK}" in got.message, (path, got)
        assert b"root:" not in data and b"precious" not in data and b"own file" not in data
    for path, link in (("linkdir/passwd", "linkdir"), ("mydir/precious.txt", "mydir")):
        through = await refused(ada, "files.stat", worksheet=w, path=path)
        assert through.code == FORBIDDEN and f"{link} {LINK}" in through.message, through
    for path in ("linkdir", "mydir"):
        listed = await refused(ada, "files.list", worksheet=w, path=path)
        assert listed.code == FORBIDDEN and f"{path} {LINK}" in listed.message, listed

    # Writing onto a link to a file, or into a linked folder.
    for path, link in (
        ("mine", "mine"), ("passwd", "passwd"), ("mydir/new.txt", "mydir"),
        ("mydir/precious.txt", "mydir"), ("linkdir/new.txt", "linkdir"),
    ):  # fmt: skip
        write = await refused(ada, "files.write", worksheet=w, path=path, text="pwned\n")
        assert write.code == FORBIDDEN and f"{link} {LINK}" in write.message, (path, write)
        put = await upload(ada, w, path, b"pwned\n")
        assert put.status == 403 and f"{link} {LINK}" in put.message, (path, put)
    made = await refused(ada, "files.mkdir", worksheet=w, path="mydir/sub")
    assert made.code == FORBIDDEN and f"mydir {LINK}" in made.message, made
    unchanged(tmp_path)
    assert sorted(await names(ada, w)) == ["linkdir", "mine", "mydir", "passwd"]


async def test_a_fifo_is_refused_and_never_hangs_a_request(ada: Client) -> None:
    sheet = await new_sheet(ada)
    w = sheet["id"]
    await printed(ada, sheet["session"], "import os; os.mkfifo('pipe')")
    assert (await ada.call("files.stat", worksheet=w, path="pipe"))["type"] == "other"
    read = await refused(ada, "files.read", worksheet=w, path="pipe")
    assert read.code == FORBIDDEN and f"pipe {SPECIAL}" in read.message, read
    write = await refused(ada, "files.write", worksheet=w, path="pipe", text="x")
    assert write.code == FORBIDDEN and f"pipe {SPECIAL}" in write.message, write
    got, _ = await download(ada, w, "pipe")
    assert got.status == 403 and f"pipe {SPECIAL}" in got.message, got
    put = await upload(ada, w, "pipe", b"x")
    assert put.status == 403 and f"pipe {SPECIAL}" in put.message, put
    assert [(e["name"], e["type"]) for e in await ada.call("files.list", worksheet=w)] == [
        ("pipe", "other")
    ]


async def test_a_move_stays_in_the_workspace(ada: Client, tmp_path: Path) -> None:
    _, folder = outside(tmp_path)
    sheet = await new_sheet(ada)
    w = sheet["id"]
    await ada.call("files.write", worksheet=w, path="ok.txt", text="kept")
    await printed(
        ada,
        sheet["session"],
        f"import os; os.symlink('/etc', 'linkdir'); os.symlink({str(folder)!r}, 'mydir')",
    )
    for destination, code, problem in (
        ("../x", INVALID_PARAMS, ".. is not allowed"),
        ("/tmp/x", INVALID_PARAMS, "an absolute path"),
        (f"{tmp_path}/x", INVALID_PARAMS, "an absolute path"),
        (f"../../../../../../..{tmp_path}/x", INVALID_PARAMS, ".. is not allowed"),
        ("linkdir/x", FORBIDDEN, f"linkdir {LINK}"),
        ("mydir/x", FORBIDDEN, f"mydir {LINK}"),
    ):
        error = await refused(
            ada, "files.move", worksheet=w, source="ok.txt", destination=destination
        )
        assert error.code == code and problem in error.message, (destination, error)
    # Nor is anything moved in from outside, through a linked folder.
    stolen = await refused(
        ada, "files.move", worksheet=w, source="mydir/precious.txt", destination="stolen.txt"
    )
    assert stolen.code == FORBIDDEN and f"mydir {LINK}" in stolen.message, stolen
    assert (await ada.call("files.read", worksheet=w, path="ok.txt"))["text"] == "kept"
    assert sorted(await names(ada, w)) == ["linkdir", "mydir", "ok.txt"]
    unchanged(tmp_path)  # no x there


async def test_a_delete_removes_a_link_not_what_it_points_to(ada: Client, tmp_path: Path) -> None:
    mine, folder = outside(tmp_path)
    sheet = await new_sheet(ada)
    w = sheet["id"]
    await ada.call("files.write", worksheet=w, path="ok.txt", text="kept")
    await printed(
        ada,
        sheet["session"],
        f"""
        import os
        os.symlink("ok.txt", "inner")
        os.symlink({str(mine)!r}, "mine")
        os.symlink({str(folder)!r}, "mydir")
        os.mkdir("box")
        os.symlink({str(folder)!r}, "box/out")
        os.symlink({str(mine)!r}, "box/mine")
        """,
    )
    for path in ("inner", "mine", "mydir"):
        await ada.call("files.delete", worksheet=w, path=path)
    assert sorted(await names(ada, w)) == ["box", "ok.txt"]
    assert (await ada.call("files.read", worksheet=w, path="ok.txt"))["text"] == "kept"
    unchanged(tmp_path)
    await ada.call("files.delete", worksheet=w, path="box")  # a folder holding links outside
    assert await names(ada, w) == ["ok.txt"]
    unchanged(tmp_path)


# -- who may touch a worksheet's files ------------------------------------------------------


async def test_someone_elses_worksheet_is_not_found(ada: Client, mallory: Client) -> None:
    w = (await new_sheet(ada))["id"]
    await ada.call("files.write", worksheet=w, path="secret.txt", text="ada's secret")
    nowhere = "00000000-0000-0000-0000-000000000000"
    for sheet in (w, nowhere):  # the same answer as for a worksheet that does not exist
        for method, params in (
            ("files.list", {}), ("files.stat", {"path": "secret.txt"}),
            ("files.read", {"path": "secret.txt"}), ("files.usage", {}),
            ("files.write", {"path": "secret.txt", "text": "pwned"}),
            ("files.mkdir", {"path": "d"}), ("files.delete", {"path": "secret.txt"}),
            ("files.move", {"source": "secret.txt", "destination": "mine.txt"}),
        ):  # fmt: skip
            error = await refused(mallory, method, worksheet=sheet, **params)
            assert error.code == NOT_FOUND, (sheet, method, error)
            assert "secret" not in error.message
        got, data = await download(mallory, sheet, "secret.txt")
        assert got.status == 404 and got.body["error"]["code"] == NOT_FOUND, got
        assert b"ada's secret" not in data
        put = await upload(mallory, sheet, "secret.txt", b"pwned")
        assert put.status == 404 and put.body["error"]["code"] == NOT_FOUND, put
    assert await names(ada, w) == ["secret.txt"]
    assert (await ada.call("files.read", worksheet=w, path="secret.txt"))["text"] == "ada's secret"


async def test_a_viewer_reads_but_changes_nothing(ada: Client, mallory: Client) -> None:
    w = (await new_sheet(ada))["id"]
    await ada.call("files.write", worksheet=w, path="shared.txt", text="for viewers")
    await ada.call("worksheet.share", id=w, username=mallory.username, role="viewer")
    assert await names(mallory, w) == ["shared.txt"]
    got, data = await download(mallory, w, "shared.txt")
    assert got.status == 200 and data == b"for viewers"
    for method, params in (
        ("files.write", {"path": "shared.txt", "text": "pwned"}),
        ("files.write", {"path": "new.txt", "text": "pwned"}), ("files.mkdir", {"path": "d"}),
        ("files.move", {"source": "shared.txt", "destination": "moved.txt"}),
        ("files.delete", {"path": "shared.txt"}),
    ):  # fmt: skip
        error = await refused(mallory, method, worksheet=w, **params)
        assert error.code == FORBIDDEN and VIEWER in error.message, (method, error)
    for path in ("shared.txt", "new.txt"):
        put = await upload(mallory, w, path, b"pwned")
        assert put.status == 403 and VIEWER in put.message, put
    assert await names(ada, w) == ["shared.txt"]
    assert (await ada.call("files.read", worksheet=w, path="shared.txt"))["text"] == "for viewers"


async def test_no_token_a_bad_token_or_a_cookie_from_another_site_is_refused(
    stack: Stack, ada: Client
) -> None:
    w = (await new_sheet(ada))["id"]
    await ada.call("files.write", worksheet=w, path="a.txt", text="ada's")
    url = raw_url(ada, w, "a.txt")
    async with aiohttp.ClientSession() as stranger:  # no token, no cookie
        for method in ("GET", "PUT"):
            answer, data = await http(stranger, method, url, b"pwned")
            assert answer.status == 401 and answer.body["error"]["code"] == UNAUTHENTICATED
            assert "sign in first" in answer.message and b"ada's" not in data
            for header, problem in (
                ("Bearer not-a-token", "the token is unknown, expired or revoked"),
                ("Basic YWRhOnB3", "must be 'Bearer <token>'"),
                ("Bearer ", "must be 'Bearer <token>'"),
            ):  # fmt: skip
                answer, data = await http(
                    stranger, method, url, b"pwned", {"Authorization": header}
                )
                assert answer.status == 401, (method, header, answer)
                assert answer.body["error"]["code"] == UNAUTHENTICATED and problem in answer.message
                assert b"ada's" not in data

    # Ada's browser: signed in by its cookie only.
    browser = Client(stack.urls[0])
    try:
        await browser.call("auth.login", username=ada.username, password=PASSWORD)
        browser.token = None
        here = stack.urls[0]
        for method, headers in (
            ("PUT", {"Origin": "https://evil.example"}), ("PUT", {}),  # a PUT needs this Origin
            ("GET", {"Origin": "https://evil.example"}),
            ("GET", {"Sec-Fetch-Site": "cross-site"}), ("GET", {"Sec-Fetch-Site": "same-site"}),
        ):  # fmt: skip
            answer, data = await http(browser, method, url, b"pwned", headers)
            assert answer.status == 403, (method, headers, answer)
            assert "a cookie-authenticated request must come from this site" in answer.message
            assert b"ada's" not in data
        assert (await ada.call("files.read", worksheet=w, path="a.txt"))["text"] == "ada's"
        # From the app's own page, the same cookie works.
        answer, data = await http(browser, "GET", url, headers={"Origin": here})
        assert answer.status == 200 and data == b"ada's"
        answer, _ = await http(browser, "PUT", url, b"from the app", {"Origin": here})
        assert answer.status == 200, answer
    finally:
        await browser.close()
    assert (await ada.call("files.read", worksheet=w, path="a.txt"))["text"] == "from the app"


# -- what a download is ---------------------------------------------------------------------

PAGE = "<script>alert(1)</script>"
DOWNLOADS = [
    ("page.html", "page.html"), ("image.svg", "image.svg"),
    ('say "hi"; x=1\\.html', "say _hi_; x=1_.html"),  # a quote and a backslash: replaced
]  # fmt: skip
"""What a cell names its files, and the plain ``filename`` their download gives."""


async def test_html_a_cell_wrote_downloads_as_an_attachment_that_cannot_run(ada: Client) -> None:
    sheet = await new_sheet(ada)
    w = sheet["id"]
    await printed(
        ada,
        sheet["session"],
        f"""
        for name in {[name for name, _ in DOWNLOADS]!r}:
            open(name, "w").write({PAGE!r})
        """,
    )
    for name, fallback in DOWNLOADS:
        got, data = await download(ada, w, name)
        assert got.status == 200 and data == PAGE.encode(), (name, got)
        assert got.headers["Content-Type"] == "application/octet-stream"
        assert got.headers["X-Content-Type-Options"] == "nosniff"
        assert "sandbox" in got.headers["Content-Security-Policy"]
        assert got.headers["X-Frame-Options"] == "DENY"
        disposition = got.headers["Content-Disposition"]
        assert disposition.startswith("attachment;"), disposition
        assert disposition == (
            f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
        )


async def test_a_name_that_would_break_the_headers_downloads_with_safe_headers(
    ada: Client,
) -> None:
    """A cell may name a file with a line break, to try to add a header to its download: the
    file downloads as any other, its name made harmless in ``Content-Disposition``."""
    sheet = await new_sheet(ada)
    w = sheet["id"]
    name = 'evil"\r\nSet-Cookie: x=1.html'
    await printed(ada, sheet["session"], f"open({name!r}, 'w').write({PAGE!r})")
    assert await names(ada, w) == [name]
    got, data = await download(ada, w, name)
    assert got.status == 200 and data == PAGE.encode(), got
    assert got.headers["Content-Disposition"] == (
        'attachment; filename="evil___Set-Cookie: x=1.html"; '
        "filename*=UTF-8''evil%22%0D%0ASet-Cookie%3A%20x%3D1.html"
    )
    assert "Set-Cookie" not in got.headers
