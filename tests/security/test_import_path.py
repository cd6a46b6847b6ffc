"""No service, health check or tool imports a file that a session could have planted.

The attack this guards against: a cell wrote ``argparse.py`` and ``hmac.py`` into the kernel
worker's working directory; ``python -m ...`` puts the working directory first on
``sys.path``, so the health check (run as root by compose every 10 s) and the next worker
imported them, and they dumped the Redis password and the checkpoint secret. Now every entry
point starts with the safe path (``python -P``, and ``PYTHONSAFEPATH=1`` in the images), the
images' working directory is root's and read-only to everyone else, and sessions work in
folders of their own under ``CELLBUS_SESSIONS_DIR``.

Here every Python command of docker-compose.yml and of the Dockerfiles runs, exactly as
written, in a folder holding planted modules that would leave a marker (and the secrets)
when imported; none may. A control shows that the same plant is imported without ``-P``.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from ..support.dockerfiles import final_stage

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SERVICES = ("accounts", "web", "kernel")
PLANTED = ("argparse", "hmac", "json", "base64", "socket", "asyncio")
"""Modules every entry point imports early (argparse: the health checks and the CLI; json:
aiohttp, the codec; hmac: checkpoints; the rest: the bus and urllib)."""
SECRET = "planted-module-would-steal-this"
RUN_TIMEOUT = 60


# -- what compose and the images run -------------------------------------------------------------


def _compose_services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = YAML(typ="safe").load(COMPOSE_FILE.read_text())[
        "services"
    ]
    return services


def _python_commands() -> dict[str, list[str]]:
    """Every Python command a deployment runs: name -> argv (``python`` first)."""
    commands: dict[str, list[str]] = {}
    for name, service in _compose_services().items():
        command = service.get("command")
        if isinstance(command, str):
            command = command.split()
        if command and command[0] == "python":
            commands[f"compose {name} command"] = command
        test = (service.get("healthcheck") or {}).get("test") or []
        if test[:2] == ["CMD", "python"]:
            commands[f"compose {name} healthcheck"] = test[1:]
    for image in SERVICES:
        for keyword, arguments in final_stage(image):
            if keyword in ("CMD", "ENTRYPOINT"):
                commands[f"{image} Dockerfile {keyword}"] = json.loads(arguments)
    return commands


COMMANDS = _python_commands()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, Path]:
    """(a folder of planted modules, the folder where they would leave their markers)."""
    trap, markers = tmp_path / "writable-by-a-session", tmp_path / "markers"
    trap.mkdir()
    markers.mkdir()
    for name in PLANTED:
        (trap / f"{name}.py").write_text(
            "import os\n"
            f"with open(os.path.join({str(markers)!r}, {name!r}), 'w') as stolen:\n"
            "    stolen.write(os.environ.get('CELLBUS_REDIS_URL', '') + ' '\n"
            "                 + os.environ.get('CELLBUS_SECRET', ''))\n"
        )
    return trap, markers


def _env(**extra: str) -> dict[str, str]:
    """A service's environment with nothing to reach (each command fails fast) and secrets
    worth stealing; no PYTHONSAFEPATH, so only the command itself can keep the path safe."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CELLBUS_", "PYTHON"))}  # fmt: skip
    env.update(
        CELLBUS_REDIS_URL=f"redis://kernel:{SECRET}@127.0.0.1:{_free_port()}/0",
        CELLBUS_SECRET=SECRET,
        CELLBUS_DATABASE_URL=f"postgresql://nobody@127.0.0.1:{_free_port()}/none",
        CELLBUS_PORT=str(_free_port()),
        **extra,
    )
    return env


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    python = [sys.executable] if argv[0] == "python" else [argv[0]]
    return subprocess.run(
        python + argv[1:], cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT
    )


def _stolen(markers: Path) -> list[str]:
    return sorted(path.name for path in markers.iterdir())


# -- running them --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_no_deployment_command_imports_a_planted_module(
    name: str, planted: tuple[Path, Path]
) -> None:
    trap, markers = planted
    result = _run(COMMANDS[name], trap, _env())
    assert _stolen(markers) == [], f"{name} imported planted modules:\n{result.stderr}"
    # It ran past its imports, to where it needs Redis (or, the web check, a web service).
    reached = ("Redis unavailable", "Connection refused")
    assert result.returncode == 0 or any(r in result.stderr for r in reached), result.stderr


def test_the_command_line_client_and_the_acl_tool_import_no_planted_module(
    planted: tuple[Path, Path],
) -> None:
    trap, markers = planted
    cellbus = str(Path(sys.executable).with_name("cellbus"))
    for argv in ([cellbus, "--help"], ["python", "-P", "-m", "cellbus_protocol.acl", "--help"]):
        result = _run(argv, trap, _env())
        assert result.returncode == 0, result.stderr
        assert "usage" in result.stdout.lower()
    assert _stolen(markers) == []


