"""A deployment for many users, sized from the capacity workload's measured costs
(docs/scaling.md).

    .venv/bin/python -m bench.cellbus_bench.capacity_plan bench/results/2026-12-05-capacity.json
        [--users 1000000] [--running 50000] [--cell-cpu-ms 100] [--json]

`Costs.from_results` reads what one run of the ``capacity`` workload measured: a live
session's memory, a kernel worker's, the idle CPU of live sessions, the CPU each tier spent
per execution, the Redis commands and bytes per execution and per session (live and
hibernated), a restore's kernel CPU, a watcher socket's memory and the web CPU per delivered
message. `Load` holds the assumptions about use, each an option (how often a running session
runs a cell, how many sockets watch it, how long it runs before it hibernates again, how
much CPU the user's own code takes). `simulate` draws, second by second for `seconds`
seconds, the executions, restores and deliveries of that load (Poisson, seeded), turns them
into each tier's demand with the measured costs, and sizes every tier for its busiest
second (the p99 second) at `Node.cpu_target` of its cores and for its memory at
`Node.memory_target`. Redis runs one core per shard (it is single-threaded), so its shards
are sized by memory and by CPU, with a replica each. What a tier's nodes could take before
the first of their resources runs out, over the load planned, is its headroom; the tier
with the least is the first bottleneck.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MESSAGES_PER_EXECUTION = 5  # 1+1: busy, execute_input, execute_result, execute_reply, idle
TIERS = ("kernel", "web", "accounts", "redis")


@dataclass(frozen=True)
class Costs:
    """Per-operation costs, as measured by one run (`from_results`)."""

    session_mib: float  # a live idle session's own process, PSS
    kernel_worker_mib: float  # a kernel worker and its template, PSS
    idle_cores_per_session: float  # everything's CPU with live sessions idle, per session
    exec_cpu_ms: dict[str, float]  # per execution, by tier: web, accounts, kernel, sessions
    redis_cpu_ms_per_execution: float
    redis_commands_per_execution: float
    live_redis_bytes: float  # per live session (feed, checkpoint, queue, lease...)
    hibernated_redis_bytes: float  # per hibernated session (checkpoint and feed)
    restore_kernel_cpu_ms: float  # a restore and the hibernation after it
    web_process_mib: float
    accounts_process_mib: float
    socket_kib: float  # a watcher's WebSocket, in the web process
    delivery_us: float  # web CPU per message delivered to one socket
    restore_p50_ms: float
    sessions_measured: int = 0
    watchers_measured: int = 0

    @classmethod
    def from_results(cls, document: dict[str, Any]) -> Costs:
        r = document["workloads"]["capacity"]["results"]
        live, hib, watch = (
            r["live"]["cellbus"],
            r["hibernated"]["cellbus"],
            r["watchers"]["cellbus"],
        )
        memory = live["memory"]
        per_exec = r["live"]["active"]["cellbus_per_execution"]
        workers = memory["kernel_workers"]["processes"] or 1
        return cls(
            session_mib=memory["sessions"]["pss_mib_mean"],
            kernel_worker_mib=(
                memory["kernel_workers"]["pss_mib_total"] + memory["templates"]["pss_mib_total"]
            )
            / workers,
            idle_cores_per_session=live["idle_cpu_cores"] / live["sessions"],
            exec_cpu_ms={
                tier: per_exec.get(f"{tier}_cpu_ms", 0.0)
                for tier in ("web", "accounts", "kernel", "sessions")
            },
            redis_cpu_ms_per_execution=per_exec.get("redis_cpu_ms", 0.0),
            redis_commands_per_execution=per_exec.get("redis_commands", 0.0),
            live_redis_bytes=max(0.0, live["redis_mib"] * 2**20 / live["sessions"]),
            hibernated_redis_bytes=max(0.0, hib["redis_mib"] * 2**20 / hib["sessions"]),
            restore_kernel_cpu_ms=hib["kernel_cpu_ms_per_restore"],
            web_process_mib=memory["web"]["pss_mib_mean"],
            accounts_process_mib=memory["accounts"]["pss_mib_total"],
            socket_kib=max(0.0, watch["web_pss_kib_per_socket"]),
            delivery_us=watch["web_cpu_us_per_delivery"],
            restore_p50_ms=hib["restore_result"]["p50_ms"],
            sessions_measured=live["sessions"],
            watchers_measured=watch["opened"],
        )


@dataclass(frozen=True)
class Load:
    """What the users do: assumptions, not measurements."""

    users: int = 1_000_000
    running: int = 50_000  # sessions with a process at once
    sessions_per_user: float = 2.0  # every other session is hibernated (a checkpoint in Redis)
    exec_interval_s: float = 30.0  # a running session runs a cell this often, on average
    cell_cpu_ms: float = 100.0  # CPU of the user's own code per cell (the bench's 1+1: ~0)
    watchers_per_session: float = 1.5  # feed sockets per running session
    session_minutes: float = 30.0  # a session runs this long, then hibernates: restores/s

    @property
    def hibernated(self) -> int:
        return max(0, round(self.users * self.sessions_per_user) - self.running)


@dataclass(frozen=True)
class Node:
    """A machine of a tier: this one (2 cores, 24 GiB) unless told otherwise."""

    cores: int = 2
    memory_gib: float = 24.0
    cpu_target: float = 0.6  # the share of cores planned for (the rest: bursts, failover)
    memory_target: float = 0.7


@dataclass
class TierPlan:
    nodes: int
    cpu_cores_p99: float  # demand in the busiest second (p99 of the seconds)
    memory_gib: float
    bound_by: str  # "cpu" or "memory"
    headroom: float  # how many times the planned load its nodes take before one runs out
    notes: list[str] = field(default_factory=list)


@dataclass
class Plan:
    load: dict[str, Any]
    rates: dict[str, float]
    tiers: dict[str, TierPlan]
    bottleneck: str
    one_machine: dict[str, Any]
    postgres: dict[str, Any]


def _nodes(cpu: float, memory_gib: float, node: Node, cores: float | None = None) -> TierPlan:
    """Nodes for a CPU demand and a memory need; `cores` per node if not the node's."""
    per_cpu = (cores if cores is not None else node.cores) * node.cpu_target
    per_memory = node.memory_gib * node.memory_target
    by_cpu, by_memory = math.ceil(cpu / per_cpu), math.ceil(memory_gib / per_memory)
    nodes = max(1, by_cpu, by_memory)
    headroom = min(
        nodes * per_cpu / cpu if cpu else math.inf,
        nodes * per_memory / memory_gib if memory_gib else math.inf,
    )
    return TierPlan(
        nodes=nodes,
        cpu_cores_p99=round(cpu, 2),
        memory_gib=round(memory_gib, 2),
        bound_by="cpu" if by_cpu >= by_memory else "memory",
        headroom=round(headroom, 2),
    )


