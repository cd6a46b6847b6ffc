"""``python -m bench.cellbus_bench [--quick | --smoke] [--out DIR] [--only W,...]``.

Starts cellbus (``cellbus serve``) and Jupyter (jupyter_server + ipykernel, in
``bench/.jupyter-venv``, made on first use), runs every workload on both in turns, and writes
``<date>.json``, ``<date>.md`` and ``<date>-latency.png`` to DIR (bench/results). The browser
workloads (issue 15: keystrokes, notebook_open) run cellbus's app and JupyterLab with
jupyter-collaboration (``bench/.jupyterlab-venv``, made on first use) in Chromium; the smoke
size leaves them out unless ``--only`` names them, and the file workloads (issue 17: a 200 MB
upload and download, and the same through Redis) as well. The parallel cells workloads
(``parallel_speedup``, ``parallel_overhead``) start a ``cellbus serve`` of their own with two
Dask workers (`parallel_cells`), and plain Dask as a peer (`dask_peer`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import importlib.metadata
import json
import resource
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from . import browser, jupyter, measure, parallel_cells, profiling, report
from .systems import ROOT, CellbusSystem
from .workloads import (
    BROWSER_WORKLOADS,
    FILE_WORKLOADS,
    SIZES,
    WORKLOADS,
    Sizes,
    Systems,
    sizes_record,
)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.cellbus_bench", description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_const",
        dest="size",
        const="quick",
        help="every workload, briefly (under 2 minutes)",
    )
    size.add_argument(
        "--smoke",
        action="store_const",
        dest="size",
        const="smoke",
        help="every workload, tiny (checks the bench itself)",
    )
    parser.set_defaults(size="full")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench" / "results",
        help="where the results go (default: bench/results)",
    )
    parser.add_argument("--only", default="", help=f"a comma-separated subset of {list(WORKLOADS)}")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SIZE=VALUE",
        help="change one of the size's figures (workloads.Sizes), e.g. fanout=100 or "
        "fanout_trials=50",
    )
    parser.add_argument(
        "--profile", action="store_true", help="sample cellbus with py-spy during each workload"
    )
    parser.add_argument(
        "--keep-workdir", action="store_true", help="keep the temporary folder of logs and data"
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="JSON",
        help="run nothing: write the table and the plot of a results file again",
    )
    return parser.parse_args(argv)


def resize(sizes: Sizes, changes: list[str]) -> Sizes:
    """`sizes` with ``name=value`` changes (a tuple is given as ``1,10,100``)."""
    values: dict[str, Any] = {}
    for change in changes:
        name, _, text = change.partition("=")
        current = getattr(sizes, name, None)
        if current is None or name == "name":
            raise SystemExit(f"--set: no size {name!r}")
        if isinstance(current, tuple):
            values[name] = tuple(int(x) for x in text.split(",") if x)
        else:
            values[name] = type(current)(text)
    return dataclasses.replace(sizes, **values) if values else sizes


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cellbus_versions() -> dict[str, str]:
    names = [
        "cellbus-protocol",
        "cellbus-web",
        "cellbus-kernel",
        "cellbus-allinone",
        "aiohttp",
        "ipython",
        "msgspec",
        "redis",
    ]
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["python"] = sys.version.split()[0]
    return out


def raise_file_limit() -> None:
    """A thousand sockets per system need more descriptors than a default soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard)
        )


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    sizes: Sizes = resize(SIZES[args.size], args.set)
    chosen = [w for w in args.only.split(",") if w] or [
        w
        for w in WORKLOADS
        if (sizes.browser or w not in BROWSER_WORKLOADS)
        and (sizes.files or w not in FILE_WORKLOADS)
    ]
    unknown = set(chosen) - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"unknown workloads: {sorted(unknown)}")
    lab = any(w in BROWSER_WORKLOADS for w in chosen)
    clock = measure.Stopwatch()
    say(f"bench ({sizes.name}): the Jupyter environment ({jupyter.VENV})")
    await asyncio.to_thread(jupyter.ensure_venv, workdir / "jupyter-venv.log")
    if lab:
        say(f"the JupyterLab environment ({jupyter.LAB_VENV}; minutes the first time)")
        await asyncio.to_thread(jupyter.ensure_lab_venv, workdir / "jupyterlab-venv.log")
    systems = Systems(
        cellbus=CellbusSystem(workdir),
        jupyter=jupyter.JupyterSystem(workdir),
        zmq=jupyter.ZmqFloor(workdir),
        services=CellbusSystem(workdir, mode="services"),
        lab=jupyter.JupyterLabSystem(workdir),
        lab_default=jupyter.JupyterLabSystem(
            workdir, name="jupyter-default", windowing="contentVisibility"
        ),
        parallel=parallel_cells.ParallelCellbus(workdir),
    )
    results: dict[str, Any] = {}
    try:
        say("starting cellbus serve and jupyter server")
        await systems.cellbus.start()
        await systems.jupyter.start()
        for name in chosen:
            say(f"- {name} ...")
            watch = measure.Stopwatch()
            try:
                results[name] = await run_workload(name, systems, sizes, args)
            except Exception:
                results[name] = {"error": traceback.format_exc()}
                say(results[name]["error"])
            results[name]["seconds"] = round(watch.elapsed(), 1)
            say(f"  {name}: {results[name]['seconds']} s")
    finally:
        await systems.cellbus.stop()
        await systems.jupyter.stop()
    now = datetime.datetime.now(datetime.UTC)
    versions = {"cellbus": cellbus_versions(), "jupyter": jupyter.versions()}
    if lab:
        versions["jupyterlab"] = jupyter.versions(jupyter.LAB_VENV, jupyter.LAB_VERSION_NAMES)
        versions["cellbus"].update(browser.app_build())
    return {
        "schema": report.SCHEMA,
        "date": now.date().isoformat(),
        "finished_at": now.isoformat(timespec="seconds"),
        "size": sizes.name,
        "sizes": sizes_record(sizes),
        "duration_s": round(clock.elapsed(), 1),
        "machine": measure.machine(),
        "git": measure.git_revision(ROOT),
        "versions": versions,
        "systems": {
            "cellbus": "cellbus serve: one program, in-process bus, SQLite (make run)",
            "cellbus-services": "python -m cellbus_accounts / cellbus_kernel / cellbus_web "
            "on Redis and PostgreSQL (tests/support/stack.py ServicesStack)",
            "jupyter": "jupyter_server with ipykernel, over its kernel channels WebSocket",
            "jupyter-zmq": "ipykernel over raw ZMQ with jupyter_client, no web server",
            "jupyterlab": "the browser workloads' Jupyter: jupyter lab with "
            "jupyter-collaboration (real-time collaboration), token login, in Chromium",
            "cellbus-browser": "the browser workloads' cellbus: cellbus serve's app in Chromium",
        },
        "workloads": results,
        "targets": report.targets(results),
    }


