"""Jupyter's own clients, installed from PyPI, run on cellbus through its Jupyter Server API,
on the services stack (real Redis and PostgreSQL):

- ``jupyter nbconvert --execute`` (nbclient) through jupyter_server's GatewayKernelManager
  runs a notebook with stdout, stderr, rich outputs, an error and a widget, and its outputs
  equal those of the same notebook run by stock ipykernel in the same test;
- papermill runs a parameterised notebook the same way;
- ``jupyter server --gateway-url=<cellbus>`` starts a kernel, runs code and interrupts it
  through its own REST API and WebSocket;
- jupyter_kernel_test's validator accepts every message cellbus's channels sent in the
  jupyter_server run (relayed as they are, in the legacy format) and in a run of the
  notebook's cells by the tests' own client.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import nbformat
import pytest
from jupyter_kernel_test.msgspec_v5 import (
    msg_structure_validator,
    schema_fragments,
    validate_message,
)

from ..support.api import Client, new_user
from ..support.jupyter import Channels, JupyterApi, of_type, stdout
from ..support.stack import ServicesStack, free_port

pytestmark = pytest.mark.redis

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "jupyter"
BIN = Path(sys.executable).parent
CLI_TIMEOUT = 120.0
GATEWAY_MANAGER = "cellbus_gateway.AuthenticatedGatewayKernelManager"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServicesStack]:
    with ServicesStack(tmp_path_factory.mktemp("logs")) as system:
        yield system


@pytest.fixture
async def ada(stack: ServicesStack) -> AsyncIterator[Client]:
    client = await new_user(stack.urls[0], "ada")
    yield client
    await client.close()


def jupyter_env(home: Path, gateway: str | None = None, token: str = "") -> dict[str, str]:
    """An environment for Jupyter's commands with their own config and runtime folders; with
    `gateway`, GatewayClient pointed at it with `token`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_")}
    env.update(
        JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTER_PLATFORM_DIRS="1", PYTHONPATH=str(FIXTURES), PYDEVD_DISABLE_FILE_VALIDATION="1",
    )  # fmt: skip
    if gateway is not None:
        env.update(JUPYTER_GATEWAY_URL=gateway, JUPYTER_GATEWAY_AUTH_TOKEN=token)
    return env


async def run(argv: list[str], env: dict[str, str]) -> str:
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    async with asyncio.timeout(CLI_TIMEOUT):
        out, _ = await process.communicate()
    text = out.decode(errors="replace")
    assert process.returncode == 0, f"{argv[0]} failed:\n{text}"
    return text


async def nbconvert(notebook: Path, output: Path, env: dict[str, str], manager: str | None) -> Any:
    argv = [str(BIN / "jupyter"), "nbconvert", "--to", "notebook", "--execute", "--allow-errors",
            f"--output={output}", str(notebook)]  # fmt: skip
    if manager is not None:
        argv.append(f"--ExecutePreprocessor.kernel_manager_class={manager}")
    await run(argv, env)
    return nbformat.read(output, as_version=4)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def comparable(notebook: Any) -> list[list[dict[str, Any]]]:
    """The outputs of each cell, less what differs between any two runs: widget model ids
    (random) and tracebacks' frames (each kernel's own code; the error's name and value
    stay, and the last line of the traceback)."""
    cells = []
    for cell in notebook.cells:
        outputs = []
        for output in copy.deepcopy(cell.outputs):
            view = output.get("data", {}).get("application/vnd.jupyter.widget-view+json")
            if view is not None:
                view["model_id"] = "<model>"
            if output["output_type"] == "error":
                output["traceback"] = (
                    ANSI.sub("", output["traceback"][-1]) if output["traceback"] else ""
                )
            outputs.append(output)
        cells.append(outputs)
    return cells


def slider_values(notebook: Any) -> list[int]:
    state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    return [m["state"]["value"] for m in state.values() if m["model_name"] == "IntSliderModel"]


async def test_nbconvert_runs_a_notebook_on_cellbus_as_on_ipykernel(
    stack: ServicesStack, ada: Client, tmp_path: Path
) -> None:
    assert ada.token
    notebook = FIXTURES / "outputs.ipynb"
    on_cellbus, on_ipykernel = await asyncio.gather(
        nbconvert(notebook, tmp_path / "cellbus.ipynb",
                  jupyter_env(tmp_path / "a", stack.urls[0], ada.token), GATEWAY_MANAGER),
        nbconvert(notebook, tmp_path / "ipykernel.ipynb", jupyter_env(tmp_path / "b"), None),
    )  # fmt: skip
    expected = comparable(on_ipykernel)
    assert expected[0] == [{"output_type": "stream", "name": "stdout",
                            "text": "hello from a cell\n"}]  # fmt: skip  # the stock run ran
    assert comparable(on_cellbus) == expected
    # nbclient saved the widgets' state from the comm messages, as it did from ipykernel's.
    assert slider_values(on_cellbus) == slider_values(on_ipykernel) == [7]
    # The kernel it ran on is a cellbus worksheet's session, and its outputs are there.
    assert any(s["title"] == "Jupyter kernel" for s in await ada.call("worksheet.list"))


