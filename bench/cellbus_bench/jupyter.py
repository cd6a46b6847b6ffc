"""Jupyter as shipped, in a virtual environment of its own (``bench/.jupyter-venv``).

`JupyterSystem` is jupyter_server with ipykernel, driven as JupyterLab drives it: ``POST
/api/kernels`` for a kernel, then its channels WebSocket (``/api/kernels/<id>/channels``,
the v5 JSON protocol) for requests and output, one socket per kernel per client. The server
is measured as it ships: nothing tunes its sockets or its rate limits.

`ZmqFloor` is one kernel driven over raw ZMQ by jupyter_client, with no web server: the floor
under any web path to ipykernel. It runs `zmq_floor.py` in the Jupyter environment, which
answers one line of JSON per command.

`JupyterLabSystem` is JupyterLab with jupyter-collaboration (real-time collaboration), for the
browser workloads (`browser`). It has an environment of its own (``bench/.jupyterlab-venv``,
the same pins plus JupyterLab's): JupyterLab and jupyter-collaboration enable their server
extensions in the environment they are installed into, so installed beside the plain server
they would change what `JupyterSystem` measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from . import measure
from .systems import (
    ROOT,
    START_TIMEOUT,
    Run,
    free_port,
    http_session,
    open_many,
    stop_process,
    wait_for_http,
)
from .watching import RawWebSocket, Watchers

VENV = ROOT / "bench" / ".jupyter-venv"
PINS = ("jupyter_server==2.21.1", "ipykernel==7.4.0", "jupyter_client==8.10.0")
LAB_VENV = ROOT / "bench" / ".jupyterlab-venv"
LAB_PINS = (*PINS, "jupyterlab==4.6.6", "jupyter-collaboration==5.0.4")
HELPER = Path(__file__).with_name("zmq_floor.py")
ZMQ_SOCKETS_EXHAUSTED = (
    "the server ran out of ZMQ sockets (its log: ZMQError: Too many open files): "
    "jupyter_server connects each kernel WebSocket to the kernel with 4 ZMQ sockets (iopub, "
    "shell, control, stdin) in one ZMQ context, which allows 1,023 (libzmq's default "
    "ZMQ_MAX_SOCKETS), so one server holds about 250 kernel WebSockets at once"
)


def venv_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def ensure_venv(log: Path, venv: Path = VENV, pins: tuple[str, ...] = PINS) -> None:
    """Create a Jupyter environment once (``python3 -m venv`` and pip); reuse it later."""
    stamp = venv / ".installed"
    if stamp.exists() and stamp.read_text() == "\n".join(pins):
        return
    shutil.rmtree(venv, ignore_errors=True)
    base = shutil.which("python3") or sys.executable
    python = str(venv_python(venv))
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    try:
        with open(log, "ab") as out:
            for command in ([base, "-m", "venv", str(venv)], [*pip, *pins]):
                subprocess.run(command, check=True, stdout=out, stderr=out)
    except subprocess.CalledProcessError as exc:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"could not make {venv}: {exc}\n{tail}") from None
    stamp.write_text("\n".join(pins))


def ensure_lab_venv(log: Path) -> None:
    """The JupyterLab environment (a few minutes the first time: JupyterLab's wheels carry
    its built front end)."""
    ensure_venv(log, LAB_VENV, LAB_PINS)


VERSION_NAMES = ["jupyter_server", "ipykernel", "jupyter_client", "ipython", "pyzmq", "tornado"]
LAB_VERSION_NAMES = [
    "jupyterlab",
    "jupyter-collaboration",
    "jupyter-server-ydoc",
    "jupyter-ydoc",
    "pycrdt",
    "jupyter_server",
]


def versions(venv: Path = VENV, names: list[str] = VERSION_NAMES) -> dict[str, str]:
    """The versions of a Jupyter environment's packages that matter here."""
    script = (
        "import json, importlib.metadata as m, platform\n"
        f"v = {{n: m.version(n) for n in {names!r}}}\n"
        "v['python'] = platform.python_version()\n"
        "print(json.dumps(v))"
    )
    out = subprocess.run([str(venv_python(venv)), "-c", script], capture_output=True, check=True)
    versions: dict[str, str] = json.loads(out.stdout)
    return versions


