"""A hosted session's feed, as its worker publishes it: in order, nothing lost, and an
execution's announcement held for a moment so that it goes out with what follows.

`FeedPublisher` is the one way a session's messages reach its feed. It numbers nothing itself
(the bus gives each message its cursor, kept as `last_seq` for checkpoints) and retries while
the bus is away. Once the session's lease is lost (`silence`), it publishes nothing more:
another worker may host the session by then.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cellbus_protocol import codec, keys
from cellbus_protocol import messages as m
from cellbus_protocol.bus import Bus
from cellbus_protocol.envelope import Header, new_message
from cellbus_protocol.errors import BusUnavailable

from .tasks import TaskSet

log = logging.getLogger(__name__)

KERNEL_USERNAME = "kernel"
"""The username on feed messages that no request caused (a process starting or dying)."""
ANNOUNCE_WITHIN = 0.005
"""Seconds an execution's ``busy`` and ``execute_input`` may wait to go out with its first
output or reply (see `FeedPublisher.announce`)."""


class FeedPublisher:
    """Publishes one session's feed messages, one at a time, in order."""

    def __init__(self, session: str, bus: Bus) -> None:
        self.session = session
        self.name = keys.feed(session)
        self.state: m.FeedState = "starting"
        """The state last published, by a ``status`` or a ``session_state``."""
        self.last_seq = 0
        """The feed cursor of the last message published."""
        self.silenced = False
        self._bus = bus
        self._held: list[bytes] = []  # announcements not published yet
        self._held_until: asyncio.TimerHandle | None = None
        self._lock = asyncio.Lock()
        self._tasks = TaskSet(f"session {session} feed")

    def _message(
        self,
        content: m.Content,
        parent: Header | None,
        msg_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> bytes:
        self.state = m.state_of(content) or self.state
        if parent is None or parent.is_empty:
            msg = new_message(
                content, session=self.session, username=KERNEL_USERNAME, msg_id=msg_id,
                metadata=metadata,
            )  # fmt: skip
        else:  # as `reply_to`: the requester's username, so watchers see whose it is
            msg = new_message(
                content, session=self.session, username=parent.username, parent=parent,
                msg_id=msg_id, metadata=metadata,
            )  # fmt: skip
        return codec.encode(msg)

    def announce(self, content: m.Content, parent: Header) -> None:
        """Publish an announcement (an execution's ``cell_run``, ``busy`` or
        ``execute_input``) with the next feed message (its first output, or its reply), or
        after `ANNOUNCE_WITHIN` seconds if that comes first. Most executions take a
        millisecond: their messages then reach the feed together, and each watching socket
        gets them in one write, not two (with many watchers, those writes are most of the
        cost). Outputs are never held."""
        self._held.append(self._message(content, parent))
        if self._held_until is None:
            self._held_until = asyncio.get_running_loop().call_later(
                ANNOUNCE_WITHIN, self._held_due
            )

    def _held_due(self) -> None:
        self._held_until = None
        self._tasks.spawn(self._publish_held())

    async def _publish_held(self) -> None:
        async with self._lock:
            if self._held:
                await self._send(*self._take_held())

    def _take_held(self) -> list[bytes]:
        if self._held_until is not None:
            self._held_until.cancel()
            self._held_until = None
        held, self._held = self._held, []
        return held

    async def publish(
        self,
        content: m.Content,
        parent: Header | None,
        *,
        msg_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Publish one feed message (after any held announcement), retrying while the bus is
        away so nothing is lost; `msg_id` names it, for a caller that records it first;
        `metadata` is the message's (a comm's, from the session process)."""
        if self.silenced:
            return
        data = self._message(content, parent, msg_id, metadata)
        async with self._lock:
            await self._send(*self._take_held(), data)

    async def _send(self, *entries: bytes) -> None:
        """Publish `entries` in order, in one round trip (what was held and what follows)."""
        delay = 0.05
        while not self.silenced:
            try:
                self.last_seq = (await self._bus.publish_many(self.name, entries))[-1]
                return
            except BusUnavailable as exc:
                log.warning("session %s: cannot publish (%s); retrying", self.session, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def silence(self) -> None:
        """Publish nothing more (the lease is lost: another worker may host the session)."""
        self.silenced = True

    async def close(self) -> None:
        """The session left: announcements still held are dropped (its next host announces
        what it runs), and no publishing task outlives it."""
        if self._held_until is not None:
            self._held_until.cancel()
            self._held_until = None
        self._held = []
        await self._tasks.close()