async def test_papermill_runs_a_parameterised_notebook_on_cellbus(
    stack: ServicesStack, ada: Client, tmp_path: Path
) -> None:
    assert ada.token
    output = tmp_path / "out.ipynb"
    script = ("import papermill, sys\n"
              "papermill.execute_notebook(sys.argv[1], sys.argv[2], "
              "parameters={'n': 3, 'greeting': 'ho'}, kernel_manager_class=sys.argv[3], "
              "progress_bar=False)")  # fmt: skip
    env = jupyter_env(tmp_path, stack.urls[0], ada.token)
    await run([sys.executable, "-c", script, str(FIXTURES / "parameters.ipynb"), str(output),
               GATEWAY_MANAGER], env)  # fmt: skip
    ran = nbformat.read(output, as_version=4)
    assert ran.cells[1].metadata.tags == ["injected-parameters"]
    outputs = ran.cells[-1].outputs
    assert outputs[0]["text"] == "hohoho\n"
    assert outputs[1]["data"]["text/plain"] == "9"


@pytest.fixture
async def jupyter_server(
    stack: ServicesStack, ada: Client, tmp_path: Path
) -> AsyncIterator[JupyterApi]:
    """``jupyter server --gateway-url=<cellbus>`` as ada, with a token of its own."""
    assert ada.token
    port, token = free_port(), "jupyter-server-token"
    argv = [str(BIN / "jupyter"), "server", f"--gateway-url={stack.urls[0]}",
            f"--GatewayClient.auth_token={ada.token}", f"--port={port}", "--ip=127.0.0.1",
            f"--IdentityProvider.token={token}", "--no-browser", "--allow-root",
            f"--ServerApp.root_dir={tmp_path}"]  # fmt: skip
    log = (tmp_path / "server.log").open("wb")  # (a local file: opening it does not block)
    process = await asyncio.create_subprocess_exec(
        *argv, env=jupyter_env(tmp_path), stdout=log, stderr=log
    )
    api = JupyterApi(f"http://127.0.0.1:{port}", token)
    try:
        await wait_for_server(api, process)
        yield api
    finally:
        await api.close()
        if process.returncode is None:
            process.terminate()
        await process.wait()
        log.close()


async def wait_for_server(api: JupyterApi, process: asyncio.subprocess.Process) -> None:
    """Until the server answers (it takes a few seconds to start); each try waits on the
    network, and the loop ends if the process does."""
    async with asyncio.timeout(CLI_TIMEOUT):
        while process.returncode is None:
            try:
                async with api.http.get(api.url + "/api/status", headers=api.headers) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.2)  # not listening yet: nothing to wait on but time
    raise AssertionError("jupyter server exited")


def validated(messages: list[dict[str, Any]]) -> int:
    """Every message passes jupyter_kernel_test's validator (without the channel name and
    ids the WebSocket adds); how many there were. The validator has content schemas for
    every type but the comm messages (``comm_open``, ``comm_msg``, ``comm_close``), whose
    envelope alone it can check."""
    for msg in messages:
        bare = {k: v for k, v in msg.items() if k not in ("channel", "msg_id", "msg_type")}
        if msg["header"]["msg_type"] in schema_fragments:
            validate_message(bare)
        else:
            assert msg["header"]["msg_type"].startswith("comm_"), msg["header"]
            msg_structure_validator.validate(bare)
    return len(messages)


async def test_jupyter_server_runs_and_interrupts_code_on_a_cellbus_kernel(
    jupyter_server: JupyterApi, ada: Client
) -> None:
    kernel = await jupyter_server.start_kernel(name="python3")
    channels = await jupyter_server.channels(kernel["id"])
    msg_id = await channels.ask("kernel_info_request")
    info = of_type(await channels.until_idle(msg_id), "kernel_info_reply")[0]
    assert info["content"]["implementation"] == "cellbus"
    answers = await execute(channels, "print('via jupyter server')")
    assert stdout(answers) == "via jupyter server\n"

    msg_id = await channels.ask("execute_request", code="import time\nwhile True: time.sleep(0.01)",
                                silent=False, store_history=True, user_expressions={},
                                allow_stdin=False, stop_on_error=True)  # fmt: skip
    while (await channels.next())["header"]["msg_type"] != "execute_input":
        pass  # it is running once its input is announced
    await jupyter_server.call("POST", f"/api/kernels/{kernel['id']}/interrupt", expect=204)
    answers = await channels.until_idle(msg_id)
    assert of_type(answers, "error")[0]["content"]["ename"] == "KeyboardInterrupt"
    assert validated(channels.received) > 10
    await channels.close()
    await jupyter_server.call("DELETE", f"/api/kernels/{kernel['id']}", expect=204)
    # It was cellbus's kernel: started, and now taken off cellbus's list.
    cellbus = JupyterApi(ada.url, ada.token or "")
    try:
        assert await cellbus.call("GET", "/api/kernels") == []
    finally:
        await cellbus.close()


