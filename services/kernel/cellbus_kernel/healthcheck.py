"""``python -m cellbus_kernel.healthcheck``: exit 0 if this host's kernel worker is live.

The container health check of the kernel workers (docker-compose.yml) runs this. A worker is
useful only while it reports its load: the load table (`keys.WORKERS`) is where other workers
and placement look, and a row there expires unless the worker's heartbeat renews it (every
CELLBUS_HEARTBEAT_INTERVAL, for three intervals). So the check is healthy when the bus answers
and a live row of the load table belongs to this host's worker: a worker whose loops are stuck
or which lost Redis drops out of the table, and one that is stopping removes its row at once.

Which row is this host's: CELLBUS_WORKER_ID when it is set, otherwise a row named as
`KernelWorker` names itself by default, ``<host name>-<pid>-<6 hex digits>``. In a container
the host name is the container's own, so each replica checks its own worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import socket
import sys
from collections.abc import Iterable

from cellbus_protocol import keys
from cellbus_protocol.bus import create_bus
from cellbus_protocol.settings import settings_from_env

from .config import KernelSettings

CHECK_TIMEOUT = 5.0
"""Seconds the whole check may take: below docker-compose.yml's health check timeout."""


def workers_of(members: Iterable[str], worker_id: str, hostname: str) -> list[str]:
    """The members of the load table that are this host's worker: `worker_id` if it is set,
    else default ids of `hostname` (and not those of a host whose name merely starts alike)."""
    if worker_id:
        return [member for member in members if member == worker_id]
    default_id = re.compile(rf"{re.escape(hostname)}-\d+-[0-9a-f]{{6}}")
    return [member for member in members if default_id.fullmatch(member)]


async def check(
    settings: KernelSettings, hostname: str, timeout: float = CHECK_TIMEOUT
) -> str | None:
    """None if this host's worker is in the live load table; otherwise why not.

    A health probe reports every failure as "unhealthy" rather than crashing, so any
    exception becomes the reason.
    """
    bus = create_bus(
        settings.redis_url, namespace=settings.namespace, cluster=settings.redis_cluster
    )
    try:
        async with asyncio.timeout(timeout):
            await bus.start()
            live = await bus.loads(keys.WORKERS)
    except TimeoutError:
        return f"no answer from the bus within {timeout:g} s"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await bus.close()
    if not workers_of(live, settings.worker_id, hostname):
        whose = settings.worker_id or f"host {hostname}"
        return f"no live worker of {whose} in the load table ({len(live)} live workers)"
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m cellbus_kernel.healthcheck",
        description="Exit 0 if this host's kernel worker is in the live load table, 1 if not.",
    )
    parser.add_argument("--timeout", type=float, default=CHECK_TIMEOUT, help="seconds")
    args = parser.parse_args(argv)
    settings = settings_from_env(KernelSettings, os.environ)
    problem = asyncio.run(check(settings, socket.gethostname(), args.timeout))
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        sys.exit(1)
    print("healthy: this host's kernel worker is live")


if __name__ == "__main__":
    main()
