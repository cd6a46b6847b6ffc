"""Stopping the web process's background tasks (a feed's relay, the role and presence loops)."""

from __future__ import annotations

import asyncio


async def stop(task: asyncio.Task[None] | None) -> None:
    """Cancel `task` and wait until it has ended. Its own cancellation is not an error; the
    caller's is passed on (a caller cancelled while it waits, as a long-poll's handler is
    when its client goes, must end too, not carry on as if the wait had finished)."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
