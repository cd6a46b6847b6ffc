"""The benchmark program (bench/cellbus_bench) runs and writes well-formed results.

Benchmarks are a program, not timed tests: nothing here judges a figure. This runs the
smallest size (``--smoke``: every workload, briefly, against cellbus and Jupyter) as ``make
bench`` runs the full one, and checks the shape of what it writes. The first run makes the
Jupyter environment (bench/.jupyter-venv, from PyPI); later runs reuse it. Workload 7 needs
the real Redis and PostgreSQL, which `make test` starts.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = {
    "memory", "session_start", "exec_round_trip", "channels_round_trip", "throughput", "stream",
    "fanout", "cellbus_modes", "parallel_speedup", "parallel_overhead", "capacity",
}  # fmt: skip
SUMMARY = {"n", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms"}

pytestmark = pytest.mark.timeout(300)  # the first test runs the bench (and may make its venv)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("bench")
    run = subprocess.run(
        [sys.executable, "-m", "bench.cellbus_bench", "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert run.returncode == 0, f"the bench failed:\n{run.stderr[-6000:]}"
    files = list(out.glob("*-smoke.json"))
    assert len(files) == 1, list(out.iterdir())
    return json.loads(files[0].read_text()), out


def is_summary(value: dict[str, Any]) -> bool:
    return SUMMARY <= value.keys() and value["n"] > 0 and value["p50_ms"] > 0


def test_every_workload_runs_on_both_systems(results: tuple[dict[str, Any], Path]) -> None:
    document, _ = results
    assert document["size"] == "smoke"
    assert set(document["workloads"]) == WORKLOADS
    failed = {k: w["error"] for k, w in document["workloads"].items() if "error" in w}
    assert not failed, failed
    w = {k: v["results"] for k, v in document["workloads"].items()}
    assert is_summary(w["session_start"]["cellbus"]) and is_summary(w["session_start"]["jupyter"])
    for system in ("cellbus", "jupyter", "jupyter-zmq"):
        rtt = w["exec_round_trip"][system]
        assert is_summary(rtt) and len(rtt["samples_ms"]) == rtt["n"]
    for system in ("cellbus", "jupyter"):  # the same client on both /api/kernels
        assert is_summary(w["channels_round_trip"][system])
    for phase in ("outstanding_1", "queued_16"):
        for system in ("cellbus", "jupyter"):
            figure = w["throughput"][phase][system]
            assert figure["executions_per_s"] > 0 and is_summary(figure["latency"])
            assert set(figure["cpu_ms_per_execution"]) == {"services", "sessions", "client"}
    for system in ("cellbus", "jupyter"):
        assert w["stream"][system]["every_line_arrived"] is True
        assert w["memory"][system]["sessions"]["processes"] == document["sizes"]["memory_sessions"]
        assert w["memory"][system]["sessions"]["pss_mib_mean"] > 0
        assert w["memory"][system]["services"]["processes"] >= 1
    assert set(w["fanout"]) == {str(n) for n in document["sizes"]["fanout"]}
    for figures in w["fanout"].values():
        assert all(is_summary(figures[s]) for s in ("cellbus", "jupyter"))
    assert is_summary(w["cellbus_modes"]["one_program"])
    assert is_summary(w["cellbus_modes"]["services_redis"])
    for side in ("cellbus", "serial"):  # parallel.map against the same tasks run serially
        assert is_summary(w["parallel_speedup"][side])
        assert w["parallel_speedup"][side]["tasks_per_s"] > 0
    for side in ("cellbus", "dask"):  # parallel.map against plain Dask
        assert is_summary(w["parallel_overhead"][side])
        assert w["parallel_overhead"][side]["per_task_us"] > 0
    for name in ("parallel_speedup", "parallel_overhead"):
        assert document["workloads"][name]["start_up"]["workers"] == 2


def test_capacity_holds_every_session_and_watcher_it_was_given(
    results: tuple[dict[str, Any], Path],
) -> None:
    """Issue 20's workload: live sessions on two kernel workers, watchers, hibernated ones."""
    document, _ = results
    sizes, capacity = document["sizes"], document["workloads"]["capacity"]["results"]
    live = capacity["live"]
    assert live["cellbus"]["sessions"] == sizes["capacity_live"]
    assert sum(live["cellbus"]["per_worker"]) == sizes["capacity_live"]
    assert len(live["cellbus"]["per_worker"]) == 2  # two kernel workers
    assert live["jupyter"]["sessions"] == sizes["capacity_jupyter_live"]
    for system in ("cellbus", "jupyter"):
        assert live[system]["sessions_per_gib"] > 0 and is_summary(live["active"][system])
    watchers = capacity["watchers"]["cellbus"]
    assert watchers["opened"] == sizes["capacity_watchers"]
    assert watchers["every_watcher_had_it"] is True
    assert is_summary(watchers["time_until_all"])
    hibernated = capacity["hibernated"]["cellbus"]
    assert hibernated["sessions"] == sizes["capacity_hibernated"]
    assert hibernated["session_processes_left"] == 0
    assert hibernated["restored_wrong"] == []  # each restore answered with its own label
    assert is_summary(hibernated["restore_result"])


def test_the_record_names_machine_versions_and_targets(
    results: tuple[dict[str, Any], Path],
) -> None:
    document, out = results
    assert document["machine"]["cpus"] >= 1 and document["machine"]["cpu"]
    assert document["versions"]["jupyter"]["jupyter_server"] == "2.21.1"
    assert document["versions"]["jupyter"]["ipykernel"] == "7.4.0"
    assert document["versions"]["cellbus"]["python"]
    assert len(document["git"]["commit"]) == 40
    targets = {t["name"]: t for t in document["targets"]}
    # eight, issue 16's round trip through the channels, the parallel cells' two and
    # issue 20's capacity two
    assert len(targets) == 13
    for target in targets.values():
        if target["workload"] == "fanout":  # the smoke size has no 100 subscribers
            continue
        if not target["versus"]:  # a bound on cellbus's own figure (the restore's p50)
            assert target["ratio"] is None and math.isfinite(target["cellbus"]), target
        else:
            assert math.isfinite(target["ratio"]) and target["ratio"] > 0, target
        assert target["met"] in (True, False)
    for name in document["files"].values():
        assert (out / name).stat().st_size > 0
    table = (out / document["files"]["md"]).read_text()
    assert "| Target | cellbus | Jupyter | ratio | target |" in table
    assert (out / document["files"]["png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
