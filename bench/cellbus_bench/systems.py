"""The systems under test, as a browser drives them, behind one interface.

A `System` starts and stops, makes sessions, and opens watchers of a session; a `Session`
sends code and follows each execution (`Run`) to its end. The workloads see nothing else,
so every figure is measured the same way for every system.

`CellbusSystem` is cellbus started as its users start it: ``cellbus serve`` (one program,
in-process bus, SQLite in a data folder of its own) or the separate services on Redis and
PostgreSQL (tests/support/stack.py's `ServicesStack`). The client is the browser's path: the
JSON-RPC API at ``POST /rpc`` and the feed WebSocket at ``GET /ws`` (docs/api.md).
The Jupyter systems are in `jupyter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import msgspec

from . import measure
from .watching import RawWebSocket, Watchers

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PASSWORD = "bench-password-1"
RUN_TIMEOUT = 120.0
START_TIMEOUT = 60.0
EARLY_HELD = 1000  # requests whose messages a feed holds until their run is known

_decode = msgspec.json.Decoder()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_session(**headers: str) -> aiohttp.ClientSession:
    """A client with no cap on connections (a fan-out opens a thousand sockets)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), headers=headers, timeout=aiohttp.ClientTimeout()
    )


def wait_for_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing answered at {url}:\n{log.read_text(errors='replace')}")


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- what every system offers ------------------------------------------------------------


class Run:
    """One request as the client sees it: when it was sent, when its first result and its
    end (its reply, ``execute_reply`` for an execution, and the ``idle`` status) arrived, its
    messages and its stdout."""

    def __init__(self) -> None:
        self.sent = time.perf_counter()
        self.accepted_at: float | None = None  # the request was handed over (RPC answered)
        self.result_at: float | None = None
        self.done_at: float | None = None
        self.messages = 0
        self.stream_messages = 0
        self.status = ""
        self._stdout: list[str] = []
        self._replied = False
        self._idle = False
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def feed(self, msg: dict[str, Any], now: float) -> None:
        self.messages += 1
        msg_type = msg["header"]["msg_type"]
        content = msg["content"]
        if msg_type == "stream":
            self.stream_messages += 1
            if content.get("name") == "stdout":
                self._stdout.append(content["text"])
        elif msg_type in ("execute_result", "error") and self.result_at is None:
            self.result_at = now
        elif msg_type.endswith("_reply"):
            self._replied = True
            self.status = content.get("status", "")
        elif msg_type == "status" and content.get("execution_state") in ("idle", "dead"):
            self._idle = True  # jupyter_server itself may send a "dead" status
        elif msg_type == "session_state" and content.get("state") == "dead":  # cellbus's
            self._idle = True
        if self._replied and self._idle and self.done_at is None:
            self.done_at = now
            self.finished.set_result(None)

    @property
    def stdout(self) -> str:
        return "".join(self._stdout)

    @property
    def latency(self) -> float:
        assert self.done_at is not None
        return self.done_at - self.sent

    async def wait(self, timeout: float = RUN_TIMEOUT) -> Run:
        async with asyncio.timeout(timeout):
            await asyncio.shield(self.finished)
        return self


class Session(Protocol):
    async def send(self, code: str) -> Run:
        """Send `code`; the returned run finishes when its execution has ended."""

    async def close(self) -> None: ...


class System(Protocol):
    name: str

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def new_session(self) -> Session: ...
    async def start_session(self, code: str) -> tuple[Session, Run]:
        """A new session, from the request for it, with `code` sent to it as soon as it can
        be; the run's ``sent`` is when the session was asked for."""

    async def watchers(self, session: Session, n: int, deadline: float) -> Watchers:
        """Up to `n` sockets watching `session` (fewer if `deadline`, a perf_counter
        time, passes first)."""

    def service_pids(self) -> list[int]: ...
    def session_pids(self) -> list[int]: ...


# -- cellbus -----------------------------------------------------------------------------


