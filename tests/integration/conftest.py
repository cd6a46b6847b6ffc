"""Kernel fixtures: a worker per transport, a client, and a fresh session per test.

Over Redis the worker is a separate process (``python -m cellbus_kernel``) shared by the
tests of a module; over the in-process bus it runs in the test's own event loop, as
``make run`` runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import pytest

from cellbus_kernel.config import KernelSettings
from cellbus_kernel.worker import KernelWorker
from cellbus_protocol import keys
from cellbus_protocol.bus import Bus, InMemoryBus, RedisBus
from cellbus_protocol.kernel_client import KernelClient

from ..support.feeds import wait_for_state
from ..support.private_postgres import PrivatePostgres
from ..support.redis import REDIS_URL, delete_namespace, new_namespace, require_redis
from ..support.workers import TEST_SECRET, WorkerProcess


class WorkerSettings(TypedDict):
    """What every test worker is given: a process in its environment, one in-process as
    `KernelSettings`."""

    memory_limit_mb: int
    output_cap: int
    secret: str


WORKER_SETTINGS: WorkerSettings = {
    "memory_limit_mb": 400,
    "output_cap": 2_000_000,
    "secret": TEST_SECRET,
}


@dataclass
class Kernel:
    """A running kernel worker and a client that talks to it as user alice."""

    transport: str
    bus: Bus
    client: KernelClient
    worker: WorkerProcess | KernelWorker

    def log_text(self) -> str:
        if isinstance(self.worker, WorkerProcess):
            return self.worker.log_text()
        return ""


@pytest.fixture(scope="module")
def worker_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    require_redis()
    namespace = new_namespace()
    log_dir: Path = tmp_path_factory.mktemp("workers")
    worker = WorkerProcess(namespace, "kernel-1", log_dir, **WORKER_SETTINGS)
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()
        delete_namespace(namespace)


@pytest.fixture(params=["memory", "redis"])
async def kernel(request: pytest.FixtureRequest) -> AsyncIterator[Kernel]:
    if request.param == "redis":
        process: WorkerProcess = request.getfixturevalue("worker_process")
        bus: Bus = RedisBus(REDIS_URL, namespace=process.namespace)
        await bus.start()
        yield Kernel("redis", bus, KernelClient(bus, "alice"), process)
        await bus.close()
        return
    bus = InMemoryBus()
    worker = KernelWorker(KernelSettings(**WORKER_SETTINGS), bus)
    task = asyncio.create_task(worker.run())
    await worker.ready.wait()
    yield Kernel("memory", bus, KernelClient(bus, "alice"), worker)
    worker.stop()
    await task
    await bus.close()


@pytest.fixture
async def redis_client(namespace: str) -> AsyncIterator[KernelClient]:
    """A client as alice on the Redis bus, in the test's namespace (for tests that start
    their own worker processes there)."""
    bus = RedisBus(REDIS_URL, namespace=namespace)
    await bus.start()
    yield KernelClient(bus, "alice")
    await bus.close()


@pytest.fixture
async def session(kernel: Kernel) -> AsyncIterator[str]:
    """A new session, ready (its process started), shut down after the test."""
    session = await kernel.client.create_session()
    await wait_for_state(kernel.bus, session, "idle")
    yield session
    with contextlib.suppress(Exception):
        # Only a hosted session's queue answers: one the test ended would time out instead.
        if (await kernel.client.session_status(session)).hosted:
            await kernel.client.shutdown(session)
    await kernel.bus.delete(keys.feed(session))
    await kernel.bus.delete(keys.requests(session))


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of the test's own (under a second to make), which the test may
    stop and start; stopped and deleted afterwards, whatever happened."""
    cluster = PrivatePostgres()
    try:
        yield cluster
    finally:
        cluster.cleanup()
