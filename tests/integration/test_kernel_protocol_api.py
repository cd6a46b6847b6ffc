"""The kernel protocol through cellbus's own API, as a browser or the CLI uses it: the
``session.*`` methods, ``input()`` answered over JSON-RPC, a widget shared by two people's
sockets and saved on export, and a person leaving ending the wait for their input.

Every test runs on the services apart (two web processes) and on the one program.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ..support.api import Client, Feed, stdout_of
from ..support.fixtures import signed_in
from ..support.stack import OneProgramStack, ServicesStack, Stack

INVALID_REQUEST, INVALID_PARAMS = -32600, -32602


@pytest.fixture(scope="module", params=["services", "one-program"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("logs")
    # A short grace for leaving (CELLBUS_INPUT_LEAVE_GRACE), so the leave is seen quickly.
    if request.param == "services":
        system: Stack = ServicesStack(logs, input_leave_grace=0.2)
    else:
        system = OneProgramStack(logs, tmp_path_factory.mktemp("data"), input_leave_grace=0.2)
    with system:
        yield system


ada = signed_in("ada")


bob = signed_in("bob", web=-1)


def of_type(messages: list[dict[str, Any]], msg_type: str) -> list[dict[str, Any]]:
    return [msg for msg in messages if msg["header"]["msg_type"] == msg_type]


async def shared_session(ada: Client, bob: Client, role: str) -> str:
    """A worksheet of ada's shared with bob as `role`; its session."""
    sheet = await ada.call("worksheet.create", title="Shared")
    await ada.call("worksheet.share", id=sheet["id"], username=bob.username, role=role)
    return str(sheet["session"])


async def watching(client: Client, session: str) -> Feed:
    feed = await client.socket()
    await feed.subscribe(session=session, cursor="now")
    return feed


async def asked(feed: Feed) -> dict[str, Any]:
    return await feed.message(lambda m: m["header"]["msg_type"] == "input_request")


async def test_input_is_answered_over_json_rpc_by_the_one_asked(ada: Client, bob: Client) -> None:
    session = await shared_session(ada, bob, "editor")
    feed = await watching(ada, session)
    code = "print(input('Name? ') + '!')"
    run = await ada.call("session.execute", session=session, code=code)  # allow_stdin: default
    question = await asked(feed)
    assert question["content"] == {"prompt": "Name? ", "password": False}
    assert question["header"]["username"] == ada.username
    refused = await bob.error(
        "session.input", session=session, value="bob", input_request=question["header"]["msg_id"]
    )
    assert (refused.code, refused.message) == (
        INVALID_REQUEST,
        "no input is awaited from you for that request",
    )
    await ada.call(
        "session.input", session=session, value="Ada", input_request=question["header"]["msg_id"]
    )
    assert stdout_of(await feed.until_done(run["msg_id"])) == "Ada!\n"
    await feed.close()


async def test_the_session_methods_of_the_kernel_protocol(ada: Client) -> None:
    session = (await ada.call("session.create"))["session"]
    feed = await watching(ada, session)
    run = await ada.call(
        "session.execute", session=session, code="x = 20", user_expressions={"y": "x + 1"}
    )
    reply = of_type(await feed.until_done(run["msg_id"]), "execute_reply")[0]["content"]
    assert reply["user_expressions"]["y"]["data"] == {"text/plain": "21"}
    refused = await ada.call("session.execute", session=session, code="input()", allow_stdin=False)
    reply = of_type(await feed.until_done(refused["msg_id"]), "execute_reply")[0]["content"]
    assert reply["ename"] == "StdinNotImplementedError"
    assert await ada.call("session.is_complete", session=session, code="if x:") == {
        "status": "incomplete",
        "indent": "    ",
    }
    history = await ada.call("session.history", session=session, hist_access_type="tail", n=5)
    assert [entry[2] for entry in history["history"]] == ["x = 20", "input()"]
    info = await ada.call("session.kernel_info", session=session)
    assert (info["protocol_version"], info["language_info"]["name"]) == ("5.3", "python")
    assert await ada.call("session.comm_info", session=session) == {"comms": {}}
    help_run = await ada.call("session.execute", session=session, code="x?")
    messages = await feed.until_done(help_run["msg_id"])
    assert of_type(messages, "stream") == []  # help is a page, not an output
    (page,) = of_type(messages, "execute_reply")[0]["content"]["payload"]
    assert page["source"] == "page"
    full = await ada.call(
        "session.inspect", session=session, code="len", cursor_pos=3, detail_level=1
    )
    assert full["found"]
    opened = await ada.error("session.comm", session=session, comm_id="c", data={}, kind="open")
    assert opened.code == INVALID_PARAMS  # a comm is opened for a target
    await feed.close()