def isolated_env(workdir: Path, venv: Path = VENV) -> dict[str, str]:
    """The environment with Jupyter's folders in `workdir`: no user configuration applies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "IPYTHON"))}
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        path = workdir / name.lower()
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    return env


def request(session: str, msg_type: str, content: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A shell request in the JSON form of the kernel WebSocket (as JupyterLab sends it)."""
    msg_id = uuid.uuid4().hex
    now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
    msg = {
        "header": {
            "msg_id": msg_id,
            "username": "bench",
            "session": session,
            "msg_type": msg_type,
            "version": "5.3",
            "date": now,
        },
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": "shell",
        "buffers": [],
    }
    return msg_id, msg


def execute_request(session: str, code: str) -> tuple[str, dict[str, Any]]:
    return request(
        session,
        "execute_request",
        {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
    )


async def handshake(ws: aiohttp.ClientWebSocketResponse | RawWebSocket) -> None:
    """What JupyterLab does on a new kernel socket before using it: ask for kernel_info and
    wait for the reply and the idle status. The server subscribes a socket to the kernel's
    output only after the handshake returns, so until then output can miss it."""
    msg_id, msg = request(uuid.uuid4().hex, "kernel_info_request", {})
    await ws.send_str(json.dumps(msg))
    replied = idle = False
    async with asyncio.timeout(START_TIMEOUT):
        while not (replied and idle):
            try:
                reply = json.loads(await ws.receive_str())
            except TypeError as exc:  # aiohttp's answer to a frame that is not text
                raise ConnectionError(f"kernel socket: {exc}") from None
            if reply["parent_header"].get("msg_id") != msg_id:
                continue
            replied = replied or reply["msg_type"] == "kernel_info_reply"
            idle = idle or reply["content"].get("execution_state") == "idle"


class KernelSocket:
    """One client's channels WebSocket to one kernel, routing messages to their runs."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.session = uuid.uuid4().hex
        self.runs: dict[str, Run] = {}
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            now = time.perf_counter()
            msg = json.loads(frame.data)
            run = self.runs.get(msg["parent_header"].get("msg_id", ""))
            if run is not None:
                run.feed(msg, now)
                if run.done_at is not None:
                    del self.runs[msg["parent_header"]["msg_id"]]

    async def send(self, code: str, run: Run | None = None) -> Run:
        run = run or Run()
        msg_id, msg = execute_request(self.session, code)
        self.runs[msg_id] = run
        await self.ws.send_str(json.dumps(msg))
        run.accepted_at = time.perf_counter()
        return run

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


class KernelsApi:
    """The kernels API of a server that speaks jupyter_server's (``/api/kernels`` and the
    channels WebSocket), driven as JupyterLab drives it, with a token. Jupyter's own server
    and cellbus's Jupyter API (issue 16) are driven by this same code."""

    def __init__(self, name: str, url: str, token: str) -> None:
        self.name = name
        self.url = url
        self.http = http_session(Authorization=f"token {token}")

    async def new_kernel(self) -> str:
        async with self.http.post(self.url + "/api/kernels", json={"name": "python3"}) as response:
            response.raise_for_status()
            kernel_id: str = (await response.json())["id"]
            return kernel_id

    async def delete_kernel(self, kernel_id: str) -> None:
        async with self.http.delete(f"{self.url}/api/kernels/{kernel_id}") as response:
            await response.read()

    async def socket(self, kernel_id: str) -> aiohttp.ClientWebSocketResponse:
        """A new kernel socket, after the handshake (see `handshake`)."""
        session = uuid.uuid4().hex
        url = f"{self.url}/api/kernels/{kernel_id}/channels?session_id={session}"
        ws = await self.http.ws_connect(url, max_msg_size=0)
        try:
            await handshake(ws)
        except BaseException:
            await ws.close()
            raise
        return ws

    async def new_session(self) -> JupyterSession:
        kernel_id = await self.new_kernel()
        return JupyterSession(self, kernel_id, KernelSocket(await self.socket(kernel_id)))

    async def close(self) -> None:
        await self.http.close()


class JupyterSession:
    def __init__(self, system: KernelsApi, kernel_id: str, socket: KernelSocket) -> None:
        self.system = system
        self.id = kernel_id
        self.socket = socket

    async def send(self, code: str) -> Run:
        return await self.socket.send(code)

    async def close(self) -> None:
        await self.socket.close()
        await self.system.delete_kernel(self.id)


