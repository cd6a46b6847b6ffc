"""Failover with three kernel workers as separate processes on the real Redis.

A worker killed with SIGKILL while several users run cells loses no session: each moves to
another worker within a few seconds with its checkpointed variables; the cell that was
running gets a ``WorkerLost`` error saying where the state was restored to; the cells queued
behind it run; no feed message is lost. A worker stopped with SIGTERM hands its sessions over
with their state, and the cells queued on them run on their new worker.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from cellbus_protocol import codec, keys
from cellbus_protocol.bus import Bus, RedisBus
from cellbus_protocol.envelope import Message
from cellbus_protocol.kernel_client import KernelClient
from cellbus_protocol.messages import state_of

from ..support.feeds import collect, first_message, run_code, wait_for_state
from ..support.redis import REDIS_URL
from ..support.workers import WorkerProcess, running_workers

SETTINGS = {
    "checkpoint_delay": 0.1, "heartbeat_interval": 0.3, "lease_ttl": 1.5, "drain_timeout": 5,
}  # fmt: skip
USERS = ["alice", "bob", "carol", "dave", "erin", "frank"]
TAKEOVER_DEADLINE = 10.0
"""Seconds from the kill to the takeover (measured here: 2-3 s with a 1.5 s lease)."""


def input_of(request: Message) -> Callable[[Message], bool]:
    """Matches the `execute_input` that says `request` has started to run."""

    def matches(m: Message) -> bool:
        return m.msg_type == "execute_input" and m.parent_header.msg_id == request.msg_id

    return matches


@pytest.fixture
def workers(namespace: str, tmp_path: Path) -> Iterator[dict[str, WorkerProcess]]:
    names = ("worker-1", "worker-2", "worker-3")
    with running_workers(namespace, names, tmp_path, **SETTINGS) as started:
        yield dict(zip(names, started, strict=True))


@pytest.fixture
async def bus(namespace: str) -> AsyncIterator[Bus]:
    async with RedisBus(REDIS_URL, namespace=namespace) as instance:
        yield instance


async def start_sessions(bus: Bus) -> dict[str, str]:
    """One session per user, each with `x` and `f` in its namespace, saved: session -> user."""
    clients = [KernelClient(bus, user) for user in USERS]
    sessions = await asyncio.gather(*(client.create_session() for client in clients))
    await asyncio.gather(*(wait_for_state(bus, s, "idle") for s in sessions))

    async def define(i: int, client: KernelClient, session: str) -> None:
        after = await bus.last_seq(keys.feed(session))
        run = await run_code(client, session, f"x = {i}\ndef f():\n    return x * 10")
        assert run.reply.content.status == "ok"
        await first_message(bus, session, after, lambda m: m.msg_type == "checkpoint")

    pairs = zip(clients, sessions, strict=True)
    await asyncio.gather(*(define(i, client, s) for i, (client, s) in enumerate(pairs)))
    return dict(zip(sessions, USERS, strict=True))


async def hosts_of(bus: Bus, sessions: list[str]) -> dict[str, str]:
    return {s: await bus.lease_holder(keys.session_host(s)) or "" for s in sessions}


class FeedWatcher:
    """A subscriber that follows a feed from its start and records every cursor."""

    def __init__(self, bus: Bus, session: str) -> None:
        self.seqs: list[int] = []
        self.messages: list[Message] = []
        self._task = asyncio.create_task(self._follow(bus, session))

    async def _follow(self, bus: Bus, session: str) -> None:
        async with await bus.subscribe(keys.feed(session), 0) as subscription:
            async for entry in subscription:
                self.seqs.append(entry.seq)
                self.messages.append(codec.decode(entry.data))

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def test_a_killed_worker_loses_no_session(
    workers: dict[str, WorkerProcess], bus: Bus
) -> None:
    users = await start_sessions(bus)
    sessions = list(users)
    hosts = await hosts_of(bus, sessions)
    assert set(hosts.values()) == set(workers), f"sessions not spread: {Counter(hosts.values())}"
    victim = Counter(hosts.values()).most_common(1)[0][0]
    doomed = [s for s in sessions if hosts[s] == victim]
    number = {s: sessions.index(s) for s in sessions}
    client = {s: KernelClient(bus, users[s]) for s in sessions}
    watchers = {s: FeedWatcher(bus, s) for s in doomed}

    # On the doomed worker: a cell runs and another waits behind it, in every session.
    running, queued = {}, {}
    for s in doomed:
        running[s] = await client[s].execute(s, "import time\ny = x + 1\ntime.sleep(60)")
        queued[s] = await client[s].execute(s, "print('queued', x, f())")
    for s in doomed:
        await first_message(bus, s, 0, input_of(running[s]))
    # Elsewhere, people go on working.
    elsewhere = [run_code(client[s], s, "z = x * 2\nprint(z)") for s in sessions if s not in doomed]

    killed_at = time.monotonic()
    workers[victim].process.send_signal(signal.SIGKILL)
    lost = await asyncio.gather(*(collect(bus, running[s]) for s in doomed))
    took = time.monotonic() - killed_at
    ran = await asyncio.gather(*(collect(bus, queued[s]) for s in doomed))
    for run in await asyncio.gather(*elsewhere):
        assert run.reply.content.status == "ok"

    assert took < TAKEOVER_DEADLINE, f"the takeover took {took:.1f} s"
    for s, lost_run, queued_run in zip(doomed, lost, ran, strict=True):
        (error,) = lost_run.of_type("error")
        assert error.content.ename == "WorkerLost"
        assert "The kernel worker running this execution was lost." in error.content.evalue
        assert "saved after execution 1 (execute_request " in error.content.evalue
        assert lost_run.reply.content.status == "error"
        assert state_of(lost_run.messages[-1].content) == "idle"
        assert queued_run.stdout == f"queued {number[s]} {number[s] * 10}\n"

    # Each session is on one surviving worker, with what its checkpoint held (not `y`: the
    # cell that set it never finished).
    new_hosts = await hosts_of(bus, sessions)
    assert all(new_hosts[s] in set(workers) - {victim} for s in sessions)
    loads = await bus.loads(keys.WORKERS)
    assert victim not in loads and sum(loads.values()) == len(sessions)
    for s in doomed:
        after = await run_code(client[s], s, "print(x, f())\ny")
        assert after.stdout == f"{number[s]} {number[s] * 10}\n"
        assert after.reply.content.ename == "NameError"

    # Every subscriber saw every message, in order, exactly once; and one takeover each.
    for s in doomed:
        watcher = watchers[s]
        await watcher.close()
        assert watcher.seqs == list(range(1, len(watcher.seqs) + 1))
        assert watcher.seqs[-1] == await bus.last_seq(keys.feed(s))
        restoring = [m for m in watcher.messages if state_of(m.content) == "restoring"]
        assert len(restoring) == 1


async def test_sigterm_hands_sessions_over_with_their_state(
    workers: dict[str, WorkerProcess], bus: Bus
) -> None:
    clients = [KernelClient(bus, user) for user in USERS[:3]]
    sessions = await asyncio.gather(*(client.create_session() for client in clients))
    await asyncio.gather(*(wait_for_state(bus, s, "idle") for s in sessions))
    # Not waiting for checkpoints: draining saves what changed.
    for i, (client, s) in enumerate(zip(clients, sessions, strict=True)):
        assert (await run_code(client, s, f"x = {i}")).reply.content.status == "ok"
    hosts = await hosts_of(bus, sessions)
    leaving = hosts[sessions[0]]
    moving = [(c, s) for c, s in zip(clients, sessions, strict=True) if hosts[s] == leaving]

    running, queued = {}, {}
    for client, s in moving:
        running[s] = await client.execute(s, "import time\ntime.sleep(0.5)\nw = 'finished'")
        queued[s] = await client.execute(s, "print('after', x, w)")
        await first_message(bus, s, 0, input_of(running[s]))

    worker = workers[leaving]
    worker.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.process.wait, 20) == 0, worker.log_text()

    for _, s in moving:
        finished = await collect(bus, running[s])
        assert finished.reply.content.status == "ok"  # it had time to end before the move
        moved = await collect(bus, queued[s])
        assert moved.stdout == f"after {sessions.index(s)} finished\n"
        assert await bus.lease_holder(keys.session_host(s)) not in (None, leaving)
        states = await _states(bus, s, finished.messages[-1])
        assert [(st.msg_type, state_of(st.content)) for st in states[:3]] == [
            ("session_state", "hibernated"),
            ("session_state", "restoring"),
            ("status", "idle"),
        ]
        assert "moves to another worker" in states[0].content.reason
    assert leaving not in await bus.loads(keys.WORKERS)


async def _states(bus: Bus, session: str, since: Message) -> list[Message]:
    """The ``status`` and ``session_state`` messages on the feed after the message `since`."""
    entries = await bus.read_feed(keys.feed(session), 0)
    messages = [codec.decode(e.data) for e in entries]
    start = next(i for i, m in enumerate(messages) if m.msg_id == since.msg_id)
    return [m for m in messages[start + 1 :] if state_of(m.content) is not None]
