"""Starting and stopping kernel workers: a stop is prompt, and every session is told."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from cellbus_kernel.config import KernelSettings
from cellbus_kernel.worker import KernelWorker
from cellbus_protocol import codec, keys
from cellbus_protocol import messages as m
from cellbus_protocol.bus import InMemoryBus

from ..support.feeds import wait_for_state
from ..support.workers import WorkerProcess


def test_sigterm_right_after_start_stops_the_worker_cleanly(namespace: str, tmp_path: Path) -> None:
    for attempt in range(3):
        worker = WorkerProcess(namespace, f"brief-{attempt}", tmp_path)
        worker.wait_ready()
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(timeout=10) == 0, worker.log_text()
        worker.stop()


async def test_stopping_a_worker_tells_each_session_it_is_dead() -> None:
    bus = InMemoryBus()
    worker = KernelWorker(KernelSettings(), bus)
    task = asyncio.create_task(worker.run())
    await worker.ready.wait()
    from cellbus_protocol.kernel_client import KernelClient

    client = KernelClient(bus, "alice")
    session = await client.create_session()
    after = await wait_for_state(bus, session, "idle")
    worker.stop()
    await asyncio.wait_for(task, 20)
    (last,) = await bus.read_feed(keys.feed(session), after)
    assert codec.decode(last.data).content == m.SessionState(
        state="dead", reason="The kernel worker hosting it stopped."
    )
    await bus.close()
