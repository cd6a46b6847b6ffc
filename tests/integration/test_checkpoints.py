"""Checkpoints and hibernation, with kernel workers as separate processes on the real Redis.

A session's namespace is saved after its executions and reported on its feed (names that
cannot be saved, once each); restart and shutdown delete it; an idle session hibernates,
holding no process and no worker memory, and its next request restores it on any worker; a
checkpoint changed on the bus is refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
import redis

from cellbus_kernel import checkpoints
from cellbus_kernel.config import KernelSettings
from cellbus_kernel.isolation import SPARE_NAME
from cellbus_kernel.process import Ending, ProcessManager
from cellbus_kernel.session import HIBERNATED
from cellbus_kernel.worker import KernelWorker
from cellbus_protocol import codec, keys
from cellbus_protocol.bus import Bus, InMemoryBus
from cellbus_protocol.envelope import Message
from cellbus_protocol.kernel_client import KernelClient
from cellbus_protocol.messages import FeedState, state_of

from ..support.feeds import Run, collect, first_message, run_code, wait_for_state
from ..support.polling import eventually
from ..support.redis import REDIS_URL
from ..support.workers import TEST_SECRET, WorkerProcess

FAST = {"checkpoint_delay": 0.1, "heartbeat_interval": 0.3, "lease_ttl": 1.5}

StartWorkers = Callable[..., list[WorkerProcess]]


@pytest.fixture
def start_workers(namespace: str, tmp_path: Path) -> Iterator[StartWorkers]:
    """Start kernel workers by name (in parallel), with FAST and the given settings."""
    started: list[WorkerProcess] = []

    def start(*names: str, **settings: object) -> list[WorkerProcess]:
        workers = [WorkerProcess(namespace, n, tmp_path, **{**FAST, **settings}) for n in names]
        started.extend(workers)
        for worker in workers:
            worker.wait_ready()
        return workers

    yield start
    for worker in started:
        worker.stop()


async def saved(bus: Bus, session: str, after: int, execution_count: int) -> Message:
    """The ``checkpoint`` message saying the namespace was saved after `execution_count`."""

    def is_saved(msg: Message) -> bool:
        return (
            msg.msg_type == "checkpoint"
            and msg.content.event == "saved"
            and msg.content.execution_count == execution_count
        )

    _, msg = await first_message(bus, session, after, is_saved)
    return msg


async def feed_since(bus: Bus, session: str, after: int) -> list[Message]:
    return [codec.decode(e.data) for e in await bus.read_feed(keys.feed(session), after)]


def states(messages: list[Message]) -> list[tuple[str, FeedState]]:
    """Each state the feed announced, with the type of message it came in."""
    return [(m.msg_type, s) for m in messages if (s := state_of(m.content)) is not None]


def session_processes(worker: WorkerProcess) -> list[psutil.Process]:
    """The worker's session processes: the children of its template but its spare."""
    (template,) = psutil.Process(worker.pid).children()
    return [child for child in template.children() if child.name() != SPARE_NAME]


async def new_session(client: KernelClient) -> str:
    session = await client.create_session()
    await wait_for_state(client.bus, session, "idle")
    return session


async def test_names_that_cannot_be_saved_are_reported_once_by_name(
    start_workers: StartWorkers, redis_client: KernelClient
) -> None:
    start_workers("worker-1")
    bus = redis_client.bus
    session = await new_session(redis_client)
    after = await bus.last_seq(keys.feed(session))
    code = "import socket\nsock = socket.socket()\ngen = (i for i in range(3))\nkept = 1"
    first = await run_code(redis_client, session, code)
    note = await saved(bus, session, after, 1)
    assert note.content.skipped == ["gen", "sock"]
    assert "could not be saved" in note.content.reason and "gen, sock" in note.content.reason
    assert note.parent_header.msg_id == first.request.msg_id  # shown with the cell that made them
    assert note.content.size > 0

    after = await bus.last_seq(keys.feed(session))
    await run_code(redis_client, session, "more = 2")
    again = await saved(bus, session, after, 2)
    assert again.content.skipped == []  # reported once
    assert again.content.reason == ""


