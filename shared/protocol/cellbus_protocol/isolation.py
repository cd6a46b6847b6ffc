"""How well kernel workers sandbox user code, as they announce it on the bus.

A worker on a kernel without Landlock cannot keep a cell from anything its own user can reach.
That is fine for one person on a laptop, and dangerous for anyone else: the web service says
so in ``/healthz`` and the accounts service refuses a second account (unless
``CELLBUS_ALLOW_UNSANDBOXED``). The weakest live worker decides, since any of them may host
any session.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import msgspec

from . import keys

if TYPE_CHECKING:  # the kernel's template imports this module: not the Redis client with it
    from .bus import Bus


class Level(enum.Enum):
    """How much of the sandbox a worker's kernel enforces (docs/security.md)."""

    FULL = "full"  # files, TCP ports, UNIX sockets, signals and ptrace
    PARTIAL = "partial"  # some of it: see `WorkerIsolation.missing`
    NONE = "none"  # no Landlock: user code reaches whatever the worker's user reaches


RANK = {Level.NONE: 0, Level.PARTIAL: 1, Level.FULL: 2}


class WorkerIsolation(msgspec.Struct, frozen=True):
    """One worker's announcement (the value in `keys.WORKER_ISOLATION`)."""

    level: Level
    missing: list[str] = []  # what its kernel cannot enforce


async def announce(bus: Bus, worker: str, isolation: WorkerIsolation) -> None:
    await bus.set_entry(keys.WORKER_ISOLATION, worker, msgspec.json.encode(isolation).decode())


async def withdraw(bus: Bus, worker: str) -> None:
    value = await bus.get_entry(keys.WORKER_ISOLATION, worker)
    if value is not None:
        await bus.remove_entry(keys.WORKER_ISOLATION, worker, value)


async def weakest(bus: Bus) -> WorkerIsolation | None:
    """The least isolation among the live workers; None while no worker is alive."""
    live = await bus.loads(keys.WORKERS)
    found = []
    for worker, value in (await bus.entries(keys.WORKER_ISOLATION)).items():
        if worker in live:
            found.append(msgspec.json.decode(value, type=WorkerIsolation))
    if not found:
        return None
    return min(found, key=lambda isolation: RANK[isolation.level])
