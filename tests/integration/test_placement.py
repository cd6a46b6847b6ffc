"""Several kernel workers side by side on one Redis: how new sessions are shared out."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellbus_protocol import codec, keys
from cellbus_protocol import messages as m
from cellbus_protocol.envelope import now_iso
from cellbus_protocol.kernel_client import KernelClient

from ..support.feeds import run_code, wait_for_state
from ..support.workers import WorkerProcess, running_workers


@pytest.fixture
def two_workers(namespace: str, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    with running_workers(namespace, ("worker-1", "worker-2"), tmp_path) as workers:
        yield workers


async def test_new_sessions_go_to_the_least_loaded_worker(
    two_workers: list[WorkerProcess], redis_client: KernelClient
) -> None:
    sessions = [await redis_client.create_session() for _ in range(6)]
    await asyncio.gather(*(wait_for_state(redis_client.bus, s, "idle") for s in sessions))
    hosts = [await redis_client.bus.lease_holder(keys.session_host(s)) for s in sessions]
    assert Counter(hosts) == {"worker-1": 3, "worker-2": 3}
    assert await redis_client.bus.loads(keys.WORKERS) == {"worker-1": 3, "worker-2": 3}
    # Every session answers, whichever worker hosts it.
    runs = await asyncio.gather(
        *(run_code(redis_client, s, f"print({i})") for i, s in enumerate(sessions))
    )
    assert [run.stdout for run in runs] == [f"{i}\n" for i in range(6)]


async def test_a_session_is_hosted_by_one_worker_only(
    two_workers: list[WorkerProcess], redis_client: KernelClient
) -> None:
    session = await redis_client.create_session()
    await wait_for_state(redis_client.bus, session, "idle")
    holder = await redis_client.bus.lease_holder(keys.session_host(session))
    other = next(w for w in two_workers if w.worker_id != holder)
    # The same session announced again: the other worker, now the less loaded, takes the
    # announcement but not the session, whose lease names the first.
    duplicate = m.SessionOpen(session=session, username="mallory", date=now_iso())
    await redis_client.bus.enqueue(keys.NEW_SESSIONS, codec.encode_record(duplicate))
    await asyncio.to_thread(other.wait_for_log, f"session {session} is hosted by {holder}")
    run = await run_code(redis_client, session, "print('once')")
    assert run.stdout == "once\n"
    assert len(run.of_type("execute_input")) == 1
    assert await redis_client.bus.loads(keys.WORKERS) == {holder: 1, other.worker_id: 0}