async def execute(channels: Channels, code: str) -> list[dict[str, Any]]:
    msg_id = await channels.ask(
        "execute_request", code=code, silent=False, store_history=True, user_expressions={},
        allow_stdin=False, stop_on_error=True,
    )  # fmt: skip
    return await channels.until_idle(msg_id)


async def test_every_message_of_the_notebook_run_validates(
    stack: ServicesStack, ada: Client
) -> None:
    """The notebook's cells run over cellbus's channels, in both formats, by the tests' own
    client: each message validates."""
    assert ada.token
    api = JupyterApi(stack.urls[0], ada.token)
    notebook = nbformat.read(FIXTURES / "outputs.ipynb", as_version=4)
    try:
        for v1 in (False, True):
            channels = await api.channels((await api.start_kernel())["id"], v1=v1)
            for ask in ("kernel_info_request", "comm_info_request"):
                await channels.until_idle(await channels.ask(ask))
            for cell in notebook.cells:
                await execute(channels, cell.source)
            await channels.until_idle(
                await channels.ask("complete_request", code="sli", cursor_pos=3)
            )
            inspect = {"code": "slider", "cursor_pos": 6, "detail_level": 0}
            await channels.until_idle(await channels.ask("inspect_request", **inspect))
            await channels.until_idle(await channels.ask("is_complete_request", code="for x in y:"))
            history = {"hist_access_type": "tail", "n": 3, "output": False, "raw": True}
            await channels.until_idle(await channels.ask("history_request", **history))
            types = {m["header"]["msg_type"] for m in channels.received}
            assert {"stream", "display_data", "execute_result", "error", "comm_open"} <= types
            assert validated(channels.received) > 40
            await channels.close()
    finally:
        await api.close()


async def answered_run(client: Any, code: str, answer: str) -> tuple[list[dict[str, Any]], str]:
    """`code` run through jupyter_client's client API with stdin allowed, each
    ``input_request`` answered with `answer` as it comes: the requests' contents and what
    was printed. (Not ``execute_interactive``: it polls ZMQ sockets, which a gateway's
    client has not.)"""
    asked: list[dict[str, Any]] = []
    printed: list[str] = []
    msg_id = client.execute(code, allow_stdin=True)

    async def answer_input() -> None:
        while True:
            request = await client.get_stdin_msg(timeout=60)
            asked.append(request["content"])
            client.input(answer)

    answering = asyncio.create_task(answer_input())
    try:
        while True:
            msg = await client.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["header"]["msg_type"] == "stream":
                printed.append(msg["content"]["text"])
            if (
                msg["header"]["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"
            ):
                break
    finally:
        answering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answering
    while (reply := await client.get_shell_msg(timeout=60))["parent_header"]["msg_id"] != msg_id:
        pass  # another request's reply (the readiness probe's)
    assert reply["content"]["status"] == "ok", reply["content"]
    return asked, "".join(printed)


INPUT_CODE = """name = input("Your name? ")
import getpass
secret = getpass.getpass("Secret: ")
print("hello", name, len(secret))"""


async def test_input_is_answered_through_the_channels_as_on_ipykernel(
    stack: ServicesStack, ada: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nbclient has no stdin (it refuses input() by design), so the same jupyter_client code
    runs ``input()`` and ``getpass()`` on cellbus (through GatewayKernelManager's client)
    and on stock ipykernel: both ask the same, and both print the answers."""
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import ensure_async
    from jupyter_server.gateway.gateway_client import GatewayClient

    from ..fixtures.jupyter.cellbus_gateway import AuthenticatedGatewayKernelManager

    assert ada.token
    for name, value in jupyter_env(tmp_path, stack.urls[0], ada.token).items():
        if name.startswith("JUPYTER_"):
            monkeypatch.setenv(name, value)
    GatewayClient.clear_instance()  # read from the environment set above
    runs = []
    for manager in (AuthenticatedGatewayKernelManager(), AsyncKernelManager()):
        await manager.start_kernel()
        client = manager.client()
        try:
            await ensure_async(client.start_channels())  # a coroutine for the gateway's only
            await client.wait_for_ready(timeout=60)
            runs.append(await answered_run(client, INPUT_CODE, "Ada"))
        finally:
            client.stop_channels()
            await manager.shutdown_kernel(now=True)
    GatewayClient.clear_instance()
    on_cellbus, on_ipykernel = runs
    assert on_ipykernel == (
        [{"prompt": "Your name? ", "password": False}, {"prompt": "Secret: ", "password": True}],
        "hello Ada 3\n",
    )
    assert on_cellbus == on_ipykernel
