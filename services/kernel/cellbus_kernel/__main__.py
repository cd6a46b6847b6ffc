"""``python -m cellbus_kernel``: run one kernel worker on the Redis bus."""

from __future__ import annotations

import asyncio
import os
import signal

from cellbus_protocol.bus import create_bus
from cellbus_protocol.settings import configure_logging, settings_from_env

from .config import KernelSettings
from .isolation import forbid_inspection
from .worker import KernelWorker


async def serve(settings: KernelSettings) -> None:
    bus = create_bus(
        settings.redis_url,
        namespace=settings.namespace,
        feed_retention=settings.feed_retention,
        cluster=settings.redis_cluster,
    )
    await bus.start()
    worker = KernelWorker(settings, bus)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, worker.stop)
    try:
        await worker.run()
    finally:
        await bus.close()


def main() -> None:
    settings = settings_from_env(KernelSettings, os.environ)
    forbid_inspection()  # user code must not read this process's environment or memory
    configure_logging(settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
