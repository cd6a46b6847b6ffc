"""A PostgreSQL cluster of a test's own, which the test may crash and start again.

The shared PostgreSQL on 5432 is never stopped by a test; a test about PostgreSQL going away
makes its own cluster with `PrivatePostgres`: ``initdb`` into a temporary folder (trust
authentication, one superuser ``postgres``), then ``pg_ctl`` to start it on a free port of
127.0.0.1, stop it (``fast``, or ``immediate``: a crash, recovered from the WAL at the next
start) and start it again on the same port and data. The server keeps ``fsync`` and
``synchronous_commit`` on: these tests are about what survives.

PostgreSQL refuses to run as root, so as root the commands run as the ``postgres`` user
(``runuser``), and the folder is handed to that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SERVER_USER = "postgres"
START_TIMEOUT = 60  # seconds, for pg_ctl start/stop; crash recovery of a small cluster is quick

SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "50",
    "shared_buffers": "16MB",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


def _bin_dir() -> Path:
    """Where initdb and pg_ctl are: $CELLBUS_TEST_PG_BIN, Debian's newest version, or $PATH."""
    if configured := os.environ.get("CELLBUS_TEST_PG_BIN"):
        return Path(configured)
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("pg_ctl")
    if found is None:
        raise RuntimeError("no PostgreSQL binaries found; set CELLBUS_TEST_PG_BIN")
    return Path(found).parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    """A throwaway PostgreSQL cluster; `url` reaches its ``postgres`` database."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self._as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="cellbus-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.running = False
        try:
            if self._as_root:
                user = pwd.getpwnam(SERVER_USER)
                os.chown(self.root, user.pw_uid, user.pw_gid)
            self.root.chmod(0o700)
            self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C",
            )  # fmt: skip
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write("\n# cellbus tests\n")
                conf.write(f"port = {self.port}\n")
                conf.write(f"unix_socket_directories = '{self.root}'\n")
                for name, value in SETTINGS.items():
                    conf.write(f"{name} = {value}\n")
            self.start()
        except BaseException:
            self.cleanup()
            raise

    def _run(self, program: str, *args: str, timeout: float = START_TIMEOUT) -> None:
        command = [str(self.bin / program), *args]
        if self._as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=self.root, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stdout}{done.stderr}\n{self.log_text()}"
            )

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def start(self) -> None:
        """Start the server and wait until it accepts connections (after any recovery)."""
        self._run(
            "pg_ctl", "start", "-D", str(self.data), "-l", str(self.log_path), "-w",
            "-t", str(START_TIMEOUT),
        )  # fmt: skip
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (clean shutdown) or ``immediate`` (a crash: no checkpoint,
        every connection cut; the next start recovers from the WAL)."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"unknown stop mode {mode!r}")
        self._run(
            "pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", str(START_TIMEOUT)
        )
        self.running = False

    def cleanup(self) -> None:
        """Stop the server if it runs, and delete the cluster."""
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            try:
                self.stop("immediate")
            except Exception:
                self._kill_postmaster(pid_file)
        shutil.rmtree(self.root, ignore_errors=True)

    def _kill_postmaster(self, pid_file: Path) -> None:
        """When pg_ctl cannot stop it: SIGQUIT (immediate shutdown), then SIGKILL."""
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                os.kill(pid, 0)  # raises once it is gone
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)
