"""Workspaces on the kernel's side, with kernel workers as separate processes on the real Redis
sharing one workspaces folder (as a deployment's workers share a volume).

A session works in its workspace: what a cell writes there is on the feed as
``files_changed`` (before the execution's ``idle``), and is still there after a restart, after
hibernation and a restore on another worker, and after its worker is killed and another takes
the session over. A fork starts with a copy of the workspace; what it changes there never
reaches the original.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellbus_protocol import keys
from cellbus_protocol.kernel_client import KernelClient
from cellbus_protocol.messages import state_of

from ..support.feeds import Run, collect, first_message, run_code, wait_for_state
from ..support.workers import WorkerProcess

FAST = {"checkpoint_delay": 0.1, "heartbeat_interval": 0.3, "lease_ttl": 1.5}


class Workers:
    """Kernel workers started by name, all sharing `workspaces`; stopped after the test."""

    def __init__(self, namespace: str, folder: Path) -> None:
        self.namespace = namespace
        self.folder = folder
        self.workspaces = folder / "workspaces"
        self.started: list[WorkerProcess] = []

    def start(self, name: str, **settings: object) -> WorkerProcess:
        every = {**FAST, "workspaces_dir": self.workspaces, **settings}
        worker = WorkerProcess(self.namespace, name, self.folder, **every)
        self.started.append(worker)
        worker.wait_ready()
        return worker


@pytest.fixture
def workers(namespace: str, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(namespace, tmp_path)
    yield started
    for worker in started.started:
        worker.stop()


async def new_session(client: KernelClient) -> str:
    session = await client.create_session()
    await wait_for_state(client.bus, session, "idle")
    return session


def ok(run: Run) -> Run:
    assert run.reply.content.status == "ok", run.reply.content
    return run


def files_changed(run: Run) -> list[list[str]]:
    """The ``files_changed`` messages of an execution (their paths), checked to come between
    its reply and its ``idle``."""
    types = run.types
    found = [msg.content.paths for msg in run.of_type("files_changed")]
    if found:
        at = types.index("files_changed")
        assert types.index("execute_reply") < at < len(types) - 1
        assert state_of(run.messages[-1].content) == "idle"
    return found


async def test_the_files_a_cell_writes_are_announced_and_outlive_restart_and_hibernation(
    workers: Workers, redis_client: KernelClient
) -> None:
    workers.start("worker-1", hibernate_after=1)
    session = await new_session(redis_client)
    workspace = workers.workspaces / session

    wrote = ok(await run_code(redis_client, session, WRITE))
    assert wrote.stdout == f"{workspace}\n"
    assert sorted(p.name for p in workspace.iterdir()) == ["data.csv", "results"]
    assert (workspace / "results/summary.txt").read_text() == "3 rows"
    assert files_changed(wrote) == [["data.csv", "results", "results/summary.txt"]]
    read = ok(await run_code(redis_client, session, "print(open('data.csv').read())"))
    assert files_changed(read) == []  # nothing changed: nothing said

    after = await redis_client.bus.last_seq(keys.feed(session))
    assert (await redis_client.restart(session)).status == "ok"
    await wait_for_state(redis_client.bus, session, "idle", after)
    again = ok(await run_code(redis_client, session, READ))
    assert again.stdout == "a,b\n1,2\n3 rows\n"

    # Idle for a second: hibernated; its next request restores it on another worker.
    after = await redis_client.bus.last_seq(keys.feed(session))
    await run_code(redis_client, session, "kept = 1")
    hibernated = await wait_for_state(redis_client.bus, session, "hibernated", after)
    first = workers.started[0]
    workers.start("worker-2", hibernate_after=60)
    first.stop()
    request = await redis_client.execute(session, READ + "print(kept)")
    assert await redis_client.ensure_session(session)
    restored = await collect(redis_client.bus, request, hibernated)
    assert restored.stdout == "a,b\n1,2\n3 rows\n1\n"
    assert await redis_client.bus.lease_holder(keys.session_host(session)) == "worker-2"


WRITE = """\
import os
open("data.csv", "w").write("a,b\\n1,2\\n")
os.mkdir("results")
open("results/summary.txt", "w").write("3 rows")
print(os.getcwd())
"""
READ = "print(open('data.csv').read(), end=''); print(open('results/summary.txt').read())\n"


async def test_the_files_are_there_on_the_worker_that_takes_over_from_a_killed_one(
    workers: Workers, redis_client: KernelClient
) -> None:
    first = workers.start("worker-1")
    session = await new_session(redis_client)
    ok(await run_code(redis_client, session, WRITE))
    workers.start("worker-2")
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    again = await run_code(redis_client, session, READ)
    assert again.stdout == "a,b\n1,2\n3 rows\n"
    assert await redis_client.bus.lease_holder(keys.session_host(session)) == "worker-2"


async def test_a_fork_starts_with_a_copy_of_the_workspace_that_is_its_own(
    workers: Workers, redis_client: KernelClient
) -> None:
    workers.start("worker-1")
    session = await new_session(redis_client)
    ok(await run_code(redis_client, session, WRITE + LINKS))
    await wait_for_checkpoint(redis_client, session)

    fork = (await redis_client.fork_session(session)).session
    await wait_for_state(redis_client.bus, fork, "idle")
    seen = ok(await run_code(redis_client, fork, READ + SHOW_LINKS))
    assert seen.stdout == "a,b\n1,2\n3 rows\nresults/summary.txt True\n"

    changed = ok(await run_code(redis_client, fork, CHANGE))
    assert files_changed(changed) == [["data.csv", "new.txt", "results/summary.txt"]]
    original = workers.workspaces / session
    copy = workers.workspaces / fork
    assert (copy / "data.csv").read_text() == "changed"
    assert (original / "data.csv").read_text() == "a,b\n1,2\n"  # the original's own
    assert (original / "results/summary.txt").read_text() == "3 rows"
    assert not (original / "new.txt").exists()
    assert (original / "data.csv").stat().st_ino != (copy / "data.csv").stat().st_ino
    mine = ok(await run_code(redis_client, session, READ))
    assert mine.stdout == "a,b\n1,2\n3 rows\n"


LINKS = "os.symlink('results/summary.txt', 'summary-link')\n"
SHOW_LINKS = "import os; print(os.readlink('summary-link'), os.path.islink('summary-link'))\n"
CHANGE = """\
open("data.csv", "w").write("changed")
open("results/summary.txt", "a").write(", and more")
open("new.txt", "w").write("new")
"""


async def wait_for_checkpoint(client: KernelClient, session: str) -> None:
    """The namespace saved (a fork copies the checkpoint: it needs one)."""
    await first_message(client.bus, session, 0, lambda msg: msg.msg_type == "checkpoint")
