"""The parallel cells workloads' parts (`cellbus.parallel`): a cellbus with its Dask workers
capped, the code its cells run, and plain Dask as the per-task overhead's peer.

`ParallelCellbus` is ``cellbus serve`` as `CellbusSystem` starts it, with its own data folder
and the kernel worker's parallel settings (`PARALLEL_ENV`: two Dask workers on this
machine's two cores, two per session), started only for these workloads. `DaskPeer` is
`dask_peer.py` in a process of its own: ``distributed.LocalCluster`` with two single-threaded
worker processes. Each figure is timed inside the process that runs the map (the cell, the
peer), around the map alone; the cell's round trip through cellbus is kept beside it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from .systems import (
    ROOT,
    START_TIMEOUT,
    VENV_BIN,
    CellbusSystem,
    Session,
    free_port,
    wait_for_http,
)

PARALLEL_ENV = {"CELLBUS_PARALLEL_CORES": "2", "CELLBUS_PARALLEL_MAX_WORKERS": "2"}
PEER_TIMEOUT = 120.0

SETUP = """
import json, time
from cellbus import parallel

def inc(x):
    return x + 1

def loop(n):
    x = 0
    for k in range(n):
        x += k
    return x
"""
"""What every parallel cells session defines first: the trivial task and the busy loop."""

FIRST_USE = """
_clock = time.perf_counter()
_out = parallel.map(inc, range(4))
_first = time.perf_counter() - _clock
assert _out == [1, 2, 3, 4], _out
print(json.dumps({"seconds": _first, "workers": parallel.workers()}))
"""
"""The session's first map: starts its scheduler and asks for its workers (untimed by the
figures; its time is the start-up, reported for information)."""

CALIBRATE = """
_n = 1_000_000
_times = []
for _ in range(3):
    _clock = time.process_time()
    loop(_n)
    _times.append(time.process_time() - _clock)
ITERATIONS = max(1, int(_n * {seconds} / min(_times)))

def busy(i, n=ITERATIONS):
    loop(n)
    return i

_clock = time.perf_counter()
busy(0)
print(json.dumps({{"iterations": ITERATIONS, "one_task_s": time.perf_counter() - _clock}}))
"""
"""The busy task: a pure Python loop of `ITERATIONS` steps, counted once in the session so
that one task takes about ``{seconds}`` of CPU; the same count on every turn and both sides."""

PARALLEL_BUSY = """
_clock = time.perf_counter()
_out = parallel.map(busy, range({tasks}))
_seconds = time.perf_counter() - _clock
assert _out == list(range({tasks})), _out
print(json.dumps({{"seconds": _seconds, "workers": parallel.workers()}}))
"""

SERIAL_BUSY = """
_clock = time.perf_counter()
_out = [busy(i) for i in range({tasks})]
_seconds = time.perf_counter() - _clock
assert _out == list(range({tasks})), _out
print(json.dumps({{"seconds": _seconds}}))
"""

PARALLEL_INC = """
_clock = time.perf_counter()
_out = parallel.map(inc, range({tasks}))
_seconds = time.perf_counter() - _clock
assert _out == list(range(1, {tasks} + 1))
print(json.dumps({{"seconds": _seconds, "workers": parallel.workers()}}))
"""
"""The overhead's cellbus side, with the progress display on (``progress=True``, the
default, as users run it)."""


async def cell_value(session: Session, code: str) -> tuple[dict[str, Any], float]:
    """Run `code`, whose last line of stdout is JSON: that JSON, and the run's round trip
    (from the request to its reply and idle status, seconds)."""
    run = await (await session.send(code)).wait()
    if run.status != "ok":
        raise RuntimeError(f"the cell ended with status {run.status!r}:\n{code}\n{run.stdout}")
    lines = run.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"the cell printed nothing:\n{code}")
    value: dict[str, Any] = json.loads(lines[-1])
    return value, run.latency


class ParallelCellbus(CellbusSystem):
    """``cellbus serve`` with `PARALLEL_ENV`, in a data folder of its own."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.data = workdir / "cellbus-parallel-data"

    def _start_program(self) -> str:  # CellbusSystem's, with the parallel settings
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CELLBUS_")}
        env.update(
            CELLBUS_PORT=str(port),
            CELLBUS_DATA_DIR=str(self.data),
            CELLBUS_SESSIONS_DIR=str(self.workdir / "cellbus-parallel-sessions"),
            **PARALLEL_ENV,
        )
        env["PYTHONSAFEPATH"] = "1"
        log = self.workdir / "cellbus-parallel.log"
        self._log = open(log, "wb")  # closed in stop()
        self.process = subprocess.Popen(
            [str(VENV_BIN / "cellbus"), "serve"], env=env, stdout=self._log, stderr=self._log
        )
        url = f"http://127.0.0.1:{port}"
        wait_for_http(url + "/healthz", self.process, log, START_TIMEOUT)
        return url


class DaskPeer:
    """`dask_peer.py`: plain Dask (``LocalCluster``, two single-threaded worker processes)
    in a Python process of its own."""

    name = "dask"

    def __init__(self, workdir: Path) -> None:
        self.log = workdir / "dask-peer.log"
        self.process: asyncio.subprocess.Process | None = None
        self.ready: dict[str, Any] = {}

    async def start(self) -> None:
        with self.log.open("wb") as log:  # the child keeps its own descriptor
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-P", "-m", "bench.cellbus_bench.dask_peer",
                cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=log, env={**os.environ, "PYTHONPATH": str(ROOT)},
            )  # fmt: skip
        self.ready = await self._answer()

    async def _answer(self) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        async with asyncio.timeout(PEER_TIMEOUT):
            line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"dask_peer.py ended:\n{self.log.read_text(errors='replace')}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def map(self, n: int) -> float:
        """Seconds for ``client.gather(client.map(inc, range(n), pure=False))``."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": "map", "n": n}).encode() + b"\n")
        await self.process.stdin.drain()
        seconds: float = (await self._answer())["seconds"]
        return seconds

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.stdin is None:
            return
        if process.returncode is None:
            process.stdin.write(b'{"op": "stop"}\n')
            process.stdin.close()
        try:
            async with asyncio.timeout(30):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
