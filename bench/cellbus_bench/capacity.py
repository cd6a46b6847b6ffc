"""The capacity workload (issue 20): how many sessions one machine holds, and what each costs.

Three parts, on a cellbus of their own (`capacity_stack.CapacityStack`: accounts, two kernel
workers and four web processes on the Redis and PostgreSQL on 127.0.0.1), driven over the
browser's path (``POST /rpc`` and the feed WebSocket) by one signed-in user:

1. **Live sessions** (`live`): `capacity_live` idle sessions on the two kernel workers, each
   started with ``session.create`` and warmed with one ``1+1``; the total memory (PSS) of
   every process of the system (accounts, web, workers, templates, sessions) divided by the
   sessions, as sessions per GiB. Jupyter's peer: `capacity_jupyter_live` kernels of
   jupyter_server (it cannot hold 1,000 in this machine's memory), each warmed the same way,
   measured the same way (the server and its kernels). Each system is measured while the
   other has no sessions. Then `capacity_active` sessions among them run ``1+1`` one after
   another (all `capacity_active` at once), the two systems in turns: the p99 latency.
2. **Watchers** (`watchers`): `capacity_watchers` feed WebSockets on one session, spread
   evenly over the four web processes (held by four client processes,
   `capacity_watchers.py`); one client runs ``print('x')``: the time from its request until
   the last socket has the output, and from the first socket's arrival to the last.
   Jupyter's server holds about 250 kernel WebSockets (`jupyter.ZMQ_SOCKETS_EXHAUSTED`): no
   peer.
3. **Hibernated sessions** (`hibernated`): the kernel workers replaced by two that hibernate
   a session `HIBERNATE_AFTER` seconds after its last request; `capacity_hibernated`
   sessions each run one cell (``label = ...; data = list(range(1000))``) and hibernate;
   once every one has, `capacity_restores` of them (a random sample) are asked for
   ``label`` one after another, each from a page already subscribed to it: the restore
   latency is from that request to its ``execute_result`` (and to its end), and the result
   must be the session's own label. Jupyter has no hibernation (its culler shuts idle
   kernels down and their state is lost): for reference, a new kernel's first result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from . import measure, workloads
from .capacity_stack import CapacityStack, Users
from .jupyter import JupyterSession, JupyterSystem, KernelSocket
from .systems import ROOT, Run

WORKERS = 2
CREATE_CONCURRENCY = 32  # sessions being started at once
JUPYTER_CONCURRENCY = 4  # Jupyter kernels being started at once
ACTIVE_TURN = 10  # 1+1 runs per active session per turn
HIBERNATE_AFTER = 1.0  # seconds, for the hibernated part's workers
LABEL_CODE = "label = 'session {i}'\ndata = list(range(1000))"
ALL_HIBERNATED_TIMEOUT = 600.0
GIB_MIB = 1024.0


def say(text: str) -> None:
    """Progress on stderr (the full size takes a while)."""
    print(f"  capacity: {text}", file=sys.stderr, flush=True)


def cpu_with_children(pids: list[int]) -> float:
    """CPU seconds of `pids` and of their children that ended and were reaped (cutime,
    cstime): a template's session processes that ended count in it."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return total / tick


def mib_per_session(total_mib: float, sessions: int) -> dict[str, float]:
    per = total_mib / sessions
    return {"mib_per_session": round(per, 3), "sessions_per_gib": round(GIB_MIB / per, 2)}


def brief(summary: dict[str, Any]) -> dict[str, Any]:
    """A memory summary without its per-process lists (a thousand entries)."""
    return {k: v for k, v in summary.items() if not k.endswith("_each")}


async def namespace_bytes(stack: CapacityStack) -> int:
    """What the stack's keys take in Redis (MEMORY USAGE of each key of its namespace): the
    Redis is shared with other work, so its own total says nothing about the stack."""
    client = aioredis.Redis.from_url(stack.redis_url)
    total = 0
    try:
        batch: list[Any] = []
        async for key in client.scan_iter(match=f"{stack.namespace}:*", count=1000):
            batch.append(key)
            if len(batch) == 1000:
                total += await _usage(client, batch)
                batch = []
        total += await _usage(client, batch)
    finally:
        await client.aclose()
    return total


