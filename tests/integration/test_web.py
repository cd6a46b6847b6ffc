"""The whole system through its API only: the JSON-RPC methods, the feed WebSocket and
long-poll, several users on one worksheet, permissions, export and import, reconnecting.

Every test runs twice: on the services as separate processes (Redis, PostgreSQL, two web
processes) and on the one-program mode that ``make run`` starts.
"""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import nbformat
import pytest

from ..support.api import (
    PASSWORD,
    ApiError,
    Client,
    new_user,
    poll_until_done,
    state_in,
    stdout_of,
)
from ..support.documents import Replica
from ..support.fixtures import both_stacks, signed_in
from ..support.stack import ServicesStack, Stack

UNAUTHENTICATED, FORBIDDEN, NOT_FOUND, CONFLICT = -32001, -32003, -32004, -32009


stack = both_stacks(cluster=True)


ada = signed_in("ada")


bob = signed_in("bob", web=-1)


async def worksheet_with(
    client: Client, *sources: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    sheet = await client.call("worksheet.create", title="Test sheet")
    cells: list[dict[str, Any]] = []
    after = None
    for source in sources:
        cell = await client.call("cell.create", worksheet=sheet["id"], source=source, after=after)
        cells.append(cell)
        after = cell["id"]
    return sheet, cells


async def saved_outputs(client: Client, worksheet: str, count: int) -> list[dict[str, Any]]:
    """The worksheet's cells once `count` of them have saved outputs (the saver follows the
    feed, so a run's outputs are saved a moment after they are published)."""
    async with asyncio.timeout(30):
        while True:
            sheet = await client.call("worksheet.get", id=worksheet)
            cells: list[dict[str, Any]] = sheet["cells"]
            if sum(1 for c in cells if c["outputs"]) >= count:
                return cells
            await asyncio.sleep(0.05)


# -- accounts ---------------------------------------------------------------------------------


async def test_register_log_in_use_tokens_and_log_out(stack: Stack) -> None:
    client = Client(stack.urls[0])
    try:
        user = await client.call("auth.register", username="carol-accounts", password=PASSWORD)
        assert user["username"] == "carol-accounts"
        assert (await client.error("auth.whoami")).code == UNAUTHENTICATED
        response = await client.post({"jsonrpc": "2.0", "id": 1, "method": "auth.login",
                                      "params": ["carol-accounts", PASSWORD]})  # fmt: skip
        cookie = response.cookies["cellbus_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Lax"
        client.token = (await response.json())["result"]["token"]
        assert (await client.call("auth.whoami"))["username"] == "carol-accounts"
        login = {"username": "carol-accounts", "password": PASSWORD, "label": "laptop"}
        second = Client(stack.urls[-1], (await client.call("auth.login", **login))["token"])
        tokens = await client.call("auth.tokens")
        laptop = next(t for t in tokens if t["label"] == "laptop")
        await client.call("auth.revoke", id=laptop["id"])
        # `second` has not used its token yet, so no web process has it cached: it is refused
        assert (await second.error("worksheet.list")).code == UNAUTHENTICATED
        await client.call("auth.logout")
        assert (await client.error("auth.whoami")).code == UNAUTHENTICATED
        assert (await client.error("auth.register", username="carol-accounts",
                                   password=PASSWORD)).code == -32010  # fmt: skip
        await second.close()
    finally:
        await client.close()


async def test_repeated_failed_logins_are_throttled(stack: Stack) -> None:
    client = Client(stack.urls[0])
    try:
        await client.call("auth.register", username="dave-throttle", password=PASSWORD)
        for _ in range(7):  # 10 per minute per username, 3 of them kept for other addresses
            error = await client.error("auth.login", username="dave-throttle", password="wrong!!!")
            assert error.code == UNAUTHENTICATED
        refused = await client.error("auth.login", username="dave-throttle", password=PASSWORD)
        assert refused.code == -32029
        assert 0 < refused.data["retry_after"] <= 60
        other = await new_user(stack.urls[0], "erin")  # others at the same address still can
        await other.close()
    finally:
        await client.close()


# -- a worksheet, run and watched ---------------------------------------------------------------


async def test_a_cell_run_is_seen_on_the_socket_by_long_poll_and_saved(ada: Client) -> None:
    sheet, (cell,) = await worksheet_with(ada, "print('hello')\n6 * 7")
    feed = await ada.socket()
    subscribed = await feed.subscribe(worksheet=sheet["id"])
    assert subscribed["session"] == sheet["session"]
    run = await ada.call("cell.evaluate", id=cell["id"])
    assert run["session"] == sheet["session"]
    seen = await feed.until_done(run["msg_id"])
    types = [m["header"]["msg_type"] for m in seen]
    assert types[-3:] == ["execute_result", "execute_reply", "status"]
    assert stdout_of(seen) == "hello\n"
    assert all(m["header"]["username"] == ada.username for m in seen)
    polled = await poll_until_done(ada, sheet["session"], run["msg_id"])
    assert [m["header"]["msg_id"] for m in polled] == [m["header"]["msg_id"] for m in seen]
    (saved,) = await saved_outputs(ada, sheet["id"], 1)
    assert saved["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "hello\n"},
        {"output_type": "execute_result", "data": {"text/plain": "42"}, "metadata": {},
         "execution_count": 1},
    ]  # fmt: skip
    assert (saved["execution_count"], saved["run_by"]) == (1, ada.username)
    await feed.close()


async def test_a_long_poll_waits_for_the_next_message(ada: Client) -> None:
    sheet, (cell,) = await worksheet_with(ada, "1 + 1")
    first = await ada.call("cell.evaluate", id=cell["id"])  # the session is started
    await poll_until_done(ada, sheet["session"], first["msg_id"])
    since, counted = 0, False  # after the run, cellbus writes its count into the document
    while not counted:
        page = await ada.call("feed.poll", session=sheet["session"], since=since, timeout=10)
        headers = [m["header"] for m in page["messages"]]
        counted = any(h["msg_type"] == "doc_update" and h["username"] == "cellbus" for h in headers)
        since = page["cursor"]
    cursor = (await ada.call("feed.cursor", session=sheet["session"]))["cursor"]
    empty = await ada.call("feed.poll", session=sheet["session"], since=cursor, timeout=0.2)
    assert empty == {"messages": [], "cursor": cursor}
    waiting = asyncio.create_task(
        ada.call("feed.poll", session=sheet["session"], since=cursor, timeout=20)
    )
    await asyncio.sleep(0.3)
    assert not waiting.done()
    run = await ada.call("cell.evaluate", id=cell["id"])
    page = await waiting
    assert page["messages"] and page["cursor"] > cursor
    assert page["messages"][0]["parent_header"]["msg_id"] == run["msg_id"]


async def test_a_bare_session_executes_completes_inspects_and_reports(ada: Client) -> None:
    session = (await ada.call("session.create"))["session"]
    feed = await ada.socket()
    await feed.subscribe(session=session, cursor="now")
    first = await ada.call("session.execute", session=session, code="import math\nx = 2")
    await feed.until_done(first["msg_id"])
    completion = await ada.call("session.complete", session=session, code="math.fl", cursor_pos=7)
    start, end = completion["cursor_start"], completion["cursor_end"]
    assert "math.floor" in ["math.fl"[:start] + m + "math.fl"[end:] for m in completion["matches"]]
    inspection = await ada.call(
        "session.inspect", session=session, code="math.floor", cursor_pos=10
    )
    assert inspection["found"] and "floor" in inspection["data"]["text/plain"]
    running = await ada.call("session.execute", session=session, code="import time\ntime.sleep(30)")
    await feed.message(lambda m: m["header"]["msg_type"] == "execute_input"
                       and m["parent_header"]["msg_id"] == running["msg_id"])  # fmt: skip
    info = await ada.call("session.info", session=session)
    assert info["state"] == "busy"
    assert (info["running"]["msg_id"], info["running"]["username"]) == (
        running["msg_id"],
        ada.username,
    )
    await ada.call("session.interrupt", session=session)
    interrupted = await feed.until_done(running["msg_id"])
    assert [m["content"]["ename"] for m in interrupted if m["header"]["msg_type"] == "error"] == [
        "KeyboardInterrupt"
    ]
    await ada.call("session.restart", session=session)
    after = await ada.call("session.execute", session=session, code="x")
    errors = [
        m for m in await feed.until_done(after["msg_id"]) if m["header"]["msg_type"] == "error"
    ]
    assert errors[0]["content"]["ename"] == "NameError"  # the restart emptied the namespace
    await ada.call("session.shutdown", session=session)
    assert (await ada.call("session.info", session=session))["state"] == "stopped"
    await feed.close()


# -- together -----------------------------------------------------------------------------------


async def test_two_people_edit_and_run_one_worksheet_live(ada: Client, bob: Client) -> None:
    sheet, (cell,) = await worksheet_with(ada, "total = 1")
    assert (await bob.error("worksheet.get", id=sheet["id"])).code == NOT_FOUND
    await ada.call("worksheet.share", id=sheet["id"], username=bob.username, role="editor")
    ada_feed, bob_feed = await ada.socket(), await bob.socket()  # bob's is on another process
    await ada_feed.subscribe(worksheet=sheet["id"], cursor="now")
    await bob_feed.subscribe(worksheet=sheet["id"], cursor="now")
    added = await bob.call(
        "cell.create", worksheet=sheet["id"], source="total += 41", after=cell["id"]
    )
    created = await ada_feed.message(lambda m: m["header"]["msg_type"] == "doc_update")
    assert created["header"]["username"] == bob.username
    replica = Replica()  # ada's copy of the document: what she had, and the update
    replica.apply((await ada_feed.doc_sync(sheet["id"]))["update"])
    assert [(c.id, c.source) for c in replica.cells] == [
        (cell["id"], "total = 1"), (added["id"], "total += 41"),
    ]  # fmt: skip
    first = await ada.call("cell.evaluate", id=cell["id"])
    second = await bob.call("cell.evaluate", id=added["id"])
    await bob_feed.until_done(first["msg_id"])
    await ada_feed.until_done(second["msg_id"])
    show = await bob.call("session.execute", session=sheet["session"], code="total")
    shown = await ada_feed.until_done(show["msg_id"])
    result = next(m for m in shown if m["header"]["msg_type"] == "execute_result")
    assert result["content"]["data"]["text/plain"] == "42"
    # a stale edit: bob edits version 1 after ada did
    await ada.call("cell.update", id=cell["id"], source="total = 2", version=1)
    stale = await bob.error("cell.update", id=cell["id"], source="total = 3", version=1)
    assert stale.code == CONFLICT
    assert (stale.data["source"], stale.data["version"]) == ("total = 2", 2)
    edited = await bob_feed.message(
        lambda m: (
            m["header"]["msg_type"] == "doc_update" and m["header"]["username"] == ada.username
        )
    )
    replica.take([edited])
    assert replica.sources == ["total = 2", "total += 41"]
    await ada_feed.close()
    await bob_feed.close()


async def test_a_viewer_watches_but_cannot_change_and_a_stranger_sees_nothing(
    stack: Stack, ada: Client, bob: Client
) -> None:
    sheet, (cell,) = await worksheet_with(ada, "1")
    await ada.call("worksheet.share", id=sheet["id"], username=bob.username, role="viewer")
    assert (await bob.call("worksheet.get", id=sheet["id"]))["role"] == "viewer"
    for method, params in [
        ("cell.update", {"id": cell["id"], "source": "2", "version": 1}),
        ("cell.create", {"worksheet": sheet["id"], "source": "x"}),
        ("cell.delete", {"id": cell["id"]}),
        ("cell.evaluate", {"id": cell["id"]}),
        ("session.execute", {"session": sheet["session"], "code": "1"}),
        ("session.restart", {"session": sheet["session"]}),
        ("worksheet.rename", {"id": sheet["id"], "title": "mine"}),
    ]:
        assert (await bob.error(method, **params)).code == FORBIDDEN, method
    assert (await bob.call("session.info", session=sheet["session"]))["state"] in (
        "stopped",
        "idle",
    )
    feed = await bob.socket()
    assert (await feed.subscribe(session=sheet["session"]))["type"] == "subscribed"
    stranger = await new_user(stack.urls[0], "eve")
    for method, params in [
        ("worksheet.get", {"id": sheet["id"]}),
        ("feed.poll", {"session": sheet["session"]}),
        ("session.execute", {"session": sheet["session"], "code": "1"}),
        ("cell.evaluate", {"id": cell["id"]}),
    ]:
        assert (await stranger.error(method, **params)).code == NOT_FOUND, method
    eve_feed = await stranger.socket()
    refused = await eve_feed.subscribe(session=sheet["session"])
    assert (refused["type"], refused["code"]) == ("error", NOT_FOUND)
    # taking bob's role away ends his subscription at once
    await ada.call("worksheet.share", id=sheet["id"], username=bob.username, role="none")
    ended = await feed.frame(lambda f: f["type"] == "error")
    assert (ended["code"], ended["session"]) == (FORBIDDEN, sheet["session"])
    await ada.call("cell.evaluate", id=cell["id"])
    with pytest.raises(TimeoutError):
        await feed.message(lambda m: m["header"]["msg_type"] == "execute_input", timeout=1.0)
    for closing in (feed, eve_feed):
        await closing.close()
    await stranger.close()


async def refusal(client: Client, method: str, **params: object) -> ApiError | None:
    """The error of `method`, or None if it succeeded."""
    try:
        await client.call(method, **params)
    except ApiError as exc:
        return exc
    return None


async def test_a_role_changed_on_one_web_process_holds_at_once_on_the_other(
    ada: Client, bob: Client
) -> None:
    # ada and bob call different web processes (on the services stack); each remembers roles
    # for CELLBUS_AUTH_CACHE_SECONDS (5 s) unless told of a change
    sheet, _ = await worksheet_with(ada, "1")
    session = sheet["session"]
    await ada.call("worksheet.share", id=sheet["id"], username=bob.username, role="editor")
    await bob.call("session.execute", session=session, code="1")  # bob's role, remembered
    for role, refusal_code in (("viewer", FORBIDDEN), ("none", NOT_FOUND)):
        await ada.call("worksheet.share", id=sheet["id"], username=bob.username, role=role)
        started = asyncio.get_running_loop().time()
        while (error := await refusal(bob, "session.execute", session=session, code="1")) is None:
            assert asyncio.get_running_loop().time() - started < 1.0, f"still allowed as {role}"
        assert error.code == refusal_code, role
    await ada.call("worksheet.share", id=sheet["id"], username=bob.username, role="editor")
    await bob.call("session.execute", session=session, code="1")  # granted again at once
    await ada.call("worksheet.delete", id=sheet["id"])
    assert (await bob.error("session.execute", session=session, code="1")).code == NOT_FOUND


async def test_a_viewer_forks_a_session_from_its_checkpoint(
    stack: Stack, ada: Client, bob: Client
) -> None:
    sheet, (cell,) = await worksheet_with(ada, "x = 41")
    await ada.call("worksheet.share", id=sheet["id"], username=bob.username, role="viewer")
    nothing_saved = await bob.error("session.fork", session=sheet["session"])
    assert nothing_saved.code == NOT_FOUND and "no checkpoint" in nothing_saved.message
    feed = await ada.socket()
    await feed.subscribe(session=sheet["session"], cursor="now")
    run = await ada.call("cell.evaluate", id=cell["id"])
    await feed.until_done(run["msg_id"])
    await feed.message(lambda m: m["header"]["msg_type"] == "checkpoint"
                       and m["content"]["event"] == "saved")  # fmt: skip

    fork = (await bob.call("session.fork", session=sheet["session"]))["session"]
    bob_feed = await bob.socket()
    await bob_feed.subscribe(session=fork, cursor=0)
    changed = await bob.call("session.execute", session=fork, code="x += 1\nprint(x)")
    assert stdout_of(await bob_feed.until_done(changed["msg_id"])) == "42\n"
    states = [(m["header"]["msg_type"], state_in(m)) for m in bob_feed.messages() if state_in(m)]
    assert states[:2] == [("session_state", "restoring"), ("status", "idle")]
    # The original is untouched; the fork is bob's own bare session.
    same = await ada.call("session.execute", session=sheet["session"], code="print(x)")
    assert stdout_of(await feed.until_done(same["msg_id"])) == "41\n"
    assert (await ada.error("session.execute", session=fork, code="1")).code == NOT_FOUND
    stranger = await new_user(stack.urls[0], "eve")
    assert (await stranger.error("session.fork", session=sheet["session"])).code == NOT_FOUND
    for closing in (feed, bob_feed):
        await closing.close()
    await stranger.close()


# -- the socket ----------------------------------------------------------------------------------


async def test_the_socket_needs_a_user_and_a_cookie_needs_this_origin(
    stack: Stack, ada: Client
) -> None:
    anonymous = Client(stack.urls[0])
    try:
        with pytest.raises(Exception) as refused:
            await anonymous.socket()
        assert getattr(refused.value, "status", None) == 401
        response = await anonymous.post({"jsonrpc": "2.0", "id": 1, "method": "auth.login",
                                         "params": [ada.username, PASSWORD]})  # fmt: skip
        assert "cellbus_session" in response.cookies
        anonymous.token = None
        with pytest.raises(Exception) as foreign:
            await anonymous.socket(Origin="https://evil.example")
        assert getattr(foreign.value, "status", None) == 403
        feed = await anonymous.socket(Origin=stack.urls[0])
        sheet, _ = await worksheet_with(ada, "1")
        assert (await feed.subscribe(worksheet=sheet["id"]))["type"] == "subscribed"
        await feed.close()
    finally:
        await anonymous.close()


async def test_a_reconnect_mid_run_resumes_from_the_cursor_and_loses_nothing(
    stack: Stack, ada: Client
) -> None:
    code = "import time\nfor i in range(60):\n    print(i, flush=True)\n    time.sleep(0.02)"
    sheet, (cell,) = await worksheet_with(ada, code)
    feed = await ada.socket()
    await feed.subscribe(worksheet=sheet["id"], cursor="now")
    run = await ada.call("cell.evaluate", id=cell["id"])
    await feed.message(lambda m: m["header"]["msg_type"] == "stream")
    if isinstance(stack, ServicesStack):  # the web process stops mid-run (a rolling restart)
        stack.webs[0].process.send_signal(signal.SIGTERM)
        closing = await feed.frame(lambda f: f["type"] == "closing")
        cursor = closing["cursors"][sheet["session"]]
        assert cursor == feed.cursors[sheet["session"]]
    else:  # the network drops mid-run
        cursor = feed.cursors[sheet["session"]]
        await feed.close()
        await asyncio.sleep(0.3)
    elsewhere = ada.on(stack.urls[-1])  # another web process, where there is one
    resumed = await elsewhere.socket()
    await resumed.subscribe(session=sheet["session"], cursor=cursor)
    await resumed.until_done(run["msg_id"])
    if isinstance(stack, ServicesStack):
        stack.restart_web(0)
    received = feed.received + resumed.received
    cursors = [r.cursor for r in received]
    assert cursors == sorted(set(cursors)), "a message was repeated or reordered"
    assert cursors == list(range(cursors[0], cursors[-1] + 1)), "a message was lost"
    text = stdout_of([r.message for r in received])
    assert text == "".join(f"{i}\n" for i in range(60))
    await resumed.close()
    await elsewhere.close()


async def test_worksheets_export_to_ipynb_and_import_back(ada: Client) -> None:
    sheet, cells = await worksheet_with(ada, "# Title", "print('out')", "1/0")
    await ada.call("cell.update", id=cells[0]["id"], cell_type="markdown")
    feed = await ada.socket()
    await feed.subscribe(worksheet=sheet["id"], cursor="now")
    for cell in cells[1:]:
        await feed.until_done((await ada.call("cell.evaluate", id=cell["id"]))["msg_id"])
    await saved_outputs(ada, sheet["id"], count=2)  # saved from the feed, just after it

    def counts_written() -> int:  # each run's count goes into the document, by cellbus
        return sum(m["header"]["msg_type"] == "doc_update" and m["header"]["username"] == "cellbus"
                   for m in feed.messages())  # fmt: skip

    while counts_written() < len(cells[1:]):
        await feed.frame(lambda frame: frame["type"] == "messages")
    replica = Replica()
    replica.apply((await feed.doc_sync(sheet["id"]))["update"])
    assert [c.execution_count for c in replica.cells] == [None, 1, 2]
    notebook = await ada.call("worksheet.export", id=sheet["id"])
    nbformat.validate(nbformat.reads(json.dumps(notebook), as_version=4))
    assert [c["cell_type"] for c in notebook["cells"]] == ["markdown", "code", "code"]
    assert notebook["cells"][1]["outputs"][0]["text"] == "out\n"
    assert notebook["cells"][2]["outputs"][0]["ename"] == "ZeroDivisionError"
    imported = await ada.call("worksheet.import", notebook=notebook, title="Copy")
    copy = await ada.call("worksheet.get", id=imported["id"])
    original = await ada.call("worksheet.get", id=sheet["id"])
    fields = ("id", "cell_type", "source", "metadata", "outputs", "execution_count")
    assert [[c[f] for f in fields] for c in copy["cells"]] == [
        [c[f] for f in fields] for c in original["cells"]
    ]
    bad = await ada.error("worksheet.import", notebook={"cells": "no"}, title="Bad")
    assert bad.code == -32602 and "notebook" in bad.message
    await feed.close()


async def test_worksheet_life_through_the_api(ada: Client, bob: Client) -> None:
    sheet, (a, b) = await worksheet_with(ada, "a", "b")
    await ada.call("cell.move", id=b["id"], after=None)
    assert [c["source"] for c in (await ada.call("worksheet.get", id=sheet["id"]))["cells"]] == [
        "b",
        "a",
    ]
    await ada.call("cell.delete", id=a["id"])
    renamed = await ada.call("worksheet.rename", id=sheet["id"], title="Renamed")
    assert renamed["title"] == "Renamed"
    users = [u["username"] for u in await ada.call("user.list")]
    assert bob.username in users
    members = await ada.call("worksheet.share", id=sheet["id"], username=bob.username, role="owner")
    assert {m["username"]: m["role"] for m in members}[bob.username] == "owner"
    assert [w["id"] for w in await bob.call("worksheet.list")].count(sheet["id"]) == 1
    await bob.call("worksheet.delete", id=sheet["id"])
    assert (await ada.error("worksheet.get", id=sheet["id"])).code == NOT_FOUND


# -- JSON-RPC, as the specification says ------------------------------------------------------


async def test_every_json_rpc_error_case_on_the_live_api(stack: Stack, ada: Client) -> None:
    async def send(body: object, **headers: str) -> tuple[int, Any]:
        response = await ada.post(body, headers)
        text = await response.text()
        return response.status, (json.loads(text) if text else None)

    def call(method: str, params: object = None, id: object = 1) -> dict[str, object]:
        body: dict[str, object] = {"jsonrpc": "2.0", "method": method, "id": id}
        return body if params is None else {**body, "params": params}

    status, reply = await send(b'{"jsonrpc": "2.0", "method"')
    assert (status, reply["error"]["code"], reply["id"]) == (200, -32700, None)
    assert (await send({"method": "auth.whoami", "id": 1}))[1]["error"]["code"] == -32600
    assert (await send(call("no.such")))[1]["error"]["code"] == -32601
    assert (await send(call("worksheet.get", {"id": 5})))[1]["error"]["code"] == -32602
    assert (await send(call("worksheet.get", {})))[1]["error"]["code"] == -32602
    status, reply = await send(call("worksheet.rename", ["too", "many", "args"]))
    assert reply["error"]["code"] == -32602
    assert (await send([]))[1]["error"]["code"] == -32600
    status, replies = await send([1, 2])
    assert [r["error"]["code"] for r in replies] == [-32600, -32600]
    assert await send({"jsonrpc": "2.0", "method": "auth.whoami"}) == (204, None)
    status, replies = await send([call("auth.whoami", id="a"),
                                  {"jsonrpc": "2.0", "method": "auth.whoami"},
                                  call("worksheet.list", [], id="b")])  # fmt: skip
    assert [r["id"] for r in replies] == ["a", "b"] and "result" in replies[1]
    status, reply = await send(call("auth.whoami"), **{"Content-Type": "text/plain"})
    assert status == 415 and reply["error"]["code"] == -32600
    status, reply = await send(b'"' + b"x" * (17 * 1024 * 1024) + b'"')
    assert status == 413 and reply["error"]["code"] == -32013
    # a session cookie alone, from a page of another site: refused
    browser = Client(stack.urls[0])
    try:
        await browser.post(call("auth.login", [ada.username, PASSWORD]))
        response = await browser.post(call("auth.whoami"), {"Origin": "https://evil.example"})
        assert (await response.json())["error"]["code"] == FORBIDDEN
        response = await browser.post(call("auth.whoami"))  # no Origin at all
        assert (await response.json())["error"]["code"] == FORBIDDEN
        response = await browser.post(call("auth.whoami"), {"Origin": stack.urls[0]})
        assert (await response.json())["result"]["username"] == ada.username
    finally:
        await browser.close()
    discover = await ada.call("rpc.discover")
    names = {m["name"] for m in discover["methods"]}
    assert {"auth.login", "worksheet.export", "cell.evaluate", "session.info", "feed.poll"} <= names


async def test_one_bus_subscription_per_session_whatever_the_number_of_sockets(
    stack: Stack, ada: Client
) -> None:
    async def followed() -> int:
        async with ada.http.get(stack.urls[0] + "/healthz") as response:
            followed: int = (await response.json())["feeds_followed"]
            return followed

    sheet, _ = await worksheet_with(ada, "1")
    before = await followed()
    feeds = [await ada.socket() for _ in range(3)]
    for feed in feeds:
        await feed.subscribe(worksheet=sheet["id"])
    assert await followed() == before + 1
    for feed in feeds:
        await feed.close()


async def test_a_browser_too_slow_to_read_is_cut_off_with_its_cursor_and_resumes(
    stack: Stack, ada: Client
) -> None:
    code = "from IPython.display import display\nfor i in range(20000):\n    display(i)"
    sheet, (cell,) = await worksheet_with(ada, code)
    slow = await ada.socket()
    await slow.subscribe(worksheet=sheet["id"], cursor="now")
    run = await ada.call("cell.evaluate", id=cell["id"])
    # 20,000 messages: on a busy 2-core machine this can take far longer than a usual run
    await poll_until_done(ada, sheet["session"], run["msg_id"], timeout=100)  # `slow` reads nothing
    with pytest.raises(ConnectionError):
        await slow.frame(lambda f: False)
    overflow = slow.frames[-1]
    assert overflow["type"] == "overflow"
    assert slow.ws.close_code == 4000
    cursor = overflow["cursors"][sheet["session"]]
    assert cursor == slow.cursors.get(sheet["session"], cursor)  # the last message it was sent
    again = await ada.socket()
    await again.subscribe(session=sheet["session"], cursor=cursor)
    await again.until_done(run["msg_id"], timeout=100)
    shown = [m for m in slow.of_request(run["msg_id"]) + again.of_request(run["msg_id"])
             if m["header"]["msg_type"] == "display_data"]  # fmt: skip
    assert [m["content"]["data"]["text/plain"] for m in shown] == [str(i) for i in range(20000)]
    await again.close()


async def test_everyone_watching_a_worksheet_sees_who_else_is(ada: Client, bob: Client) -> None:
    sheet, _ = await worksheet_with(ada, "1")
    await ada.call("worksheet.share", id=sheet["id"], username=bob.username, role="viewer")
    ada_feed = await ada.socket()
    await ada_feed.subscribe(worksheet=sheet["id"], cursor="now")
    alone = await ada_feed.frame(lambda f: f["type"] == "presence")
    assert alone["users"] == [ada.username]
    bob_feed = await bob.socket()  # on the other web process, where there are two
    await bob_feed.subscribe(worksheet=sheet["id"], cursor="now")
    both = await ada_feed.frame(lambda f: f["type"] == "presence")
    assert both["users"] == sorted([ada.username, bob.username])
    await bob_feed.close()
    left = await ada_feed.frame(lambda f: f["type"] == "presence", timeout=10)
    assert left["users"] == [ada.username]
    await ada_feed.close()


async def test_a_user_watching_through_several_sockets_leaves_with_the_last(
    stack: Stack, ada: Client, bob: Client
) -> None:
    def is_presence(frame: dict[str, Any]) -> bool:
        return bool(frame["type"] == "presence")

    sheet, _ = await worksheet_with(ada, "1")
    await ada.call("worksheet.share", id=sheet["id"], username=bob.username, role="viewer")
    bob_feed = await bob.socket()
    await bob_feed.subscribe(worksheet=sheet["id"], cursor="now")
    assert (await bob_feed.frame(is_presence))["users"] == [bob.username]
    ada_elsewhere = ada.on(stack.urls[-1])  # ada on both web processes where there are two
    ada_feeds = [await ada.socket(), await ada.socket(), await ada_elsewhere.socket()]
    for feed in ada_feeds:
        await feed.subscribe(worksheet=sheet["id"], cursor="now")
        assert (await feed.frame(is_presence))["users"] == sorted([ada.username, bob.username])
    both = await bob_feed.frame(is_presence)
    assert both["users"] == sorted([ada.username, bob.username])
    await ada_feeds[0].close()
    await ada_feeds[2].close()
    with pytest.raises(TimeoutError):  # two presence rounds: ada still watches
        await bob_feed.frame(is_presence, timeout=5)
    await ada_feeds[1].ws.send_json({"op": "unsubscribe", "session": sheet["session"]})
    left = await bob_feed.frame(is_presence, timeout=10)
    assert left["users"] == [bob.username]
    await ada_feeds[1].close()
    await ada_elsewhere.close()
    await bob_feed.close()


async def test_pages_forbid_framing_and_foreign_scripts(stack: Stack, ada: Client) -> None:
    async with ada.http.get(stack.urls[0] + "/") as page:
        policy = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["X-Content-Type-Options"] == "nosniff"
    response = await ada.post({"jsonrpc": "2.0", "id": 1, "method": "auth.whoami"})
    assert response.headers["Cache-Control"] == "no-store"


async def test_bad_values_get_clear_errors_not_internal_ones(stack: Stack, ada: Client) -> None:
    sheet, (cell,) = await worksheet_with(ada, "1")
    huge = await ada.error("cell.update", id=cell["id"], source="2", version=2**64)
    assert huge.code == -32602
    big = await ada.error("cell.update", id=cell["id"], source="#" * (1024 * 1024 + 1), version=1)
    assert big.code == -32013
    for cursor_pos in (-5, 2**64, 4):
        bad = await ada.error("session.complete", session=sheet["session"], code="abc",
                              cursor_pos=cursor_pos)  # fmt: skip
        assert bad.code == -32602 and "cursor_pos" in bad.message
    feed = await ada.socket()
    await feed.ws.send_json({"op": "unsubscribe"})
    error = await feed.frame(lambda f: f["type"] == "error")
    assert "needs a session" in error["message"]
    nowhere = "00000000-0000-0000-0000-000000000009"
    missing = await feed.subscribe(worksheet=nowhere)
    assert (missing["code"], missing["worksheet"]) == (NOT_FOUND, nowhere)
    await feed.close()


async def test_revoking_a_token_and_logging_out_with_a_stale_cookie_take_effect(
    stack: Stack, ada: Client
) -> None:
    login: dict[str, object] = {"username": ada.username, "password": PASSWORD, "label": "phone"}
    other = Client(stack.urls[0], (await ada.call("auth.login", **login))["token"])
    assert (await other.call("auth.whoami"))["username"] == ada.username  # now cached
    phone = next(t for t in await ada.call("auth.tokens") if t["label"] == "phone")
    await ada.call("auth.revoke", id=phone["id"])
    assert (await other.error("auth.whoami")).code == UNAUTHENTICATED
    await other.close()
    browser = Client(stack.urls[0])
    try:
        login = {"jsonrpc": "2.0", "id": 1, "method": "auth.login",
                 "params": [ada.username, PASSWORD]}  # fmt: skip
        token = (await (await browser.post(login)).json())["result"]["token"]
        revoker = Client(stack.urls[0], token)
        await revoker.call("auth.logout")  # the browser's cookie is now stale
        await revoker.close()
        logout = {"jsonrpc": "2.0", "id": 2, "method": "auth.logout"}
        response = await browser.post(logout, {"Origin": stack.urls[0]})
        assert "result" in await response.json()
        assert response.cookies["cellbus_session"].value == ""
    finally:
        await browser.close()