def simulate(
    costs: Costs, load: Load, node: Node = Node(), seconds: int = 600, seed: int = 1
) -> Plan:
    rng = np.random.default_rng(seed)
    exec_rate = load.running / load.exec_interval_s
    restore_rate = load.running / (load.session_minutes * 60)
    executions = rng.poisson(exec_rate, seconds).astype(float)
    restores = rng.poisson(restore_rate, seconds).astype(float)
    # each message of an execution goes to each of its session's sockets
    watchers = rng.poisson(load.watchers_per_session, (seconds, 64)).mean(axis=1)
    deliveries = executions * MESSAGES_PER_EXECUTION * watchers

    def p99(values: Any) -> float:
        return float(np.percentile(values, 99))

    ms = costs.exec_cpu_ms
    kernel_cpu = p99(
        load.running * costs.idle_cores_per_session
        + executions * (ms["kernel"] + ms["sessions"] + load.cell_cpu_ms) / 1000
        + restores * costs.restore_kernel_cpu_ms / 1000
    )
    web_cpu = p99(executions * ms["web"] / 1000 + deliveries * costs.delivery_us / 1e6)
    accounts_cpu = p99(executions * ms["accounts"] / 1000)
    redis_cpu = p99(executions * costs.redis_cpu_ms_per_execution / 1000)

    # kernel: the sessions' processes and one worker (with its template) per node
    kernel = _nodes(kernel_cpu, load.running * costs.session_mib / 1024, node)
    kernel_memory = (
        load.running * costs.session_mib + kernel.nodes * costs.kernel_worker_mib
    ) / 1024
    kernel = _nodes(kernel_cpu, kernel_memory, node)
    sockets = load.running * load.watchers_per_session
    web_memory = sockets * costs.socket_kib / 2**20
    web = _nodes(web_cpu, web_memory + node.cores * costs.web_process_mib / 1024, node)
    web.notes.append(f"{node.cores} web processes per node (one per core)")
    accounts = _nodes(accounts_cpu, costs.accounts_process_mib / 1024, node)
    redis_memory = (
        load.running * costs.live_redis_bytes + load.hibernated * costs.hibernated_redis_bytes
    ) / 2**30
    redis = _nodes(redis_cpu, redis_memory, node, cores=1)  # one core per shard
    redis.notes.append(
        f"{redis.nodes} primary shards of Redis Cluster, each with a replica "
        f"({2 * redis.nodes} Redis processes); {load.hibernated:,} checkpoints"
    )
    redis.nodes *= 2
    tiers = {"kernel": kernel, "web": web, "accounts": accounts, "redis": redis}
    bottleneck = min(TIERS, key=lambda t: tiers[t].headroom)

    # one machine like `node`, everything on it: what runs out first
    services_mib = (
        costs.kernel_worker_mib * 2 + costs.web_process_mib * 4 + costs.accounts_process_mib
    )
    free_mib = node.memory_gib * 1024 * node.memory_target - services_mib
    by_memory = int(free_mib / costs.session_mib)
    by_idle_cpu = (
        int(node.cores * node.cpu_target / costs.idle_cores_per_session)
        if costs.idle_cores_per_session
        else sys.maxsize
    )
    exec_ms = sum(ms.values()) + costs.redis_cpu_ms_per_execution
    one_machine = {
        "live_sessions_by_memory": by_memory,
        "live_sessions_by_idle_cpu": by_idle_cpu,
        "live_sessions": min(by_memory, by_idle_cpu),
        "executions_per_s_of_1+1": round(node.cores * node.cpu_target * 1000 / exec_ms, 0)
        if exec_ms
        else None,
        "hibernated_sessions_per_gib_of_redis": round(2**30 / costs.hibernated_redis_bytes)
        if costs.hibernated_redis_bytes
        else None,
        "watcher_sockets_by_memory": int(free_mib * 1024 / costs.socket_kib)
        if costs.socket_kib
        else None,
    }
    writes = exec_rate  # a worksheet cell's run is recorded, its outputs saved: ~1 write each
    postgres = {
        "writes_per_s": round(writes),
        "rows": {"users": load.users, "sessions": round(load.users * load.sessions_per_user)},
        "connections": accounts.nodes * 2 * 10,  # two accounts processes a node, pools of 10
        "plan": "one primary and one streaming replica (failover); only the accounts service "
        "connects. The per-execution load is small: the bench's 1+1 spent "
        f"{ms['accounts']:.2f} ms of accounts CPU each",
    }
    return Plan(
        load={**asdict(load), "hibernated": load.hibernated},
        rates={
            "executions_per_s": round(exec_rate, 1),
            "restores_per_s": round(restore_rate, 1),
            "deliveries_per_s": round(
                exec_rate * MESSAGES_PER_EXECUTION * load.watchers_per_session, 1
            ),
            "redis_commands_per_s": round(exec_rate * costs.redis_commands_per_execution),
            "watcher_sockets": round(sockets),
        },
        tiers=tiers,
        bottleneck=bottleneck,
        one_machine=one_machine,
        postgres=postgres,
    )