class JupyterSystem:
    """jupyter_server 2 with ipykernel 7, started as ``jupyter server`` with a token."""

    name = "jupyter"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.token = secrets.token_hex(16)
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.kernels: KernelsApi | None = None
        self._log: Any = None

    async def start(self) -> None:
        self.url = await asyncio.to_thread(self._start_server)
        self.kernels = KernelsApi(self.name, self.url, self.token)

    def _start_server(self) -> str:
        port = free_port()
        root = self.workdir / "jupyter-root"
        root.mkdir(exist_ok=True)
        log = self.workdir / "jupyter-server.log"
        self._log = open(log, "wb")  # closed in stop()
        self.process = subprocess.Popen(
            [
                str(VENV / "bin" / "jupyter-server"),
                f"--port={port}",
                "--ip=127.0.0.1",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}",
                "--ServerApp.open_browser=False",
                f"--ServerApp.root_dir={root}",
                *(["--allow-root"] if os.geteuid() == 0 else []),
            ],
            env=isolated_env(self.workdir / "jupyter-home"),
            stdout=self._log,
            stderr=self._log,
        )
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/api/status?token={self.token}", self.process, log, START_TIMEOUT)
        return url

    async def stop(self) -> None:
        kernels, process = self.kernels, self.process
        if kernels is not None:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                for kernel in await self._get("/api/kernels"):
                    await kernels.delete_kernel(kernel["id"])
            await kernels.close()
        self.kernels = self.process = None
        if process is not None:
            await asyncio.to_thread(stop_process, process)
            self._log.close()

    async def _get(self, path: str) -> Any:
        assert self.kernels is not None
        async with self.kernels.http.get(self.url + path) as response:
            response.raise_for_status()
            return await response.json()

    def _api(self) -> KernelsApi:
        assert self.kernels is not None, "start() first"
        return self.kernels

    async def new_kernel(self) -> str:
        return await self._api().new_kernel()

    async def delete_kernel(self, kernel_id: str) -> None:
        await self._api().delete_kernel(kernel_id)

    async def socket(self, kernel_id: str) -> aiohttp.ClientWebSocketResponse:
        return await self._api().socket(kernel_id)

    async def new_session(self) -> JupyterSession:
        return await self._api().new_session()

    async def start_session(self, code: str) -> tuple[JupyterSession, Run]:
        """As JupyterLab starts a kernel: ``POST /api/kernels``, the socket, its handshake,
        then the execution."""
        run = Run()
        kernel_id = await self.new_kernel()
        socket = KernelSocket(await self.socket(kernel_id))
        await socket.send(code, run)
        return JupyterSession(self._api(), kernel_id, socket), run

    async def watchers(self, session: Any, n: int, deadline: float) -> Watchers:
        assert isinstance(session, JupyterSession)
        watchers = Watchers()

        def is_x(data: bytes) -> bool:
            if b'"stream"' not in data:
                return False
            msg = json.loads(data)
            return bool(msg["msg_type"] == "stream" and msg["content"].get("text") == "x\n")

        async def open_one() -> None:
            url = f"{self.url}/api/kernels/{session.id}/channels?session_id={uuid.uuid4().hex}"
            ws = await RawWebSocket.connect(url, {"Authorization": f"token {self.token}"})
            try:
                await handshake(ws)
            except BaseException:
                await ws.close()
                raise
            watchers.add(ws, is_x)

        refused = await open_many(open_one, n, deadline)
        if refused and "Too many open files" in self.log_text():
            refused = ZMQ_SOCKETS_EXHAUSTED
        watchers.refused = refused
        return watchers

    def log_text(self) -> str:
        return (self.workdir / "jupyter-server.log").read_text(errors="replace")

    def service_pids(self) -> list[int]:
        return [self.process.pid] if self.process is not None else []

    def session_pids(self) -> list[int]:
        if self.process is None:
            return []
        children = measure.children_of(self.process.pid)
        return [pid for pid in children if "ipykernel" in measure.cmdline_of(pid)]


