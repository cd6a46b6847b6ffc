"""Hibernate 1,000 sessions on one kernel worker and measure what they cost it.

    .venv/bin/python bench/hibernation.py [--sessions 1000] [--batch 50]

Starts ``python -m cellbus_kernel`` on the Redis at $CELLBUS_TEST_REDIS_URL (default
redis://127.0.0.1:6379/0), under a namespace of its own that it deletes at the end. Each session
is created, runs one cell, and hibernates `--hibernate-after` seconds later; sessions are
created in batches, so a few hundred are awake at any time. Then it prints:

- the worker's resident memory with no session, at the peak, and with every session
  hibernated (and the template's, which forks the session processes);
- how many session processes are left (there should be none);
- the checkpoints' total size on Redis;
- how long restoring a hibernated session takes (a request to its result), for a sample.

Not a test (it takes a minute or two); tests/integration/test_checkpoints.py checks the same
with 30 sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import psutil
import redis

from cellbus_protocol import codec, keys
from cellbus_protocol import messages as m
from cellbus_protocol.bus import Bus, RedisBus
from cellbus_protocol.envelope import Message
from cellbus_protocol.kernel_client import KernelClient

REDIS_URL = os.environ.get("CELLBUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
WORKER_ID = "bench-worker"


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


class Worker:
    def __init__(self, namespace: str, sessions: int, hibernate_after: float) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="cellbus-bench-", suffix=".log", delete=False)
        env = dict(os.environ)
        env.update(
            CELLBUS_REDIS_URL=REDIS_URL, CELLBUS_NAMESPACE=namespace,
            CELLBUS_WORKER_ID=WORKER_ID, CELLBUS_SECRET=secrets.token_hex(16),
            CELLBUS_MAX_SESSIONS=str(sessions + 100), CELLBUS_HIBERNATE_AFTER=str(hibernate_after),
            CELLBUS_CHECKPOINT_DELAY="0.1", CELLBUS_LOG_LEVEL="WARNING",
            CELLBUS_MEMORY_LIMIT_MB="0",
        )  # fmt: skip
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cellbus_kernel"], env=env, stdout=self.log, stderr=self.log
        )
        self.ps = psutil.Process(self.process.pid)

    def template(self) -> psutil.Process:
        (template,) = self.ps.children()
        return template

    def rss(self) -> int:
        return self.ps.memory_info().rss

    def session_processes(self) -> int:
        return len(self.template().children())

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def wait_for(bus: Bus, session: str, state: m.FeedState, after: int = 0) -> int:
    async with await bus.subscribe(keys.feed(session), after) as subscription:
        async with asyncio.timeout(300):
            async for entry in subscription:
                msg = codec.decode(entry.data)
                if m.state_of(msg.content) == state:
                    return entry.seq
    raise AssertionError("unreachable")


async def until_reply(bus: Bus, request: Message, after: int) -> Message:
    async with await bus.subscribe(keys.feed(request.session), after) as subscription:
        async with asyncio.timeout(60):
            async for entry in subscription:
                msg = codec.decode(entry.data)
                if msg.msg_type == "execute_reply" and msg.parent_header.msg_id == request.msg_id:
                    return msg
    raise AssertionError("unreachable")


async def start_one(client: KernelClient, number: int) -> str:
    session = await client.create_session()
    seq = await wait_for(client.bus, session, "idle")
    request = await client.execute(session, f"label = 'session {number}'\ndata = list(range(1000))")
    reply = await until_reply(client.bus, request, seq)
    assert reply.content.status == "ok", reply.content
    return session


async def hibernated(bus: RedisBus, sessions: list[str]) -> None:
    await asyncio.gather(*(wait_for(bus, s, "hibernated") for s in sessions))
    async with asyncio.timeout(60):  # and once the worker has let go of them all
        while True:
            if (await bus.loads(keys.WORKERS)).get(WORKER_ID) == 0:
                return
            await asyncio.sleep(0.1)


async def bench(args: argparse.Namespace) -> None:
    namespace = f"cellbus-bench-{uuid.uuid4().hex[:8]}"
    raw = redis.Redis.from_url(REDIS_URL)
    redis_before = raw.info("memory")["used_memory"]
    worker = Worker(namespace, args.sessions, args.hibernate_after)
    bus = RedisBus(REDIS_URL, namespace=namespace)
    await bus.start()
    try:
        while not raw.hexists(f"{namespace}:workers", WORKER_ID):
            if worker.process.poll() is not None:
                raise SystemExit(f"the worker exited; see {worker.log.name}")
            await asyncio.sleep(0.05)
        client = KernelClient(bus, "bench", timeout=30)
        warm = [await start_one(client, -i) for i in range(5)]
        await hibernated(bus, warm)
        idle_rss, idle_template = worker.rss(), worker.template().memory_info().rss

        started = time.monotonic()
        sessions: list[str] = []
        peak_rss, peak_processes = idle_rss, 0
        for first in range(0, args.sessions, args.batch):
            count = min(args.batch, args.sessions - first)
            sessions += await asyncio.gather(*(start_one(client, first + i) for i in range(count)))
            peak_rss = max(peak_rss, worker.rss())
            peak_processes = max(peak_processes, worker.session_processes())
            print(f"  {len(sessions)} sessions started, {worker.session_processes()} awake, "
                  f"worker {mib(worker.rss())}", flush=True)  # fmt: skip
        created = time.monotonic() - started
        await hibernated(bus, sessions)
        all_hibernated = time.monotonic() - started
        after_rss, after_template = worker.rss(), worker.template().memory_info().rss
        left = worker.session_processes()

        sizes = [raw.strlen(f"{namespace}:{keys.checkpoint(s)}") for s in sessions]
        redis_used = raw.info("memory")["used_memory"] - redis_before

        latencies = []
        for session in random.sample(sessions, args.restores):
            seq = await bus.last_seq(keys.feed(session))
            began = time.monotonic()
            request = await client.execute(session, "label")
            await client.ensure_session(session)
            reply = await until_reply(bus, request, seq)
            latencies.append(time.monotonic() - began)
            assert reply.content.status == "ok"

        print()
        print(f"{args.sessions} sessions, each created, run one cell, hibernated "
              f"{args.hibernate_after:g} s after it")  # fmt: skip
        print(f"  started in {created:.1f} s; all hibernated after {all_hibernated:.1f} s")
        print(f"  worker resident memory: {mib(idle_rss)} with none, {mib(peak_rss)} at the "
              f"peak ({peak_processes} awake), {mib(after_rss)} with all hibernated "
              f"({(after_rss - idle_rss) / 2**20:+.1f} MiB)")  # fmt: skip
        print(f"  template resident memory: {mib(idle_template)} before, {mib(after_template)} "
              "after")  # fmt: skip
        print(f"  session processes left: {left}")
        print(f"  checkpoints on Redis: {len(sizes)}, {mib(sum(sizes))} in all "
              f"({statistics.median(sizes):.0f} bytes each, median); Redis used "
              f"{mib(redis_used)} more (feeds, queues and checkpoints)")  # fmt: skip
        print(f"  restoring a hibernated session, request to reply ({args.restores} of them): "
              f"median {statistics.median(latencies) * 1000:.0f} ms, "
              f"max {max(latencies) * 1000:.0f} ms")  # fmt: skip
    finally:
        await bus.close()
        worker.stop()
        for key in raw.scan_iter(match=f"{namespace}:*", count=1000):
            raw.delete(key)
        raw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--hibernate-after", type=float, default=3.0)
    parser.add_argument("--restores", type=int, default=20)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
