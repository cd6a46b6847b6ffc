"""What a run leaves behind: the JSON of every figure, a Markdown table, the latency plot.

The targets of the benchmark issue are ratios cellbus / Jupyter from the same run; `TARGETS`
says how each is computed from the JSON, and `targets` evaluates them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = 1


@dataclass(frozen=True)
class Target:
    """A target of the issue: cellbus's figure over another system's, at most (``<=``) or at
    least (``>=``) `limit`. `figure` is where both figures are in the workload's results,
    with ``{system}`` standing for the system (``cellbus``, then `versus`)."""

    name: str
    workload: str
    figure: str
    unit: str
    bound: str
    limit: float
    versus: str = "jupyter"  # empty: `limit` bounds cellbus's figure itself, in `unit`
    optional: bool = False  # listed only in a run of its workload (the browser workloads)

    def value(self, results: dict[str, Any], system: str) -> float:
        value: Any = results
        for key in self.figure.format(system=system).split("."):
            value = value[key]
        return float(value)


TARGETS = (
    Target("session start, median", "session_start", "{system}.p50_ms", "ms", "<=", 0.05),
    Target("exec round trip p50 (Jupyter over its WebSocket)", "exec_round_trip",
           "{system}.p50_ms", "ms", "<=", 0.10),
    Target("exec round trip p99 (Jupyter over its WebSocket)", "exec_round_trip",
           "{system}.p99_ms", "ms", "<=", 0.10),
    Target("exec round trip p50 (Jupyter over raw ZMQ)", "exec_round_trip", "{system}.p50_ms",
           "ms", "<=", 0.50, versus="jupyter-zmq"),
    # issue 16: the same Jupyter client against cellbus's /api/kernels and Jupyter's
    Target("exec round trip p50 through /api/kernels channels", "channels_round_trip",
           "{system}.p50_ms", "ms", "<=", 0.10),
    Target("throughput, 4 sessions, 1 outstanding", "throughput",
           "outstanding_1.{system}.executions_per_s", "exec/s", ">=", 5.0),
    Target("stream {lines:,} lines, time to done (median)", "stream",
           "{system}.time_to_done.p50_ms", "ms", "<=", 0.50),
    Target("PSS per idle session (mean)", "memory", "{system}.sessions.pss_mib_mean", "MiB",
           "<=", 0.25),
    Target("fan-out to 100 subscribers, time until all (median)", "fanout",
           "100.{system}.p50_ms", "ms", "<=", 0.10),
    # issue 15, against JupyterLab with jupyter-collaboration, in Chromium
    Target("keystroke to another browser p50 (JupyterLab RTC)", "keystrokes",
           "{system}.p50_ms", "ms", "<=", 0.50, optional=True),
    Target("keystroke to another browser p99 (JupyterLab RTC)", "keystrokes",
           "{system}.p99_ms", "ms", "<=", 0.50, optional=True),
    Target("opening a {cells:,}-cell notebook until every cell is shown (median)",
           "notebook_open", "{system}.p50_ms", "ms", "<=", 0.25, optional=True),
    # issue 17: JupyterLab's chunked upload to /api/contents, Jupyter's /files/ download
    Target("upload of a {mb:,} MB file (median)", "files", "upload.{system}.p50_ms", "ms",
           "<=", 0.5, optional=True),
    Target("download of a {mb:,} MB file (median)", "files", "download.{system}.p50_ms", "ms",
           "<=", 1.0, optional=True),
    # parallel cells (cellbus.parallel): a map on 2 Dask workers against the same tasks run
    # serially in the session (the ratio is the speedup), and plain Dask's cost per task
    Target("parallel.map speedup, {busy_tasks} tasks of {task_ms:g} ms CPU on 2 workers "
           "(median)", "parallel_speedup", "{system}.tasks_per_s", "tasks/s", ">=", 1.8,
           versus="serial", optional=True),
    Target("parallel.map time per task, {trivial_tasks:,} trivial tasks (median)",
           "parallel_overhead", "{system}.per_task_us", "us", "<=", 1.2, versus="dask",
           optional=True),
    # issue 20: capacity, on a cellbus of its own (2 kernel workers, 4 web processes, Redis)
    Target("live sessions per GiB ({live_sessions:,} idle on 2 kernel workers; Jupyter: "
           "{jupyter_live_kernels} kernels)", "capacity", "live.{system}.sessions_per_gib",
           "/GiB", ">=", 4.0),
    Target("restore of a hibernated session, request to result, p50 ({hibernated_sessions:,} "
           "hibernated)", "capacity", "hibernated.{system}.restore_result.p50_ms", "ms", "<=",
           25.0, versus=""),
)  # fmt: skip
NAME_DEFAULTS = {
    "lines": 100_000, "cells": 1000, "mb": 200, "busy_tasks": 40, "task_ms": 200,
    "trivial_tasks": 1000, "live_sessions": 1000, "jupyter_live_kernels": 100,
    "hibernated_sessions": 10_000,
}  # fmt: skip
VERSUS = {
    "jupyter-zmq": " (raw ZMQ)",
    "serial": " (serial, same session)",
    "dask": " (plain Dask LocalCluster)",
}
"""How the table names a figure that is not Jupyter's over its WebSocket."""