class FeedRouter:
    """One feed WebSocket: hands each message to the run it belongs to. Messages that arrive
    before their run is known (the RPC's answer can come after the feed's first messages)
    are held until it is."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.runs: dict[str, Run] = {}
        self.early: dict[str, list[tuple[dict[str, Any], float]]] = {}
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            now = time.perf_counter()
            data = _decode.decode(frame.data)
            if data["type"] != "messages":
                self.replies.put_nowait(data)
                continue
            for item in data["messages"]:
                self._route(item["message"], now)

    def _route(self, msg: dict[str, Any], now: float) -> None:
        parent = msg["parent_header"].get("msg_id")
        if not parent:
            return
        run = self.runs.get(parent)
        if run is not None:
            run.feed(msg, now)
            if run.done_at is not None:
                del self.runs[parent]
        else:
            self.early.setdefault(parent, []).append((msg, now))
            if len(self.early) > EARLY_HELD:  # messages of runs long finished
                del self.early[next(iter(self.early))]

    def track(self, msg_id: str, run: Run) -> None:
        for msg, now in self.early.pop(msg_id, ()):
            run.feed(msg, now)
        if run.done_at is None:
            self.runs[msg_id] = run

    async def subscribe(self, session: str, cursor: int | str | None) -> None:
        await self.ws.send_json({"op": "subscribe", "session": session, "cursor": cursor})
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                reply = await self.replies.get()
                if reply["type"] == "subscribed" and reply["session"] == session:
                    return
                if reply["type"] == "error":
                    raise RuntimeError(f"subscribe: {reply}")

    async def close(self) -> None:
        await self.ws.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class CellbusClient:
    """A signed-in user of one web process: its HTTP client and one feed WebSocket."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.token = ""
        self.http = http_session()
        self.feed: FeedRouter | None = None

    async def call(self, method: str, **params: Any) -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.http.post(self.url + "/rpc", json=body, headers=headers) as response:
            reply = await response.json()
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    async def sign_up(self) -> None:
        username = f"bench-{uuid.uuid4().hex[:8]}"
        await self.call("auth.register", username=username, password=PASSWORD)
        login = await self.call("auth.login", username=username, password=PASSWORD)
        self.token = login["token"]
        self.feed = await self.open_feed()

    async def socket(self) -> aiohttp.ClientWebSocketResponse:
        headers = {"Authorization": f"Bearer {self.token}"}
        return await self.http.ws_connect(self.url + "/ws", headers=headers, max_msg_size=0)

    async def open_feed(self) -> FeedRouter:
        return FeedRouter(await self.socket())

    async def close(self) -> None:
        if self.feed is not None:
            await self.feed.close()
        await self.http.close()


class CellbusSession:
    def __init__(self, client: CellbusClient, session: str, feed: FeedRouter) -> None:
        self.client = client
        self.id = session
        self.feed = feed

    async def send(self, code: str) -> Run:
        run = Run()
        result = await self.client.call("session.execute", session=self.id, code=code)
        run.accepted_at = time.perf_counter()
        self.feed.track(result["msg_id"], run)
        return run

    async def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            await self.client.call("session.shutdown", session=self.id)
        if self.feed is self.client.feed:
            await self.feed.ws.send_json({"op": "unsubscribe", "session": self.id})
        else:
            await self.feed.close()


class CellbusCell:
    """A worksheet's cell that runs its code with ``cell.evaluate``, as the browser runs a
    cell: the accounts service also records the run and saves its outputs on the cell."""

    def __init__(self, client: CellbusClient, session: str, cell: str, code: str) -> None:
        self.client = client
        self.id = session
        self.cell = cell
        self.code = code

    async def send(self, code: str) -> Run:
        assert code == self.code, "a cell runs its own source"
        run = Run()
        result = await self.client.call("cell.evaluate", id=self.cell)
        run.accepted_at = time.perf_counter()
        assert self.client.feed is not None
        self.client.feed.track(result["msg_id"], run)
        return run

    async def close(self) -> None:
        with contextlib.suppress(RuntimeError):
            await self.client.call("session.shutdown", session=self.id)
        assert self.client.feed is not None
        await self.client.feed.ws.send_json({"op": "unsubscribe", "session": self.id})


