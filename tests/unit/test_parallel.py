"""The pure parts of parallel cells: the port ranges the sandbox allows, what a checkpoint
leaves out and keeps by name, the progress display's forms, and the frames' wire format.
No servers, no Dask workers."""

from __future__ import annotations

import types
from typing import Any

import pytest

from cellbus_kernel import frames, namespace
from cellbus_kernel.config import KernelSettings
from cellbus_kernel.progress import MIME_TYPE, MapState, Progress
from cellbus_kernel.sandbox import parse_ports, spec_from_settings


def test_port_ranges_and_lists() -> None:
    assert parse_ports("47000-47002,80", "X") == [80, 47000, 47001, 47002]
    assert parse_ports("443", "X") == [443]
    assert parse_ports("none", "X") == []
    assert parse_ports("any", "X") is None
    with pytest.raises(ValueError, match="X: 70000 is not a TCP port"):
        parse_ports("1-70000", "X")
    with pytest.raises(ValueError, match="spans more than"):
        parse_ports("1-60000", "X")
    with pytest.raises(ValueError, match="expected port numbers or ranges"):
        parse_ports("1-x", "X")


def test_sessions_may_connect_to_dasks_ports_and_only_bind_the_dashboards() -> None:
    settings = KernelSettings(
        session_ports="443", session_bind_ports="none",
        parallel_ports="47000-47001", parallel_dashboard_ports="47300-47301",
    )  # fmt: skip
    spec = spec_from_settings(settings)
    assert spec.connect == [443, 47000, 47001]
    assert spec.bind == [47000, 47001, 47300, 47301]
    off = spec_from_settings(KernelSettings(session_ports="443", parallel_max_workers=0))
    assert (off.connect, off.bind) == ([443], [])


def test_overlapping_dask_and_dashboard_ports_are_refused() -> None:
    settings = KernelSettings(parallel_ports="47000-47100", parallel_dashboard_ports="47100")
    with pytest.raises(ValueError, match="overlap"):
        spec_from_settings(settings)


def test_a_checkpoint_leaves_dasks_objects_out() -> None:
    client_type = type("Client", (), {"__module__": "distributed.client"})
    names = {"x": 1, "client": client_type(), "f": len}
    assert namespace.user_names(names, {}) == {"x": 1, "f": len}


def test_cellbus_modules_are_saved_by_name() -> None:
    from cellbus import parallel

    saved = namespace.save({"parallel": parallel, "n": 3}, limit=1 << 20)
    assert saved.skipped == []
    assert len(bytes(saved.data)) < 200  # a name, not the module's state
    assert namespace.load(bytes(saved.data)) == {"parallel": parallel, "n": 3}
    other = types.ModuleType("cellbus_kernel.not_a_session_api")
    with pytest.raises(Exception):  # noqa: B017 (any refusal: it is not found by name)
        namespace.load(bytes(namespace.save({"m": other}, limit=1 << 20).data))


def test_the_progress_display_says_the_same_in_each_form() -> None:
    progress = Progress("parallel.map", 40, "/parallel/s/dashboard/info/main/workers.html")
    progress.done, progress.workers, progress.state = 12, 2, MapState.RUNNING
    bundle = progress_bundle(progress)
    assert bundle[MIME_TYPE] == {
        "label": "parallel.map", "done": 12, "total": 40, "workers": 2, "state": "running",
        "note": "", "dashboard": "/parallel/s/dashboard/info/main/workers.html",
    }  # fmt: skip
    assert bundle["text/plain"] == "parallel.map: 12/40 tasks on 2 workers (running)"
    assert '<progress max="40" value="12">' in bundle["text/html"]
    progress.note = "<b>only 1 of 2</b>"
    assert "&lt;b&gt;only 1 of 2&lt;/b&gt;" in progress_bundle(progress)["text/html"]


def progress_bundle(progress: Progress) -> dict[str, Any]:
    from cellbus_kernel.progress import _Bundle

    return _Bundle(progress)._repr_mimebundle_()


def test_the_parallel_frames_round_trip() -> None:
    wanted = frames.ParallelWanted(
        id="p1", scheduler="tls://127.0.0.1:47000", dashboard_port=47300,
        tls=("ca", "cert", "key"), count=2, sys_path=["/w/s"],
    )  # fmt: skip
    _, body = frames.pack(wanted)
    assert frames._from_session.decode(body) == wanted
    granted = frames.ParallelGranted(id="p1", local=1, remote=1, dashboard="/parallel/s/dashboard")
    assert frames._to_session.decode(frames.pack(granted)[1]) == granted