async def run_workload(
    name: str, systems: Systems, sizes: Sizes, args: argparse.Namespace
) -> dict[str, Any]:
    """One workload, sampled with py-spy when ``--profile`` is given."""
    if not args.profile:
        return await WORKLOADS[name](systems, sizes)
    assert systems.cellbus.process is not None
    args.out.mkdir(parents=True, exist_ok=True)
    stacks = args.out / f"profile-{name}.txt"
    async with profiling.Profiler(profiling.find_py_spy(), systems.cellbus.process.pid, stacks):
        result = await WORKLOADS[name](systems, sizes)
    result["profile"] = profiling.summarize(stacks)
    (args.out / f"profile-{name}-summary.txt").write_text(profiling.render(result["profile"]))
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.report:
        document = json.loads(args.report.read_text())
        document["targets"] = report.targets(document["workloads"])
        paths = report.write(args.report.parent, args.report.stem, document)
        say(f"wrote {', '.join(str(p) for p in paths.values())}")
        return 0
    raise_file_limit()
    workdir = Path(tempfile.mkdtemp(prefix="cellbus-bench-"))
    started = time.monotonic()
    try:
        document = asyncio.run(run(args, workdir))
    finally:
        if args.keep_workdir:
            say(f"logs and data kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    stem = document["date"] if args.size == "full" else f"{document['date']}-{args.size}"
    paths = report.write(args.out, stem, document)
    print(paths["md"].read_text())
    say(f"wrote {', '.join(str(p) for p in paths.values())} in {time.monotonic() - started:.0f} s")
    failed = [k for k, w in document["workloads"].items() if "error" in w]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