class CellbusSystem:
    """cellbus as one program (``cellbus serve``) or as separate services (``services``)."""

    def __init__(self, workdir: Path, mode: str = "one-program") -> None:
        self.name = "cellbus" if mode == "one-program" else f"cellbus-{mode}"
        self.mode = mode
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.stack: Any = None
        self.client: CellbusClient | None = None
        self._log: Any = None

    async def start(self) -> None:
        if self.mode == "one-program":
            url = await asyncio.to_thread(self._start_program)
        else:
            url = await asyncio.to_thread(self._start_services)
        self.client = CellbusClient(url)
        await self.client.sign_up()

    def _start_program(self) -> str:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CELLBUS_")}
        env.update(CELLBUS_PORT=str(port), CELLBUS_DATA_DIR=str(self.workdir / "cellbus-data"))
        env["PYTHONSAFEPATH"] = "1"  # as deployed: no working directory on any import path
        log = self.workdir / "cellbus-serve.log"
        self._log = open(log, "wb")  # closed in stop()
        self.process = subprocess.Popen(
            [str(VENV_BIN / "cellbus"), "serve"], env=env, stdout=self._log, stderr=self._log
        )
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/healthz", self.process, log, START_TIMEOUT)
        return url

    def _start_services(self) -> str:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from tests.support.stack import ServicesStack  # the tests' deployment, on Redis

        logs = self.workdir / "services-logs"
        logs.mkdir(exist_ok=True)
        stack = ServicesStack(logs)
        self.stack = stack
        return stack.urls[0]

    async def stop(self) -> None:
        client, process, stack = self.client, self.process, self.stack
        self.client = self.process = self.stack = None
        if client is not None:
            await client.close()
        if process is not None:
            await asyncio.to_thread(stop_process, process)
            self._log.close()
        if stack is not None:
            await asyncio.to_thread(stack.close)

    async def new_session(self) -> CellbusSession:
        assert self.client is not None and self.client.feed is not None
        result = await self.client.call("session.create")
        await self.client.feed.subscribe(result["session"], 0)
        return CellbusSession(self.client, result["session"], self.client.feed)

    async def new_cell(self, code: str) -> CellbusCell:
        """A new worksheet with one cell holding `code` (its session starts on first run)."""
        assert self.client is not None and self.client.feed is not None
        sheet = await self.client.call("worksheet.create", title="bench")
        cell = await self.client.call("cell.create", worksheet=sheet["id"], source=code)
        await self.client.feed.subscribe(sheet["session"], 0)
        return CellbusCell(self.client, sheet["session"], cell["id"], code)

    async def start_session(self, code: str) -> tuple[CellbusSession, Run]:
        """A browser's new session, timed with a feed socket of its own (a page opening)."""
        assert self.client is not None
        run = Run()
        feed = await self.client.open_feed()
        result = await self.client.call("session.create")
        session = CellbusSession(self.client, result["session"], feed)
        await feed.subscribe(session.id, 0)
        answer = await self.client.call("session.execute", session=session.id, code=code)
        feed.track(answer["msg_id"], run)
        return session, run

    async def watchers(self, session: Session, n: int, deadline: float) -> Watchers:
        assert self.client is not None and isinstance(session, CellbusSession)
        client = self.client
        watchers = Watchers()
        frame = json.dumps({"op": "subscribe", "session": session.id, "cursor": "now"})

        def is_x(data: bytes) -> bool:
            return b'"msg_type":"stream"' in data and b'"text":"x\\n"' in data

        async def open_one() -> None:
            ws = await RawWebSocket.connect(
                client.url + "/ws", {"Authorization": f"Bearer {client.token}"}
            )
            try:
                await ws.send_str(frame)
                async with asyncio.timeout(START_TIMEOUT):
                    while _decode.decode(await ws.receive_str())["type"] != "subscribed":
                        pass
            except BaseException:
                await ws.close()
                raise
            watchers.add(ws, is_x)

        watchers.refused = await open_many(open_one, n, deadline)
        return watchers

    def service_pids(self) -> list[int]:
        if self.process is not None:
            templates = self._templates()
            return [self.process.pid, *templates, *measure.forked_by(templates)[1]]
        return []

    def _templates(self) -> list[int]:
        assert self.process is not None
        children = measure.children_of(self.process.pid)
        return [pid for pid in children if "cellbus_kernel.template" in measure.cmdline_of(pid)]

    def session_pids(self) -> list[int]:
        return measure.forked_by(self._templates())[0]


async def open_many(
    open_one: Callable[[], Any], n: int, deadline: float, batch: int = 20
) -> str | None:
    """Run `open_one` `n` times, `batch` at a time, until `deadline` (perf_counter) or the
    first batch in which one fails: then the failure, as text."""
    started = 0
    while started < n and time.perf_counter() < deadline:
        count = min(batch, n - started)
        outcomes = await asyncio.gather(*(open_one() for _ in range(count)), return_exceptions=True)
        started += count
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures:
            if not isinstance(failures[0], Exception):
                raise failures[0]
            return f"{type(failures[0]).__name__}: {failures[0]}"
    return None
