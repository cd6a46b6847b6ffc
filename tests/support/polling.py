"""Waiting for what nothing announces: poll a check until it is true, within a time limit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

INTERVAL = 0.02
"""Seconds between two checks."""


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll `check` until it is true; fail (TimeoutError) after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
            await asyncio.sleep(INTERVAL)
