"""Parallel cells (`cellbus.parallel`) on two kernel worker processes: Dask workers on both,
the speedup, code defined in cells running remotely, errors, interrupts, a kernel worker lost
mid-map, and the progress display."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psutil
import pytest

from cellbus_protocol import keys
from cellbus_protocol.envelope import Message
from cellbus_protocol.kernel_client import KernelClient

from ..support.api import Client, new_user, poll_until_done, stdout_of
from ..support.feeds import collect, first_message, run_code, strip_ansi, wait_for_state
from ..support.polling import eventually
from ..support.stack import OneProgramStack
from ..support.workers import WorkerProcess, running_workers

PARALLEL = {"parallel_cores": 1, "parallel_max_workers": 2}
"""One Dask worker per kernel worker: a session's second worker runs on the other one."""

BUSY = """
import time
def busy(i, seconds=0.2):
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass
    return i * i
"""
"""A CPU-bound task of about 200 ms of CPU time (the same however busy the machine is)."""


@pytest.fixture
def two_workers(namespace: str, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    with running_workers(namespace, ("worker-1", "worker-2"), tmp_path, **PARALLEL) as workers:
        yield workers


@pytest.fixture
async def session(
    two_workers: list[WorkerProcess], redis_client: KernelClient
) -> AsyncIterator[str]:
    session = await redis_client.create_session()
    await wait_for_state(redis_client.bus, session, "idle")
    yield session


async def value_of(client: KernelClient, session: str, code: str) -> object:
    """Run `code`, whose last line prints JSON, and return what it printed."""
    run = await run_code(client, session, code)
    errors = [msg.content for msg in run.of_type("error")]
    assert not errors, errors
    return json.loads(run.stdout.strip().splitlines()[-1])


async def host_of(client: KernelClient, session: str) -> str:
    holder = await client.bus.lease_holder(keys.session_host(session))
    assert holder is not None
    return holder


def template_pids(workers: list[WorkerProcess]) -> dict[str, int]:
    """Each kernel worker's template process (the parent of its Dask workers)."""
    pids = {}
    for worker in workers:
        children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
        pids[worker.worker_id] = int(children[0])
    return pids


@pytest.mark.alone  # the speed-up needs both cores to itself
async def test_a_map_uses_both_kernel_workers_and_is_faster_than_serial(
    session: str, two_workers: list[WorkerProcess], redis_client: KernelClient
) -> None:
    await run_code(redis_client, session, BUSY)
    figures = await value_of(redis_client, session, """
import json, os, time
from cellbus import parallel
parallel.map(os.getpid, [])  # nothing to do: no worker is started for it
def where(i):
    return i, os.getppid(), os.getpid()
parents = sorted({parent for _, parent, _ in parallel.map(where, range(8))})
start = time.perf_counter()
serial = [busy(i) for i in range(40)]
serial_time = time.perf_counter() - start
start = time.perf_counter()
remote = parallel.map(busy, range(40))
parallel_time = time.perf_counter() - start
print(json.dumps([parents, remote == serial, serial_time, parallel_time]))
""")  # fmt: skip
    assert isinstance(figures, list)
    parents, same, serial_time, parallel_time = figures
    # The Dask workers are children of both kernel workers' templates.
    assert parents == sorted(template_pids(two_workers).values())
    assert same is True
    assert serial_time / parallel_time >= 1.7, (serial_time, parallel_time)


async def test_code_defined_in_cells_runs_on_the_workers(
    session: str, redis_client: KernelClient
) -> None:
    results = await value_of(redis_client, session, """
import json, threading
from cellbus import parallel

def helper(x):                      # a cell-local helper, used by the task
    return x * 10

class Point:                        # a class defined in a cell
    def __init__(self, x):
        self.x = x
    def norm(self):
        return abs(self.x)

def scaled(factor):                 # a closure
    def scale(x):
        return helper(x) * factor
    return scale

lock = threading.Lock()             # cloudpickle cannot carry a lock: dill's turn
def with_lock(x, guard=lock):
    return x + 1

print(json.dumps([
    parallel.map(lambda x: x + 1, [1, 2, 3]),
    parallel.map(scaled(3), [1, 2]),
    parallel.map(Point.norm, [Point(-4), Point(5)]),
    [p.x for p in parallel.map(Point, [7, 8])],
    parallel.submit(helper, 4).result(),
    parallel.map(pow, [2, 3], [5, 2]),
]))
""")  # fmt: skip
    assert results == [[2, 3, 4], [30, 60], [4, 5], [7, 8], 40, [32, 9]]


async def test_a_remote_exception_shows_its_traceback_and_the_input(
    session: str, redis_client: KernelClient
) -> None:
    run = await run_code(redis_client, session, """
from cellbus import parallel
def invert(x):
    return 1 / (x - 3)
parallel.map(invert, range(6))
""")  # fmt: skip
    [error] = run.of_type("error")
    assert error.content.ename == "ZeroDivisionError", error.content.traceback
    traceback = strip_ansi("\n".join(error.content.traceback))
    assert "return 1 / (x - 3)" in traceback  # the worker's frame
    assert "input #3 (3)" in traceback
    # The session goes on working.
    assert await value_of(redis_client, session, "print(parallel.map(abs, [-1]))") == [1]


async def test_an_interrupt_stops_a_map_within_five_seconds(
    session: str, redis_client: KernelClient
) -> None:
    await run_code(redis_client, session, BUSY)
    after = await redis_client.bus.last_seq(keys.feed(session))
    request = await redis_client.execute(session, """
from cellbus import parallel
parallel.map(busy, range(20), [60] * 20)   # each task a minute of CPU: it ignores a cancel
""")  # fmt: skip
    await first_message(redis_client.bus, session, after, _progress_at_least(0))
    interrupted = time.monotonic()
    await redis_client.interrupt(session)
    run = await collect(redis_client.bus, request, after)
    took = time.monotonic() - interrupted
    [error] = run.of_type("error")
    assert error.content.ename == "KeyboardInterrupt", strip_ansi(
        "\n".join(error.content.traceback)
    )
    assert took < 5.0, took
    # The workers were restarted: the next map runs at once, on fresh workers.
    start = time.monotonic()
    assert await value_of(redis_client, session, "print(parallel.map(abs, [-2, 3]))") == [2, 3]
    assert time.monotonic() - start < 30


async def test_a_kernel_worker_killed_mid_map_loses_no_result(
    session: str, two_workers: list[WorkerProcess], redis_client: KernelClient
) -> None:
    await run_code(redis_client, session, BUSY)
    await value_of(
        redis_client, session, "from cellbus import parallel\nprint(parallel.map(abs, [1, 2]))"
    )
    host = await host_of(redis_client, session)
    other = next(worker for worker in two_workers if worker.worker_id != host)
    after = await redis_client.bus.last_seq(keys.feed(session))
    request = await redis_client.execute(session, """
import json
print(json.dumps(parallel.map(busy, range(24), [0.3] * 24)))
""")  # fmt: skip
    await first_message(redis_client.bus, session, after, _progress_at_least(4))
    os.kill(other.pid, signal.SIGKILL)
    run = await collect(redis_client.bus, request, after, timeout=120)
    assert not run.of_type("error"), [m.content for m in run.of_type("error")]
    assert json.loads(run.stdout) == [i * i for i in range(24)]


async def test_the_progress_display_updates_in_place(
    session: str, redis_client: KernelClient
) -> None:
    run = await run_code(redis_client, session, """
import time
from cellbus import parallel
parallel.map(time.sleep, [0.1] * 20)
""")  # fmt: skip
    [shown] = run.of_type("display_data")
    display_id = shown.content.transient["display_id"]
    updates = run.of_type("update_display_data")
    assert updates and all(u.content.transient["display_id"] == display_id for u in updates)
    progress = [u.content.data[MIME] for u in updates]
    assert progress[-1]["done"] == progress[-1]["total"] == 20
    assert progress[-1]["state"] == "done"
    assert progress[-1]["workers"] == 2
    assert progress[-1]["dashboard"].startswith(f"/parallel/{session}/dashboard/")
    assert "parallel.map: 20/20 tasks on 2 workers" in updates[-1].content.data["text/plain"]


async def test_a_restart_stops_the_sessions_dask_workers(
    session: str, two_workers: list[WorkerProcess], redis_client: KernelClient
) -> None:
    pids = await value_of(redis_client, session, """
import json, os
from cellbus import parallel
print(json.dumps(sorted(set(parallel.map(lambda _: os.getpid(), range(6))))))
""")  # fmt: skip
    assert isinstance(pids, list) and len(pids) == 2
    await redis_client.restart(session)

    async def all_ended_and_their_cores_freed() -> bool:
        # A kernel worker reports its load once it has reaped its Dask worker and removed the
        # worker's folder: just after the process is gone, not at the same moment.
        if any(psutil.pid_exists(pid) for pid in pids):
            return False
        return await redis_client.bus.loads(keys.PARALLEL_LOAD) == {"worker-1": 0, "worker-2": 0}

    await eventually(all_ended_and_their_cores_freed, timeout=15)


MIME = "application/vnd.cellbus.parallel+json"


def _progress_at_least(done: int) -> Callable[[Message], bool]:
    def matches(msg: Message) -> bool:
        data = getattr(msg.content, "data", None) or {}
        return MIME in data and data[MIME]["done"] >= done and data[MIME]["workers"] > 0

    return matches


@pytest.fixture
def idling_worker(namespace: str, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """One kernel worker whose Dask workers end after a second of idleness, and whose
    sessions hibernate after four."""
    settings = {**PARALLEL, "parallel_cores": 2, "parallel_idle_seconds": 1, "hibernate_after": 4}
    with running_workers(namespace, ("worker-1",), tmp_path, **settings) as workers:
        yield workers


async def test_idle_workers_end_and_hibernation_stops_them_until_the_next_use(
    idling_worker: list[WorkerProcess], redis_client: KernelClient
) -> None:
    bus = redis_client.bus
    session = await redis_client.create_session()
    await wait_for_state(bus, session, "idle")
    map_pids = "print(json.dumps(sorted(set(parallel.map(lambda _: os.getpid(), range(6))))))"
    first = await value_of(redis_client, session, f"""
import json, os
from cellbus import parallel
client = parallel.client()
{map_pids}
""")  # fmt: skip
    assert isinstance(first, list) and len(first) == 2

    async def ended(pids: list[int]) -> bool:
        gone = not any(psutil.pid_exists(pid) for pid in pids)
        return gone and await bus.loads(keys.PARALLEL_LOAD) == {"worker-1": 0}

    await eventually(lambda: ended(first), timeout=15)  # a second idle: their cores are free
    second = await value_of(redis_client, session, map_pids)  # the next use starts new ones
    assert isinstance(second, list) and len(second) == 2 and not set(second) & set(first)
    after = await bus.last_seq(keys.feed(session))
    await run_code(redis_client, session, "busy_pids = parallel.map(lambda _: os.getpid(), [0])")
    await wait_for_state(bus, session, "hibernated", after)
    await eventually(lambda: ended(second), timeout=15)

    async def let_go() -> bool:  # its worker lets go of it just after the feed says so
        return await bus.lease_holder(keys.session_host(session)) is None

    await eventually(let_go, timeout=15)
    # Restored: the namespace is back but for the Dask client (left out of the checkpoint),
    # and parallel cells work again.
    after = await bus.last_seq(keys.feed(session))
    request = await redis_client.execute(session, f"""
print(json.dumps(["client" in globals(), len(busy_pids)]))
{map_pids}
""")  # fmt: skip
    assert await redis_client.ensure_session(session)
    run = await collect(bus, request, after)
    assert not run.of_type("error"), [m.content for m in run.of_type("error")]
    kept, pids = (json.loads(line) for line in run.stdout.splitlines())
    assert kept == [False, 1]
    assert len(pids) == 2


async def test_the_one_program_runs_the_same_code_on_local_processes(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    data = tmp_path_factory.mktemp("parallel-data")
    with OneProgramStack(tmp_path_factory.mktemp("parallel-logs"), data) as program:
        client = await new_user(program.urls[0], "parallel")
        try:
            await _squares_on_local_processes(client, program)
        finally:
            await client.close()


async def _squares_on_local_processes(client: Client, program: OneProgramStack) -> None:
    session = (await client.call("session.create"))["session"]
    started = await client.call("session.execute", session=session, code="""
import json, os
from cellbus import parallel
def where(i):
    return i * i, os.getppid()
found = parallel.map(where, range(8))
print(json.dumps([[square for square, _ in found], sorted({p for _, p in found}), os.getppid()]))
""")  # fmt: skip
    messages = await poll_until_done(client, session, started["msg_id"])
    squares, parents, template = json.loads(stdout_of(messages))
    assert squares == [i * i for i in range(8)]
    # Dask workers forked from the program's own template, as the session was.
    assert parents == [template]
    assert psutil.Process(template).ppid() == program.program.process.pid


@pytest.fixture
def capped_worker(namespace: str, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Cores to spare, but a user may have 3 Dask workers and a session 2."""
    settings = {"parallel_cores": 4, "parallel_max_workers": 2}
    with running_workers(
        namespace, ("worker-1",), tmp_path, parallel_max_workers_per_user=3, **settings
    ) as workers:
        yield workers


async def test_the_caps_say_which_limit_was_reached(
    capped_worker: list[WorkerProcess], redis_client: KernelClient
) -> None:
    first, second, third = [await redis_client.create_session() for _ in range(3)]
    count = "from cellbus import parallel\nparallel.map(abs, [1])\nprint(parallel.workers())"
    assert await value_of(redis_client, first, count) == 2  # the session's cap
    run = await run_code(redis_client, second, count.replace("abs, [1]", "abs, [1, 2]"))
    progress = [m.content.data[MIME] for m in run.of_type("display_data")]
    assert run.stdout == "1\n"  # the user's cap left one
    assert "CELLBUS_PARALLEL_MAX_WORKERS_PER_USER" in progress[0]["note"]
    refused = await run_code(redis_client, third, count)
    [error] = refused.of_type("error")
    assert error.content.ename == "ParallelUnavailable"
    assert "may have 3 Dask workers together (CELLBUS_PARALLEL_MAX_WORKERS_PER_USER)" in (
        error.content.evalue
    )
