"""Whole cellbus systems for end-to-end tests, started exactly as users start them.

`ServicesStack` is a deployment: ``python -m cellbus_accounts``, ``python -m cellbus_kernel``
and two ``python -m cellbus_web`` processes on the real Redis (a namespace of the test's own)
and the real PostgreSQL (a fresh database). `OneProgramStack` is ``make run``'s program,
``python -m cellbus_allinone``, on its in-process bus and SQLite. Both are used only through
their HTTP API and WebSocket.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Self

import pytest

from cellbus_protocol import acl
from cellbus_protocol.acl import Service

from .postgres import create_database, drop_database
from .private_redis import PrivateRedis
from .redis import delete_namespace, new_namespace, require_redis
from .redis_cluster import LoopbackCluster
from .workers import WorkerProcess, service_env

WEB_SETTINGS = {"socket_queue": 200}
FEED_RETENTION = 30_000  # every message of the tests' biggest run stays retained


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServiceProcess:
    """``python -P -m <module>`` with an environment, its output in a log file. ``-P``: the
    working directory is not on the import path (a file planted there is never imported)."""

    def __init__(
        self, module: str, env: dict[str, str], log_path: Path, argv: list[str] | None = None
    ) -> None:
        self.module = module
        self.argv = argv or [sys.executable, "-P", "-m", module]
        self.env = env
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv, env=self.env, stdout=self._log, stderr=self._log)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_http(self, url: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.module} exited:\n{self.log_text()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"{self.module} did not answer at {url}:\n{self.log_text()}")

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.module}: no {text!r} in its log:\n{self.log_text()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def restart(self) -> None:
        self.stop()
        self.process = self._start()

    def kill(self) -> None:
        """SIGKILL: nothing is flushed, nothing is said to anyone."""
        self.process.kill()
        self.process.wait()

    def start_again(self) -> None:
        """Start it again as it was first started (after `kill` or `stop`)."""
        self.process = self._start()

    def close(self) -> None:
        self.stop()
        self._log.close()


class Stack:
    """A running system: the base URLs of its web processes. A context manager that closes
    the system however the block ends."""

    name = ""
    urls: list[str]
    workspaces: Path  # the root of the worksheets' workspaces (CELLBUS_WORKSPACES_DIR)

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ServicesStack(Stack):
    """Accounts, a kernel worker and two web processes on PostgreSQL and the test Redis, or,
    with `cluster`, on that Redis Cluster (``CELLBUS_REDIS_CLUSTER=true``; the stack closes
    it)."""

    name = "services"

    def __init__(
        self, log_dir: Path, cluster: LoopbackCluster | None = None, **web_settings: object
    ) -> None:
        require_redis()
        self.namespace = new_namespace()
        self.cluster = cluster
        bus: dict[str, object] = {}
        if cluster is not None:
            self.name = "services-cluster"
            bus = {"redis_url": cluster.url(), "redis_cluster": "true"}
        # The workspaces every kernel worker and web process of this stack share (a volume).
        self.workspaces = log_dir / "workspaces"
        self.database, self.database_url = asyncio.run(create_database())
        env = service_env(
            self.namespace,
            database_url=self.database_url,
            feed_retention=FEED_RETENTION,
            workspaces_dir=self.workspaces,
            **bus,
        )  # (the accounts service publishes on feeds too: its retention must be the kernel's)
        self.accounts = ServiceProcess("cellbus_accounts", env, log_dir / "accounts.log")
        self.kernel = WorkerProcess(
            self.namespace, "kernel-1", log_dir, memory_limit_mb=1000, output_cap=2_000_000,
            feed_retention=FEED_RETENTION, workspaces_dir=self.workspaces, **bus,
        )  # fmt: skip
        self.webs: list[ServiceProcess] = []
        self.urls = []
        for i in (1, 2):
            port = free_port()
            web_env = service_env(
                self.namespace, port=port, workspaces_dir=self.workspaces,
                **{**WEB_SETTINGS, **web_settings, **bus},
            )  # fmt: skip
            self.webs.append(ServiceProcess("cellbus_web", web_env, log_dir / f"web-{i}.log"))
            self.urls.append(f"http://127.0.0.1:{port}")
        try:
            self.accounts.wait_for_log("accounts service ready")
            self.kernel.wait_ready()
            for web, url in zip(self.webs, self.urls, strict=True):
                web.wait_for_http(url + "/healthz")
        except BaseException:  # a service that never came up: stop the others, close the logs
            self.close()
            raise

    def restart_web(self, i: int) -> None:
        self.webs[i].restart()
        self.webs[i].wait_for_http(self.urls[i] + "/healthz")

    def close(self) -> None:
        for web in self.webs:
            web.close()
        self.kernel.stop()
        self.accounts.close()
        asyncio.run(drop_database(self.database))
        delete_namespace(self.namespace)
        if self.cluster is not None:
            self.cluster.close()


class OneProgramStack(Stack):
    name = "one-program"

    def __init__(
        self,
        log_dir: Path,
        data_dir: Path,
        argv: list[str] | None = None,
        redis_url: str | None = None,
        **web_settings: object,
    ) -> None:
        port = free_port()
        settings = {**WEB_SETTINGS, **web_settings, "feed_retention": FEED_RETENTION}
        env = service_env("one-program", port=port, data_dir=data_dir, **settings)
        if redis_url is None:
            del env["CELLBUS_REDIS_URL"]  # the in-process bus
        else:
            env["CELLBUS_REDIS_URL"] = redis_url
        self.workspaces = data_dir / "workspaces"  # the one program's default
        self.program = ServiceProcess("cellbus_allinone", env, log_dir / "allinone.log", argv)
        self.urls = [f"http://127.0.0.1:{port}"]
        try:
            self.program.wait_for_http(self.urls[0] + "/healthz")
        except BaseException:  # it never came up: its log file is closed all the same
            self.program.close()
            raise

    def kill(self) -> None:
        """SIGKILL the one program (see `ServiceProcess.kill`)."""
        self.program.kill()

    def start_again(self) -> None:
        """Start the program again on the same data folder and port, and wait for it."""
        self.program.start_again()
        self.program.wait_for_http(self.urls[0] + "/healthz", timeout=60)

    def close(self) -> None:
        self.program.close()


def start_stack(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """The services apart (``"services"``), the same on a Redis Cluster of their own
    (``"services-cluster"``) or the one program (``"one-program"``), for the tests that run
    on several."""
    logs = tmp_path_factory.mktemp("logs")
    if kind == "services":
        return ServicesStack(logs)
    if kind == "services-cluster":
        return ServicesStack(logs, LoopbackCluster(tmp_path_factory.mktemp("redis-cluster")))
    return OneProgramStack(logs, tmp_path_factory.mktemp("data"))


class AclServicesStack(Stack):
    """Accounts, a kernel worker and a web process on PostgreSQL and a private Redis that has a
    user per service, each with its own password and only its grants (`cellbus_protocol.acl`,
    as docker-compose.yml sets Redis up), and the administrator as ``default``."""

    name = "services"

    def __init__(
        self,
        folder: Path,
        namespace: str,
        kernel_settings: dict[str, object],
        kernel_python: str = sys.executable,
    ) -> None:
        self.namespace = namespace
        self.passwords = {service: secrets.token_hex(16) for service in Service}
        admin = secrets.token_hex(16)
        args = acl.server_args(namespace, self.passwords, admin)
        self.redis = PrivateRedis(folder, args, "default", admin)
        self.database, database_url = asyncio.run(create_database())
        port = free_port()
        self.urls = [f"http://127.0.0.1:{port}"]
        self.worker_id = str(kernel_settings.get("worker_id", "acl-kernel"))
        self.envs = {
            Service.ACCOUNTS: self._env(Service.ACCOUNTS, database_url=database_url),
            Service.KERNEL: self._env(
                Service.KERNEL, **{**kernel_settings, "worker_id": self.worker_id}
            ),
            Service.WEB: self._env(Service.WEB, port=port),
        }
        kernel_argv = [kernel_python, "-P", "-m", "cellbus_kernel"]
        self.processes = {
            service: ServiceProcess(
                f"cellbus_{service.value}", self.envs[service], folder / f"{service.value}.log",
                kernel_argv if service is Service.KERNEL else None,
            )
            for service in Service
        }  # fmt: skip
        try:
            self.processes[Service.ACCOUNTS].wait_for_log("accounts service ready")
            self.processes[Service.KERNEL].wait_for_log(f"kernel worker {self.worker_id} ready")
            self.processes[Service.WEB].wait_for_http(self.urls[0] + "/healthz")
        except BaseException:
            self.close()
            raise

    def _env(self, service: Service, **settings: object) -> dict[str, str]:
        url = self.redis.url(service.value, self.passwords[service])
        return service_env(self.namespace, redis_url=url, **settings)

    def close(self) -> None:
        for process in self.processes.values():
            process.close()
        asyncio.run(drop_database(self.database))
        self.redis.close()