SLIDER = "import ipywidgets\nslider = ipywidgets.IntSlider(value=5, max=10)\nslider"


async def test_a_shared_slider_moves_for_everyone_and_is_saved_on_export(
    ada: Client, bob: Client
) -> None:
    sheet = await ada.call("worksheet.create", title="Widgets")
    await ada.call("worksheet.share", id=sheet["id"], username=bob.username, role="viewer")
    cell = await ada.call("cell.create", worksheet=sheet["id"], source=SLIDER)
    feeds = [await watching(ada, sheet["session"]), await watching(bob, sheet["session"])]
    run = await ada.call("cell.evaluate", id=cell["id"])
    messages = await feeds[0].until_done(run["msg_id"])
    view = of_type(messages, "execute_result")[0]["content"]["data"]
    model_id = view["application/vnd.jupyter.widget-view+json"]["model_id"]

    update = {"method": "update", "state": {"value": 8}, "buffer_paths": []}
    moved = await ada.call("session.comm", session=sheet["session"], comm_id=model_id, data=update)
    for feed in feeds:  # the one who moved it and the one watching both see it move
        seen = await feed.until_done(moved["msg_id"])
        (echo,) = of_type(seen, "comm_msg")
        assert echo["content"]["data"]["method"] == "echo_update"
        assert echo["content"]["data"]["state"] == {"value": 8}
    exported = await ada.call("worksheet.export", id=sheet["id"])
    state = exported["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]
    assert (state["version_major"], state["version_minor"]) == (2, 0)
    assert state["state"][model_id]["state"]["value"] == 8
    for feed in feeds:
        await feed.close()


async def test_leaving_ends_the_wait_for_ones_input_where_one_no_longer_watches(
    ada: Client, bob: Client
) -> None:
    """ada watches `kept` on two sockets and `left` on one; when that one closes, the input
    waiting on `left` ends (bob sees it), the one on `kept` still waits for her."""
    kept, left = await shared_session(ada, bob, "viewer"), await shared_session(ada, bob, "viewer")
    leaving, staying, bobs = (
        await ada.socket(),
        await watching(ada, kept),
        await watching(bob, left),
    )
    await leaving.subscribe(session=kept, cursor="now")
    await leaving.subscribe(session=left, cursor="now")
    on_kept = await ada.call("session.execute", session=kept, code="print(input('Kept? '))")
    question = await asked(leaving)  # `kept` first: it is looked at first when she leaves
    on_left = await ada.call("session.execute", session=left, code="input('Still there? ')")
    await leaving.message(lambda m: m["parent_header"].get("msg_id") == on_left["msg_id"]
                          and m["header"]["msg_type"] == "input_request")  # fmt: skip
    await leaving.close()  # her only socket on `left`; she still watches `kept` on another
    errors = of_type(await bobs.until_done(on_left["msg_id"]), "error")
    assert [e["content"]["ename"] for e in errors] == ["InputCancelled"]
    assert errors[0]["content"]["evalue"] == f"{ada.username} left the session before answering."
    await ada.call(
        "session.input", session=kept, value="yes", input_request=question["header"]["msg_id"]
    )
    assert stdout_of(await staying.until_done(on_kept["msg_id"])) == "yes\n"
    await staying.close()
    await bobs.close()
