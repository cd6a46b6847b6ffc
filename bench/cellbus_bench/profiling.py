"""``--profile``: sample cellbus with py-spy while each workload runs, and sum the samples up.

py-spy (``pip install py-spy``; found on PATH, beside this Python, or at ``$PY_SPY``) records
the ``cellbus serve`` process and its session processes (``--subprocesses``) into collapsed
stacks (``profile-<workload>.txt``, which speedscope opens). It samples only the thread that
holds the GIL (``--gil``): Python's CPU work, not threads waiting (py-spy's own idle detection
counts blocked reads as work here), so the turns of the other system add nothing. System
calls made without the GIL are missed: compare with the CPU times the throughput workload
reads from /proc. `summarize` turns the stacks into the tables the docs quote: per process,
the share of samples by component (the innermost cellbus package on the stack), and the
functions that take the most samples by themselves (self) and with what they call
(inclusive).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

RATE = 200  # samples per second


def find_py_spy() -> str:
    candidates = [
        os.environ.get("PY_SPY"),
        shutil.which("py-spy"),
        str(Path(sys.executable).with_name("py-spy")),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    raise SystemExit("--profile needs py-spy: pip install py-spy (or set PY_SPY)")


class Profiler:
    """py-spy attached to one process (and its children) for the length of a `with`."""

    def __init__(self, py_spy: str, pid: int, output: Path) -> None:
        self.py_spy = py_spy
        self.pid = pid
        self.output = output
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Profiler:
        self.process = await asyncio.create_subprocess_exec(
            self.py_spy,
            "record",
            "--pid",
            str(self.pid),
            "--subprocesses",
            "--gil",
            "--rate",
            str(RATE),
            "--format",
            "raw",
            "--output",
            str(self.output),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await asyncio.sleep(0.5)  # attached before the workload starts
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)  # py-spy writes its file and exits
        try:
            async with asyncio.timeout(30):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


_PROCESS = re.compile(r'^process (\d+):"([^"]*)"')


def _frame_name(frame: str) -> str:
    """``handle (cellbus_web/ws.py:120)`` -> ``handle (cellbus_web/ws.py)``: one row per
    function, whatever line of it was running."""
    return re.sub(r":\d+\)$", ")", frame.strip())


def _short(path_frame: str) -> str:
    return re.sub(r"\((?:[^()]*/)?(site-packages|lib/python3\.\d+)/", "(", path_frame)


COMPONENTS = (
    ("cellbus_accounts/store/", "accounts: the store (SQLite/PostgreSQL)"),
    ("cellbus_accounts/", "accounts: the service"),
    ("cellbus_web/feeds.py", "web: feeds to sockets"),
    ("cellbus_web/ws.py", "web: feeds to sockets"),
    ("cellbus_web/", "web: JSON-RPC"),
    ("cellbus_kernel/", "kernel worker"),
    ("cellbus_protocol/bus/", "the bus"),
    ("cellbus_protocol/", "protocol (messages, codec, clients)"),
    ("aiohttp/", "aiohttp (HTTP, WebSocket)"),
    ("IPython/", "IPython"),
)


def _component(names: list[str]) -> str:
    """Who a sample is spent for: the innermost frame of a known package, by `COMPONENTS`."""
    for name in reversed(names):
        for prefix, component in COMPONENTS:
            if f"({prefix}" in name:
                return component
    return "event loop and threads (no cellbus frame)"


def summarize(path: Path, top: int = 12) -> dict[str, Any]:
    """Samples per process kind, and each kind's top functions by self and inclusive share."""
    selfs: dict[str, Counter[str]] = defaultdict(Counter)
    inclusive: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    components: dict[str, Counter[str]] = defaultdict(Counter)
    if not path.exists():
        return {"error": f"py-spy wrote no {path.name}"}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        kind = "other"
        processes = [(i, found) for i, f in enumerate(frames) if (found := _PROCESS.match(f))]
        if processes:  # the innermost process: children are nested under their parents
            innermost, found = processes[-1]
            command = found.group(2)
            kind = (
                "session process"
                if "cellbus_kernel.template" in command
                else "cellbus serve"
                if "serve" in command
                else command[:60]
            )
            frames = frames[innermost + 1 :]
        frames = [f for f in frames if not f.startswith("thread ")]
        if not frames:
            continue
        names = [_short(_frame_name(f)) for f in frames]
        totals[kind] += count
        selfs[kind][names[-1]] += count
        for name in set(names):
            inclusive[kind][name] += count
        components[kind][_component(names)] += count
    out: dict[str, Any] = {"rate_per_s": RATE, "processes": {}}
    for kind, total in totals.most_common():
        out["processes"][kind] = {
            "samples": total,
            "cpu_seconds": round(total / RATE, 2),
            "by_component": [
                [name, round(100 * n / total, 1)] for name, n in components[kind].most_common()
            ],
            "self": [[name, round(100 * n / total, 1)] for name, n in selfs[kind].most_common(top)],
            "inclusive": [
                [name, round(100 * n / total, 1)] for name, n in inclusive[kind].most_common(top)
            ],
        }
    return out


def render(summary: dict[str, Any]) -> str:
    """The summary as text: per process kind, its top functions with their shares (%)."""
    lines = []
    for kind, data in summary.get("processes", {}).items():
        lines.append(f"{kind}: {data['samples']} samples ({data['cpu_seconds']} s of CPU)")
        for label in ("by_component", "self", "inclusive"):
            lines.append(f"  top by {label}:")
            lines += [f"    {share:5.1f}%  {name}" for name, share in data[label]]
    return "\n".join(lines) + "\n"
