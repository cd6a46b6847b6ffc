"""Session feeds inside one web process: one bus subscription per session, shared.

However many browsers watch a session through this process, the process follows the
session's feed once (`SharedFeed`) and hands each entry to every `Listener`. A listener
joins at the cursor it last saw: it first gets the retained entries after that cursor, read
from the bus, then the live ones; entries it already has (seen by both ways while it joins)
are skipped by cursor (`cellbus_protocol.bus.catch_up.CatchUp`, the same helper the Redis
bus's subscriptions use), so it gets each entry exactly once, in order.

Entries that reach the process together (an execution's ``busy``, output and reply, say)
are handed on together, as `batches.Batch`es whose ``messages`` frame is built here, once,
for every listener: with many listeners, the cost is per listener and batch, not per entry.

Listeners must not block: `Listener.offer` is called synchronously for each batch list, and
a socket that cannot keep up is dropped by its own bounded queue (see `ws`), never by
holding up this loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable

from cellbus_protocol import keys
from cellbus_protocol.bus import Bus, FeedEntry, Subscription
from cellbus_protocol.bus.catch_up import PAGE, CatchUp
from cellbus_protocol.errors import BusUnavailable

from . import tasks
from .batches import Batch, batches

log = logging.getLogger(__name__)

Deliver = Callable[[list[Batch]], None]
"""Called with some of a session's feed entries, in order, as batches."""
CatchUpPage = Callable[[list[Batch]], Awaitable[None]]
"""Called with a page of retained entries while a listener joins; may wait."""


class Listener:
    """One follower of one session's feed, fed in cursor order without repeats."""

    def __init__(self, session: str, cursor: int, deliver: Deliver):
        self.session = session
        self.position = CatchUp(cursor)  # and the cursor of the last entry handed on
        self._deliver = deliver
        self._joining: list[FeedEntry] | None = []  # live entries held while catching up

    def offer(self, entries: list[FeedEntry], built: list[Batch]) -> None:
        """Hand on `entries` (in cursor order, `built` being their batches), less any this
        listener already has."""
        if self._joining is not None:
            self._joining.extend(entries)
            return
        new = self.position.after_cursor(entries)
        if new is entries:
            self._deliver(built)
        elif new:
            self._deliver(batches(self.session, new))

    async def join(self, bus: Bus, catch_up: CatchUpPage | None) -> None:
        """Hand on the retained entries after the cursor, a page at a time (through
        `catch_up` if given, which may wait), then the live entries held meanwhile."""
        read = functools.partial(bus.read_feed, keys.feed(self.session))
        while self.position.catching_up:
            page = await self.position.page(read, PAGE)
            if page:
                if catch_up is None:
                    self._deliver(batches(self.session, page))
                else:
                    await catch_up(batches(self.session, page))
        held, self._joining = self._joining or [], None
        new = self.position.after_cursor(held)
        if new:
            self._deliver(batches(self.session, new))


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
                    built = batches(self.session, entries)
                    for listener in list(self.listeners):
                        listener.offer(entries, built)
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
        self, session: str, cursor: int, deliver: Deliver, catch_up: CatchUpPage | None = None
    ) -> Listener:
        """Deliver every entry of `session`'s feed after `cursor` to `deliver` until
        `unfollow`: the retained ones first (through `catch_up` if given, which may wait,
        say for room in a socket's queue), then live ones."""
        shared = await self._shared(session)
        listener = Listener(session, cursor, deliver)
        shared.listeners.add(listener)
        try:
            await listener.join(self.bus, catch_up)
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

        def collect(delivered: list[Batch]) -> None:
            for batch in delivered:
                arrived.extend(batch.entries[: PAGE - len(arrived)])
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
