"""What every part of the Redis bus shares: timeouts, and how Redis failures are reported.

Non-blocking commands turn connection failures into `BusUnavailable`
(`unavailable_on_connection_error`); blocking reads reconnect with backoff instead
(`with_retry`). `stream_rows` reads XREAD/XREADGROUP replies in either RESP version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from redis import exceptions as redis_errors

from ..errors import BusUnavailable

log = logging.getLogger(__name__)

BLOCK_MS = 5_000
"""Longest single blocking read; reads loop, so this only bounds how stale a dead socket gets."""
COMMAND_TIMEOUT = 10.0
RETRY_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
WAKE_EXPIRY = 86_400
"""Seconds a wake stream outlives the bus that made it (if that bus died without cleaning up)."""

CONNECTION_ERRORS = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    OSError,
    # Redis Cluster while a failed master's replica takes over (or no node serves a slot):
    # the same as Redis being away for a moment.
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
    redis_errors.SlotNotCoveredError,
)

T = TypeVar("T")


@contextlib.contextmanager
def unavailable_on_connection_error() -> Iterator[None]:
    """Around Redis commands: connection failures become `BusUnavailable`, and a cancellation
    that redis-py dropped is raised (see `raise_if_cancelled`)."""
    task = asyncio.current_task()
    cancels = task.cancelling() if task is not None else 0
    try:
        yield
    except CONNECTION_ERRORS as exc:
        raise BusUnavailable(f"Redis unavailable: {exc}") from exc
    raise_if_cancelled(since=cancels)


def raise_if_cancelled(since: int = 0) -> None:
    """Raise the current task's cancellation if one was requested (more than `since`).

    redis-py sends each command under asyncio.wait_for, which on Python 3.11 returns normally
    when the task is cancelled while the send is under way (the send has finished by the time
    the cancellation is handled): the command then completes as if nothing had happened, and
    its caller would go on, say to wait for a feed entry with nobody left to stop it, or to
    start another blocking read. Around one command, `since` is the count at its start, which
    leaves alone a command that a cancelled task runs on purpose, in a ``finally`` or a
    ``close()``; before a blocking read it is 0.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling() > since:
        raise asyncio.CancelledError


async def with_retry(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """Run a blocking read, reconnecting with backoff while Redis is away."""
    for attempt in range(1_000_000):
        raise_if_cancelled()
        try:
            return await call()
        except CONNECTION_ERRORS as exc:
            delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
            log.warning("%s: Redis unavailable (%s); retrying in %.2f s", what, exc, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


async def stop_listening(task: asyncio.Task[Any] | None, pubsub: Any) -> None:
    """Cancel a listener's reading task and close its pub/sub connection (either may be
    None; a connection already lost is fine)."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    if pubsub is not None:
        with contextlib.suppress(*CONNECTION_ERRORS):
            await pubsub.aclose()


def stream_rows(response: Any) -> list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]:
    """XREAD/XREADGROUP replies as (key, rows), for RESP2 lists and RESP3 dicts alike."""
    if not response:
        return []
    if isinstance(response, dict):
        return [
            (key, rows[0] if rows and isinstance(rows[0], list) else rows)
            for key, rows in response.items()
        ]
    return [(key, rows) for key, rows in response]
