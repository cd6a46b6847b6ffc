"""``python -m cellbus_web``: run one web process on the Redis bus."""

from __future__ import annotations

import asyncio
import os
import signal

from aiohttp import web

from cellbus_protocol.bus import create_bus
from cellbus_protocol.settings import configure_logging, settings_from_env

from .app import create_app
from .config import WebSettings


async def serve(settings: WebSettings) -> None:
    bus = create_bus(
        settings.redis_url, namespace=settings.namespace, cluster=settings.redis_cluster
    )
    await bus.start()
    runner = web.AppRunner(create_app(settings, bus), access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
        print(f"cellbus web listening on http://{settings.host}:{settings.port}/", flush=True)
        await stop.wait()
    finally:  # sockets get their cursors (on_shutdown), then the bus closes
        await runner.cleanup()
        await bus.close()


def main() -> None:
    settings = settings_from_env(WebSettings, os.environ)
    configure_logging(settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
