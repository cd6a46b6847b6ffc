"""The capacity workload's cellbus (issue 20): accounts, two kernel workers and four web
processes on the Redis and PostgreSQL on 127.0.0.1, and a client that drives many sessions at
once over the browser's path.

`CapacityStack` is a deployment as tests/support/stack.py's `ServicesStack` starts one (the
same processes, ``python -P -m cellbus_<service>``, a Redis namespace and a database of its
own, deleted at the end), with as many kernel workers and web processes as the workload
asks; its kernel workers can be replaced by others with different settings
(`replace_workers`: the live sessions never hibernate, the hibernated ones do after a
second or two). `Feeds` is one feed WebSocket per web process that follows any number of
sessions at once, and `Users` a signed-in user's RPC on every web process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from . import measure
from .systems import PASSWORD, ROOT, START_TIMEOUT, Run, http_session

_decode = msgspec.json.Decoder()


def _support() -> Any:
    """tests/support, the tests' deployment helpers (as `CellbusSystem` imports them)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import tests.support.postgres as postgres
    import tests.support.redis as redis_support
    import tests.support.stack as stack
    import tests.support.workers as workers

    return stack, workers, postgres, redis_support


class CapacityStack:
    """Accounts, `workers` kernel workers and `webs` web processes on the real Redis and
    PostgreSQL. Blocking: start and stop it in a thread."""

    def __init__(
        self, logs: Path, *, webs: int, workers: int, worker_settings: dict[str, object]
    ) -> None:
        stack, workers_mod, postgres, redis_support = _support()
        self._stack, self._workers_mod = stack, workers_mod
        self._postgres, self._redis = postgres, redis_support
        redis_support.require_redis()
        self.logs = logs
        self.namespace: str = redis_support.new_namespace()
        self.redis_url: str = redis_support.REDIS_URL
        self.workspaces = logs / "workspaces"
        self.sessions_dir = logs / "sessions"
        self.sessions_dir.mkdir(parents=True, exist_ok=True)
        self.database, self.database_url = asyncio.run(postgres.create_database())
        env = workers_mod.service_env(
            self.namespace, database_url=self.database_url, workspaces_dir=self.workspaces
        )
        self.accounts = stack.ServiceProcess("cellbus_accounts", env, logs / "accounts.log")
        self.kernels: list[Any] = []
        self.webs: list[Any] = []
        self.urls: list[str] = []
        self._generation = 0
        try:
            for i in range(webs):
                port = stack.free_port()
                web_env = workers_mod.service_env(
                    self.namespace, port=port, workspaces_dir=self.workspaces
                )
                self.webs.append(
                    stack.ServiceProcess("cellbus_web", web_env, logs / f"web-{i + 1}.log")
                )
                self.urls.append(f"http://127.0.0.1:{port}")
            self._start_workers(workers, worker_settings)  # meanwhile
            self.accounts.wait_for_log("accounts service ready", timeout=START_TIMEOUT)
            for kernel in self.kernels:
                kernel.wait_ready(timeout=START_TIMEOUT)
            for web, url in zip(self.webs, self.urls, strict=True):
                web.wait_for_http(url + "/healthz", timeout=START_TIMEOUT)
        except BaseException:
            self.close()
            raise

    def replace_workers(self, count: int, **settings: object) -> None:
        """Stop the kernel workers (they must host nothing by then) and start `count` new
        ones with `settings` (CELLBUS_* names, lower case), waiting until each is ready."""
        self.stop_workers()
        self._start_workers(count, settings)
        for kernel in self.kernels:
            kernel.wait_ready(timeout=START_TIMEOUT)

    def _start_workers(self, count: int, settings: dict[str, object]) -> None:
        self._generation += 1
        self.kernels = [
            self._workers_mod.WorkerProcess(
                self.namespace, f"capacity-{self._generation}-{i + 1}", self.logs,
                workspaces_dir=self.workspaces, sessions_dir=self.sessions_dir, **settings,
            )
            for i in range(count)
        ]  # fmt: skip

    def stop_workers(self) -> None:
        for kernel in self.kernels:  # all at once, then each waited for
            if kernel.process.poll() is None:
                kernel.process.send_signal(signal.SIGTERM)
        for kernel in self.kernels:
            kernel.stop(timeout=60)
        self.kernels = []

    def close(self) -> None:
        for web in self.webs:
            if web.process.poll() is None:
                web.process.send_signal(signal.SIGTERM)
        for web in self.webs:
            web.close()
        self.stop_workers()
        self.accounts.close()
        asyncio.run(self._postgres.drop_database(self.database))
        self._redis.delete_namespace(self.namespace)

    # -- what the workload reads ---------------------------------------------------------
    def worker_pids(self) -> list[int]:
        return [kernel.pid for kernel in self.kernels if kernel.process.poll() is None]

    def templates(self) -> list[int]:
        return [
            pid
            for worker in self.worker_pids()
            for pid in measure.children_of(worker)
            if "cellbus_kernel.template" in measure.cmdline_of(pid)
        ]

    def session_pids(self) -> list[int]:
        return measure.forked_by(self.templates())[0]

    def sessions_per_worker(self) -> list[int]:
        out = []
        for worker in self.worker_pids():
            templates = [
                p
                for p in measure.children_of(worker)
                if "cellbus_kernel.template" in measure.cmdline_of(p)
            ]
            out.append(len(measure.forked_by(templates)[0]))
        return out

    def web_pids(self) -> list[int]:
        return [web.process.pid for web in self.webs]

    def service_pids(self) -> dict[str, list[int]]:
        """The stack's own processes by kind (not the session processes)."""
        templates = self.templates()
        return {
            "accounts": [self.accounts.process.pid],
            "web": self.web_pids(),
            "kernel_workers": self.worker_pids(),
            "templates": [*templates, *measure.forked_by(templates)[1]],  # each with its spare
        }


