"""Session feeds inside one web process: one bus subscription per session, shared.

However many browsers watch a session through this process, the process follows the
session's feed once (`SharedFeed`) and hands each entry to every `Listener`. A listener
joins at the cursor it last saw: it first gets the retained entries after that cursor, read
from the bus, then the live ones; entries it already has (seen by both ways while it joins)
are skipped by cursor, so it gets each entry exactly once, in order.

Entries that reach the process together (an execution's ``busy``, output and reply, say)
are handed on together, as one list: with many listeners, the cost is per listener and call
more than per entry.

Listeners must not block: `Listener.deliver` is called synchronously for each list, and a
socket that cannot keep up is dropped by its own bounded queue (see `ws`), never by holding
up this loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from cellbus_protocol import keys
from cellbus_protocol.bus import Bus, FeedEntry, Subscription
from cellbus_protocol.errors import BusUnavailable

from . import tasks

log = logging.getLogger(__name__)

PAGE = 1000

Deliver = Callable[[str, list[FeedEntry]], None]
"""Called with a session and some of its feed's entries, in order."""


class Listener:
    """One follower of one session's feed, fed in cursor order without repeats."""

    def __init__(self, session: str, cursor: int, deliver: Deliver):
        self.session = session
        self.cursor = cursor  # the last cursor handed on
        self._deliver = deliver
        self._joining: list[FeedEntry] | None = []  # live entries held while catching up

    def offer(self, entries: list[FeedEntry]) -> None:
        """Hand on `entries` (in cursor order), less any this listener already has."""
        if self._joining is not None:
            self._joining.extend(entries)
            return
        if entries[0].seq <= self.cursor:
            entries = [entry for entry in entries if entry.seq > self.cursor]
            if not entries:
                return
        self.cursor = entries[-1].seq
        self._deliver(self.session, entries)

    def _joined(self) -> None:
        held, self._joining = self._joining or [], None
        if held:
            self.offer(held)


class SharedFeed:
    """This process's one subscription to a session's live feed."""

    def __init__(self, bus: Bus, session: str) -> None:
        self.bus = bus
        self.session = session
        self.listeners: set[Listener] = set()
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe(keys.feed(self.session), None)
        self._task = asyncio.create_task(self._relay(), name=f"feed {self.session}")

    async def _relay(self) -> None:
        subscription = self._subscription
        assert subscription is not None
        while True:
            try:
                async for entry in subscription:
                    await asyncio.sleep(0)  # the publisher may have more in this step
                    entries = [entry]  # and those that came with it
                    while len(entries) < PAGE and (more := await subscription.next(0)) is not None:
                        entries.append(more)
                    for listener in list(self.listeners):
                        listener.offer(entries)
                return
            except BusUnavailable as exc:
                log.warning("feed %s: %s; following again", self.session, exc)
                await asyncio.sleep(1.0)

    async def close(self) -> None:
        try:
            await tasks.stop(self._task)
        finally:
            if self._subscription is not None:
                await self._subscription.close()


class FeedHub:
    """Every session feed this process follows, each followed once for all its listeners."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._feeds: dict[str, SharedFeed] = {}
        self._starting: dict[str, asyncio.Lock] = {}

    async def follow(
        self,
        session: str,
        cursor: int,
        deliver: Deliver,
        catch_up: Callable[[str, FeedEntry], Awaitable[None]] | None = None,
    ) -> Listener:
        """Deliver every entry of `session`'s feed after `cursor` to `deliver` until
        `unfollow`: the retained ones first (through `catch_up` if given, which may wait,
        say for room in a socket's queue), then live ones."""
        shared = await self._shared(session)
        listener = Listener(session, cursor, deliver)
        shared.listeners.add(listener)
        try:
            while True:
                page = await self.bus.read_feed(keys.feed(session), listener.cursor, PAGE)
                if catch_up is None:
                    if page:
                        listener.cursor = page[-1].seq
                        deliver(session, page)
                else:
                    for entry in page:
                        listener.cursor = entry.seq
                        await catch_up(session, entry)
                if len(page) < PAGE:
                    break
            listener._joined()
        except BaseException:
            await self.unfollow(listener)
            raise
        return listener

    async def unfollow(self, listener: Listener) -> None:
        shared = self._feeds.get(listener.session)
        if shared is None:
            return
        shared.listeners.discard(listener)
        if not shared.listeners:
            del self._feeds[listener.session]
            await shared.close()

    async def wait(self, session: str, after: int, timeout: float) -> list[FeedEntry]:
        """The entries after `after`, waiting up to `timeout` seconds for the first one."""
        arrived: list[FeedEntry] = []
        some = asyncio.Event()

        def collect(_: str, entries: list[FeedEntry]) -> None:
            arrived.extend(entries[: PAGE - len(arrived)])
            some.set()

        listener = await self.follow(session, after, collect)
        try:
            if not arrived:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await some.wait()
            return list(arrived)
        finally:
            await self.unfollow(listener)

    async def _shared(self, session: str) -> SharedFeed:
        lock = self._starting.setdefault(session, asyncio.Lock())
        async with lock:
            shared = self._feeds.get(session)
            if shared is None:
                shared = SharedFeed(self.bus, session)
                await shared.start()
                self._feeds[session] = shared
        if not lock.locked():
            self._starting.pop(session, None)
        return shared

    @property
    def followed(self) -> int:
        return len(self._feeds)

    async def close(self) -> None:
        feeds, self._feeds = list(self._feeds.values()), {}
        for shared in feeds:
            await shared.close()