async def test_a_namespace_over_the_limit_keeps_the_previous_checkpoint(
    start_workers: StartWorkers, redis_client: KernelClient
) -> None:
    start_workers("worker-1", checkpoint_max_mb=1)
    bus = redis_client.bus
    session = await new_session(redis_client)
    after = await bus.last_seq(keys.feed(session))
    await run_code(redis_client, session, "small = 1")
    await saved(bus, session, after, 1)

    after = await bus.last_seq(keys.feed(session))
    await run_code(redis_client, session, "import os\nbig = os.urandom(2_000_000)")
    _, note = await first_message(bus, session, after, lambda m: m.msg_type == "checkpoint")
    assert note.content.event == "not_saved"
    assert "over the checkpoint limit of 1 MiB" in note.content.reason
    assert "previous checkpoint is kept" in note.content.reason
    blob = await bus.get_blob(keys.checkpoint(session))
    assert blob is not None
    key = checkpoints.signing_key(TEST_SECRET)
    kept = checkpoints.unseal(key, blob, session)
    assert isinstance(kept, checkpoints.Loaded) and kept.header.execution_count == 1


async def test_restart_and_shutdown_delete_the_checkpoint(
    start_workers: StartWorkers, redis_client: KernelClient
) -> None:
    start_workers("worker-1")
    bus = redis_client.bus
    session = await new_session(redis_client)
    after = await bus.last_seq(keys.feed(session))
    await run_code(redis_client, session, "x = 1")
    await saved(bus, session, after, 1)
    assert await bus.get_blob(keys.checkpoint(session)) is not None

    assert (await redis_client.restart(session)).status == "ok"
    assert await bus.get_blob(keys.checkpoint(session)) is None

    after = await bus.last_seq(keys.feed(session))
    await run_code(redis_client, session, "y = 2")
    await saved(bus, session, after, 1)  # counting starts again after a restart
    assert await bus.get_blob(keys.checkpoint(session)) is not None
    assert (await redis_client.shutdown(session)).status == "ok"
    assert await bus.get_blob(keys.checkpoint(session)) is None


async def test_a_hibernated_session_is_restored_on_another_worker(
    start_workers: StartWorkers, redis_client: KernelClient
) -> None:
    (first,) = start_workers("worker-1", hibernate_after=1)
    bus = redis_client.bus
    session = await new_session(redis_client)
    after = await bus.last_seq(keys.feed(session))
    cell = await run_code(redis_client, session, "x = 42\ndef f():\n    return x + 1")
    await saved(bus, session, after, 1)
    hibernated = await wait_for_state(bus, session, "hibernated", after)

    # It holds nothing: no process; and once its worker has let go (right after saying so
    # on the feed), no lease, no registry entry, no load.
    assert session_processes(first) == []

    async def released() -> bool:
        return await bus.lease_holder(keys.session_host(session)) is None

    await eventually(released)
    assert await bus.get_entry(keys.SESSION_HOSTS, session) is None
    await eventually(lambda: _loads_are(bus, {"worker-1": 0}))

    # The worker it was on goes away; its next request brings it back on another.
    (second,) = start_workers("worker-2", hibernate_after=60)
    first.stop()
    request = await redis_client.execute(session, "print(f(), x)")
    assert await redis_client.ensure_session(session)
    run = await collect(bus, request, hibernated)
    assert run.stdout == "43 42\n"
    assert run.of_type("execute_input")[0].content.execution_count == 2  # counting goes on
    assert await bus.lease_holder(keys.session_host(session)) == "worker-2"

    feed = await feed_since(bus, session, hibernated - 1)
    assert states(feed)[:5] == [
        ("session_state", "hibernated"),
        ("session_state", "restoring"),
        ("status", "idle"),
        ("status", "busy"),
        ("status", "idle"),
    ]
    restoring, restored = [m for m in feed if state_of(m.content) is not None][1:3]
    saved_after = f"saved after execution 1 (execute_request {cell.request.msg_id})"
    assert saved_after in restoring.content.reason
    assert restored.content.reason.startswith("Restored the namespace " + saved_after)
    assert f"session {session}: restored after 1" in second.log_text()