class Feeds:
    """One feed WebSocket per web process, each following any number of sessions: runs are
    tracked by their request's msg_id, `subscribed` answers by session, and a session's
    ``session_state`` changes are kept (`states`)."""

    def __init__(self, http: aiohttp.ClientSession, urls: list[str], token: str) -> None:
        self.http = http
        self.urls = urls
        self.token = token
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.runs: dict[str, Run] = {}
        self.early: dict[str, list[tuple[dict[str, Any], float]]] = {}
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self.states: dict[str, str] = {}
        self.results: dict[str, str] = {}  # msg_id -> text/plain of its execute_result

    async def open(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        for url in self.urls:
            ws = await self.http.ws_connect(url + "/ws", headers=headers, max_msg_size=0)
            self.sockets.append(ws)
            self.tasks.append(asyncio.create_task(self._read(ws)))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            now = time.perf_counter()
            data = _decode.decode(frame.data)
            kind = data["type"]
            if kind == "messages":
                for item in data["messages"]:
                    self._route(item["message"], now)
            elif kind == "subscribed":
                waiter = self.waiting.pop(data["session"], None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            elif kind == "error" and data.get("session"):
                waiter = self.waiting.pop(data["session"], None)
                if waiter is not None and not waiter.done():
                    waiter.set_exception(RuntimeError(f"subscribe: {data}"))

    def _route(self, msg: dict[str, Any], now: float) -> None:
        msg_type = msg["header"]["msg_type"]
        if msg_type == "session_state":
            self.states[msg["header"]["session"]] = msg["content"].get("state", "")
        parent = msg["parent_header"].get("msg_id")
        if not parent:
            return
        if msg_type == "execute_result":
            self.results[parent] = msg["content"]["data"].get("text/plain", "")
        run = self.runs.get(parent)
        if run is None:
            self.early.setdefault(parent, []).append((msg, now))
            if len(self.early) > 10_000:
                del self.early[next(iter(self.early))]
            return
        run.feed(msg, now)
        if run.done_at is not None:
            del self.runs[parent]

    def track(self, msg_id: str, run: Run) -> None:
        for msg, now in self.early.pop(msg_id, ()):
            run.feed(msg, now)
        if run.done_at is None:
            self.runs[msg_id] = run

    async def subscribe(self, web: int, session: str, cursor: int | str | None = "now") -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.waiting[session] = waiter
        frame = {"op": "subscribe", "session": session, "cursor": cursor}
        await self.sockets[web].send_str(json.dumps(frame))
        async with asyncio.timeout(START_TIMEOUT):
            await waiter

    async def unsubscribe(self, web: int, session: str) -> None:
        await self.sockets[web].send_str(json.dumps({"op": "unsubscribe", "session": session}))

    async def close(self) -> None:
        for ws in self.sockets:
            await ws.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class Users:
    """One signed-in user: RPC on any of the web processes, and its `Feeds`."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.http = http_session()
        self.token = ""
        self.feeds: Feeds | None = None

    async def call(self, web: int, method: str, **params: Any) -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with self.http.post(self.urls[web] + "/rpc", json=body, headers=headers) as reply:
            answer = await reply.json()
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    async def sign_up(self, username: str) -> None:
        await self.call(0, "auth.register", username=username, password=PASSWORD)
        self.token = (await self.call(0, "auth.login", username=username, password=PASSWORD))[
            "token"
        ]
        self.feeds = Feeds(self.http, self.urls, self.token)
        await self.feeds.open()

    async def execute(self, web: int, session: str, code: str) -> tuple[Run, str]:
        """`code` sent to `session` through web process `web`: its run, tracked by the feed
        sockets (one of which must follow the session), and its msg_id."""
        assert self.feeds is not None
        run = Run()
        answer = await self.call(web, "session.execute", session=session, code=code)
        run.accepted_at = time.perf_counter()
        msg_id: str = answer["msg_id"]
        self.feeds.track(msg_id, run)
        return run, msg_id

    async def close(self) -> None:
        if self.feeds is not None:
            await self.feeds.close()
        with contextlib.suppress(Exception):
            await self.http.close()
