"""The Jupyter Server API of cellbus (/api/kernelspecs, /api/kernels and their channels,
/api/sessions) on the services stack and the one program, as a Jupyter client sees it:
the REST models, and the channels WebSocket in both of its formats."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from ..support.api import Client, new_user, stdout_of
from ..support.fixtures import signed_in
from ..support.jupyter import Channels, JupyterApi, of_type, stdout
from ..support.stack import OneProgramStack, Stack, start_stack

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module", params=["services", "one-program"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The services apart (real Redis and PostgreSQL), and the one program (its in-process
    bus and SQLite), as ``make run`` runs it."""
    with start_stack(request.param, tmp_path_factory) as system:
        yield system


ada = signed_in("ada")


@pytest.fixture
async def jupyter(stack: Stack, ada: Client) -> AsyncIterator[JupyterApi]:
    assert ada.token
    api = JupyterApi(stack.urls[0], ada.token)
    yield api
    await api.close()


async def execute(channels: Channels, code: str) -> list[dict[str, Any]]:
    msg_id = await channels.ask(
        "execute_request", code=code, silent=False, store_history=True, user_expressions={},
        allow_stdin=False, stop_on_error=True,
    )  # fmt: skip
    return await channels.until_idle(msg_id)


async def test_the_kernelspec_is_python3_with_a_logo(jupyter: JupyterApi) -> None:
    specs = await jupyter.call("GET", "/api/kernelspecs")
    assert specs["default"] == "python3"
    spec = specs["kernelspecs"]["python3"]
    assert spec["spec"]["display_name"] == "Python 3 (cellbus)"
    assert spec["spec"]["language"] == "python"
    assert await jupyter.call("GET", "/api/kernelspecs/python3") == spec
    await jupyter.call("GET", "/api/kernelspecs/julia-1.9", expect=404)
    logo = spec["resources"]["logo-64x64"]
    async with jupyter.http.get(jupyter.url + logo, headers=jupyter.headers) as response:
        assert response.status == 200
        assert response.content_type == "image/png"
        assert (await response.read()).startswith(b"\x89PNG")
    assert (await jupyter.call("GET", "/api"))["version"].startswith("2.")


async def test_a_kernel_runs_code_on_a_cellbus_worksheet_and_is_deleted(
    jupyter: JupyterApi, ada: Client
) -> None:
    model = await jupyter.start_kernel(name="python3", path="analysis/Untitled.ipynb")
    kernel_id = model["id"]
    assert str(uuid.UUID(kernel_id)) == kernel_id  # jupyter_server's URLs need dashed UUIDs
    assert model["name"] == "python3" and model["connections"] == 0
    assert model["execution_state"] in ("starting", "idle")
    assert [k["id"] for k in await jupyter.call("GET", "/api/kernels")] == [kernel_id]
    # It is a cellbus worksheet's session, so it shows up in cellbus.
    sheets = await ada.call("worksheet.list")
    sheet = next(s for s in sheets if s["session"] == uuid.UUID(kernel_id).hex)
    assert sheet["title"] == "analysis/Untitled.ipynb"

    channels = await jupyter.channels(kernel_id)
    for channel in ("shell", "control"):  # kernel_info answered on both, busy and idle on iopub
        msg_id = await channels.ask("kernel_info_request", channel)
        answers = await channels.until_idle(msg_id)
        reply = of_type(answers, "kernel_info_reply")[0]
        assert reply["channel"] == channel
        assert reply["content"]["language_info"]["name"] == "python"
        states = [m["content"]["execution_state"] for m in of_type(answers, "status")]
        assert states == ["busy", "idle"]
    answers = await execute(channels, "x = 6 * 7\nprint('hello')\nx")
    assert stdout(answers) == "hello\n"
    assert of_type(answers, "execute_result")[0]["content"]["data"]["text/plain"] == "42"
    reply = of_type(answers, "execute_reply")[0]
    assert reply["channel"] == "shell" and reply["content"]["status"] == "ok"
    # The client's own header comes back as the parent, not cellbus's.
    assert reply["parent_header"]["session"] == "test-client"
    assert {m["channel"] for m in answers} == {"iopub", "shell"}
    assert (await jupyter.call("GET", f"/api/kernels/{kernel_id}"))["connections"] == 1

    await jupyter.call("POST", f"/api/kernels/{kernel_id}/restart")
    answers = await execute(channels, "print('x' in dir())")
    assert stdout(answers) == "False\n"
    await channels.close()

    await jupyter.call("DELETE", f"/api/kernels/{kernel_id}", expect=204)
    assert await jupyter.call("GET", "/api/kernels") == []
    await jupyter.call("GET", f"/api/kernels/{kernel_id}", expect=404)
    assert sheet["id"] in [s["id"] for s in await ada.call("worksheet.list")]  # it stays


