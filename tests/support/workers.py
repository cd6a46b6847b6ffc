"""Kernel workers as separate processes, started exactly as a deployment starts them."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import redis

from .redis import REDIS_URL

TEST_SECRET = secrets.token_hex(16)
"""The CELLBUS_SECRET of this test run's kernel workers (they sign checkpoints with it)."""


def service_env(namespace: str, **settings: object) -> dict[str, str]:
    """The environment a service process of the tests runs with: the test Redis, the test's
    namespace, INFO logs, the test run's secret, and each of `settings` as its CELLBUS_*
    variable."""
    env = dict(os.environ)
    env.update(
        CELLBUS_REDIS_URL=REDIS_URL,
        CELLBUS_NAMESPACE=namespace,
        CELLBUS_LOG_LEVEL="INFO",
        CELLBUS_SECRET=TEST_SECRET,
    )
    env.update({f"CELLBUS_{k.upper()}": str(v) for k, v in settings.items()})
    return env


class WorkerProcess:
    """``python -P -m cellbus_kernel`` on the test Redis, in a namespace of the test's."""

    def __init__(self, namespace: str, worker_id: str, log_dir: Path, **settings: object) -> None:
        self.namespace = namespace
        self.worker_id = worker_id
        self.log_path = log_dir / f"{worker_id}.log"
        env = service_env(namespace, worker_id=worker_id, **settings)
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "cellbus_kernel"],
            env=env,
            stdout=self._log,
            stderr=self._log,
        )
        self._redis: redis.Redis | redis.RedisCluster = redis.Redis.from_url(REDIS_URL)
        if settings.get("redis_cluster"):  # the first seed node leads to the rest
            first = str(settings["redis_url"]).split(",")[0].removeprefix("redis://")
            self._redis = redis.RedisCluster.from_url(f"redis://{first}")

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log_path.read_text()}")
            if self._redis.hexists(f"{self.namespace}:workers", self.worker_id):
                return
            time.sleep(0.02)
        raise TimeoutError(f"worker {self.worker_id} not ready: {self.log_path.read_text()}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log_path.read_text()

    def wait_for_log(self, text: str, timeout: float = 20.0) -> None:
        """Block until the worker's log contains `text` (the log is the observable here)."""
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not in the log of {self.worker_id}")
            time.sleep(0.02)

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        self._redis.close()


@contextlib.contextmanager
def running_workers(
    namespace: str, names: Iterable[str], log_dir: Path, **settings: object
) -> Iterator[list[WorkerProcess]]:
    """Kernel workers named `names`, each ready, all stopped however the block ends."""
    workers = [WorkerProcess(namespace, name, log_dir, **settings) for name in names]
    try:
        for worker in workers:
            worker.wait_ready()
        yield workers
    finally:
        for worker in workers:
            worker.stop()