class ZmqFloor:
    """One ipykernel driven over raw ZMQ by jupyter_client (`zmq_floor.py`), no server."""

    name = "jupyter-zmq"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        env = isolated_env(self.workdir / "zmq-home")
        with (self.workdir / "zmq-floor.log").open("wb") as log:  # the child keeps its own
            self.process = await asyncio.create_subprocess_exec(
                str(venv_python()),
                str(HELPER),
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        await self._answer()

    async def _answer(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        async with asyncio.timeout(START_TIMEOUT * 2):
            line = await self.process.stdout.readline()
        if not line:
            log = (self.workdir / "zmq-floor.log").read_text(errors="replace")
            raise RuntimeError(f"zmq_floor.py ended:\n{log}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def round_trips(self, code: str, n: int) -> list[float]:
        """`n` sequential executions of `code`, each to its reply and idle status (seconds)."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": "run", "code": code, "n": n}).encode() + b"\n")
        await self.process.stdin.drain()
        latencies: list[float] = (await self._answer())["latencies"]
        return latencies

    async def stop(self) -> None:
        if self.process is None or self.process.stdin is None:
            return
        self.process.stdin.write(b'{"op": "stop"}\n')
        self.process.stdin.close()
        try:
            async with asyncio.timeout(20):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


# -- JupyterLab with real-time collaboration, for the browser workloads -------------------

LAB_SETTINGS: dict[str, dict[str, Any]] = {
    # Every cell attached and rendered: JupyterLab's default ("contentVisibility") attaches
    # every cell but lets the browser skip laying out and painting those out of view, and
    # "full" attaches only the cells in view; "none" is the mode in which a notebook that
    # has opened shows every cell, as cellbus's page does.
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    # No news or update checks: this machine has no network, and a toast asking is noise.
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


class JupyterLabSystem:
    """``jupyter lab`` (JupyterLab 4 with jupyter-collaboration) with a token, its notebooks
    in a folder of its own, its user settings `LAB_SETTINGS` (with `windowing` as the
    notebook's windowing mode: ``contentVisibility`` is JupyterLab's default)."""

    def __init__(self, workdir: Path, name: str = "jupyter", windowing: str = "none") -> None:
        self.name = name
        self.windowing = windowing
        self.workdir = workdir / f"jupyterlab-{name}"
        self.root = self.workdir / "root"
        self.token = secrets.token_hex(16)
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def log(self) -> Path:
        return self.workdir / "jupyterlab.log"

    async def start(self) -> None:
        self.url = await asyncio.to_thread(self._start_server)

    def _start_server(self) -> str:
        port = free_port()
        self.root.mkdir(parents=True, exist_ok=True)
        settings = self.workdir / "settings"
        for name, values in LAB_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if "windowingMode" in values:
                values = {**values, "windowingMode": self.windowing}
            path.write_text(json.dumps(values))
        env = isolated_env(self.workdir / "home", LAB_VENV)
        env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
        env["JUPYTERLAB_WORKSPACES_DIR"] = str(self.workdir / "workspaces")
        self._log = open(self.log, "wb")  # closed in stop()
        self.process = subprocess.Popen(
            [
                str(LAB_VENV / "bin" / "jupyter-lab"),
                f"--port={port}",
                "--ip=127.0.0.1",
                "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}",
                "--ServerApp.open_browser=False",
                f"--ServerApp.root_dir={self.root}",
                *(["--allow-root"] if os.geteuid() == 0 else []),
            ],
            env=env,
            cwd=self.workdir,  # jupyter-collaboration keeps its store (.jupyter_ystore.db) here
            stdout=self._log,
            stderr=self._log,
        )
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/api/status?token={self.token}", self.process, self.log, START_TIMEOUT)
        return url

    def write_notebook(self, name: str, notebook: dict[str, Any]) -> None:
        (self.root / name).write_text(json.dumps(notebook))

    def page_url(self, name: str) -> str:
        """The notebook's page in a workspace of its own (a workspace remembers the documents
        open in it and opens them again: every page gets a new one)."""
        return f"{self.url}/lab/workspaces/w{uuid.uuid4().hex[:12]}/tree/{name}"

    async def shutdown_kernels(self) -> None:
        """End the sessions (and kernels) that opening notebooks started."""
        headers = {"Authorization": f"token {self.token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.get(self.url + "/api/sessions") as response:
                sessions = await response.json()
            for session in sessions:
                async with http.delete(f"{self.url}/api/sessions/{session['id']}") as response:
                    await response.read()

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                await self.shutdown_kernels()
            await asyncio.to_thread(stop_process, process)
            self._log.close()