async def test_an_interrupt_through_rest_stops_a_running_cell(jupyter: JupyterApi) -> None:
    kernel_id = (await jupyter.start_kernel())["id"]
    channels = await jupyter.channels(kernel_id)
    msg_id = await channels.ask("execute_request", code="import time\nwhile True: time.sleep(0.01)")
    while (await channels.next())["header"]["msg_type"] != "execute_input":
        pass  # the loop runs once its input is announced
    await jupyter.call("POST", f"/api/kernels/{kernel_id}/interrupt", expect=204)
    answers = await channels.until_idle(msg_id)
    assert of_type(answers, "error")[0]["content"]["ename"] == "KeyboardInterrupt"
    assert of_type(answers, "execute_reply")[0]["content"]["status"] == "error"
    await channels.close()


async def test_a_cell_that_kills_its_process_ends_in_an_error_and_idle(
    jupyter: JupyterApi,
) -> None:
    """A Jupyter client waits for ``idle``: the process dying under the request gives it one
    (cellbus's ``session_state`` ``dead`` is not Jupyter's), and the next request runs."""
    kernel_id = (await jupyter.start_kernel())["id"]
    channels = await jupyter.channels(kernel_id)
    answers = await execute(channels, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    reply = of_type(answers, "execute_reply")[0]["content"]
    assert reply["status"] == "error"
    assert "killed" in reply["evalue"]
    states = [a["content"]["execution_state"] for a in of_type(answers, "status")]
    assert states[-1] == "idle"
    assert stdout(await execute(channels, "print(6 * 7)")) == "42\n"
    await channels.close()


async def test_the_v1_binary_protocol(jupyter: JupyterApi) -> None:
    kernel_id = (await jupyter.start_kernel())["id"]
    channels = await jupyter.channels(kernel_id, v1=True)
    assert channels.v1
    answers = await execute(channels, "answer_of_v1 = 1 + 1\nprint(answer_of_v1)")
    assert stdout(answers) == "2\n"
    msg_id = await channels.ask("complete_request", code="answer_of", cursor_pos=9)
    reply = of_type(await channels.until_idle(msg_id), "complete_reply")[0]
    assert reply["content"]["matches"] == ["answer_of_v1"]
    await channels.close()


async def test_a_viewer_watches_but_cannot_execute(
    stack: Stack, jupyter: JupyterApi, ada: Client
) -> None:
    bob = await new_user(stack.urls[-1], "bob")  # on the other web process, if any
    assert bob.token
    kernel_id = (await jupyter.start_kernel())["id"]
    session = uuid.UUID(kernel_id).hex
    sheet = next(s for s in await ada.call("worksheet.list") if s["session"] == session)
    await ada.call("worksheet.share", id=sheet["id"], username=bob.username, role="viewer")
    watcher = JupyterApi(stack.urls[-1], bob.token)
    try:
        assert [k["id"] for k in await watcher.call("GET", "/api/kernels")] == [kernel_id]
        watching = await watcher.channels(kernel_id)
        running = await jupyter.channels(kernel_id)
        await execute(running, "print('warm')")  # both sockets follow the feed from here
        answers = await execute(running, "print('for everyone')")
        msg_id = answers[0]["parent_header"]["msg_id"]
        async with asyncio.timeout(30):
            while not any(
                m["parent_header"].get("msg_id") == msg_id and m["header"]["msg_type"] == "stream"
                for m in watching.received
            ):
                await watching.next()  # fmt: skip
        seen = [m for m in watching.received if m["parent_header"].get("msg_id") == msg_id]
        assert stdout(seen) == "for everyone\n"
        assert not of_type(seen, "execute_reply")  # a reply goes only to who asked

        refused = await execute(watching, "print('not allowed')")
        reply = of_type(refused, "execute_reply")[0]
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "PermissionError"
        assert stdout(refused) == ""
        await watcher.call("POST", f"/api/kernels/{kernel_id}/interrupt", expect=403)
        await watcher.call("DELETE", f"/api/kernels/{kernel_id}", expect=403)
        await watching.close()
        await running.close()
    finally:
        await watcher.close()
        await bob.close()


async def test_sessions_start_rename_switch_and_delete_kernels(jupyter: JupyterApi) -> None:
    body = {"path": "work/a.ipynb", "name": "a.ipynb", "type": "notebook",
            "kernel": {"name": "python3"}}  # fmt: skip
    session = await jupyter.call("POST", "/api/sessions", body, 201)
    assert session["path"] == "work/a.ipynb" and session["type"] == "notebook"
    first = session["kernel"]["id"]
    assert (await jupyter.call("POST", "/api/sessions", body, 201))["id"] == session["id"]
    assert [s["id"] for s in await jupyter.call("GET", "/api/sessions")] == [session["id"]]

    renamed = await jupyter.call("PATCH", f"/api/sessions/{session['id']}", {"path": "b.ipynb"})
    assert renamed["path"] == "b.ipynb" and renamed["kernel"]["id"] == first

    switched = await jupyter.call(
        "PATCH", f"/api/sessions/{session['id']}", {"kernel": {"name": "python3"}}
    )
    assert switched["kernel"]["id"] != first and switched["path"] == "b.ipynb"
    kernels = [k["id"] for k in await jupyter.call("GET", "/api/kernels")]
    assert kernels == [switched["kernel"]["id"]]  # the old kernel was shut down

    await jupyter.call("DELETE", f"/api/sessions/{session['id']}", expect=204)
    assert await jupyter.call("GET", "/api/sessions") == []
    assert await jupyter.call("GET", "/api/kernels") == []


async def test_a_deleted_kernel_cannot_be_connected_to(jupyter: JupyterApi) -> None:
    kernel_id = (await jupyter.start_kernel())["id"]
    await jupyter.call("DELETE", f"/api/kernels/{kernel_id}", expect=204)
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await jupyter.channels(kernel_id)
    assert refused.value.status == 404


@pytest.fixture
def hibernating(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The one program, its sessions checkpointed at once and hibernated after 1 s idle."""
    logs, data = tmp_path_factory.mktemp("logs"), tmp_path_factory.mktemp("data")
    with OneProgramStack(logs, data, hibernate_after=1.0, checkpoint_delay=0.05) as system:
        yield system


async def test_a_kernel_is_watched_in_cellbus_and_restored_from_hibernation(
    hibernating: Stack,
) -> None:
    """A kernel is an ordinary session: its owner's cellbus feed shows what the Jupyter client
    runs, it hibernates when idle, and the next request on the channels restores it with its
    variables. cellbus's own statuses never reach the channels."""
    ada = await new_user(hibernating.urls[0], "ada")
    assert ada.token
    api = JupyterApi(hibernating.urls[0], ada.token)
    feed = await ada.socket()
    try:
        kernel_id = (await api.start_kernel())["id"]
        session = uuid.UUID(kernel_id).hex
        await feed.subscribe(session=session, cursor=0)
        channels = await api.channels(kernel_id)
        answers = await execute(channels, "x = 41\nprint('from Jupyter')")
        msg_id = answers[0]["parent_header"]["msg_id"]
        assert stdout_of(await feed.until_done(msg_id)) == "from Jupyter\n"  # watched live
        await feed.message(
            lambda m: (
                m["header"]["msg_type"] == "session_state" and m["content"]["state"] == "hibernated"
            )
        )
        model = await api.call("GET", f"/api/kernels/{kernel_id}")
        assert model["execution_state"] == "idle"  # the next request restores it
        answers = await execute(channels, "print(x + 1)")
        assert stdout(answers) == "42\n"
        states = {m["content"]["execution_state"] for m in of_type(channels.received, "status")}
        assert states <= {"busy", "idle", "starting"}
        cellbus_own = {"checkpoint", "cell_run", "session_state"}
        assert not {m["header"]["msg_type"] for m in channels.received} & cellbus_own
        await channels.close()
    finally:
        await feed.close()
        await api.close()
        await ada.close()


async def test_a_widget_is_moved_through_the_channels(jupyter: JupyterApi) -> None:
    """The kernel opens a comm for an IntSlider; the client's ``comm_msg`` (as the widget
    manager sends when a person drags it) changes the value in the kernel, with the kernel's
    busy and idle for it under the client's own request."""
    channels = await jupyter.channels((await jupyter.start_kernel())["id"])
    answers = await execute(
        channels,
        "import ipywidgets as widgets\nslider = widgets.IntSlider(value=5, max=10)\nslider",
    )
    opened = [m for m in of_type(answers, "comm_open")
              if m["content"]["data"]["state"].get("_model_name") == "IntSliderModel"]  # fmt: skip
    comm_id = opened[0]["content"]["comm_id"]
    update = {"method": "update", "state": {"value": 9}, "buffer_paths": []}
    msg_id = await channels.ask("comm_msg", comm_id=comm_id, data=update)
    async with asyncio.timeout(30):
        while not any(
            m["parent_header"].get("msg_id") == msg_id
            and m["header"]["msg_type"] == "status"
            and m["content"]["execution_state"] == "idle"
            for m in channels.received
        ):
            await channels.next()  # fmt: skip
    assert stdout(await execute(channels, "print(slider.value)")) == "9\n"
    await channels.close()
