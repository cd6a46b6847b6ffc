"""The workloads: one function each, the same code for every system.

This machine's CPU speed drifts (up to 1.8x within a minute), so two systems are compared
only on turns taken in one run: every workload alternates them (A B A B ...) and pools each
system's turns. Every wait has a deadline. A workload returns plain data for the report:
figures in milliseconds or seconds, and what it was given (`params`).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from . import browser, bus_files, files, measure, parallel_cells
from .jupyter import JupyterLabSystem, JupyterSystem, KernelsApi, ZmqFloor
from .systems import CellbusSystem, Run, Session, System
from .watching import Watchers

T = TypeVar("T")

ONE_PLUS_ONE = "1+1"
PRINT_X = "print('x')"
SETTLE = 0.3  # seconds between turns, for the last turn's stragglers (kernel shutdowns...)
IDLE_BEFORE_MEMORY = 3.0  # seconds: past cellbus's checkpoint after an execution (1 s)
JUPYTER_OPENING = (
    " (each socket to a Jupyter kernel has its own ZMQ connections, and every socket that "
    "opens nudges the kernel with kernel_info requests whose status messages go to every "
    "socket already open: opening N sockets costs O(N^2) messages)"
)


@dataclass(frozen=True)
class Sizes:
    """How much of each workload a run does."""

    name: str
    start_trials: int  # session starts per system
    rtt_runs: int  # round trips per system
    rtt_warmup: int
    rtt_turn: int  # round trips per turn
    throughput_seconds: float  # per turn
    throughput_turns: int  # per system and phase
    stream_lines: int
    stream_trials: int
    memory_sessions: int
    fanout: tuple[int, ...]  # subscriber counts
    fanout_trials: int
    fanout_open_seconds: float  # the most time to open one system's sockets for one count
    keystrokes: int  # per system, timed (issue 15)
    keystroke_turn: int  # keystrokes per turn
    keystroke_warmup: int  # per system, untimed, before the first turn
    keystroke_interval_ms: float  # between two keystrokes (typing speed)
    open_cells: int  # cells of the notebook opened
    open_trials: int  # openings per system
    browser: bool  # run the browser workloads unless --only names workloads
    files: bool  # run the file workloads (issue 17) unless --only names workloads
    file_mb: int  # the file uploaded and downloaded, in MB (10^6 bytes)
    file_trials: int  # uploads and downloads per system
    bus_outstanding: int  # chunks in flight through the bus at once (files_bus)
    parallel_tasks: int  # CPU-bound tasks of one map (parallel_speedup)
    parallel_task_ms: float  # the CPU time of one of them
    parallel_turns: int  # maps, and serial runs, timed per side
    overhead_tasks: int  # trivial tasks of one map (parallel_overhead)
    overhead_trials: int  # maps timed per side
    capacity_live: int  # live idle cellbus sessions on two kernel workers (issue 20)
    capacity_active: int  # of them, running 1+1 at once
    capacity_active_runs: int  # 1+1 runs per active session, per system
    capacity_jupyter_live: int  # Jupyter kernels, for its memory per live session
    capacity_hibernated: int  # hibernated cellbus sessions
    capacity_restores: int  # of them, restored one after another
    capacity_jupyter_starts: int  # Jupyter kernels started, for reference (no hibernation)
    capacity_watchers: int  # feed WebSockets on one session, over four web processes
    capacity_watch_trials: int  # print('x') runs they watch
    capacity_settle_s: float  # idle time before memory is read, and of the idle CPU sample
    capacity_webs: int  # web processes of the capacity workload's cellbus


FULL = Sizes(
    name="full",
    start_trials=10,
    rtt_runs=1000,
    rtt_warmup=50,
    rtt_turn=100,
    throughput_seconds=10.0,
    throughput_turns=2,
    stream_lines=100_000,
    stream_trials=3,
    memory_sessions=10,
    fanout=(1, 10, 100, 1000),
    fanout_trials=9,  # a median of 3 moved by a third between runs on this machine
    fanout_open_seconds=60.0,
    keystrokes=400,
    keystroke_turn=100,
    keystroke_warmup=30,
    keystroke_interval_ms=30.0,
    open_cells=1000,
    open_trials=3,
    browser=True,
    files=True,
    file_mb=200,
    file_trials=3,
    bus_outstanding=8,
    parallel_tasks=40,
    parallel_task_ms=200.0,
    parallel_turns=5,
    overhead_tasks=1000,
    overhead_trials=7,
    capacity_live=1000,
    capacity_active=10,
    capacity_active_runs=100,
    capacity_jupyter_live=100,
    capacity_hibernated=10_000,
    capacity_restores=300,
    capacity_jupyter_starts=5,
    capacity_watchers=10_000,
    capacity_watch_trials=5,
    capacity_settle_s=3.0,
    capacity_webs=4,
)
QUICK = Sizes(
    name="quick",
    start_trials=3,
    rtt_runs=200,
    rtt_warmup=20,
    rtt_turn=50,
    throughput_seconds=2.0,
    throughput_turns=1,
    stream_lines=100_000,
    stream_trials=1,
    memory_sessions=10,
    fanout=(1, 10, 100, 1000),
    fanout_trials=1,
    fanout_open_seconds=10.0,
    keystrokes=100,
    keystroke_turn=50,
    keystroke_warmup=10,
    keystroke_interval_ms=30.0,
    open_cells=1000,
    open_trials=1,
    browser=True,
    files=True,
    file_mb=200,
    file_trials=1,
    bus_outstanding=8,
    parallel_tasks=40,
    parallel_task_ms=200.0,
    parallel_turns=1,
    overhead_tasks=1000,
    overhead_trials=3,
    capacity_live=100,
    capacity_active=10,
    capacity_active_runs=20,
    capacity_jupyter_live=20,
    capacity_hibernated=300,
    capacity_restores=30,
    capacity_jupyter_starts=1,
    capacity_watchers=1000,
    capacity_watch_trials=2,
    capacity_settle_s=3.0,
    capacity_webs=4,
)
SMOKE = Sizes(
    name="smoke",
    start_trials=1,
    rtt_runs=10,
    rtt_warmup=3,
    rtt_turn=5,
    throughput_seconds=0.5,
    throughput_turns=1,
    stream_lines=1000,
    stream_trials=1,
    memory_sessions=2,
    fanout=(1, 10),
    fanout_trials=1,
    fanout_open_seconds=10.0,
    keystrokes=20,
    keystroke_turn=10,
    keystroke_warmup=5,
    keystroke_interval_ms=30.0,
    open_cells=50,
    open_trials=1,
    browser=False,  # they need JupyterLab's environment: minutes to make the first time
    files=False,  # test_bench's smoke run checks the earlier workloads' record
    file_mb=8,
    file_trials=1,
    bus_outstanding=8,
    parallel_tasks=4,
    parallel_task_ms=20.0,
    parallel_turns=1,
    overhead_tasks=50,
    overhead_trials=1,
    capacity_live=4,
    capacity_active=2,
    capacity_active_runs=10,
    capacity_jupyter_live=2,
    capacity_hibernated=4,
    capacity_restores=2,
    capacity_jupyter_starts=1,
    capacity_watchers=8,
    capacity_watch_trials=1,
    capacity_settle_s=0.3,  # checks the code, not the figures
    capacity_webs=2,  # (the code is the same for 4; each one costs a second to start)
)
SIZES = {s.name: s for s in (FULL, QUICK, SMOKE)}


@dataclass
class Systems:
    """The systems of one run; `services` (cellbus on Redis) starts only for its workload."""

    cellbus: CellbusSystem
    jupyter: JupyterSystem
    zmq: ZmqFloor
    services: CellbusSystem
    lab: JupyterLabSystem  # started only for the browser workloads
    lab_default: JupyterLabSystem  # the same, with JupyterLab's default windowing mode
    parallel: parallel_cells.ParallelCellbus  # started only for the parallel workloads

    def pair(self) -> list[System]:
        return [self.cellbus, self.jupyter]


async def in_turns(
    systems: Sequence[Any], turns: int, turn: Callable[[Any], Awaitable[T]]
) -> dict[str, list[T]]:
    """`turns` rounds of `turn(system)` for each system in order: A B A B ..."""
    results: dict[str, list[T]] = {s.name: [] for s in systems}
    for _ in range(turns):
        for system in systems:
            results[system.name].append(await turn(system))
            await asyncio.sleep(SETTLE)
    return results


async def run_once(session: Session, code: str) -> Run:
    """`code` run to its end, which must be a success."""
    run = await (await session.send(code)).wait()
    if run.status != "ok":
        raise RuntimeError(f"{code!r} ended with status {run.status!r}")
    return run


async def sessions_of(systems: Sequence[System], count: int) -> dict[str, list[Session]]:
    """`count` warm sessions (each has run ``1+1``) per system."""
    out: dict[str, list[Session]] = {}
    for system in systems:
        out[system.name] = [await system.new_session() for _ in range(count)]
        for session in out[system.name]:
            await run_once(session, ONE_PLUS_ONE)
    return out


async def close_all(sessions: dict[str, list[Session]]) -> None:
    for group in sessions.values():
        for session in group:
            await session.close()


# -- 1. session start --------------------------------------------------------------------


async def session_start(systems: Systems, sizes: Sizes) -> dict[str, Any]:
    """From asking for a new session to the first result of ``1+1``."""

    async def trial(system: System) -> float:
        session, run = await system.start_session(ONE_PLUS_ONE)
        await run.wait()
        await session.close()
        assert run.result_at is not None, "no execute_result"
        return run.result_at - run.sent

    samples = await in_turns(systems.pair(), sizes.start_trials, trial)
    return {
        "params": {"trials": sizes.start_trials, "code": ONE_PLUS_ONE},
        "results": {name: measure.summarize(v, keep=True) for name, v in samples.items()},
    }


# -- 2. exec round trip ------------------------------------------------------------------


async def exec_round_trip(systems: Systems, sizes: Sizes) -> dict[str, Any]:
    """``1+1`` to its reply and idle status, in sequence, over the browser's path, and over
    raw ZMQ for Jupyter."""
    sessions = {s.name: await s.new_session() for s in systems.pair()}
    await systems.zmq.start()
    try:
        for session in sessions.values():
            for _ in range(sizes.rtt_warmup):
                await run_once(session, ONE_PLUS_ONE)
        await systems.zmq.round_trips(ONE_PLUS_ONE, sizes.rtt_warmup)

        parts: dict[str, dict[str, list[float]]] = {
            s.name: {"accepted": [], "result": []} for s in systems.pair()
        }

        async def turn(system: System | ZmqFloor) -> list[float]:
            if isinstance(system, ZmqFloor):  # Jupyter's kernel over raw ZMQ, no server
                return await system.round_trips(ONE_PLUS_ONE, sizes.rtt_turn)
            latencies = []
            for _ in range(sizes.rtt_turn):
                run = await run_once(sessions[system.name], ONE_PLUS_ONE)
                latencies.append(run.latency)
                assert run.accepted_at is not None and run.result_at is not None
                parts[system.name]["accepted"].append(run.accepted_at - run.sent)
                parts[system.name]["result"].append(run.result_at - run.sent)
            return latencies

        turns = max(1, sizes.rtt_runs // sizes.rtt_turn)
        samples = await in_turns([*systems.pair(), systems.zmq], turns, turn)
    finally:
        await systems.zmq.stop()
        for session in sessions.values():
            await session.close()
    return {
        "params": {
            "runs": turns * sizes.rtt_turn,
            "warmup": sizes.rtt_warmup,
            "per_turn": sizes.rtt_turn,
            "code": ONE_PLUS_ONE,
            "until": "execute_reply and the idle status have arrived",
        },
        "results": {
            name: measure.summarize([x for t in v for x in t], keep=True)
            for name, v in samples.items()
        },
        "breakdown": {
            name: {
                "request_accepted": measure.summarize(p["accepted"]),
                "execute_result": measure.summarize(p["result"]),
            }
            for name, p in parts.items()
        },
    }


async def channels_round_trip(systems: Systems, sizes: Sizes) -> dict[str, Any]:
    """``1+1`` to its reply and idle status through the channels WebSocket of
    ``/api/kernels``, the same client (`jupyter.KernelsApi`, JupyterLab's path) against
    cellbus's Jupyter Server API (issue 16) and against jupyter_server itself."""
    client = systems.cellbus.client
    assert client is not None and systems.jupyter.kernels is not None
    apis = [KernelsApi("cellbus", client.url, client.token), systems.jupyter.kernels]
    sessions = {api.name: await api.new_session() for api in apis}
    try:
        for session in sessions.values():
            for _ in range(sizes.rtt_warmup):
                await run_once(session, ONE_PLUS_ONE)

        async def turn(api: KernelsApi) -> list[float]:
            session = sessions[api.name]
            return [(await run_once(session, ONE_PLUS_ONE)).latency for _ in range(sizes.rtt_turn)]

        turns = max(1, sizes.rtt_runs // sizes.rtt_turn)
        samples = await in_turns(apis, turns, turn)
    finally:
        for session in sessions.values():
            await session.close()
        await apis[0].close()
    return {
        "params": {
            "runs": turns * sizes.rtt_turn, "warmup": sizes.rtt_warmup,
            "per_turn": sizes.rtt_turn, "code": ONE_PLUS_ONE,
            "until": "execute_reply and the idle status have arrived",
            "path": "POST /api/kernels, then its channels WebSocket (legacy JSON)",
        },
        "results": {
            name: measure.summarize([x for t in v for x in t], keep=True)
            for name, v in samples.items()
        },
    }  # fmt: skip


# -- 3. throughput -----------------------------------------------------------------------

THROUGHPUT_SESSIONS = 4


async def drive(sessions: list[Session], outstanding: int, seconds: float) -> dict[str, Any]:
    """Keep `outstanding` executions of ``1+1`` in flight per session for `seconds` (each
    sent as soon as a slot is free, without waiting for the others to be sent); count those
    that ended within that time. Those still running then are waited for, uncounted."""
    end = time.perf_counter() + seconds
    latencies: list[float] = []

    async def one(session: Session) -> None:
        slots = asyncio.Semaphore(outstanding)
        running: set[asyncio.Task[None]] = set()

        async def execute() -> None:
            try:
                run = await (await session.send(ONE_PLUS_ONE)).wait()
                if run.done_at is not None and run.done_at <= end:
                    latencies.append(run.latency)
            finally:
                slots.release()

        while True:
            await slots.acquire()
            if time.perf_counter() >= end:
                break
            running.add(asyncio.create_task(execute()))
        await asyncio.gather(*running)

    await asyncio.gather(*(one(s) for s in sessions))
    return {"executions": len(latencies), "seconds": seconds, "latencies": latencies}


async def throughput(systems: Systems, sizes: Sizes) -> dict[str, Any]:
    """4 sessions at once, 1 execution outstanding per session, then 16 queued."""
    sessions = await sessions_of(systems.pair(), THROUGHPUT_SESSIONS)
    results: dict[str, Any] = {}
    try:
        for phase, outstanding in (("outstanding_1", 1), ("queued_16", 16)):

            async def turn(system: System, outstanding: int = outstanding) -> dict[str, Any]:
                with measure.CpuUse(system) as cpu:
                    result = await drive(
                        sessions[system.name], outstanding, sizes.throughput_seconds
                    )
                return {**result, "cpu": cpu.seconds}

            turns = await in_turns(systems.pair(), sizes.throughput_turns, turn)
            results[phase] = {
                name: {
                    "executions_per_s": round(
                        sum(t["executions"] for t in v) / sum(t["seconds"] for t in v), 1
                    ),
                    "latency": measure.summarize(x for t in v for x in t["latencies"]),
                    "cpu_ms_per_execution": measure.cpu_per(
                        [t["cpu"] for t in v], sum(t["executions"] for t in v)
                    ),
                }
                for name, v in turns.items()
            }
    finally:
        await close_all(sessions)
    return {
        "params": {
            "sessions": THROUGHPUT_SESSIONS,
            "seconds_per_turn": sizes.throughput_seconds,
            "turns": sizes.throughput_turns,
            "code": ONE_PLUS_ONE,
        },
        "results": results,
    }


# -- 4. stream ---------------------------------------------------------------------------


async def stream(systems: Systems, sizes: Sizes) -> dict[str, Any]:
    """``for i in range(N): print(i)``: time to done, messages, and every line arrived."""
    code = f"for i in range({sizes.stream_lines}): print(i)"
    expected = "".join(f"{i}\n" for i in range(sizes.stream_lines))
    sessions = await sessions_of(systems.pair(), 1)

    async def trial(system: System) -> dict[str, Any]:
        run = await run_once(sessions[system.name][0], code)
        return {
            "seconds": run.latency,
            "messages": run.messages,
            "stream_messages": run.stream_messages,
            "complete": run.stdout == expected,
            "lines": run.stdout.count("\n"),
        }

    try:
        trials = await in_turns(systems.pair(), sizes.stream_trials, trial)
    finally:
        await close_all(sessions)
    return {
        "params": {"lines": sizes.stream_lines, "trials": sizes.stream_trials, "code": code},
        "results": {
            name: {
                "time_to_done": measure.summarize(t["seconds"] for t in v),
                "messages": [t["messages"] for t in v],
                "stream_messages": [t["stream_messages"] for t in v],
                "lines_received": [t["lines"] for t in v],
                "every_line_arrived": all(t["complete"] for t in v),
            }
            for name, v in trials.items()
        },
    }


# -- 5. memory ---------------------------------------------------------------------------


async def memory(systems: Systems, sizes: Sizes) -> dict[str, Any]:
    """PSS and RSS of idle session processes, and of the services' own processes. Each
    system is measured while the other has no sessions (they share libpython's pages)."""

    async def turn(system: System) -> dict[str, Any]:
        before = set(system.session_pids())
        sessions = await sessions_of([system], sizes.memory_sessions)
        try:
            await asyncio.sleep(IDLE_BEFORE_MEMORY)
            pids = [p for p in system.session_pids() if p not in before]
            assert len(pids) == sizes.memory_sessions, f"{len(pids)} session processes"
            services = system.service_pids()
            return {
                "sessions": measure.memory_summary(pids),
                "services": measure.memory_summary(services),
                "service_processes": [measure.cmdline_of(p) for p in services],
            }
        finally:
            await close_all(sessions)

    turns = await in_turns(systems.pair(), 1, turn)
    return {
        "params": {
            "sessions": sizes.memory_sessions,
            "idle_seconds": IDLE_BEFORE_MEMORY,
            "code": ONE_PLUS_ONE,
        },
        "results": {name: v[0] for name, v in turns.items()},
    }


# -- 6. fan-out --------------------------------------------------------------------------


async def fanout(systems: Systems, sizes: Sizes) -> dict[str, Any]:
    """`n` sockets watch one session; one client runs ``print('x')``: the time until every
    socket has the output. A system whose `n` sockets do not open within the time allowed
    is measured with the sockets it has, and the cap is recorded."""
    sessions = await sessions_of(systems.pair(), 1)
    results: dict[str, Any] = {}
    caps: dict[str, Any] = {}
    try:
        for n in sizes.fanout:
            watchers: dict[str, Watchers] = {}
            opening: dict[str, float] = {}
            for system in systems.pair():
                clock = measure.Stopwatch()
                deadline = time.perf_counter() + sizes.fanout_open_seconds
                session = sessions[system.name][0]
                watchers[system.name] = await system.watchers(session, n, deadline)
                opening[system.name] = round(clock.elapsed(), 3)
                opened = len(watchers[system.name])
                if opened < n:
                    refused = watchers[system.name].refused
                    caps.setdefault(system.name, {})[str(n)] = (
                        f"{opened} of {n} sockets opened: {refused}"
                        if refused
                        else f"{opened} of {n} sockets opened in the "
                        f"{sizes.fanout_open_seconds:.0f} s allowed"
                        + (JUPYTER_OPENING if system is systems.jupyter else "")
                    )

            async def trial(system: System, watchers: dict[str, Watchers] = watchers) -> float:
                group = watchers[system.name]
                group.arm()
                run = await sessions[system.name][0].send(PRINT_X)
                async with asyncio.timeout(120):
                    await group.all_arrived.wait()
                await run.wait()
                return max(t for t in group.arrivals if t is not None) - run.sent

            try:
                await asyncio.sleep(SETTLE)
                trials = await in_turns(systems.pair(), sizes.fanout_trials, trial)
            finally:
                for group in watchers.values():
                    await group.close()
            results[str(n)] = {
                name: {
                    **measure.summarize(v),
                    "subscribers": len(watchers[name]),
                    "open_seconds": opening[name],
                }
                for name, v in trials.items()
            }
    finally:
        await close_all(sessions)
    return {
        "params": {
            "subscribers": list(sizes.fanout),
            "trials": sizes.fanout_trials,
            "open_seconds_allowed": sizes.fanout_open_seconds,
            "code": PRINT_X,
        },
        "results": results,
        "caps": caps,
    }


# -- 7. cellbus's two modes --------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One way of running code, taking turns with the others like a system."""

    name: str
    session: Session


async def cellbus_modes(systems: Systems, sizes: Sizes) -> dict[str, Any]:
    """The exec round trip of cellbus as one program (in-process bus, SQLite) and as separate
    services on Redis and PostgreSQL, in turns; and, for the record, the one program running
    a worksheet's cell (``cell.evaluate``: the run is recorded and its outputs saved)."""
    await systems.services.start()
    variants: list[Variant] = []
    try:
        variants.append(Variant("one_program", await systems.cellbus.new_session()))
        variants.append(Variant("services_redis", await systems.services.new_session()))
        cell = await systems.cellbus.new_cell(ONE_PLUS_ONE)
        variants.append(Variant("one_program_cell_evaluate", cell))
        for variant in variants:
            for _ in range(sizes.rtt_warmup):
                await run_once(variant.session, ONE_PLUS_ONE)

        async def turn(variant: Variant) -> list[float]:
            runs = [await run_once(variant.session, ONE_PLUS_ONE) for _ in range(sizes.rtt_turn)]
            return [run.latency for run in runs]

        turns = max(1, sizes.rtt_runs // sizes.rtt_turn)
        samples = await in_turns(variants, turns, turn)
    finally:
        for variant in variants:
            await variant.session.close()
        await systems.services.stop()
    return {
        "params": {
            "runs": turns * sizes.rtt_turn,
            "warmup": sizes.rtt_warmup,
            "code": ONE_PLUS_ONE,
            "services": "tests/support/stack.py ServicesStack: accounts, a kernel worker and "
            "two web processes (the first is used) on the Redis and PostgreSQL on 127.0.0.1",
        },
        "results": {
            name: measure.summarize([x for t in v for x in t], keep=True)
            for name, v in samples.items()
        },
    }


# -- 8. a keystroke from one browser to another (issue 15) ---------------------------------


@asynccontextmanager
async def browser_sides(
    systems: Systems, *, lab_default: bool = False
) -> AsyncIterator[list[browser.Side]]:
    """JupyterLab started (and with `lab_default`, a second one with its default windowing
    mode), Chromium, and each system's two people signed in, in turns' order (cellbus
    first)."""
    labs = [systems.lab, *([systems.lab_default] if lab_default else [])]
    sides: list[browser.Side] = []
    try:
        for lab in labs:
            await lab.start()
        async with browser.chromium() as chromium:
            made: list[browser.Side] = [
                browser.CellbusSide(systems.cellbus),
                *(browser.JupyterLabSide(lab) for lab in labs),
            ]
            for side in made:
                sides.append(side)
                await side.setup(chromium)
            yield sides
    finally:
        for side in sides:
            await side.close()
        for lab in labs:
            await lab.stop()


def identities(sides: list[browser.Side]) -> dict[str, str]:
    out = {}
    for side in sides:
        if isinstance(side, browser.CellbusSide):
            out[side.name] = f"two registered users, the second an editor: {side.usernames}"
        elif isinstance(side, browser.JupyterLabSide):
            who = "two" if len(set(side.identities)) == 2 else "one (both contexts)"
            out[side.name] = (
                f"{who} anonymous identit{'ies' if who == 'two' else 'y'} given by the "
                f"token login, one per browser context: {side.identities}"
            )
    return out


def typed(turns: list[dict[str, Any]]) -> int:
    return sum(len(t["latencies"]) for t in turns)


async def keystrokes(systems: Systems, sizes: Sizes) -> dict[str, Any]:
    """Two people (two browser contexts) have one notebook open; one types into its first
    cell, a key every `keystroke_interval_ms`: the time from each keydown in the typist's
    page to the change of the other page's editor that shows the character."""
    interval = sizes.keystroke_interval_ms / 1000
    async with browser_sides(systems) as sides:
        typing = {side.name: browser.Typing(side) for side in sides}
        try:
            for pair in typing.values():
                await pair.open()
                await pair.type(sizes.keystroke_warmup, interval)

            async def turn(side: browser.Side) -> dict[str, Any]:
                return await typing[side.name].type(sizes.keystroke_turn, interval)

            turns = max(1, sizes.keystrokes // sizes.keystroke_turn)
            samples = await in_turns(sides, turns, turn)
        finally:
            for pair in typing.values():
                await pair.close()
        who = identities(sides)
    return {
        "params": {
            "keystrokes": turns * sizes.keystroke_turn,
            "per_turn": sizes.keystroke_turn,
            "warmup": sizes.keystroke_warmup,
            "interval_ms": sizes.keystroke_interval_ms,
            "until": "the receiving page's editor shows the character (a MutationObserver "
            "on its DOM), from the keydown in the typing page; both pages' clocks put on "
            "Date.now()'s",
        },
        "results": {
            name: measure.summarize([x for t in v for x in t["latencies"]], keep=True)
            for name, v in samples.items()
        },
        "breakdown": {
            name: {
                part: measure.summarize(x for t in v for x in t["parts"][part])
                for part in ("typist", "between", "watcher")
            }
            for name, v in samples.items()
        },
        "cpu_ms_per_keystroke": {
            name: {
                who: round(1000 * sum(t["cpu_s"][who] for t in v) / typed(v), 3)
                for who in ("server", "typist_page", "watcher_page")
            }
            for name, v in samples.items()
        },
        "details": {
            name: {
                "receiver_updates_per_turn": [t["updates"] for t in v],
                "clock_skew_ms": [round(t["clock_skew_ms"], 3) for t in v],
                "typing_seconds_per_turn": [round(t["typing_s"], 2) for t in v],
            }
            for name, v in samples.items()
        },
        "people": who,
    }


# -- 9. opening a 1,000-cell notebook (issue 15) -------------------------------------------

OPEN_WARMUP_CELLS = 10


async def notebook_open(systems: Systems, sizes: Sizes) -> dict[str, Any]:
    """A new page opens a notebook of `open_cells` one-line code cells that nobody has open:
    the time from the navigation's start until the page shows every cell's editor with its
    source (and, on the way, the first cell). One untimed opening of a small notebook per
    system first, so both have the app in the browser's caches. JupyterLab renders every
    cell (``windowingMode: none``) for the target; a second JupyterLab with its default mode
    (``contentVisibility``) opens it once after the turns, for the record
    (``jupyter-default``: its editors come as the page idles, over a minute)."""
    sources = browser.cell_sources(sizes.open_cells)
    async with browser_sides(systems, lab_default=True) as sides:
        for side in sides:
            await browser.open_notebook(side, browser.cell_sources(OPEN_WARMUP_CELLS))

        async def trial(side: browser.Side) -> dict[str, float]:
            return await browser.open_notebook(side, sources)

        paired, default = sides[:2], sides[2]
        trials = await in_turns(paired, sizes.open_trials, trial)
        trials[default.name] = [await trial(default)]  # slow (its cells come as it idles)
    return {
        "params": {
            "cells": sizes.open_cells,
            "trials": sizes.open_trials,
            "trials_jupyter_default": 1,
            "cell_source": "x<i> = <i> * 2",
            "jupyterlab_windowing_mode": "jupyter: none (every cell attached and rendered); "
            "jupyter-default: contentVisibility, JupyterLab's default (every cell attached, "
            "those out of view not laid out or painted)",
            "until": "every cell's editor (.cm-content) is in the page with its source, at an "
            "animation frame, from the start of the navigation",
            "settled": "the end of the page's last long task (over 50 ms) once every cell is "
            "shown, when none came for a second",
        },
        "results": {
            name: {
                **measure.summarize([t["all_cells_ms"] / 1000 for t in v]),
                "first_cell": measure.summarize([t["first_cell_ms"] / 1000 for t in v]),
                "settled": measure.summarize([t["settled_ms"] / 1000 for t in v]),
                "long_tasks": measure.summarize([t["long_tasks_ms"] / 1000 for t in v]),
            }
            for name, v in trials.items()
        },
    }


# -- 10. upload and download of a large file (issue 17) -------------------------------------

FILE_WARMUP_BYTES = 2 * files.MIB
MEMORY_BOUND_MIB = 50.0  # the most any one process may grow during a transfer: a quarter of
# 200 MB; a server that held the file whole would grow by the file's size


async def file_transfers(systems: Systems, sizes: Sizes) -> dict[str, Any]:
    """A file of `file_mb` MB uploaded, then downloaded, by each system in turns (cellbus:
    one streamed ``PUT /files/...`` and ``GET /files/...``; Jupyter: JupyterLab's chunked
    base64 upload to ``/api/contents`` and ``GET /files/...``; `files`), with the peak RSS
    of every process of each system during each transfer. Each upload is checked on the
    server's disk (sha256) and the last download of each system hashed, untimed."""
    cellbus, jupyter = systems.cellbus, systems.jupyter
    assert cellbus.client is not None and cellbus.process is not None
    assert jupyter.process is not None
    work = cellbus.workdir / "files-bench"
    work.mkdir(exist_ok=True)
    size = sizes.file_mb * 1_000_000
    source, warmup = work / "upload.bin", work / "warmup.bin"
    digest = await asyncio.to_thread(files.make_file, source, size)
    await asyncio.to_thread(files.make_file, warmup, FILE_WARMUP_BYTES)
    sheet = await cellbus.client.call("worksheet.create", title="bench files")
    workspace = cellbus.workdir / "cellbus-data" / "workspaces" / sheet["session"]
    sides: list[files.CellbusFiles | files.JupyterFiles] = [
        files.CellbusFiles(
            cellbus.client.url, cellbus.client.token, sheet["id"], workspace, cellbus.process.pid
        ),
        files.JupyterFiles(
            jupyter.url, jupyter.token, jupyter.workdir / "jupyter-root", jupyter.process.pid
        ),
    ]
    trial = 0
    try:
        for side in sides:
            await side.upload(warmup, "warmup.bin")
            await side.download("warmup.bin")
            side.stored("warmup.bin").unlink()

        async def turn(side: files.CellbusFiles | files.JupyterFiles) -> dict[str, Any]:
            name = f"bench-{trial // len(sides)}.bin"
            upload = await files.timed(side, "upload", side.upload(source, name))
            stored = side.stored(name)
            if await asyncio.to_thread(files.sha256_of, stored) != digest:
                raise RuntimeError(f"{side.name}: the uploaded file differs ({stored})")
            download = await files.timed(side, "download", side.download(name), size)
            stored.unlink()
            return {"upload": upload, "download": download}

        async def counted(side: files.CellbusFiles | files.JupyterFiles) -> dict[str, Any]:
            nonlocal trial
            result = await turn(side)
            trial += 1
            return result

        trials = await in_turns(sides, sizes.file_trials, counted)
        verified = {}
        for side in sides:  # one more of each, untimed, hashed by the client
            await side.upload(source, "verify.bin")
            hashed = hashlib.sha256()
            await side.download("verify.bin", hashed)
            verified[side.name] = hashed.hexdigest() == digest
            side.stored("verify.bin").unlink()
    finally:
        for side in sides:
            await side.close()
        for path in (source, warmup):
            path.unlink(missing_ok=True)
    results: dict[str, Any] = {}
    for phase in ("upload", "download"):
        results[phase] = {}
        for name, v in trials.items():
            seconds = [t[phase]["seconds"] for t in v]
            results[phase][name] = {
                **measure.summarize(seconds, keep=True),
                "mb_per_s": round(sizes.file_mb / measure.median(seconds), 1),
                "memory": max((t[phase]["memory"] for t in v), key=lambda m: m["max_peak_rss_mib"]),
            }
    results["download_equals_upload"] = verified
    results["memory_bounded"] = {
        name: max(
            results[phase][name]["memory"]["max_growth_mib"] for phase in ("upload", "download")
        )
        <= MEMORY_BOUND_MIB
        for name in trials
    }
    return {
        "params": {
            "mb": sizes.file_mb,
            "bytes": size,
            "trials": sizes.file_trials,
            "cellbus": "PUT /files/{worksheet}/{path} (one streamed body with its "
            "Content-Length), GET /files/{worksheet}/{path}; bearer token",
            "jupyter": "JupyterLab's upload of a file over 15 MiB: 1 MiB slices, base64 JSON "
            "models PUT to /api/contents/<path> one after another (chunk 1, 2, ..., -1); "
            "GET /files/<path>?download=1; token",
            "memory": "peak RSS of every process of each system (its root process and all its "
            "descendants) during the transfer: VmHWM reset before (clear_refs 5) and read "
            "after, and VmRSS sampled every 10 ms; the trial with the largest peak is kept",
            "memory_bound_mib": MEMORY_BOUND_MIB,
            "client": "this program, on the same machine, over loopback; downloads read and "
            "counted (not hashed) in the timed trials",
        },
        "results": results,
    }


async def files_bus(systems: Systems, sizes: Sizes) -> dict[str, Any]:
    """For docs/architecture.md's choice (issue 17): the same file up and down through a
    web process that has no volume (1 MiB chunks through Redis to and from a kernel side,
    `bus_outstanding` in flight) and through one that reads and writes the volume itself
    (`bus_files`), in turns, with the peak RSS of the web, the kernel side and Redis."""
    results = await bus_files.transfers(
        systems.cellbus.workdir, sizes.file_mb, sizes.file_trials, sizes.bus_outstanding, in_turns
    )
    return {
        "params": {
            "mb": sizes.file_mb,
            "trials": sizes.file_trials,
            "chunk_bytes": bus_files.CHUNK,
            "outstanding": sizes.bus_outstanding,
            "bus": "the web asks the kernel side for each 1 MiB chunk (download) or sends it "
            "one (upload) with RedisBus.request (a queue item, the answer published back), "
            f"{sizes.bus_outstanding} requests in flight; the kernel side reads or writes the "
            "file; a Redis server of the bench's own",
            "volume": "the web reads or writes the file itself, 1 MiB at a time",
        },
        "results": results,
    }


# -- 11. parallel cells: speedup on two cores, and the cost of a task ----------------------


@dataclass(frozen=True)
class Cell:
    """A cell's code, taking turns with another like a system."""

    name: str
    code: str


@asynccontextmanager
async def parallel_session(systems: Systems) -> AsyncIterator[tuple[Session, dict[str, Any]]]:
    """cellbus with two Dask workers on two cores (`parallel_cells.ParallelCellbus`, started
    here and stopped after), a session that has defined the tasks, and its first map (the
    start of its scheduler and workers, untimed by the figures): its time and the workers."""
    system = systems.parallel
    await system.start()
    try:
        session = await system.new_session()
        try:
            await run_once(session, parallel_cells.SETUP)
            first, round_trip = await parallel_cells.cell_value(session, parallel_cells.FIRST_USE)
            start_up = {
                "first_map_s": round(first["seconds"], 3),
                "first_map_round_trip_s": round(round_trip, 3),
                "workers": first["workers"],
            }
            if first["workers"] != 2:
                raise RuntimeError(f"the session has {first['workers']} Dask workers, not 2")
            yield session, start_up
        finally:
            await session.close()
    finally:
        await system.stop()


def timed(turns: list[tuple[dict[str, Any], float]]) -> dict[str, Any]:
    """Seconds timed in the cell (the figure) and the cell's round trip through cellbus."""
    return {
        **measure.summarize([value["seconds"] for value, _ in turns], keep=True),
        "round_trip": measure.summarize(latency for _, latency in turns),
    }


async def parallel_speedup(systems: Systems, sizes: Sizes) -> dict[str, Any]:
    """`parallel_tasks` CPU-bound tasks (a pure Python loop counted once to take
    `parallel_task_ms` of CPU) in one cellbus session: ``parallel.map(busy, range(N))`` on
    its two Dask workers against ``[busy(i) for i in range(N)]`` in the session itself, in
    turns, each timed inside the cell. The speedup is serial / parallel; the figures of the
    target are tasks per second (its ratio is the speedup of the medians)."""
    tasks = sizes.parallel_tasks
    async with parallel_session(systems) as (session, start_up):
        seconds = sizes.parallel_task_ms / 1000
        calibration, _ = await parallel_cells.cell_value(
            session, parallel_cells.CALIBRATE.format(seconds=seconds)
        )
        sides = [
            Cell("cellbus", parallel_cells.PARALLEL_BUSY.format(tasks=tasks)),
            Cell("serial", parallel_cells.SERIAL_BUSY.format(tasks=tasks)),
        ]
        # untimed: the workers' first busy tasks (the function's first trip to them)
        await parallel_cells.cell_value(session, parallel_cells.PARALLEL_BUSY.format(tasks=2))

        async def turn(cell: Cell) -> tuple[dict[str, Any], float]:
            return await parallel_cells.cell_value(session, cell.code)

        turns = await in_turns(sides, sizes.parallel_turns, turn)
    results = {name: timed(v) for name, v in turns.items()}
    for figures in results.values():
        figures["tasks_per_s"] = round(tasks / (figures["p50_ms"] / 1000), 3)
    per_turn = [
        serial[0]["seconds"] / parallel[0]["seconds"]
        for parallel, serial in zip(turns["cellbus"], turns["serial"], strict=True)
    ]
    return {
        "params": {
            "busy_tasks": tasks,
            "task_ms": sizes.parallel_task_ms,
            "turns": sizes.parallel_turns,
            "workers": "2 Dask workers of 1 thread, on this kernel worker "
            f"({', '.join(f'{k}={v}' for k, v in parallel_cells.PARALLEL_ENV.items())})",
            "cellbus": f"parallel.map(busy, range({tasks})) in a session (session.execute)",
            "serial": f"[busy(i) for i in range({tasks})] in the same session",
            "busy": "a pure Python loop of `iterations` steps, counted once in the session "
            "(the fastest of three runs of a million steps, in CPU time)",
            "timed": "inside the cell, around the map or the list alone (perf_counter), after "
            "the session's first map (start-up) and one untimed map of 2 busy tasks",
        },
        "results": results,
        "speedup": {
            "of_medians": round(results["serial"]["p50_ms"] / results["cellbus"]["p50_ms"], 3),
            "per_turn": [round(s, 3) for s in per_turn],
        },
        "calibration": {
            "iterations": calibration["iterations"],
            "one_task_s": round(calibration["one_task_s"], 4),
        },
        "start_up": start_up,
    }


async def parallel_overhead(systems: Systems, sizes: Sizes) -> dict[str, Any]:
    """`overhead_tasks` trivial tasks (``inc(x) = x + 1``): ``parallel.map(inc, range(N))``
    in a cellbus session (its progress display on, as users run it) against plain Dask
    (`dask_peer.py`: a ``LocalCluster`` of two single-threaded worker processes,
    ``client.gather(client.map(inc, range(N), pure=False))``), in turns, each timed around
    the map in its own process; the figure is the median's time per task."""
    tasks = sizes.overhead_tasks
    peer = parallel_cells.DaskPeer(systems.parallel.workdir)
    try:
        async with parallel_session(systems) as (session, start_up):
            cell = Cell("cellbus", parallel_cells.PARALLEL_INC.format(tasks=tasks))
            await peer.start()
            if peer.ready["workers"] != 2:
                raise RuntimeError(f"the Dask peer has {peer.ready['workers']} workers, not 2")
            await parallel_cells.cell_value(session, cell.code)  # untimed, as the peer's
            await peer.map(tasks)

            async def turn(side: Cell | parallel_cells.DaskPeer) -> tuple[dict[str, Any], float]:
                if isinstance(side, parallel_cells.DaskPeer):
                    return {"seconds": await side.map(tasks)}, math.nan
                return await parallel_cells.cell_value(session, side.code)

            turns = await in_turns([cell, peer], sizes.overhead_trials, turn)
    finally:
        await peer.stop()
    results: dict[str, Any] = {
        "cellbus": timed(turns["cellbus"]),
        "dask": measure.summarize([value["seconds"] for value, _ in turns["dask"]], keep=True),
    }
    for figures in results.values():
        figures["per_task_us"] = round(figures["p50_ms"] * 1000 / tasks, 2)
    return {
        "params": {
            "trivial_tasks": tasks,
            "trials": sizes.overhead_trials,
            "cellbus": f"parallel.map(inc, range({tasks})) (progress=True, the default) in a "
            "session (session.execute), 2 Dask workers of 1 thread on this kernel worker, "
            "TLS between them and the session's scheduler",
            "dask": "plain Dask in a Python process of its own: LocalCluster(n_workers=2, "
            "threads_per_worker=1, processes=True, dashboard_address=None), "
            f"client.gather(client.map(inc, range({tasks}), pure=False)), plain TCP",
            "timed": "inside the process that maps (the cell, the peer), around the map "
            "alone, after one untimed map of the same size on each side",
        },
        "results": results,
        "start_up": {**start_up, "dask_cluster_s": round(peer.ready["start_s"], 3)},
    }


# -- 12. capacity (issue 20) -----------------------------------------------------------------


async def capacity(systems: Systems, sizes: Sizes) -> dict[str, Any]:
    """1,000 live sessions on two kernel workers, 10,000 watchers over four web processes,
    10,000 hibernated sessions and their restores, on a cellbus of its own on Redis and
    PostgreSQL (`capacity`, which uses this module's helpers: imported here, not above)."""
    from . import capacity as workload

    return await workload.capacity(systems, sizes)


BROWSER_WORKLOADS = ("keystrokes", "notebook_open")
FILE_WORKLOADS = ("files", "files_bus")

WORKLOADS: dict[str, Callable[[Systems, Sizes], Awaitable[dict[str, Any]]]] = {
    "memory": memory,  # first: the services' own memory before any feed has grown
    "session_start": session_start,
    "exec_round_trip": exec_round_trip,
    "channels_round_trip": channels_round_trip,
    "throughput": throughput,
    "stream": stream,
    "fanout": fanout,
    "cellbus_modes": cellbus_modes,
    "keystrokes": keystrokes,
    "notebook_open": notebook_open,
    "files": file_transfers,
    "files_bus": files_bus,
    "parallel_speedup": parallel_speedup,
    "parallel_overhead": parallel_overhead,
    "capacity": capacity,
}


def sizes_record(sizes: Sizes) -> dict[str, Any]:
    return asdict(sizes)
