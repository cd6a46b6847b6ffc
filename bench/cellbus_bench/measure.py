"""What the workloads measure with: percentiles, process memory, and the machine itself."""

from __future__ import annotations

import math
import os
import platform
import re
import resource
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PERCENTILES = (50, 90, 99)


def percentile(sorted_values: list[float], p: float) -> float:
    """The `p`th percentile of sorted values, interpolated linearly (numpy's default)."""
    if not sorted_values:
        return math.nan
    rank = (len(sorted_values) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def summarize(samples: Iterable[float], *, keep: bool = False) -> dict[str, Any]:
    """n, p50/p90/p99, mean, min and max of `samples` (seconds, given in milliseconds);
    with `keep`, the samples themselves too (``samples_ms``)."""
    values = sorted(samples)
    ms = [v * 1000 for v in values]
    summary: dict[str, Any] = {"n": len(ms)}
    for p in PERCENTILES:
        summary[f"p{p}_ms"] = round(percentile(ms, p), 3)
    summary["mean_ms"] = round(sum(ms) / len(ms), 3) if ms else math.nan
    summary["min_ms"] = round(ms[0], 3) if ms else math.nan
    summary["max_ms"] = round(ms[-1], 3) if ms else math.nan
    if keep:
        summary["samples_ms"] = [round(v, 3) for v in ms]
    return summary


def median(values: Iterable[float]) -> float:
    return percentile(sorted(values), 50)


class Stopwatch:
    """perf_counter since it was made (or last restarted)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


# -- memory ------------------------------------------------------------------------------


def memory_of(pid: int) -> dict[str, int]:
    """PSS and RSS of process `pid` in KiB, from /proc/PID/smaps_rollup."""
    text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    fields = dict(re.findall(r"^(\w+):\s+(\d+) kB", text, re.MULTILINE))
    return {"pss_kib": int(fields["Pss"]), "rss_kib": int(fields["Rss"])}


def children_of(pid: int) -> list[int]:
    """The live child processes of `pid` (from /proc/*/stat)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(entry.name))
    return sorted(children)


def forked_by(templates: list[int]) -> tuple[list[int], list[int]]:
    """The children of kernel templates: (session processes, spares). A spare, forked ahead
    for the next session, is named `SPARE_NAME` until it has one: it counts with the
    services, not as a session."""
    from cellbus_kernel.isolation import SPARE_NAME  # here: not every bench process has it

    sessions: list[int] = []
    spares: list[int] = []
    for pid in (child for template in templates for child in children_of(template)):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue  # gone meanwhile
        (spares if name == SPARE_NAME else sessions).append(pid)
    return sessions, spares


def cmdline_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def memory_summary(pids: list[int]) -> dict[str, Any]:
    """Per process and in total, PSS and RSS in MiB of `pids` (read at once, as a set)."""
    per = [memory_of(pid) for pid in pids]
    pss = [m["pss_kib"] / 1024 for m in per]
    rss = [m["rss_kib"] / 1024 for m in per]
    return {
        "processes": len(pids),
        "pss_mib_each": [round(v, 2) for v in pss],
        "rss_mib_each": [round(v, 2) for v in rss],
        "pss_mib_mean": round(sum(pss) / len(pss), 2) if pss else 0.0,
        "rss_mib_mean": round(sum(rss) / len(rss), 2) if rss else 0.0,
        "pss_mib_total": round(sum(pss), 2),
        "rss_mib_total": round(sum(rss), 2),
    }


def cpu_seconds(pids: Iterable[int]) -> float:
    """User and system CPU time of `pids` so far (live processes only)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


class CpuUse:
    """CPU seconds used while a `with` runs: by a system's services, by its session
    processes (those alive at the end; one started meanwhile counts from its start), and by
    this benchmark program, the client of both systems."""

    def __init__(self, system: Any) -> None:
        self.system = system
        self.seconds: dict[str, float] = {}

    def _now(self) -> tuple[dict[int, float], dict[int, float], float]:
        me = resource.getrusage(resource.RUSAGE_SELF)
        services = {p: cpu_seconds([p]) for p in self.system.service_pids()}
        sessions = {p: cpu_seconds([p]) for p in self.system.session_pids()}
        return services, sessions, me.ru_utime + me.ru_stime

    def __enter__(self) -> CpuUse:
        self._start = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        services, sessions, client = self._now()
        services_before, sessions_before, client_before = self._start

        def used(now: dict[int, float], before: dict[int, float]) -> float:
            return sum(t - before.get(p, 0.0) for p, t in now.items())

        self.seconds = {
            "services": used(services, services_before),
            "sessions": used(sessions, sessions_before),
            "client": client - client_before,
        }


def cpu_per(turns: list[dict[str, float]], executions: int) -> dict[str, float]:
    """Milliseconds of CPU per execution, by whom, over `turns` of `CpuUse.seconds`."""
    if not executions:
        return {}
    return {k: round(1000 * sum(t[k] for t in turns) / executions, 3) for k in turns[0]}


# -- the machine -------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text()
    total = re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE)
    return {
        "cpu": model.group(1).strip() if model else platform.processor(),
        "cpus": os.cpu_count(),
        "memory_gib": round(int(total.group(1)) / 1024 / 1024, 1) if total else None,
        "kernel": platform.release(),
        "system": platform.platform(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }


def git_revision(root: Path) -> dict[str, Any]:
    """The checkout's commit and whether it has uncommitted changes."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )
        return result.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