def render(plan: Plan, node: Node) -> str:
    lines = [
        f"Load: {plan.load['users']:,} users, {plan.load['running']:,} sessions running, "
        f"{plan.load['hibernated']:,} hibernated; "
        + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in plan.rates.items()),
        f"Nodes: {node.cores} cores, {node.memory_gib:g} GiB, planned at "
        f"{node.cpu_target:.0%} CPU and {node.memory_target:.0%} memory",
        "",
        "| tier | nodes | CPU, busiest second (cores) | memory (GiB) | bound by | headroom |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for name, tier in plan.tiers.items():
        lines.append(
            f"| {name} | {tier.nodes:,} | {tier.cpu_cores_p99:,.2f} | {tier.memory_gib:,.2f} | "
            f"{tier.bound_by} | {tier.headroom:.2f}x |"
        )
    lines += ["", f"First bottleneck: {plan.bottleneck}."]
    for name, tier in plan.tiers.items():
        lines += [f"- {name}: {note}" for note in tier.notes]
    lines += ["", "One machine like a node: " + json.dumps(plan.one_machine)]
    lines += ["PostgreSQL: " + json.dumps(plan.postgres)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cellbus_bench.capacity_plan", description=__doc__.split("\n")[0]
    )
    parser.add_argument("results", type=Path, help="a results JSON with the capacity workload")
    defaults, node_defaults = Load(), Node()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    for name, value in asdict(node_defaults).items():
        parser.add_argument(f"--node-{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--seconds", type=int, default=600, help="seconds simulated")
    parser.add_argument("--json", action="store_true", help="the plan as JSON")
    args = parser.parse_args(argv)
    costs = Costs.from_results(json.loads(args.results.read_text()))
    load = Load(**{k: getattr(args, k) for k in asdict(defaults)})
    node = Node(**{k: getattr(args, f"node_{k}") for k in asdict(node_defaults)})
    plan = simulate(costs, load, node, args.seconds)
    if args.json:
        print(json.dumps({"costs": asdict(costs), **asdict(plan)}, indent=1))
    else:
        print(render(plan, node))
    return 0


if __name__ == "__main__":
    sys.exit(main())
