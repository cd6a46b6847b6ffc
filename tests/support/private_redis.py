"""A private ``redis-server`` on a free port, started with the arguments a test gives it.

For tests that change what the server itself does (its users and ACLs), which the shared
Redis of the suite must never be subjected to. The server keeps nothing on disk and stops
with the test.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

START_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrivateRedis:
    """``redis-server --port <free> <args>`` in `folder`; `admin` is a client of the user
    named by `admin_user` and `admin_password` (None: no authentication)."""

    def __init__(
        self,
        folder: Path,
        args: list[str],
        admin_user: str | None = None,
        admin_password: str | None = None,
        port: int | None = None,
    ) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed; `make test` installs it")
        self.port = port or free_port()
        self.log_path = folder / "redis.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(folder),
             "--save", "", "--appendonly", "no", *args],
            stdout=self._log, stderr=self._log,
        )  # fmt: skip
        self.admin = self.client(admin_user, admin_password)
        self._wait_ready()

    def url(self, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user or ''}:{password}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self, user: str | None = None, password: str | None = None) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.port, username=user, password=password,
            socket_timeout=5, socket_connect_timeout=5,
        )  # fmt: skip

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited:\n{self.log_path.read_text()}")
            try:
                self.admin.ping()
                return
            except redis.ConnectionError as exc:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server did not answer on port {self.port}") from exc
                time.sleep(0.02)

    def close(self) -> None:
        self.admin.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
