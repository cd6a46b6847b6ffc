"""What runs in a Dask worker process of a session's parallel cells (`cellbus.parallel`).

The process is forked from the template like a session process and has entered the same
sandbox (the session's workspace, its user, its limits; a private folder of its own). It
reads one `frames.ParallelPorts` from its kernel worker, then runs a `distributed.Worker`
that joins the session's scheduler over TLS with the session's credentials, listening only
on the ports the sandbox allows. It ends when its worker closes (the scheduler went away,
or told it to), and when its kernel worker goes (end of file on the pipe).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import threading
from typing import NoReturn

from . import frames, isolation
from .sandbox import TMP_NAME

DEATH_TIMEOUT = 30.0
"""Seconds a worker that cannot reach its scheduler waits before it ends."""


WORKER_CONFIG = {
    "distributed.worker.daemon": False,  # tasks may use multiprocessing
    # Dask's statistical profiler samples the task thread's stack every 10 ms, taking the GIL
    # from it: a few percent of every task's time, for profiles only the dashboard's (script)
    # pages show, which the proxy does not serve. The GIL monitor likewise.
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.gil.enabled": False,
}


def serve(pipe: frames.FramedSocket) -> NoReturn:
    """Run a Dask worker for the scheduler the next frame names; never returns."""
    isolation.die_with_parent()  # the template, which dies with the kernel worker
    setup = pipe.receive()
    if not isinstance(setup, frames.ParallelPorts):
        os._exit(2)
    for folder in reversed(setup.sys_path):  # the worksheet's own packages, as the session
        if folder not in sys.path:
            sys.path.insert(1, folder)
    threading.Thread(target=_exit_when_closed, args=(pipe,), daemon=True).start()
    asyncio.run(_run(setup))
    os._exit(0)


def _exit_when_closed(pipe: frames.FramedSocket) -> None:
    with contextlib.suppress(Exception):
        while pipe.receive() is not None:
            pass
    os._exit(0)


async def _run(setup: frames.ParallelPorts) -> None:
    import dask
    from distributed import Worker
    from distributed.security import Security

    from .cluster import free_port, quiet_dask

    quiet_dask()  # the kernel worker's log gets the workers' warnings and errors only

    ca, cert, key = setup.tls
    security = Security(
        tls_ca_file=ca,
        tls_worker_cert=cert,
        tls_worker_key=key,
        tls_client_cert=cert,
        tls_client_key=key,
        require_encryption=True,
    )
    ports = list(setup.ports)
    random.shuffle(ports)  # workers of one machine start together: each tries its own order
    local = os.path.join(os.environ.get("HOME", "."), TMP_NAME)
    with dask.config.set(WORKER_CONFIG):
        worker = Worker(
            setup.scheduler,
            host=setup.host,
            port=ports,
            nthreads=1,
            name=setup.name,
            security=security,
            protocol="tls",
            dashboard=False,
            dashboard_address=f"{setup.host}:{free_port(setup.host, setup.http_ports)}",
            memory_limit=setup.memory_limit or "auto",
            local_directory=local,
            death_timeout=DEATH_TIMEOUT,
        )
        await worker
        await worker.finished()
