"""A session that runs cells back to back is checkpointed every CELLBUS_CHECKPOINT_INTERVAL.

It is never idle for CELLBUS_CHECKPOINT_DELAY, so before the interval it was never saved and
a worker's crash lost all its variables. Now it is saved between two executions once its
namespace has gone unsaved for the interval, and the worker that takes it over has them.
"""

from __future__ import annotations

import ast
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellbus_protocol import codec, keys
from cellbus_protocol.envelope import Message
from cellbus_protocol.kernel_client import KernelClient
from cellbus_protocol.messages import state_of

from ..support.feeds import collect, first_message, run_code, wait_for_state
from ..support.workers import WorkerProcess, running_workers

SETTINGS = {
    "checkpoint_interval": 1, "checkpoint_delay": 60,  # only the interval saves anything here
    "heartbeat_interval": 0.3, "lease_ttl": 1.5,
}  # fmt: skip
CELLS = 80
"""Cells queued at once, each about 50 ms: 4 s of back-to-back work."""


@pytest.fixture
def workers(namespace: str, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    with running_workers(namespace, ("worker-1", "worker-2"), tmp_path, **SETTINGS) as started:
        yield started


async def test_a_busy_session_survives_a_killed_worker_with_its_last_interval_state(
    workers: list[WorkerProcess], redis_client: KernelClient
) -> None:
    client, bus = redis_client, redis_client.bus
    session = await client.create_session()
    await wait_for_state(bus, session, "idle")
    hosts = {w.worker_id: w for w in workers}
    victim = hosts[await bus.lease_holder(keys.session_host(session)) or ""]
    after = await bus.last_seq(keys.feed(session))

    # Cell i (execution i + 1) appends i: a checkpoint after execution c holds [0, ..., c - 1].
    requests = [await client.execute(session, "import time\ndone = [0]")]
    for i in range(1, CELLS):
        requests.append(await client.execute(session, f"done.append({i})\ntime.sleep(0.05)"))

    def saved_while_busy(msg: Message) -> bool:
        return msg.msg_type == "checkpoint" and msg.content.event == "saved"

    _, first_save = await first_message(bus, session, after, saved_while_busy)
    assert first_save.content.execution_count < CELLS  # saved with cells still queued
    victim.process.send_signal(signal.SIGKILL)

    final = await collect(bus, requests[-1])
    assert final.reply.content.status == "ok"
    check = await run_code(client, session, "print(done)")
    done = ast.literal_eval(check.stdout)

    # What the feed says: the last save before the takeover, and where each cell ran.
    feed = [codec.decode(e.data) for e in await bus.read_feed(keys.feed(session), after)]
    restoring = next(i for i, m in enumerate(feed) if state_of(m.content) == "restoring")
    saves = [m for m in feed[:restoring] if saved_while_busy(m)]
    last_saved = saves[-1].content.execution_count
    replies = {m.parent_header.msg_id: (i, m) for i, m in enumerate(feed)
               if m.msg_type == "execute_reply"}  # fmt: skip
    ran_after = [
        i for i, request in enumerate(requests)
        if replies[request.msg_id][0] > restoring
        and replies[request.msg_id][1].content.ename != "WorkerLost"
    ]  # fmt: skip
    assert last_saved >= 1
    assert done == list(range(last_saved)) + ran_after
    assert not any(state_of(m.content) == "dead" for m in feed)
    new_host = await bus.lease_holder(keys.session_host(session))
    assert new_host is not None and new_host != victim.worker_id
