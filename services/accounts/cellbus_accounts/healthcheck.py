"""``python -m cellbus_accounts.healthcheck``: exit 0 if the accounts service answers on the bus.

The container health check of the accounts service (docker-compose.yml) runs this. A process
that is up but not serving (still migrating, or cut off from Redis) must not count as healthy,
and only a request on the accounts queue shows that it serves. So the check asks the service
itself: ``auth.whoami`` with no user. The service answers that with ``unauthenticated`` without
touching the database, so the check costs nothing and says nothing about PostgreSQL (which has
its own health check; restarting the accounts service would not help it).

Any answer is healthy, including an error; no answer within the deadline (or no bus) is not.
The request goes to the accounts queue, which every accounts process reads, so this checks the
service, not this one process. While no process serves, each check leaves its request in the
queue; the service answers them to no one when it comes back, which costs it nothing.

Settings are the service's own (CELLBUS_REDIS_URL, CELLBUS_NAMESPACE), from the same
environment as the service, so the check asks exactly the bus the service uses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

from cellbus_protocol.accounts import AccountsClient, WhoAmI
from cellbus_protocol.bus import create_bus
from cellbus_protocol.errors import RemoteError
from cellbus_protocol.settings import settings_from_env

from .config import AccountsSettings

CHECK_TIMEOUT = 5.0
"""Seconds the whole check may take: below docker-compose.yml's health check timeout."""


async def check(settings: AccountsSettings, timeout: float = CHECK_TIMEOUT) -> str | None:
    """None if the accounts service answered within `timeout` seconds; otherwise why not.

    A health probe reports every failure as "unhealthy" rather than crashing, so any
    exception becomes the reason.
    """
    bus = create_bus(
        settings.redis_url, namespace=settings.namespace, cluster=settings.redis_cluster
    )
    try:
        async with asyncio.timeout(timeout):
            await bus.start()
            await AccountsClient(bus, timeout=timeout).call(WhoAmI())
    except RemoteError:
        return None  # an error reply (unauthenticated: there is no user) is an answer
    except TimeoutError:
        return f"no answer from the accounts service within {timeout:g} s"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await bus.close()
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m cellbus_accounts.healthcheck",
        description="Exit 0 if the accounts service answers on the bus, 1 if not.",
    )
    parser.add_argument("--timeout", type=float, default=CHECK_TIMEOUT, help="seconds")
    args = parser.parse_args(argv)
    settings = settings_from_env(AccountsSettings, os.environ)
    problem = asyncio.run(check(settings, args.timeout))
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        sys.exit(1)
    print("healthy: the accounts service answered")


if __name__ == "__main__":
    main()
