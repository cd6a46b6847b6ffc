"""Attacks on the Jupyter Server API (/api/kernels and its channels, /api/sessions,
/api/kernelspecs): no token, someone else's token or kernel, ids that are not kernel ids,
cookies from another site, malformed and oversize frames, revoked tokens. The services run
apart on the machine's Redis and PostgreSQL (the module's `stack`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from ..support.api import Client, new_user
from ..support.jupyter import V1, Channels, JupyterApi, of_type, request
from ..support.stack import ServicesStack

pytestmark = pytest.mark.redis

MAX_FRAME_BYTES = 16 * 1024 * 1024


@pytest.fixture
async def ada(stack: ServicesStack) -> AsyncIterator[JupyterApi]:
    client = await new_user(stack.urls[0], "ada")
    assert client.token
    api = JupyterApi(stack.urls[0], client.token)
    yield api
    await api.close()
    await client.close()


@pytest.fixture
async def mallory(stack: ServicesStack) -> AsyncIterator[JupyterApi]:
    client = await new_user(stack.urls[-1], "mallory")
    assert client.token
    api = JupyterApi(stack.urls[-1], client.token)
    yield api
    await api.close()
    await client.close()


def endpoints(kernel_id: str, session_id: str) -> list[tuple[str, str]]:
    return [
        ("GET", "/api/kernelspecs"), ("GET", "/api/kernelspecs/python3"),
        ("GET", "/kernelspecs/python3/logo-64x64.png"), ("GET", "/api/status"),
        ("GET", "/api/kernels"), ("POST", "/api/kernels"), ("GET", f"/api/kernels/{kernel_id}"),
        ("DELETE", f"/api/kernels/{kernel_id}"), ("POST", f"/api/kernels/{kernel_id}/interrupt"),
        ("POST", f"/api/kernels/{kernel_id}/restart"), ("GET", "/api/sessions"),
        ("POST", "/api/sessions"), ("GET", f"/api/sessions/{session_id}"),
        ("PATCH", f"/api/sessions/{session_id}"), ("DELETE", f"/api/sessions/{session_id}"),
    ]  # fmt: skip


async def status_of(
    http: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str]
) -> tuple[int, str]:
    async with http.request(method, url, headers=headers, json={}) as response:
        return response.status, await response.text()


async def test_every_endpoint_and_the_socket_need_a_good_token(
    stack: ServicesStack, ada: JupyterApi
) -> None:
    session = await ada.call(
        "POST", "/api/sessions", {"path": "a.ipynb", "kernel": {"name": "python3"}}, 201
    )
    kernel_id = session["kernel"]["id"]
    for headers in ({}, {"Authorization": "token not-a-token"},
                    {"Authorization": f"Basic {ada.token}"}):  # fmt: skip
        for method, path in endpoints(kernel_id, session["id"]):
            status, text = await status_of(ada.http, method, stack.urls[0] + path, headers)
            assert status == 401, (method, path, headers, status, text)
            assert "message" in json.loads(text)
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await ada.http.ws_connect(
                f"{stack.urls[0]}/api/kernels/{kernel_id}/channels", headers=headers
            )
        assert refused.value.status == 401
    # Nothing was changed by all that: the session and its kernel are still there.
    assert [s["id"] for s in await ada.call("GET", "/api/sessions")] == [session["id"]]
    # The same token in the ways Jupyter sends it works.
    for headers, query in (({"Authorization": f"Bearer {ada.token}"}, ""),
                           ({}, f"?token={ada.token}")):  # fmt: skip
        status, _ = await status_of(ada.http, "GET", f"{stack.urls[0]}/api/kernels{query}", headers)
        assert status == 200


async def test_a_cookie_from_another_site_is_refused(stack: ServicesStack) -> None:
    victim = await new_user(stack.urls[0], "carol")
    try:
        login = {"username": victim.username, "password": "correct horse battery"}
        await victim.call("auth.login", **login)  # sets the cookie in victim's jar
        victim.token = None  # from now on only the cookie speaks for carol
        async with victim.http.get(
            stack.urls[0] + "/api/kernels", headers={"Origin": "https://evil.example"}
        ) as response:
            assert response.status == 403
        async with victim.http.get(
            stack.urls[0] + "/api/kernels", headers={"Origin": stack.urls[0]}
        ) as response:
            assert response.status == 200
    finally:
        await victim.close()


async def test_someone_elses_kernel_is_not_found(ada: JupyterApi, mallory: JupyterApi) -> None:
    session = await ada.call(
        "POST", "/api/sessions", {"path": "secret.ipynb", "kernel": {"name": "python3"}}, 201
    )
    kernel_id = session["kernel"]["id"]
    assert await mallory.call("GET", "/api/kernels") == []
    assert await mallory.call("GET", "/api/sessions") == []
    theirs = [(m, p) for m, p in endpoints(kernel_id, session["id"]) if kernel_id in p
              or session["id"] in p]  # fmt: skip
    assert len(theirs) == 7
    for method, path in theirs:
        await mallory.call(method, path, {}, expect=404)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await mallory.channels(kernel_id)
    assert refused.value.status == 404
    # Nor can a session be attached to her kernel.
    body = {"path": "mine.ipynb", "kernel": {"id": kernel_id}}
    await mallory.call("POST", "/api/sessions", body, expect=404)
    assert [k["id"] for k in await ada.call("GET", "/api/kernels")] == [kernel_id]


async def test_ids_that_are_not_kernel_ids_are_not_found(ada: JupyterApi) -> None:
    kernel_id = (await ada.start_kernel())["id"]
    session_hex = uuid.UUID(kernel_id).hex
    for bad in (session_hex, "{" + kernel_id + "}", "..%2F..%2Fetc", "not-a-uuid",
                "'; DROP TABLE jupyter_kernels; --", "0" * 300):  # fmt: skip
        await ada.call("GET", f"/api/kernels/{bad}", expect=404)
        await ada.call("POST", f"/api/kernels/{bad}/interrupt", expect=404)
        await ada.call("GET", f"/api/sessions/{bad}", expect=404)
    await ada.call("GET", f"/api/kernels/{uuid.uuid4()}", expect=404)
    await ada.call("POST", "/api/kernels", {"name": "../../python3"}, expect=404)
    await ada.call("GET", "/kernelspecs/python3/..%2F..%2Fauth.py", expect=404)
    await ada.call("GET", "/kernelspecs/python3/kernelspecs.py", expect=404)


async def next_close(channels: Channels) -> int | None:
    """Read until the server closes the socket; its close code."""
    async with asyncio.timeout(30):
        while True:
            frame = await channels.ws.receive()
            if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return channels.ws.close_code


async def test_a_malformed_message_gets_an_error_and_a_non_message_closes(
    ada: JupyterApi,
) -> None:
    kernel_id = (await ada.start_kernel())["id"]
    channels = await ada.channels(kernel_id)
    # A message whose content does not fit its type: an error reply, and the socket goes on.
    msg_id = await channels.send(request("execute_request", {"code": 5}))
    reply = of_type(await channels.until_idle(msg_id), "execute_reply")[0]
    assert reply["content"]["status"] == "error" and "code" in reply["content"]["evalue"]
    msg_id = await channels.send(request("debug_request", {}, "control"))
    reply = of_type(await channels.until_idle(msg_id), "debug_reply")[0]
    assert reply["content"]["status"] == "error"
    msg_id = await channels.ask("kernel_info_request")
    assert of_type(await channels.until_idle(msg_id), "kernel_info_reply")
    # Frames that are not Jupyter messages close the socket cleanly, with the reason.
    not_messages = (
        "not json", '["a list"]', '{"channel": "shell", "header": {"msg_type": 1}}',
        '{"channel": "iopub", "header": {"msg_id": "a", "msg_type": "status"}}',
    )  # fmt: skip
    for frame in not_messages:
        channels = await ada.channels(kernel_id)
        await channels.ws.send_str(frame)
        assert await next_close(channels) == 1007
    for data, v1 in ((b"\x00\x00", False), (b"\xff" * 64, True), (b"\x07" + b"\x00" * 7, True)):
        channels = await ada.channels(kernel_id, v1=v1)
        await channels.ws.send_bytes(data)
        assert await next_close(channels) == 1007
    # The kernel still answers a new socket.
    channels = await ada.channels(kernel_id, v1=True)
    msg_id = await channels.ask("kernel_info_request")
    assert of_type(await channels.until_idle(msg_id), "kernel_info_reply")
    await channels.close()


async def test_an_oversize_frame_is_refused(ada: JupyterApi) -> None:
    kernel_id = (await ada.start_kernel())["id"]
    channels = await ada.channels(kernel_id)
    code = "x = 1  # " + "y" * MAX_FRAME_BYTES
    with contextlib.suppress(ConnectionError):  # the server may close while it is sent
        await channels.send(request("execute_request", {"code": code}))
    # Closed as too big (1009), or, if the server closed it while the client was still
    # writing, lost (1006); either way the code never ran (below).
    assert await next_close(channels) in (1009, 1006)
    channels = await ada.channels(kernel_id)
    answers = await channels.until_idle(
        await channels.ask("execute_request", code="print('x' in dir())")
    )
    assert "".join(m["content"]["text"] for m in of_type(answers, "stream")) == "False\n"
    await channels.close()


async def test_a_revoked_token_closes_its_channels(stack: ServicesStack) -> None:
    client = await new_user(stack.urls[0], "dan")
    assert client.token
    api = JupyterApi(stack.urls[-1], client.token)  # the socket on the other web process
    try:
        channels = await api.channels((await api.start_kernel())["id"])
        await client.call("auth.logout")
        assert await next_close(channels) == 4001
        await api.call("GET", "/api/kernels", expect=401)
    finally:
        await api.close()
        await client.close()


async def test_a_viewer_cannot_run_complete_or_answer_input(
    stack: ServicesStack, ada: JupyterApi
) -> None:
    owner = Client(ada.url, ada.token)
    eve = await new_user(stack.urls[0], "eve")
    assert eve.token
    watcher = JupyterApi(stack.urls[0], eve.token)
    try:
        kernel_id = (await ada.start_kernel())["id"]
        sheet = next(s for s in await owner.call("worksheet.list")
                     if s["session"] == uuid.UUID(kernel_id).hex)  # fmt: skip
        await owner.call("worksheet.share", id=sheet["id"], username=eve.username, role="viewer")
        channels = await watcher.channels(kernel_id, v1=True)
        assert channels.ws.protocol == V1
        refused = (
            ("execute_request", {"code": "open('/etc/passwd').read()"}),
            ("complete_request", {"code": "o", "cursor_pos": 1}),
            ("history_request", {"hist_access_type": "tail", "n": 10}),
        )
        for msg_type, content in refused:
            answers = await channels.until_idle(await channels.send(request(msg_type, content)))
            reply = of_type(answers, msg_type.replace("_request", "_reply"))[0]
            assert reply["content"]["ename"] == "PermissionError", reply
        msg_id = await channels.ask("kernel_info_request")  # watching is allowed
        assert of_type(await channels.until_idle(msg_id), "kernel_info_reply")
        await channels.close()
    finally:
        await watcher.close()
        await owner.close()
        await eve.close()


async def test_a_watcher_whose_access_is_removed_is_disconnected(
    stack: ServicesStack, ada: JupyterApi
) -> None:
    owner = Client(ada.url, ada.token)
    eve = await new_user(stack.urls[-1], "eve")
    assert eve.token
    watcher = JupyterApi(stack.urls[-1], eve.token)
    try:
        kernel_id = (await ada.start_kernel())["id"]
        sheet = next(s for s in await owner.call("worksheet.list")
                     if s["session"] == uuid.UUID(kernel_id).hex)  # fmt: skip
        await owner.call("worksheet.share", id=sheet["id"], username=eve.username, role="viewer")
        channels = await watcher.channels(kernel_id)
        await owner.call("worksheet.share", id=sheet["id"], username=eve.username, role="none")
        assert await next_close(channels) == 4003
        await watcher.call("GET", f"/api/kernels/{kernel_id}", expect=404)
    finally:
        await watcher.close()
        await owner.close()
        await eve.close()
