"""User code cannot reach the worker's settings: not through its own environment (see
test_faults), nor through the worker's /proc files when sessions run as their own user."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellbus_protocol.kernel_client import KernelClient

from ..support.feeds import run_code, wait_for_state
from ..support.workers import WorkerProcess


@pytest.fixture
def worker_with_session_user(namespace: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    if os.geteuid() != 0:
        pytest.skip("sessions change user only when the worker runs as root")
    worker = WorkerProcess(namespace, "isolating", tmp_path, session_user="nobody")
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()


async def test_session_cannot_read_the_workers_environment(
    worker_with_session_user: WorkerProcess, redis_client: KernelClient
) -> None:
    session = await redis_client.create_session()
    await wait_for_state(redis_client.bus, session, "idle")
    worker_pid = worker_with_session_user.pid
    code = (
        "import os\n"
        "print(os.getuid())\n"
        f"for pid in ({worker_pid}, os.getppid()):\n"  # the worker, and the template
        "    try:\n"
        "        open(f'/proc/{pid}/environ', 'rb').read()\n"
        "        print('read')\n"
        "    except PermissionError:\n"
        "        print('refused')\n"
    )
    run = await run_code(redis_client, session, code)
    assert run.stdout == "65534\nrefused\nrefused\n"
    # The worker's own environment does hold the Redis URL: it is there to be protected.
    environ = await asyncio.to_thread(Path(f"/proc/{worker_pid}/environ").read_bytes)
    assert b"CELLBUS_REDIS_URL" in environ
