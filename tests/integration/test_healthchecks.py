"""The container health checks that docker-compose.yml runs for the accounts service and the
kernel workers (``python -m cellbus_accounts.healthcheck``, ``python -m
cellbus_kernel.healthcheck``), against the services started as a deployment starts them: separate
processes on the real Redis (and PostgreSQL, in a fresh database).

A health check that always passes is worse than none (compose would start web in front of a
dead accounts service), so each is shown to say "unhealthy" (exit 1) when its service is
stopped, when its bus is away, and within its deadline; and "healthy" (exit 0) while the
service serves.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellbus_kernel.healthcheck import workers_of

from ..support.postgres import create_database, drop_database
from ..support.stack import ServiceProcess, free_port
from ..support.workers import WorkerProcess, service_env

DEADLINE = 2.0
"""The ``--timeout`` the tests give a check that is expected to fail (the default is 5 s)."""
HEARTBEAT = 0.2
"""The workers' heartbeat here: a killed worker's row expires three heartbeats later."""


def run_check(module: str, env: dict[str, str], timeout: float | None = None) -> tuple[int, str]:
    """Run a health check as docker runs it; (exit status, its output), and never longer
    than its own deadline allows."""
    argv = [sys.executable, "-P", "-m", module]
    if timeout is not None:
        argv += ["--timeout", str(timeout)]
    started = time.monotonic()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    allowed = (timeout or 5.0) + 5.0  # interpreter start and closing the bus
    assert time.monotonic() - started < allowed, f"{module} took too long"
    return result.returncode, result.stdout + result.stderr


def unreachable_bus(env: dict[str, str]) -> dict[str, str]:
    return {**env, "CELLBUS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}


# -- accounts ----------------------------------------------------------------------------------


@pytest.fixture
def accounts_env(namespace: str) -> Iterator[dict[str, str]]:
    """The environment of an accounts process: the test's namespace, a fresh database."""
    name, url = asyncio.run(create_database())
    try:
        yield service_env(namespace, database_url=url)
    finally:
        asyncio.run(drop_database(name))


def test_accounts_check_is_healthy_while_the_service_serves_and_not_once_it_stops(
    accounts_env: dict[str, str], tmp_path: Path
) -> None:
    service = ServiceProcess("cellbus_accounts", accounts_env, tmp_path / "accounts.log")
    try:
        service.wait_for_log("accounts service ready")
        status, output = run_check("cellbus_accounts.healthcheck", accounts_env)
        assert status == 0, output + service.log_text()
        assert "healthy" in output
        assert service.stop() == 0, service.log_text()

        status, output = run_check("cellbus_accounts.healthcheck", accounts_env, DEADLINE)
        assert status == 1, output
        assert "unhealthy" in output and "no answer" in output, output
    finally:
        service.close()


def test_accounts_check_is_unhealthy_without_the_bus(namespace: str) -> None:
    env = unreachable_bus(service_env(namespace))
    status, output = run_check("cellbus_accounts.healthcheck", env, DEADLINE)
    assert status == 1, output
    assert "BusUnavailable" in output, output


# -- kernel workers ----------------------------------------------------------------------------


def kernel_env(namespace: str, **settings: object) -> dict[str, str]:
    env = service_env(namespace, heartbeat_interval=HEARTBEAT, **settings)
    if "worker_id" not in settings:
        env.pop("CELLBUS_WORKER_ID", None)  # the default id, named after the host
    return env


def test_kernel_check_finds_this_hosts_worker_by_its_default_id_until_it_stops(
    namespace: str, tmp_path: Path
) -> None:
    """As in a container: no CELLBUS_WORKER_ID, the worker's id starts with the host name."""
    env = kernel_env(namespace)
    worker = ServiceProcess("cellbus_kernel", env, tmp_path / "kernel.log")
    try:
        worker.wait_for_log(f"kernel worker {socket.gethostname()}-{worker.process.pid}-")
        status, output = run_check("cellbus_kernel.healthcheck", env)
        assert status == 0, output + worker.log_text()

        # Another worker's id is not this one: the check looks for its own worker only.
        status, output = run_check("cellbus_kernel.healthcheck", {**env, "CELLBUS_WORKER_ID": "x"})
        assert status == 1, output

        # SIGTERM: the worker drains and removes its row; the check says so at once.
        assert worker.stop() == 0, worker.log_text()
        status, output = run_check("cellbus_kernel.healthcheck", env, DEADLINE)
        assert status == 1, output
        assert "no live worker" in output, output
    finally:
        worker.close()


def test_kernel_check_follows_cellbus_worker_id_and_notices_a_killed_worker(
    namespace: str, tmp_path: Path
) -> None:
    """A worker that dies without cleaning up leaves its row, which expires three heartbeats
    later: the check turns unhealthy then, as compose's retries allow for."""
    env = kernel_env(namespace, worker_id="kernel-hc")
    worker = WorkerProcess(namespace, "kernel-hc", tmp_path, heartbeat_interval=HEARTBEAT)
    try:
        worker.wait_ready()
        status, output = run_check("cellbus_kernel.healthcheck", env)
        assert status == 0, output + worker.log_text()

        os.kill(worker.pid, signal.SIGKILL)
        worker.process.wait(10)
        deadline = time.monotonic() + 3 * HEARTBEAT + 10
        while (status := run_check("cellbus_kernel.healthcheck", env, DEADLINE)[0]) == 0:
            assert time.monotonic() < deadline, "a killed worker still counts as live"
        assert status == 1
    finally:
        worker.stop()


def test_kernel_check_is_unhealthy_without_the_bus(namespace: str) -> None:
    status, output = run_check("cellbus_kernel.healthcheck", unreachable_bus(kernel_env(namespace)))
    assert status == 1, output
    assert "BusUnavailable" in output, output


def test_which_rows_of_the_load_table_are_this_hosts_worker() -> None:
    members = ["web1-12-abcdef", "web1-2-34-abcdef", "web12-5-0a1b2c", "kernel-1", "web1-x-abcdef"]
    assert workers_of(members, "", "web1") == ["web1-12-abcdef"]
    assert workers_of(members, "", "web1-2") == ["web1-2-34-abcdef"]
    assert workers_of(members, "kernel-1", "web1") == ["kernel-1"]
    assert workers_of(members, "kernel-2", "web1") == []
    assert workers_of([], "", "web1") == []
