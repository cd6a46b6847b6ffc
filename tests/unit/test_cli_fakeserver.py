"""A small stand-in for a cellbus server, answering like the contract, for the CLI's unit tests.

Not the real server (that is tested end to end elsewhere): just enough of JSON-RPC at /rpc and
the feed WebSocket at /ws to exercise the client. `FakeCellbus.fail(method, code, message,
data)` makes the next call of `method` fail. A "kernel" answers `session.execute` and
`cell.evaluate` with canned feed messages: code containing `1/0` raises ZeroDivisionError,
code starting with `sleep` runs until `session.interrupt` (then raises KeyboardInterrupt),
anything else prints "ran: <code>" and has the result 42. `ThreadedServer` runs it on its own
event loop in a thread, for tests that call the synchronous `main()`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from aiohttp import WSMsgType, web


class Fault(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def jupyter(
    msg_type: str, content: dict[str, Any], *, parent: str = "", user: str = ""
) -> dict[str, Any]:
    return {
        "header": {
            "msg_id": uuid.uuid4().hex,
            "msg_type": msg_type,
            "username": user,
            "session": "",
            "date": "2025-01-01T00:00:00Z",
            "version": "5.3",
        },
        "parent_header": {"msg_id": parent} if parent else {},
        "metadata": {},
        "content": content,
    }


class FakeCellbus:
    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.passwords: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.worksheets: dict[str, dict[str, Any]] = {}
        self.feeds: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = defaultdict(set)
        self.calls: list[tuple[str, dict[str, Any], str | None]] = []
        self.failures: dict[str, Fault] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.counts: dict[str, int] = defaultdict(int)
        self.interrupts: dict[str, asyncio.Event] = {}
        self.sleeping = asyncio.Event()  # set when a `sleep` starts (in-loop use only)
        self._ids = itertools.count(1)
        self.app = web.Application()
        self.app.router.add_post("/rpc", self.rpc)
        self.app.router.add_get("/ws", self.ws)

    # -- setup helpers -------------------------------------------------------------------------
    def add_user(self, username: str, password: str = "secret", *, token: str | None = None) -> str:
        self.users[username] = {
            "id": f"u{next(self._ids)}",
            "username": username,
            "is_admin": False,
            "created_at": "2025-01-01T00:00:00Z",
        }
        self.passwords[username] = password
        token = token or uuid.uuid4().hex
        self.tokens[token] = username
        return token

    def add_worksheet(
        self, title: str, owner: str, *, wid: str | None = None, cells: Iterable[str] = ()
    ) -> dict[str, Any]:
        wid = wid or uuid.uuid4().hex
        worksheet = {
            "id": wid,
            "title": title,
            "session": f"s-{wid}",
            "owner": owner,
            "role": "owner",
            "created_at": "2025-01-01T00:00:00Z",
            "updated_at": "2025-01-02T03:04:05Z",
            "cells": [
                {
                    "id": uuid.uuid4().hex,
                    "worksheet": wid,
                    "source": source,
                    "version": 1,
                    "outputs": [],
                    "execution_count": None,
                }
                for source in cells
            ],
            "members": [{"username": owner, "role": "owner"}],
        }
        self.worksheets[wid] = worksheet
        return worksheet

    def fail(self, method: str, code: int, message: str, data: Any = None) -> None:
        self.failures[method] = Fault(code, message, data)

    def publish(self, session: str, message: dict[str, Any]) -> None:
        feed = self.feeds[session]
        feed.append(message)
        item = {"cursor": len(feed), "message": message}
        frame = {"type": "messages", "session": session, "cursor": len(feed), "messages": [item]}
        for queue in self.subscribers[session]:
            queue.put_nowait(frame)

    # -- HTTP ----------------------------------------------------------------------------------
    def user_of(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        return self.tokens.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None

    async def rpc(self, request: web.Request) -> web.Response:
        body = await request.json()
        method, params = body["method"], body.get("params") or {}
        self.calls.append((method, params, request.headers.get("Authorization")))
        try:
            if method in self.failures:
                raise self.failures.pop(method)
            user = self.user_of(request)
            if user is None and method not in ("auth.register", "auth.login"):
                raise Fault(-32001, "not authenticated")
            handler = getattr(self, "m_" + method.replace(".", "_"), None)
            if handler is None:
                raise Fault(-32601, f"method not found: {method}")
            result = handler(user, **params)
        except Fault as fault:
            error = {"code": fault.code, "message": fault.message, "data": fault.data}
            return web.json_response({"jsonrpc": "2.0", "id": body["id"], "error": error})
        return web.json_response({"jsonrpc": "2.0", "id": body["id"], "result": result})

    async def ws(self, request: web.Request) -> web.WebSocketResponse:
        user = self.user_of(request)
        if user is None:
            raise web.HTTPUnauthorized()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        subscribed: list[str] = []

        async def writer() -> None:
            while True:
                await ws.send_str(json.dumps(await queue.get()))

        task = asyncio.create_task(writer())
        try:
            async for frame in ws:
                if frame.type is not WSMsgType.TEXT:
                    continue
                op = json.loads(frame.data)
                session, cursor = op["session"], op.get("cursor", "now")
                feed = self.feeds[session]
                start = len(feed) if cursor == "now" else int(cursor)
                queue.put_nowait({"type": "subscribed", "session": session, "cursor": start})
                retained = [
                    {"cursor": n, "message": message}
                    for n, message in enumerate(feed[start:], start + 1)
                ]
                if retained:  # one batch, as the server sends a catch-up page
                    frame_ = {"type": "messages", "session": session, "cursor": len(feed)}
                    queue.put_nowait({**frame_, "messages": retained})
                self.subscribers[session].add(queue)
                subscribed.append(session)
        finally:
            for session in subscribed:
                self.subscribers[session].discard(queue)
            task.cancel()
        return ws

    # -- methods -------------------------------------------------------------------------------
    def m_auth_register(self, user: str | None, username: str, password: str) -> dict[str, Any]:
        if username in self.users:
            raise Fault(-32010, f"the username {username!r} is taken")
        if not username.isalnum():
            raise Fault(-32602, "a username is letters and digits")
        self.add_user(username, password)
        return self.users[username]

    def m_auth_login(
        self, user: str | None, username: str, password: str, label: str = ""
    ) -> dict[str, Any]:
        if self.passwords.get(username) != password:
            raise Fault(-32001, "wrong username or password")
        token = uuid.uuid4().hex
        self.tokens[token] = username
        return {"token": token, "user": self.users[username]}

    def m_auth_logout(self, user: str) -> None:
        for token, name in list(self.tokens.items()):
            if name == user:
                del self.tokens[token]

    def m_auth_whoami(self, user: str) -> dict[str, Any]:
        return self.users[user]

    def m_worksheet_list(self, user: str) -> list[dict[str, Any]]:
        return [
            {k: v for k, v in w.items() if k not in ("cells", "members")}
            for w in self.worksheets.values()
        ]

    def m_worksheet_create(self, user: str, title: str) -> dict[str, Any]:
        return self.add_worksheet(title, user)

    def m_worksheet_get(self, user: str, id: str) -> dict[str, Any]:
        if id not in self.worksheets:
            raise Fault(-32004, "no such worksheet")
        return self.worksheets[id]

    def m_worksheet_share(
        self, user: str, id: str, username: str, role: str
    ) -> list[dict[str, str]]:
        members: list[dict[str, str]] = self.worksheets[id]["members"]
        members.append({"username": username, "role": role})
        return members

    def m_worksheet_export(self, user: str, id: str) -> dict[str, Any]:
        cells = [
            {
                "cell_type": "code",
                "source": c["source"],
                "outputs": [],
                "metadata": {},
                "execution_count": None,
            }
            for c in self.worksheets[id]["cells"]
        ]
        return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}

    def m_worksheet_import(
        self, user: str, notebook: dict[str, Any], title: str = "Untitled"
    ) -> dict[str, Any]:
        sources = [c["source"] for c in notebook["cells"]]
        return self.add_worksheet(title, user, cells=sources)

    def m_session_create(self, user: str) -> dict[str, Any]:
        return {"session": uuid.uuid4().hex}

    def m_session_info(self, user: str, session: str) -> dict[str, Any]:
        return {
            "state": "idle",
            "execution_count": self.counts[session],
            "running": None,
            "queued": [],
        }

    def m_session_shutdown(self, user: str, session: str) -> None:
        return None

    def m_session_interrupt(self, user: str, session: str) -> None:
        if session in self.interrupts:
            self.interrupts[session].set()

    def m_feed_cursor(self, user: str, session: str) -> dict[str, Any]:
        return {"cursor": len(self.feeds[session])}

    def m_session_execute(self, user: str, session: str, code: str) -> dict[str, Any]:
        msg_id = uuid.uuid4().hex
        self.run_later(self.run_code(session, code, msg_id, user))
        return {"msg_id": msg_id}

    def m_cell_evaluate(self, user: str, id: str, worksheet: str | None = None) -> dict[str, Any]:
        for sheet in self.worksheets.values():
            for cell in sheet["cells"]:
                if cell["id"] == id:
                    msg_id = uuid.uuid4().hex
                    session = sheet["session"]
                    self.run_later(self.run_code(session, cell["source"], msg_id, user))
                    return {"msg_id": msg_id, "session": session}
        raise Fault(-32004, "no such cell")

    # -- the canned kernel ---------------------------------------------------------------------
    def run_later(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run_code(self, session: str, code: str, msg_id: str, user: str) -> None:
        def send(msg_type: str, content: dict[str, Any]) -> None:
            self.publish(session, jupyter(msg_type, content, parent=msg_id, user=user))

        self.counts[session] += 1
        count = self.counts[session]
        send("status", {"execution_state": "busy"})
        send("execute_input", {"code": code, "execution_count": count})
        await asyncio.sleep(0)
        error: dict[str, Any] | None = None
        if code.startswith("sleep"):
            self.interrupts[session] = interrupted = asyncio.Event()
            self.sleeping.set()
            await interrupted.wait()
            error = {"ename": "KeyboardInterrupt", "evalue": "", "traceback": ["KeyboardInterrupt"]}
        elif "1/0" in code:
            tb = ["\x1b[31mZeroDivisionError\x1b[0m: division by zero"]
            error = {"ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": tb}
        elif "os._exit" in code:  # the process dies: no idle, the session is dead
            died = "The session process exited with code 1."
            error = {"ename": "SessionDied", "evalue": died, "traceback": [died]}
            send("error", error)
            send("execute_reply", {"status": "error", "execution_count": count, **error})
            send("session_state", {"state": "dead", "reason": died})
            return
        if error:
            send("error", error)
            send("execute_reply", {"status": "error", "execution_count": count, **error})
        else:
            send("stream", {"name": "stdout", "text": f"ran: {code}\n"})
            send(
                "execute_result",
                {"data": {"text/plain": "42"}, "metadata": {}, "execution_count": count},
            )
            send("execute_reply", {"status": "ok", "execution_count": count})
        send("status", {"execution_state": "idle"})


class ThreadedServer:
    """An aiohttp app served on 127.0.0.1 from a thread of its own (for sync `main()` tests)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner = web.AppRunner(app)
        self.url = ""

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    async def _start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the server's loop (its state is not thread-safe)."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(5)
