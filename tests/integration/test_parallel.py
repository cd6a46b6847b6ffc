"""Parallel cells (`cellbus.parallel`) on two kernel worker processes: Dask workers on both,
a speedup, code defined in cells running remotely, errors, interrupts and a lost worker."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cellbus_protocol.kernel_client import KernelClient

from ..support.feeds import run_code, wait_for_state
from ..support.workers import WorkerProcess, running_workers

PARALLEL = {"parallel_cores": 1, "parallel_max_workers": 2}
"""One Dask worker per kernel worker: a session's second worker runs on the other one."""


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


async def test_a_map_runs_on_both_kernel_workers(
    session: str, two_workers: list[WorkerProcess], redis_client: KernelClient
) -> None:
    pids = await value_of(
        redis_client,
        session,
        """
import json, os, time
from cellbus import parallel
def where(i):
    time.sleep(0.2)
    return os.getppid()
print(json.dumps(sorted(set(parallel.map(where, range(10))))))
""",
    )
    print(pids)