async def _usage(client: aioredis.Redis, keys: list[Any]) -> int:
    if not keys:
        return 0
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return sum(int(n or 0) for n in await pipe.execute())


async def gather_limited(count: int, limit: int, one: Any) -> None:
    """`one(i)` for i in range(count), at most `limit` at once; the first failure raises
    once the others have ended."""
    slots = asyncio.Semaphore(limit)

    async def limited(i: int) -> None:
        async with slots:
            await one(i)

    outcomes = await asyncio.gather(*(limited(i) for i in range(count)), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


# -- 1. live sessions -------------------------------------------------------------------


class Active:
    """A system's active sessions, taking turns with the other's like a system. With a
    `meter` (a reading of counters: CPU seconds by process kind, Redis commands), what the
    turns used of each, in all (`used`), over `executions`."""

    def __init__(
        self,
        name: str,
        sessions: list[Any],
        meter: Callable[[], Awaitable[dict[str, float]]] | None = None,
    ) -> None:
        self.name = name
        self.sessions = sessions
        self.meter = meter
        self.used: dict[str, float] = {}
        self.executions = 0

    async def turn(self) -> list[float]:
        async def one(session: Any) -> list[float]:
            return [
                (await workloads.run_once(session, workloads.ONE_PLUS_ONE)).latency
                for _ in range(ACTIVE_TURN)
            ]

        before = await self.meter() if self.meter else {}
        runs = await asyncio.gather(*(one(s) for s in self.sessions))
        if self.meter:
            after = await self.meter()
            for key, value in after.items():
                self.used[key] = self.used.get(key, 0.0) + value - before[key]
        latencies = [x for r in runs for x in r]
        self.executions += len(latencies)
        return latencies

    def per_execution(self) -> dict[str, float]:
        n = max(1, self.executions)
        out = {
            f"{k}_cpu_ms": round(v * 1000 / n, 3)
            for k, v in self.used.items()
            if k != "redis_commands"
        }
        if "redis_commands" in self.used:
            out["redis_commands"] = round(self.used["redis_commands"] / n, 2)
        return out


def stack_meter(stack: CapacityStack) -> Callable[[], Awaitable[dict[str, float]]]:
    """CPU seconds of the stack's processes by kind, of Redis, and Redis's command count
    (Redis is shared with whatever else runs on this machine: an upper bound)."""

    async def meter() -> dict[str, float]:
        client = aioredis.Redis.from_url(stack.redis_url)
        try:
            server, stats = await client.info("server"), await client.info("stats")
        finally:
            await client.aclose()
        services = stack.service_pids()
        return {
            "web": measure.cpu_seconds(services["web"]),
            "accounts": measure.cpu_seconds(services["accounts"]),
            "kernel": measure.cpu_seconds([*services["kernel_workers"], *services["templates"]]),
            "sessions": measure.cpu_seconds(stack.session_pids()),
            "redis": measure.cpu_seconds([int(server["process_id"])]),
            "redis_commands": float(stats["total_commands_processed"]),
        }

    return meter


class CellbusActive:
    """A cellbus session as `workloads.run_once` drives one, through `Users`."""

    def __init__(self, users: Users, web: int, session: str) -> None:
        self.users, self.web, self.id = users, web, session

    async def send(self, code: str) -> Run:
        run, _ = await self.users.execute(self.web, self.id, code)
        return run

    async def close(self) -> None:
        pass


async def jupyter_live(
    system: JupyterSystem, count: int, active: int, settle: float, kernels: list[str]
) -> tuple[dict[str, Any], list[JupyterSession]]:
    """`count` Jupyter kernels, each warmed with 1+1 over its WebSocket; the sockets of all
    but `active` of them closed (the kernels stay). Their ids go into `kernels` as they
    start (the caller deletes them)."""
    api = system.kernels
    assert api is not None
    before = set(system.session_pids())
    kept: list[JupyterSession] = []
    clock = measure.Stopwatch()

    async def one(i: int) -> None:
        kernel_id = await api.new_kernel()
        kernels.append(kernel_id)
        session = JupyterSession(api, kernel_id, KernelSocket(await api.socket(kernel_id)))
        await workloads.run_once(session, workloads.ONE_PLUS_ONE)
        if i < active:
            kept.append(session)
        else:
            await session.socket.close()

    await gather_limited(count, JUPYTER_CONCURRENCY, one)
    started = clock.elapsed()
    await asyncio.sleep(settle)
    pids = [p for p in system.session_pids() if p not in before]
    if len(pids) != count:
        raise RuntimeError(f"{len(pids)} Jupyter kernel processes for {count} kernels")
    sessions = measure.memory_summary(pids)
    services = measure.memory_summary(system.service_pids())
    total = sessions["pss_mib_total"] + services["pss_mib_total"]
    return {
        "sessions": count,
        "start_s": round(started, 1),
        "memory": {"sessions": brief(sessions), "server": brief(services)},
        "total_pss_mib": round(total, 1),
        **mib_per_session(total, count),
        "session_only": mib_per_session(sessions["pss_mib_total"], count),
    }, kept


async def cellbus_live(
    stack: CapacityStack,
    users: Users,
    count: int,
    active: int,
    settle: float,
    created: list[tuple[str, int]],
) -> tuple[dict[str, Any], list[CellbusActive]]:
    """`count` cellbus sessions over the web processes, each warmed with 1+1; all but
    `active` unsubscribed. Each goes into `created` (session, web) as it is made."""
    feeds = users.feeds
    assert feeds is not None
    redis_before = await namespace_bytes(stack)
    kept: list[CellbusActive] = []
    clock = measure.Stopwatch()

    async def one(i: int) -> None:
        web = i % len(stack.urls)
        session: str = (await users.call(web, "session.create"))["session"]
        created.append((session, web))
        await feeds.subscribe(web, session, 0)
        await workloads.run_once(CellbusActive(users, web, session), workloads.ONE_PLUS_ONE)
        if i < active:
            kept.append(CellbusActive(users, web, session))
        else:
            await feeds.unsubscribe(web, session)

    await gather_limited(count, CREATE_CONCURRENCY, one)
    started = clock.elapsed()
    await asyncio.sleep(settle)
    per_worker = stack.sessions_per_worker()
    pids = stack.session_pids()
    if len(pids) != count:
        raise RuntimeError(f"{len(pids)} session processes for {count} sessions")
    sessions = measure.memory_summary(pids)
    services = {kind: brief(measure.memory_summary(p)) for kind, p in stack.service_pids().items()}
    services_total = sum(s["pss_mib_total"] for s in services.values())
    total = sessions["pss_mib_total"] + services_total
    everything = [*pids, *(p for group in stack.service_pids().values() for p in group)]
    cpu_before, clock_before = cpu_with_children(everything), time.perf_counter()
    await asyncio.sleep(settle)
    idle_cpu = (cpu_with_children(everything) - cpu_before) / (time.perf_counter() - clock_before)
    return {
        "sessions": count,
        "per_worker": per_worker,
        "start_s": round(started, 1),
        "sessions_started_per_s": round(count / started, 1),
        "memory": {"sessions": brief(sessions), **services},
        "total_pss_mib": round(total, 1),
        **mib_per_session(total, count),
        "session_only": mib_per_session(sessions["pss_mib_total"], count),
        "redis_mib": round((await namespace_bytes(stack) - redis_before) / 2**20, 2),
        "idle_cpu_cores": round(idle_cpu, 3),
    }, kept


async def live(
    stack: CapacityStack, users: Users, jupyter: JupyterSystem, sizes: workloads.Sizes
) -> dict[str, Any]:
    kernels: list[str] = []
    created: list[tuple[str, int]] = []
    api = jupyter.kernels
    assert api is not None
    kept_jupyter: list[JupyterSession] = []
    try:
        jupyter_figures, kept_jupyter = await jupyter_live(
            jupyter, sizes.capacity_jupyter_live, sizes.capacity_active,
            sizes.capacity_settle_s, kernels,
        )  # fmt: skip
        cellbus_figures, kept_cellbus = await cellbus_live(
            stack, users, sizes.capacity_live, sizes.capacity_active,
            sizes.capacity_settle_s, created,
        )  # fmt: skip
        sides = [
            Active("cellbus", kept_cellbus, stack_meter(stack)),
            Active("jupyter", kept_jupyter),
        ]
        turns = max(1, sizes.capacity_active_runs // ACTIVE_TURN)
        samples = await workloads.in_turns(sides, turns, lambda side: side.turn())
    finally:
        for session in kept_jupyter:
            await session.socket.close()
        for kernel_id in kernels:
            with contextlib.suppress(Exception):
                await api.delete_kernel(kernel_id)
        await shut_down(users, created)
    return {
        "cellbus": cellbus_figures,
        "jupyter": jupyter_figures,
        "active": {
            "sessions": sizes.capacity_active,
            "runs_per_session": turns * ACTIVE_TURN,
            **{name: measure.summarize(x for t in v for x in t) for name, v in samples.items()},
            "cellbus_per_execution": sides[0].per_execution(),
        },
    }


async def shut_down(users: Users, created: list[tuple[str, int]]) -> None:
    async def one(i: int) -> None:
        session, web = created[i]
        with contextlib.suppress(Exception):
            await users.call(web, "session.shutdown", session=session)

    await gather_limited(len(created), CREATE_CONCURRENCY, one)


# -- 2. watchers ------------------------------------------------------------------------


class WatcherClient:
    """`capacity_watchers.py` in a process of its own, holding sockets on one web process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, url: str, token: str, session: str, count: int) -> WatcherClient:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-P", "-m", "bench.cellbus_bench.capacity_watchers",
            url, token, session, str(count),
            cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},  # -P: the checkout only through this
        )  # fmt: skip
        return cls(process)

    async def line(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            text = await self.process.stdout.readline()
        if not text:
            raise RuntimeError(f"a watcher client ended (exit {await self.process.wait()})")
        value: dict[str, Any] = json.loads(text)
        return value

    async def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()

    async def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(Exception):
                await self.send("close")
            try:
                async with asyncio.timeout(60):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def watchers(stack: CapacityStack, users: Users, sizes: workloads.Sizes) -> dict[str, Any]:
    assert users.feeds is not None
    session: str = (await users.call(0, "session.create"))["session"]
    await users.feeds.subscribe(0, session, 0)
    driver = CellbusActive(users, 0, session)
    await workloads.run_once(driver, workloads.ONE_PLUS_ONE)
    webs = len(stack.urls)
    n = sizes.capacity_watchers
    counts = [n // webs + (i < n % webs) for i in range(webs)]
    web_pids = stack.web_pids()
    web_before = measure.memory_summary(web_pids)["pss_mib_total"]
    clients: list[WatcherClient] = []
    latencies: list[float] = []
    spreads: list[float] = []
    arrived: list[int] = []
    try:
        clock = measure.Stopwatch()
        for url, count in zip(stack.urls, counts, strict=True):
            clients.append(await WatcherClient.start(url, users.token, session, count))
        opened = [await c.line(900) for c in clients]
        open_s = clock.elapsed()
        web_after = measure.memory_summary(web_pids)["pss_mib_total"]
        total = sum(o["opened"] for o in opened)
        refused = [o["refused"] for o in opened if o["refused"]]
        await asyncio.sleep(workloads.SETTLE)
        cpu_before = measure.cpu_seconds(web_pids)
        for _ in range(sizes.capacity_watch_trials):
            for client in clients:
                await client.send("arm")
            for client in clients:
                await client.line(60)
            run = await driver.send(workloads.PRINT_X)
            ends = [await c.line(180) for c in clients]
            await run.wait()
            firsts = [e["first"] for e in ends if e["first"] is not None]
            lasts = [e["last"] for e in ends if e["last"] is not None]
            arrived.append(sum(e["arrived"] for e in ends))
            if lasts:
                latencies.append(max(lasts) - run.sent)
                spreads.append(max(lasts) - min(firsts))
            await asyncio.sleep(workloads.SETTLE)
        web_cpu = measure.cpu_seconds(web_pids) - cpu_before
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        with contextlib.suppress(Exception):
            await users.call(0, "session.shutdown", session=session)
    deliveries = max(1, sum(arrived))
    return {
        "cellbus": {
            "watchers": sizes.capacity_watchers,
            "opened": total,
            "web_processes": webs,
            "per_web_process": counts,
            "client_processes": len(clients),
            "refused": refused,
            "open_s": round(open_s, 1),
            "arrived_per_trial": arrived,
            "every_watcher_had_it": all(a == total for a in arrived) and total > 0,
            "time_until_all": measure.summarize(latencies),
            "first_to_last": measure.summarize(spreads),
            "web_pss_kib_per_socket": round((web_after - web_before) * 1024 / max(1, total), 2),
            "web_cpu_us_per_delivery": round(web_cpu * 1e6 / deliveries, 2),
        }
    }


# -- 3. hibernated sessions -------------------------------------------------------------


async def all_hibernated(stack: CapacityStack, timeout: float) -> None:
    """Until no kernel worker hosts a session (each has hibernated)."""
    from cellbus_protocol import keys
    from cellbus_protocol.bus import RedisBus

    bus = RedisBus(stack.redis_url, namespace=stack.namespace)
    await bus.start()
    try:
        async with asyncio.timeout(timeout):
            while True:
                loads = await bus.loads(keys.WORKERS)
                if len(loads) == WORKERS and not any(loads.values()):
                    return
                await asyncio.sleep(0.2)
    finally:
        await bus.close()


async def checkpoint_sizes(stack: CapacityStack, sessions: list[str]) -> list[int]:
    from cellbus_protocol import keys
    from cellbus_protocol.bus import RedisBus

    bus = RedisBus(stack.redis_url, namespace=stack.namespace)
    await bus.start()
    try:
        blobs = [await bus.get_blob(keys.checkpoint(s)) for s in sessions]
    finally:
        await bus.close()
    return [len(b) for b in blobs if b is not None]


async def hibernated(
    stack: CapacityStack, users: Users, jupyter: JupyterSystem, sizes: workloads.Sizes
) -> dict[str, Any]:
    feeds = users.feeds
    assert feeds is not None
    count = sizes.capacity_hibernated
    webs = len(stack.urls)
    sessions: list[str] = [""] * count
    redis_before = await namespace_bytes(stack)
    kernel_pids = [*stack.worker_pids(), *stack.templates()]
    cpu_before = cpu_with_children(kernel_pids)
    clock = measure.Stopwatch()

    async def one(i: int) -> None:
        web = i % webs
        session: str = (await users.call(web, "session.create"))["session"]
        sessions[i] = session
        await feeds.subscribe(web, session, 0)
        await workloads.run_once(CellbusActive(users, web, session), LABEL_CODE.format(i=i))
        await feeds.unsubscribe(web, session)

    await gather_limited(count, CREATE_CONCURRENCY, one)
    created_s = clock.elapsed()
    await all_hibernated(stack, ALL_HIBERNATED_TIMEOUT)
    hibernated_s = clock.elapsed()
    cpu_created = cpu_with_children(kernel_pids) - cpu_before
    used = await namespace_bytes(stack) - redis_before
    sizes_sample = await checkpoint_sizes(stack, random.sample(sessions, min(200, count)))
    left = len(stack.session_pids())
    workers = brief(measure.memory_summary(stack.worker_pids()))

    # the restores, one after another, each from a page already following its session
    chosen = random.sample(range(count), sizes.capacity_restores)
    to_result: list[float] = []
    to_end: list[float] = []
    wrong: list[str] = []
    cpu_before = cpu_with_children(kernel_pids)
    for k, i in enumerate(chosen):
        web = k % webs
        await feeds.subscribe(web, sessions[i], "now")
        run, msg_id = await users.execute(web, sessions[i], "label")
        await run.wait()
        await feeds.unsubscribe(web, sessions[i])
        if run.status != "ok" or feeds.results.pop(msg_id, None) != repr(f"session {i}"):
            wrong.append(sessions[i])
        assert run.result_at is not None and run.done_at is not None
        to_result.append(run.result_at - run.sent)
        to_end.append(run.done_at - run.sent)
    await all_hibernated(stack, ALL_HIBERNATED_TIMEOUT)  # the restored ones, again
    cpu_restores = cpu_with_children(kernel_pids) - cpu_before

    fresh: list[float] = []
    for _ in range(sizes.capacity_jupyter_starts):
        kernel, run = await jupyter.start_session(workloads.ONE_PLUS_ONE)
        await run.wait()
        await kernel.close()
        assert run.result_at is not None
        fresh.append(run.result_at - run.sent)
    return {
        "cellbus": {
            "sessions": count,
            "hibernate_after_s": HIBERNATE_AFTER,
            "created_s": round(created_s, 1),
            "all_hibernated_s": round(hibernated_s, 1),
            "sessions_per_s": round(count / hibernated_s, 1),
            "session_processes_left": left,
            "kernel_cpu_ms_per_session": round(cpu_created * 1000 / count, 2),
            "redis_mib": round(used / 2**20, 1),
            "redis_bytes_per_session": round(used / count),
            "checkpoint_bytes_median": round(measure.median(sizes_sample)),
            "kernel_workers_after": workers,
            "restores": len(chosen),
            "restore_result": measure.summarize(to_result, keep=True),
            "restore_done": measure.summarize(to_end),
            "restored_wrong": wrong,
            "kernel_cpu_ms_per_restore": round(cpu_restores * 1000 / len(chosen), 2),
        },
        "jupyter": {
            "hibernation": False,
            "fresh_kernel_first_result": measure.summarize(fresh),
        },
    }


# -- the workload -----------------------------------------------------------------------


async def capacity(systems: workloads.Systems, sizes: workloads.Sizes) -> dict[str, Any]:
    """Live sessions, watchers, hibernated sessions: see the module's docstring."""
    logs = systems.cellbus.workdir / f"capacity-{uuid.uuid4().hex[:6]}"
    logs.mkdir()
    clock = measure.Stopwatch()
    live_workers: dict[str, object] = {"max_sessions": sizes.capacity_live, "hibernate_after": 0}
    stack = await asyncio.to_thread(
        CapacityStack, logs, webs=sizes.capacity_webs, workers=WORKERS, worker_settings=live_workers
    )
    users = Users(stack.urls)
    results: dict[str, Any] = {}
    try:
        await users.sign_up(f"capacity-{uuid.uuid4().hex[:8]}")
        say(f"started ({clock.elapsed():.1f} s)")
        results["live"] = await live(stack, users, systems.jupyter, sizes)
        say(f"live sessions measured ({clock.elapsed():.1f} s)")
        results["watchers"] = await watchers(stack, users, sizes)
        say(f"watchers measured ({clock.elapsed():.1f} s)")
        await asyncio.to_thread(
            stack.replace_workers,
            WORKERS,
            max_sessions=max(sizes.capacity_live, 1000),
            hibernate_after=HIBERNATE_AFTER,
        )
        say(f"workers replaced ({clock.elapsed():.1f} s)")
        results["hibernated"] = await hibernated(stack, users, systems.jupyter, sizes)
        say(f"hibernated sessions measured ({clock.elapsed():.1f} s)")
    finally:
        await users.close()
        await asyncio.to_thread(stack.close)
        say(f"stopped ({clock.elapsed():.1f} s)")
    return {
        "params": {
            "live_sessions": sizes.capacity_live,
            "kernel_workers": WORKERS,
            "web_processes": sizes.capacity_webs,
            "active_sessions": sizes.capacity_active,
            "jupyter_live_kernels": sizes.capacity_jupyter_live,
            "hibernated_sessions": sizes.capacity_hibernated,
            "restores": sizes.capacity_restores,
            "watchers": sizes.capacity_watchers,
            "watch_trials": sizes.capacity_watch_trials,
            "hibernate_after_s": HIBERNATE_AFTER,
            "cellbus": "python -P -m cellbus_accounts, 2 x cellbus_kernel, 4 x cellbus_web on "
            "the Redis and PostgreSQL on 127.0.0.1 (a namespace and a database of their own); "
            "one user, POST /rpc and the feed WebSocket",
            "jupyter": "jupyter_server 2 with ipykernel, POST /api/kernels and the channels "
            "WebSocket (closed after the warm-up but for the active kernels)",
            "memory": "PSS from /proc/PID/smaps_rollup of every process of the system "
            f"({sizes.capacity_settle_s:g} s after the last warm-up), over the sessions",
            "restore": "from session.execute of `label` on a hibernated session (its feed "
            "already followed) to its execute_result, and to its end",
            "watchers_until": "from the session.execute of print('x') to the last socket's "
            "stream message (perf_counter, one clock for every process)",
        },
        "results": results,
    }
