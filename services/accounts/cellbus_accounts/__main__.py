"""``python -m cellbus_accounts``: run the accounts service on the Redis bus."""

from __future__ import annotations

import asyncio
import os
import signal
import socket

from cellbus_protocol.bus import create_bus
from cellbus_protocol.settings import configure_logging, settings_from_env

from .config import AccountsSettings
from .handlers import Handlers
from .saver import OutputSaver
from .service import AccountsService
from .store import Store, database_for


async def serve(settings: AccountsSettings) -> None:
    bus = create_bus(
        settings.redis_url,
        namespace=settings.namespace,
        feed_retention=settings.feed_retention,
        cluster=settings.redis_cluster,
    )
    await bus.start()
    store = Store(database_for(settings.database_url))
    await store.open()
    saver = OutputSaver(store, bus)
    await saver.start()
    service = AccountsService(
        Handlers(store, bus, settings, saver),
        bus,
        f"accounts-{socket.gethostname()}-{os.getpid()}",
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, service.stop)
    try:
        await service.run()
    finally:
        await saver.close()
        await store.close()
        await bus.close()


def main() -> None:
    settings = settings_from_env(AccountsSettings, os.environ)
    configure_logging(settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