def targets(workloads: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with both figures, their ratio and whether it is met (None: not run)."""
    out = []
    for t in TARGETS:
        if t.optional and t.workload not in workloads:
            continue
        workload = workloads.get(t.workload) or {}
        row: dict[str, Any] = {
            "name": t.name.format(**{**NAME_DEFAULTS, **workload.get("params", {})}),
            "workload": t.workload,
            "unit": t.unit,
            "target": f"{t.bound} {t.limit:g}",
            "versus": t.versus,
        }
        try:
            results = workload["results"]
            cellbus = t.value(results, "cellbus")
            other = t.value(results, t.versus) if t.versus else None
        except KeyError:
            row.update(cellbus=None, other=None, ratio=None, met=None)
        else:
            if other is None:  # a bound on cellbus's own figure
                met = cellbus <= t.limit if t.bound == "<=" else cellbus >= t.limit
                row.update(cellbus=cellbus, other=None, ratio=None, met=met)
                row["target"] += f" {t.unit}"
                out.append(row)
                continue
            ratio = cellbus / other if other else math.inf
            met = ratio <= t.limit if t.bound == "<=" else ratio >= t.limit
            row.update(cellbus=cellbus, other=other, ratio=round(ratio, 4), met=met)
        out.append(row)
    return out


# -- the files ---------------------------------------------------------------------------


def write(out: Path, stem: str, document: dict[str, Any]) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / f"{stem}.json",
        "md": out / f"{stem}.md",
        "png": out / f"{stem}-latency.png",
    }
    document["files"] = {k: p.name for k, p in paths.items()}
    paths["json"].write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")
    plot_latency(document, paths["png"])
    paths["md"].write_text(markdown(document))
    return paths


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def _ratio(row: dict[str, Any]) -> str:
    return "—" if row["ratio"] is None else f"{row['ratio']:.3g}"


def _met(row: dict[str, Any]) -> str:
    return {True: "**met**", False: "missed", None: "not run"}[row["met"]]


def markdown(document: dict[str, Any]) -> str:
    """The table of targets, then the other figures of the run."""
    m = document["machine"]
    lines = [
        f"# cellbus vs Jupyter: {document['date']} ({document['size']} run)",
        "",
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gib']} GiB, Linux {m['kernel']}. "
        f"cellbus {document['git']['commit'][:10]}"
        f"{' (uncommitted changes)' if document['git']['dirty'] else ''}; "
        f"jupyter_server {document['versions']['jupyter'].get('jupyter_server', '?')}, "
        f"ipykernel {document['versions']['jupyter'].get('ipykernel', '?')}"
        + (
            f"; JupyterLab {lab.get('jupyterlab', '?')} with jupyter-collaboration "
            f"{lab.get('jupyter-collaboration', '?')} in Chromium"
            if (lab := document["versions"].get("jupyterlab"))
            else ""
        )
        + ". "
        f"The run took {document['duration_s']:.0f} s.",
        "",
        "| Target | cellbus | Jupyter | ratio | target | |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in document["targets"]:
        versus = VERSUS.get(row["versus"], "")
        other = f"{_fmt(row['other'])} {row['unit']}{versus}" if row["versus"] else "(a bound)"
        lines.append(
            f"| {row['name']} | {_fmt(row['cellbus'])} {row['unit']} | {other} | "
            f"{_ratio(row)} | {row['target']} | {_met(row)} |"
        )
    lines += ["", "Other figures of the same run:", "", *other_figures(document["workloads"])]
    errors = {k: w["error"] for k, w in document["workloads"].items() if "error" in w}
    if errors:
        lines += ["", "Workloads that failed:", ""]
        lines += [f"- {k}: {v.splitlines()[-1] if v else v}" for k, v in errors.items()]
    return "\n".join(lines) + "\n"


MODES = {
    "one_program": "one program (`cellbus serve`: in-process bus, SQLite), `session.execute`",
    "services_redis": "separate services on Redis and PostgreSQL, `session.execute`",
    "one_program_cell_evaluate": "one program, a worksheet's cell run with `cell.evaluate` "
    "(outputs saved)",
}


KEYSTROKE_PARTS = {
    "typist": "keydown to the typist's page sending on its WebSocket",
    "between": "that send to the watcher's page receiving (network and server)",
    "watcher": "that message to the watcher's editor showing the character",
}


OPEN_PARTS = {
    "first_cell": "first cell shown",
    "settled": "every cell shown and the page's main thread free again",
    "long_tasks": "the page's long tasks (over 50 ms), in all",
}


def _pct(r: dict[str, Any]) -> str:
    return f"{r['p50_ms']:.2f} / {r['p90_ms']:.2f} / {r['p99_ms']:.2f}"


def _rows(w: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(figure, cellbus, Jupyter) for the figures the targets do not show."""
    rows: list[tuple[str, Any, Any]] = []
    r = w.get("session_start", {}).get("results")
    if r:
        cb, jp = (
            f"{x['min_ms']:.0f} / {x['p50_ms']:.0f} / {x['max_ms']:.0f}"
            for x in (r["cellbus"], r["jupyter"])
        )
        rows.append(("session start, min / median / max (ms)", cb, jp))
    r = w.get("exec_round_trip", {}).get("results")
    if r:
        rows.append(
            ("exec round trip p50 / p90 / p99 (ms)", _pct(r["cellbus"]), _pct(r["jupyter"]))
        )
        rows.append(
            ("exec round trip over raw ZMQ, p50 / p90 / p99 (ms)", "", _pct(r["jupyter-zmq"]))
        )
        b = w["exec_round_trip"]["breakdown"]
        rows.append(
            (
                "exec round trip: request handed over (cellbus: RPC answered), p50 (ms)",
                b["cellbus"]["request_accepted"]["p50_ms"],
                b["jupyter"]["request_accepted"]["p50_ms"],
            )
        )
        rows.append(
            (
                "exec round trip: execute_result arrived, p50 (ms)",
                b["cellbus"]["execute_result"]["p50_ms"],
                b["jupyter"]["execute_result"]["p50_ms"],
            )
        )
    r = w.get("throughput", {}).get("results")
    for phase, label in (("outstanding_1", "1 outstanding"), ("queued_16", "16 queued")):
        if not r:
            break
        cb, jp = r[phase]["cellbus"], r[phase]["jupyter"]
        rows.append(
            (
                f"throughput, 4 sessions, {label} (exec/s)",
                cb["executions_per_s"],
                jp["executions_per_s"],
            )
        )
        rows.append(
            (
                f"latency, 4 sessions, {label}, p50 / p90 / p99 (ms)",
                _pct(cb["latency"]),
                _pct(jp["latency"]),
            )
        )
        cpu_cb, cpu_jp = (
            " / ".join(f"{c.get(k, 0):.2f}" for k in ("services", "sessions", "client"))
            for c in (x.get("cpu_ms_per_execution", {}) for x in (cb, jp))
        )
        rows.append(
            (f"CPU per execution, {label}: services / sessions / client (ms)", cpu_cb, cpu_jp)
        )
    r = w.get("stream", {}).get("results")
    if r:
        cb, jp = (
            f"{x['messages'][0]:,} ({x['stream_messages'][0]:,})"
            for x in (r["cellbus"], r["jupyter"])
        )
        rows.append(("stream: messages received (of them stream messages)", cb, jp))
        rows.append(
            (
                "stream: every line arrived",
                r["cellbus"]["every_line_arrived"],
                r["jupyter"]["every_line_arrived"],
            )
        )
    r = w.get("memory", {}).get("results")
    if r:
        rows.append(
            (
                "RSS per idle session, mean (MiB)",
                r["cellbus"]["sessions"]["rss_mib_mean"],
                r["jupyter"]["sessions"]["rss_mib_mean"],
            )
        )
        cb, jp = (
            f"{x['services']['pss_mib_total']} / {x['services']['rss_mib_total']} "
            f"({x['services']['processes']} processes)"
            for x in (r["cellbus"], r["jupyter"])
        )
        rows.append(("the services' own processes, PSS / RSS (MiB)", cb, jp))
    for n, r in w.get("fanout", {}).get("results", {}).items():
        cb, jp = (
            f"{x['p50_ms']:.1f}"
            + (f" ({x['subscribers']} opened)" if x["subscribers"] != int(n) else "")
            for x in (r["cellbus"], r["jupyter"])
        )
        rows.append((f"fan-out to {n}, time until all, median (ms)", cb, jp))
    return rows + _browser_rows(w) + _file_rows(w)


def _browser_rows(w: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """The figures of the browser workloads (issue 15) the targets do not show."""
    rows: list[tuple[str, Any, Any]] = []
    r = w.get("keystrokes", {}).get("results")
    if r:
        rows.append(
            (
                "keystroke to another browser, p50 / p90 / p99 (ms)",
                _pct(r["cellbus"]),
                _pct(r["jupyter"]),
            )
        )
        b = w["keystrokes"].get("breakdown", {})
        for part, label in KEYSTROKE_PARTS.items():
            if b:
                rows.append(
                    (
                        f"keystroke: {label}, p50 (ms)",
                        b["cellbus"][part]["p50_ms"],
                        b["jupyter"][part]["p50_ms"],
                    )
                )
        cpu = w["keystrokes"].get("cpu_ms_per_keystroke")
        if cpu:
            cb, jp = (
                " / ".join(f"{c[k]:.2f}" for k in ("server", "typist_page", "watcher_page"))
                for c in (cpu["cellbus"], cpu["jupyter"])
            )
            rows.append(
                ("keystroke: CPU of the server / typist's page / watcher's page (ms)", cb, jp)
            )
    r = w.get("notebook_open", {}).get("results")
    if r:
        cells = w["notebook_open"]["params"]["cells"]
        cb, jp = (
            f"{x['min_ms']:.0f} / {x['p50_ms']:.0f} / {x['max_ms']:.0f}"
            for x in (r["cellbus"], r["jupyter"])
        )
        rows.append((f"opening {cells:,} cells, every cell shown, min / median / max (ms)", cb, jp))
        default = r.get("jupyter-default")
        if default:
            rows.append(
                (
                    f"opening {cells:,} cells, JupyterLab's default windowing "
                    "(contentVisibility, one opening): first cell / every cell shown (ms)",
                    "",
                    f"{default['first_cell']['p50_ms']:.0f} / {default['p50_ms']:.0f}",
                )
            )
        for key, label in OPEN_PARTS.items():
            if key in r["cellbus"]:
                rows.append(
                    (
                        f"opening {cells:,} cells, {label}, median (ms)",
                        f"{r['cellbus'][key]['p50_ms']:.0f}",
                        f"{r['jupyter'][key]['p50_ms']:.0f}",
                    )
                )
    return rows


def _peak(memory: dict[str, Any]) -> str:
    """Each process's peak RSS during a transfer (MiB), and its growth."""
    each = ", ".join(f"{p['peak_rss_mib']:.0f}" for p in memory["processes"])
    return f"{each} ({len(memory['processes'])} proc.; largest growth {memory['max_growth_mib']})"


def _file_rows(w: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """The figures of the file workload (issue 17) the targets do not show."""
    rows: list[tuple[str, Any, Any]] = []
    r = w.get("files", {}).get("results")
    if not r:
        return rows
    mb = w["files"]["params"]["mb"]
    for phase in ("upload", "download"):
        cb, jp = r[phase]["cellbus"], r[phase]["jupyter"]
        rows.append((f"{phase} of {mb} MB, min / median / max (ms)",
                     f"{cb['min_ms']:.0f} / {cb['p50_ms']:.0f} / {cb['max_ms']:.0f}",
                     f"{jp['min_ms']:.0f} / {jp['p50_ms']:.0f} / {jp['max_ms']:.0f}"))  # fmt: skip
        rows.append((f"{phase}: MB/s (median)", cb["mb_per_s"], jp["mb_per_s"]))
        rows.append(
            (f"{phase}: peak RSS of every process (MiB)", _peak(cb["memory"]),
             _peak(jp["memory"]))
        )  # fmt: skip
    same = r.get("download_equals_upload", {})
    if same:
        rows.append(("download equals upload (sha256)", same.get("cellbus"), same.get("jupyter")))
    bounded = r.get("memory_bounded", {})
    if bounded:
        bound = w["files"]["params"]["memory_bound_mib"]
        rows.append((f"memory bounded: no process grew by over {bound:g} MiB in a transfer",
                     bounded.get("cellbus"), bounded.get("jupyter")))  # fmt: skip
    return rows


def bus_figures(w: dict[str, Any]) -> list[str]:
    """The files_bus workload: a file through Redis against the web reading the volume."""
    r = w.get("files_bus", {}).get("results")
    if not r:
        return []
    p = w["files_bus"]["params"]
    lines = [
        "",
        f"A {p['mb']} MB file through a web process without the volume (1 MiB chunks through "
        f"Redis, {p['outstanding']} in flight) and through one reading the volume "
        "(`files_bus`):",
        "",
        "| variant | transfer | median (ms) | MB/s | peak RSS: web / kernel side / Redis (MiB) |",
        "|---|---|---:|---:|---:|",
    ]
    for variant, phases in r.items():
        for phase, f in phases.items():
            rss = f["peak_rss_mib"]
            peaks = " / ".join(f"{rss.get(k, 0):.0f}" for k in ("web", "kernel", "redis"))
            lines.append(f"| {variant} | {phase} | {f['p50_ms']:.0f} | {f['mb_per_s']} | {peaks} |")
    return lines


def parallel_figures(w: dict[str, Any]) -> list[str]:
    """The parallel workloads' figures beside their targets': start-up, each turn's speedup,
    the cells' round trips."""
    lines: list[str] = []
    speedup = w.get("parallel_speedup", {})
    if speedup.get("results"):
        r, p = speedup["results"], speedup["params"]
        turns = ", ".join(f"{x:.2f}" for x in speedup["speedup"]["per_turn"])
        lines += [
            "",
            f"Parallel cells, {p['busy_tasks']} CPU-bound tasks of {p['task_ms']:g} ms on 2 "
            f"Dask workers (`parallel_speedup`; a task timed in the session: "
            f"{speedup['calibration']['one_task_s'] * 1000:.0f} ms):",
            "",
            "| | min / median / max (s) | the cell's round trip, median (s) |",
            "|---|---:|---:|",
        ]
        for name, label in (("cellbus", "`parallel.map`"), ("serial", "serial, in the session")):
            x = r[name]
            lines.append(
                f"| {label} | {x['min_ms'] / 1000:.2f} / {x['p50_ms'] / 1000:.2f} / "
                f"{x['max_ms'] / 1000:.2f} | {x['round_trip']['p50_ms'] / 1000:.2f} |"
            )
        lines += [
            "",
            f"Speedup of the medians {speedup['speedup']['of_medians']:.2f}; of each turn: "
            f"{turns}. The session's first map (its scheduler and 2 workers started): "
            f"{speedup['start_up']['first_map_s']:.2f} s.",
        ]
    overhead = w.get("parallel_overhead", {})
    if overhead.get("results"):
        r, p = overhead["results"], overhead["params"]
        cb, dk = r["cellbus"], r["dask"]
        lines += [
            "",
            f"Parallel cells, {p['trivial_tasks']:,} trivial tasks (`parallel_overhead`, "
            f"{p['trials']} maps each): `parallel.map` min / median / max "
            f"{cb['min_ms']:.0f} / {cb['p50_ms']:.0f} / {cb['max_ms']:.0f} ms (the cell's round "
            f"trip {cb['round_trip']['p50_ms']:.0f} ms), plain Dask {dk['min_ms']:.0f} / "
            f"{dk['p50_ms']:.0f} / {dk['max_ms']:.0f} ms. Start-up: the session's first map "
            f"{overhead['start_up']['first_map_s']:.2f} s, Dask's LocalCluster "
            f"{overhead['start_up']['dask_cluster_s']:.2f} s.",
        ]
    return lines


def capacity_figures(w: dict[str, Any]) -> list[str]:
    """The capacity workload (issue 20): live sessions, watchers, hibernated sessions."""
    capacity = w.get("capacity", {})
    r, p = capacity.get("results"), capacity.get("params", {})
    if not r:
        return []
    lines = ["", "Capacity (`capacity`, a cellbus of its own on Redis and PostgreSQL):", ""]
    live = r.get("live")
    if live:
        cb, jp, active = live["cellbus"], live["jupyter"], live["active"]
        lines += [
            "| live sessions | cellbus | Jupyter |",
            "|---|---:|---:|",
            f"| sessions (per kernel worker) | {cb['sessions']:,} "
            f"({' + '.join(str(n) for n in cb['per_worker'])}) | {jp['sessions']:,} |",
            f"| every process, PSS (MiB) | {cb['total_pss_mib']:,.1f} | "
            f"{jp['total_pss_mib']:,.1f} |",
            f"| per session, all in (MiB) | {cb['mib_per_session']:.2f} | "
            f"{jp['mib_per_session']:.2f} |",
            f"| per session, its own process only (MiB) | "
            f"{cb['session_only']['mib_per_session']:.2f} | "
            f"{jp['session_only']['mib_per_session']:.2f} |",
            f"| sessions per GiB, all in | {cb['sessions_per_gib']:,.1f} | "
            f"{jp['sessions_per_gib']:,.1f} |",
            f"| {active['sessions']} active among them, 1+1 one after another, p50 / p90 / "
            f"p99 (ms) | {_pct(active['cellbus'])} | {_pct(active['jupyter'])} |",
            f"| started in (s) | {cb['start_s']} | {jp['start_s']} |",
            "",
            f"cellbus's idle sessions and services used {cb['idle_cpu_cores']:.3f} cores; "
            f"their keys in Redis: {cb['redis_mib']} MiB.",
        ]
    watchers = r.get("watchers", {}).get("cellbus")
    if watchers:
        lines += [
            "",
            f"Watchers: {watchers['opened']:,} of {watchers['watchers']:,} feed WebSockets "
            f"open on one session over {watchers['web_processes']} web processes (in "
            f"{watchers['open_s']} s); `print('x')` until every one has it, p50 / max "
            f"{watchers['time_until_all']['p50_ms']:.0f} / "
            f"{watchers['time_until_all']['max_ms']:.0f} ms (first to last socket "
            f"{watchers['first_to_last']['p50_ms']:.0f} ms); every watcher had it: "
            f"{watchers['every_watcher_had_it']}; web PSS per socket "
            f"{watchers['web_pss_kib_per_socket']} KiB, web CPU per delivered message "
            f"{watchers['web_cpu_us_per_delivery']} us.",
        ]
    hib = r.get("hibernated", {}).get("cellbus")
    if hib:
        restore, done = hib["restore_result"], hib["restore_done"]
        fresh = r["hibernated"]["jupyter"]["fresh_kernel_first_result"]
        lines += [
            "",
            f"Hibernated: {hib['sessions']:,} sessions created and hibernated in "
            f"{hib['all_hibernated_s']} s ({hib['sessions_per_s']}/s; kernel CPU "
            f"{hib['kernel_cpu_ms_per_session']} ms each); {hib['session_processes_left']} "
            f"session processes left; their keys in Redis: {hib['redis_mib']} MiB "
            f"({hib['redis_bytes_per_session']:,} bytes per session; checkpoint median "
            f"{hib['checkpoint_bytes_median']:,} bytes). {hib['restores']} restores, request "
            f"to result p50 / p90 / p99 {_pct(restore)} ms (to the end: {_pct(done)} ms); "
            f"wrong results: {len(hib['restored_wrong'])}; kernel CPU per restore and "
            f"hibernation {hib['kernel_cpu_ms_per_restore']} ms. Jupyter has no "
            f"hibernation: a new kernel's first result, p50 {fresh['p50_ms']:.0f} ms "
            f"(its state lost).",
        ]
    if p.get("hibernate_after_s"):
        lines += ["", f"(Sessions of the hibernated part hibernate {p['hibernate_after_s']:g} s "
                  "after their last request.)"]  # fmt: skip
    return lines


def other_figures(w: dict[str, Any]) -> list[str]:
    lines = ["| Figure | cellbus | Jupyter |", "|---|---:|---:|"]
    try:
        lines += [f"| {label} | {cb} | {jp} |" for label, cb, jp in _rows(w)]
    except KeyError as exc:  # a workload that ran only in part
        lines.append(f"| (figures missing: {exc}) | | |")
    r = w.get("cellbus_modes", {}).get("results")
    if r:
        lines += ["", "| cellbus alone: exec round trip of `1+1` | p50 / p90 / p99 (ms) |"]
        lines += ["|---|---:|"]
        lines += [f"| {MODES.get(name, name)} | {_pct(figures)} |" for name, figures in r.items()]
    lines += bus_figures(w)
    lines += parallel_figures(w)
    lines += capacity_figures(w)
    caps = w.get("fanout", {}).get("caps", {})
    for system, why in caps.items():
        for n, reason in why.items():
            lines += ["", f"Fan-out to {n}, {system}: {reason}."]
    return lines


# -- the plot ----------------------------------------------------------------------------

COLOURS = {"cellbus": "#1f77b4", "jupyter": "#d62728", "jupyter-zmq": "#7f7f7f"}
LABELS = {
    "cellbus": "cellbus (HTTP + WebSocket)",
    "jupyter": "Jupyter (WebSocket)",
    "jupyter-zmq": "Jupyter (raw ZMQ, no server)",
}


def plot_latency(document: dict[str, Any], path: Path) -> None:
    """Histograms and CDFs of workload 2's round trips, on a log time axis; below them, when
    the run has them, those of the keystrokes from one browser to another (issue 15)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workload = document["workloads"].get("exec_round_trip", {})
    keystrokes = document["workloads"].get("keystrokes", {})
    rows = 2 if keystrokes.get("results") else 1
    fig, axes = plt.subplots(rows, 2, figsize=(12, 4.5 * rows), squeeze=False)
    n = workload.get("params", {}).get("runs", 0)
    _plot_pair(
        axes[0],
        workload.get("results", {}),
        "round trip of 1+1 (ms, log scale)",
        "executions",
        "workload 2 did not run",
        LABELS,
    )
    title = (
        f"Exec round trip, {n} sequential runs each, taken in turns "
        f"({document['date']}, {document['machine']['cpus']} CPUs)"
    )
    if rows == 2:
        axes[0][0].set_title(title, fontsize=10)
        keys = keystrokes.get("params", {}).get("keystrokes", 0)
        _plot_pair(
            axes[1],
            keystrokes["results"],
            "keydown to the other browser's editor (ms, log scale)",
            "keystrokes",
            "the keystrokes did not run",
            {"cellbus": "cellbus (Chromium)", "jupyter": "JupyterLab RTC (Chromium)"},
        )
        axes[1][0].set_title(
            f"A keystroke from one browser to another, {keys} each, taken in turns", fontsize=10
        )
    else:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_pair(
    axes: Any,
    results: dict[str, Any],
    xlabel: str,
    counted: str,
    missing: str,
    labels: dict[str, str],
) -> None:
    """A histogram and a CDF of each system's ``samples_ms``, on a log time axis."""
    import matplotlib.ticker
    import numpy as np

    hist, cdf = axes
    samples = {k: np.array(v["samples_ms"]) for k, v in results.items() if v.get("samples_ms")}
    if samples:
        low = min(s.min() for s in samples.values())
        high = max(s.max() for s in samples.values())
        bins = np.geomspace(max(low * 0.9, 0.01), high * 1.1, 80)
        for name, values in samples.items():
            colour = COLOURS.get(name)
            label = f"{labels.get(name, name)}: p50 {np.median(values):.2f} ms"
            hist.hist(values, bins=bins, alpha=0.55, color=colour, label=label)
            ordered = np.sort(values)
            cdf.plot(
                ordered,
                np.arange(1, len(ordered) + 1) / len(ordered),
                color=colour,
                label=labels.get(name, name),
            )
    ticks = [t for t in (0.5, 1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 500, 1000, 2000, 5000)
             if samples and low * 0.8 <= t <= high * 1.25]  # fmt: skip
    for axis in (hist, cdf):
        axis.set_xscale("log")
        if ticks:
            axis.set_xticks(ticks, [f"{t:g}" for t in ticks])
            axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_xlabel(xlabel)
        axis.grid(True, which="both", alpha=0.3)
    hist.set_ylabel(counted)
    cdf.set_ylabel(f"fraction of {counted}")
    if samples:
        hist.legend(fontsize=8)
        cdf.legend(fontsize=8, loc="lower right")
    else:
        hist.text(0.5, 0.5, missing, ha="center", transform=hist.transAxes)