async def test_a_tampered_checkpoint_is_refused_and_the_session_starts_fresh(
    start_workers: StartWorkers, redis_client: KernelClient, namespace: str
) -> None:
    (worker,) = start_workers("worker-1", hibernate_after=1)
    bus = redis_client.bus
    session = await new_session(redis_client)
    after = await bus.last_seq(keys.feed(session))
    await run_code(redis_client, session, "secret = 'kept'")
    await saved(bus, session, after, 1)
    hibernated = await wait_for_state(bus, session, "hibernated", after)

    # Someone with write access to Redis changes one byte of the pickle.
    raw = redis.Redis.from_url(REDIS_URL)
    key = f"{namespace}:{keys.checkpoint(session)}"
    blob = raw.get(key)
    assert isinstance(blob, bytes)
    raw.set(key, blob[:-1] + bytes([blob[-1] ^ 0x01]))
    raw.close()

    request = await redis_client.execute(session, "secret")
    await redis_client.ensure_session(session)
    run = await collect(bus, request, hibernated)
    assert run.reply.content.ename == "NameError"  # nothing of it was loaded

    feed = await feed_since(bus, session, hibernated)
    (refused,) = [m for m in feed if m.msg_type == "checkpoint" and m.content.event == "refused"]
    assert "signature does not match" in refused.content.reason
    assert "namespace is fresh" in refused.content.reason
    assert states(feed)[:2] == [("session_state", "restoring"), ("status", "idle")]
    idle = next(m for m in feed if m.msg_type == "status" and m.content.execution_state == "idle")
    assert "refused" in idle.content.reason
    assert "checkpoint refused: Its signature does not match" in worker.log_text()


async def test_a_request_that_comes_while_the_session_hibernates_is_not_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The request arrives after the session decided to hibernate and before its worker let
    go of it (the sender saw the lease, so it does not ask for the session to be started):
    the worker finds it on the queue after releasing the session, and has it hosted again."""
    bus = InMemoryBus()
    settings = KernelSettings(secret="s", hibernate_after=0.3, checkpoint_delay=0.05)
    worker = KernelWorker(settings, bus)
    running = asyncio.create_task(worker.run())
    await worker.ready.wait()
    client = KernelClient(bus, "alice")
    session = await new_session(client)
    await run_code(client, session, "x = 1")
    sent: list[Message] = []
    end_process = ProcessManager.end

    async def end_process_as_a_request_comes(self: ProcessManager, ending: Ending) -> None:
        if ending is HIBERNATED and not sent:
            sent.append(await client.execute(session, "print(x + 1)"))
        await end_process(self, ending)

    monkeypatch.setattr(ProcessManager, "end", end_process_as_a_request_comes)
    hibernated = await wait_for_state(bus, session, "hibernated")
    run = await collect(bus, sent[0], hibernated)
    assert run.stdout == "2\n"
    worker.stop()
    await running
    await bus.close()


async def test_hibernated_sessions_hold_no_process_and_no_worker_memory(
    start_workers: StartWorkers, redis_client: KernelClient
) -> None:
    """30 sessions (1,000 in bench/hibernation.py): once hibernated, their worker has no
    session process and about the memory it had before they came."""
    (worker,) = start_workers("worker-1", hibernate_after=1, max_sessions=100)
    bus = redis_client.bus
    process = psutil.Process(worker.pid)

    async def run(session: str) -> Run:
        after = await bus.last_seq(keys.feed(session))
        request = await redis_client.execute(session, "data = list(range(10_000))")
        # As every client does: on a busy machine a session may hibernate before its code comes.
        await redis_client.ensure_session(session)
        return await collect(bus, request, after)

    async def run_and_hibernate(count: int) -> None:
        sessions = await asyncio.gather(*(new_session(redis_client) for _ in range(count)))
        cells = await asyncio.gather(*(run(s) for s in sessions))
        assert all(run.reply.content.status == "ok" for run in cells)
        await asyncio.gather(*(wait_for_state(bus, s, "hibernated") for s in sessions))
        await eventually(lambda: _loads_are(bus, {"worker-1": 0}))  # all let go

    await run_and_hibernate(3)  # warm up: what the first sessions load stays loaded
    before = process.memory_info().rss
    await run_and_hibernate(30)
    assert session_processes(worker) == []

    # Measured here: 47.5 MiB before; the heap then keeps up to ~0.1 MiB per hibernated
    # session in free pages until the worker hands them back (at its next heartbeat), after
    # which it is below `before`. 3 MiB is "a few MB", far above allocator noise.
    tolerance = 3 * 2**20

    async def back_to_before() -> bool:
        return process.memory_info().rss < before + tolerance

    await eventually(back_to_before)


async def _loads_are(bus: Bus, expected: dict[str, int]) -> bool:
    return await bus.loads(keys.WORKERS) == expected
