"""The capacity plan (bench/cellbus_bench/capacity_plan.py, docs/scaling.md): it reads the
capacity workload's results as the bench writes them and sizes each tier from them."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench.cellbus_bench import capacity_plan
from bench.cellbus_bench.capacity_plan import Costs, Load, simulate


def memory(pss_total: float, processes: int) -> dict[str, Any]:
    return {
        "processes": processes,
        "pss_mib_total": pss_total,
        "pss_mib_mean": pss_total / processes,
    }


def results(session_mib: float = 8.0, hibernated_bytes: float = 10_000.0) -> dict[str, Any]:
    """A results document with the capacity workload's figures (the shape the bench writes)."""
    summary = {"n": 10, "p50_ms": 20.0, "p90_ms": 25.0, "p99_ms": 30.0}
    return {
        "workloads": {
            "capacity": {
                "results": {
                    "live": {
                        "cellbus": {
                            "sessions": 1000,
                            "idle_cpu_cores": 0.1,
                            "redis_mib": 10.0,
                            "memory": {
                                "sessions": memory(session_mib * 1000, 1000),
                                "kernel_workers": memory(60.0, 2),
                                "templates": memory(40.0, 2),
                                "web": memory(240.0, 4),
                                "accounts": memory(30.0, 1),
                            },
                        },
                        "active": {
                            "cellbus_per_execution": {
                                "web_cpu_ms": 1.0,
                                "accounts_cpu_ms": 0.5,
                                "kernel_cpu_ms": 1.0,
                                "sessions_cpu_ms": 0.5,
                                "redis_cpu_ms": 0.2,
                                "redis_commands": 20.0,
                            },
                        },
                    },
                    "hibernated": {
                        "cellbus": {
                            "sessions": 10_000,
                            "redis_mib": hibernated_bytes * 10_000 / 2**20,
                            "kernel_cpu_ms_per_restore": 40.0,
                            "restore_result": summary,
                        }
                    },
                    "watchers": {
                        "cellbus": {
                            "opened": 10_000,
                            "web_pss_kib_per_socket": 20.0,
                            "web_cpu_us_per_delivery": 30.0,
                        }
                    },
                }
            }
        }
    }


def test_costs_are_read_per_operation() -> None:
    costs = Costs.from_results(results())
    assert costs.session_mib == 8.0
    assert costs.kernel_worker_mib == 50.0  # a worker and its template
    assert costs.idle_cores_per_session == pytest.approx(0.0001)
    assert costs.hibernated_redis_bytes == pytest.approx(10_000)
    assert costs.live_redis_bytes == pytest.approx(10 * 2**20 / 1000)
    assert costs.exec_cpu_ms == {"web": 1.0, "accounts": 0.5, "kernel": 1.0, "sessions": 0.5}
    assert costs.restore_p50_ms == 20.0


def test_the_issue_s_load_gets_every_tier_and_a_bottleneck() -> None:
    plan = simulate(Costs.from_results(results()), Load())
    assert set(plan.tiers) == {"kernel", "web", "accounts", "redis"}
    assert plan.load["hibernated"] == 1_950_000  # 2 sessions per user, 50,000 running
    assert plan.rates["executions_per_s"] == pytest.approx(50_000 / 30, abs=0.1)
    kernel = plan.tiers["kernel"]
    # 50,000 sessions of 8 MiB on nodes of 24 GiB used to 70%: memory needs 24 of them
    assert kernel.nodes >= math.ceil(50_000 * 8 / 1024 / (24 * 0.7))
    for tier in plan.tiers.values():
        assert tier.nodes >= 1 and tier.headroom >= 1.0  # each sized for its busiest second
    assert plan.tiers["redis"].nodes % 2 == 0  # a replica per shard
    assert plan.bottleneck == min(plan.tiers, key=lambda t: plan.tiers[t].headroom)


def test_more_load_or_dearer_sessions_never_need_fewer_nodes() -> None:
    costs = Costs.from_results(results())
    base = simulate(costs, Load())
    busier = simulate(costs, Load(running=100_000, users=2_000_000))
    for name in base.tiers:
        assert busier.tiers[name].nodes >= base.tiers[name].nodes
    # with no CPU of the user's own, the kernel tier is sized by its sessions' memory
    light = simulate(costs, Load(cell_cpu_ms=0.0))
    dearer = simulate(Costs.from_results(results(session_mib=16.0)), Load(cell_cpu_ms=0.0))
    assert light.tiers["kernel"].bound_by == "memory"
    assert dearer.tiers["kernel"].nodes > light.tiers["kernel"].nodes
    bigger = simulate(Costs.from_results(results(hibernated_bytes=200_000.0)), Load())
    assert bigger.tiers["redis"].memory_gib > base.tiers["redis"].memory_gib


def test_the_simulation_is_repeatable_and_one_machine_is_bounded() -> None:
    costs = Costs.from_results(results())
    first, again = simulate(costs, Load(), seed=7), simulate(costs, Load(), seed=7)
    assert dataclasses.asdict(first) == dataclasses.asdict(again)
    one = first.one_machine
    assert one["live_sessions"] == min(
        one["live_sessions_by_memory"], one["live_sessions_by_idle_cpu"]
    )
    # 24 GiB at 70%, less the services, over 8 MiB a session
    assert 1500 < one["live_sessions_by_memory"] < 24 * 1024 * 0.7 / 8


def test_the_command_reads_a_results_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "capacity.json"
    path.write_text(json.dumps(results()))
    assert capacity_plan.main([str(path), "--running", "20000", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["load"]["running"] == 20_000 and plan["bottleneck"] in plan["tiers"]
    assert capacity_plan.main([str(path), "--node-cores", "16", "--node-memory-gib", "64"]) == 0
    assert "First bottleneck" in capsys.readouterr().out
