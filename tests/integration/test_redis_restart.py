"""Redis going away and coming back under load: every service reconnects with backoff and
carries on, acknowledged edits stay, and a session keeps its variables (its checkpoint is in
Redis, which keeps an append-only file as docker-compose.yml configures it).

Runs on a Redis of its own (the shared one must not be restarted under other tests), with
cellbus in its one-program mode on that Redis: the accounts, web and kernel services each
reconnect through their own bus code paths.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from ..support.api import ApiError, new_user, poll_until_done, stdout_of
from ..support.doc_client import Typists
from ..support.stack import OneProgramStack, free_port

RECOVERY_TIMEOUT = 60.0


class PrivateRedis:
    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # a clean shutdown: the append-only file is complete
            self.process.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


async def test_redis_restarting_under_load_loses_no_acknowledged_edit_and_no_state(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    stack = OneProgramStack(tmp_path, tmp_path / "data", redis_url=private_redis.url,
                            secret="redis-restart-test")  # fmt: skip
    ada = await new_user(stack.urls[0], "ada")
    try:
        sheet = await ada.call("worksheet.create", title="Through a Redis restart")
        first = await ada.call("cell.create", worksheet=sheet["id"], source="x = 20")
        run = await ada.call("cell.evaluate", id=first["id"])
        await poll_until_done(ada, sheet["session"], run["msg_id"])
        acknowledged: list[str] = []
        failed = 0

        async def keep_editing() -> None:  # the load: a stream of edits, some during the gap
            nonlocal failed
            for i in range(10_000):
                try:
                    cell = await ada.call("cell.create", worksheet=sheet["id"], source=f"# {i}")
                    acknowledged.append(cell["id"])
                except ApiError:
                    failed += 1
                await asyncio.sleep(0.02)

        editing = asyncio.create_task(keep_editing())
        await asyncio.sleep(1.0)  # also lets the session's checkpoint be saved
        private_redis.stop()
        await asyncio.sleep(1.5)
        private_redis.start()
        seen = len(acknowledged)
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while len(acknowledged) < seen + 5:  # edits go through again
            assert time.monotonic() < deadline, "the API did not come back after Redis did"
            await asyncio.sleep(0.1)
        editing.cancel()
        await asyncio.gather(editing, return_exceptions=True)
        assert failed > 0, "the restart was not noticed: the test did not test anything"
        cells = {c["id"] for c in (await ada.call("worksheet.get", id=sheet["id"]))["cells"]}
        assert set(acknowledged) <= cells, "an acknowledged edit was lost"
        again = await ada.call("session.execute", session=sheet["session"], code="print(x + 1)")
        assert stdout_of(await poll_until_done(ada, sheet["session"], again["msg_id"])) == "21\n"
    finally:
        await ada.close()
        stack.close()


async def test_typing_through_a_redis_restart_loses_no_acknowledged_update(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """Three people type into one worksheet (pycrdt clients over the WebSocket) while Redis
    stops and starts again: the feed they sync through is gone for a moment, every update
    acknowledged is in the stored document, and all three end with the same notebook."""
    stack = OneProgramStack(tmp_path, tmp_path / "data", redis_url=private_redis.url,
                            secret="redis-restart-test")  # fmt: skip
    people = [await new_user(stack.urls[0], f"p{i}") for i in range(3)]
    try:
        sheet = await people[0].call("worksheet.create", title="Typing through a Redis restart")
        await people[0].call("cell.create", worksheet=sheet["id"], source="start")
        for person in people[1:]:
            await people[0].call(
                "worksheet.share", id=sheet["id"], username=person.username, role="editor"
            )
        typists = Typists.of([p.token for p in people], sheet["id"], stack.urls, seed=3)
        typists.start()
        try:
            await typists.acked_more(20)
            private_redis.stop()
            await asyncio.sleep(1.5)  # the outage: typing goes on into the clients' copies
            private_redis.start()
            await typists.acked_more(20, timeout=RECOVERY_TIMEOUT)
        finally:
            await typists.stop()
        assert sum(c.reconnects for c in typists.clients) > 0, "the outage went unnoticed"
        await typists.check(f"sqlite:///{tmp_path / 'data' / 'cellbus.db'}", sheet["id"])
        await typists.close()
    finally:
        for person in people:
            await person.close()
        stack.close()