def test_the_images_environment_alone_keeps_a_plain_python_m_safe(
    planted: tuple[Path, Path],
) -> None:
    """Someone running ``docker compose exec kernel python -m ...`` without ``-P`` is still
    safe: the images set PYTHONSAFEPATH=1."""
    for service in SERVICES:
        envs = " ".join(a for k, a in final_stage(service) if k == "ENV")
        assert "PYTHONSAFEPATH=1" in envs.split(), service
    trap, markers = planted
    result = _run(["python", "-m", "cellbus_kernel.healthcheck", "--timeout", "1"], trap,
                  _env(PYTHONSAFEPATH="1"))  # fmt: skip
    assert result.returncode == 1 and "unhealthy" in result.stderr, result.stderr
    assert _stolen(markers) == []


def test_control_without_the_safe_path_the_plant_is_imported_and_steals(
    planted: tuple[Path, Path],
) -> None:
    """The attack as it happened, so the tests above could fail: a plain ``python -m`` in a
    folder a session wrote imports its argparse.py, which reads the secrets."""
    trap, markers = planted
    _run(["python", "-m", "cellbus_kernel.healthcheck"], trap, _env())
    assert "argparse" in _stolen(markers)
    assert SECRET in (markers / "argparse").read_text()


# -- the files say so ----------------------------------------------------------------------------


def test_every_python_of_the_deployment_starts_with_the_safe_path() -> None:
    expected = {f"compose {s} command" for s in SERVICES} | {
        f"{s} Dockerfile CMD" for s in SERVICES
    }
    expected |= {"compose accounts healthcheck", "compose kernel healthcheck",
                 "compose web healthcheck"}  # fmt: skip
    assert set(COMMANDS) == expected
    for name, argv in COMMANDS.items():
        assert argv[:2] == ["python", "-P"], name


@pytest.mark.parametrize("service", SERVICES)
def test_the_images_working_directory_is_roots_and_read_only_to_others(service: str) -> None:
    lines = final_stage(service)
    workdirs = [arguments for keyword, arguments in lines if keyword == "WORKDIR"]
    assert workdirs, service
    workdir = workdirs[-1]
    runs = " && ".join(arguments for keyword, arguments in lines if keyword == "RUN")
    assert f"install -d -o root -g root -m 0755 {workdir}" in runs, (service, workdir)
    for grant in ("1777", "0777", "o+w", "a+w", f"chown cellbus-session {workdir}"):
        assert grant not in runs, (service, grant)
    assert not workdir.startswith(("/tmp", "/home", "/var/lib/cellbus/sessions")), workdir


def test_kernel_sessions_work_under_their_own_root_on_a_volume_never_the_workers_folder() -> None:
    kernel = _compose_services()["kernel"]
    sessions_dir = kernel["environment"]["CELLBUS_SESSIONS_DIR"]
    mounts = {volume.split(":", 1)[1]: volume.split(":", 1)[0] for volume in kernel["volumes"]}
    assert sessions_dir in mounts, "the sessions' root must be a volume of its own"
    lines = final_stage("kernel")
    workdir = [arguments for keyword, arguments in lines if keyword == "WORKDIR"][-1]
    assert not Path(workdir).is_relative_to(sessions_dir)
    assert not Path(sessions_dir).is_relative_to(workdir)
    runs = " && ".join(arguments for keyword, arguments in lines if keyword == "RUN")
    assert f"install -d -o root -g root -m 0711 {sessions_dir}" in runs
    assert "/srv/sessions" not in runs


SOURCE_FOLDERS = ("services", "shared", "frontend/cli", "bench/cellbus_bench", "tests/support")
"""Where processes of cellbus (services, health checks, tools, the test stacks) are started."""


def _unsafe_python_starts(path: Path) -> list[int]:
    """Lines of `path` that start ``sys.executable -m|-c`` without ``-P`` right after it."""
    unsafe = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.List, ast.Tuple)):
            items = list(node.elts)
        elif isinstance(node, ast.Call):
            items = list(node.args)
        else:
            continue
        for first, second in itertools.pairwise(items):
            if (ast.unparse(first) == "sys.executable" and isinstance(second, ast.Constant)
                    and second.value in ("-m", "-c")):  # fmt: skip
                unsafe.append(node.lineno)
    return sorted(unsafe)


def test_no_process_is_started_without_the_safe_path(tmp_path: Path) -> None:
    found = {}
    for folder in SOURCE_FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            if ".venv" in path.parts or "node_modules" in path.parts:
                continue
            if lines := _unsafe_python_starts(path):
                found[str(path.relative_to(ROOT))] = lines
    assert found == {}, "start Python with -P (python -P -m ...)"
    # The checker finds what it is meant to find.
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import subprocess, sys\n"
        "subprocess.run([sys.executable, '-m', 'cellbus_web'])\n"
        "subprocess.run([sys.executable, '-P', '-m', 'cellbus_web'])\n"
        "asyncio.create_subprocess_exec(sys.executable, '-c', 'pass')\n"
    )
    assert _unsafe_python_starts(sample) == [2, 4]
