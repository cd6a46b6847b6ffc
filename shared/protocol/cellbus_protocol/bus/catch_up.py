"""Catch up from a feed's log, then go live, skipping what was already handed on: the one
place this is written.

A follower of a feed (a Redis subscription, a web process's listener for a socket) joins
the live entries first and only then reads the retained ones after its cursor, a page at a
time; entries seen both ways while it joins are told apart by cursor. `CatchUp` keeps that
cursor and says when the log has nothing more, so the follower can switch to the live
entries it held meanwhile. The follower owns the buffer of live entries (its size and what
to do when it is too big differ); it calls `fell_behind` when it drops some, and catching
up starts again from the cursor.

The race that makes this worth one place: a page read comes back short ("caught up") while,
after the read began, live entries were dropped. They are newer than what the read saw, so
the follower is not caught up; `page` reads again.

"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .base import FeedEntry

PAGE = 1000
"""Entries read from the log at a time."""

ReadFeed = Callable[[int, int], Awaitable[list[FeedEntry]]]
"""``read(after, limit)``: up to `limit` retained entries with cursor greater than `after`."""


class CatchUp:
    """Where one follower of a feed is: still reading the log, or live; and the cursor of
    the last entry it has handed on."""

    __slots__ = ("_drops", "catching_up", "cursor")

    def __init__(self, cursor: int) -> None:
        self.cursor = cursor
        self.catching_up = True
        self._drops = 0  # how many times live entries were dropped (see `page`)

    async def page(self, read: ReadFeed, limit: int = PAGE) -> list[FeedEntry]:
        """The next entries from the log after the cursor (the cursor moves past them).
        A read that finds nothing ends the catching up, unless live entries were dropped
        meanwhile. (A short page would do, but the empty read costs one round trip per
        join and makes "caught up" mean one thing: the log had nothing after the cursor.)"""
        drops = self._drops
        found = await read(self.cursor, limit)
        if not found and drops == self._drops:
            self.catching_up = False
        return self.after_cursor(found)

    def after_cursor(self, entries: list[FeedEntry]) -> list[FeedEntry]:
        """`entries` (in cursor order) less those at or before the cursor, which moves to
        the last of them. When none is dropped, `entries` itself is returned, so a caller
        can tell that what it built from them still holds."""
        if entries and entries[0].seq <= self.cursor:
            entries = [entry for entry in entries if entry.seq > self.cursor]
        if entries:
            self.cursor = entries[-1].seq
        return entries

    def fell_behind(self) -> None:
        """The follower dropped live entries it had not handed on: catch up from the log
        again, from the cursor."""
        self._drops += 1
        self.catching_up = True
