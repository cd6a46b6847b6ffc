"""Who is watching each session, for one web process: one loop for all of its sockets.

Presence lives in the bus, in a load table per session (`keys.presence`) whose members
expire, so users watching through different web processes see each other and a dead
process's watchers leave by themselves. A web process keeps ONE member per (username,
process) in each session's table, ``"{username} {process id}"``, however many of that user's
sockets watch the session here.

Every `PRESENCE_INTERVAL` seconds the loop renews this process's members (with
`PRESENCE_TTL`), reads each watched session's table once, and hands a ``presence`` frame to
each local socket of the session that has not been sent that list of usernames yet. A socket
joining or leaving wakes it at once for that session only. When the last local socket of a
user leaves a session, that member is removed at once, so the others are told without waiting
for it to expire. Each round costs O(sessions + local users + sockets told), not O(sockets²):
a session's table is read once per process, not once per socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Protocol

import msgspec

from cellbus_protocol import keys
from cellbus_protocol.bus import Bus
from cellbus_protocol.errors import CellbusError

from . import tasks

log = logging.getLogger(__name__)

PRESENCE_INTERVAL = 2.0  # seconds between renewals and checks of every watched session
PRESENCE_TTL = 15.0  # a process that stops renewing (it died) has its watchers leave after this


class Watcher(Protocol):
    """A local socket, as presence sees it."""

    @property
    def username(self) -> str: ...

    def show_presence(self, session: str, frame: bytes) -> bool:
        """Queue `frame` (a presence frame for `session`) without waiting; False if it could
        not be queued now (it is offered again next round)."""
        ...


class _Session:
    """The local sockets watching one session."""

    __slots__ = ("frame", "last", "sockets", "untold", "users")

    def __init__(self) -> None:
        self.sockets: set[Watcher] = set()
        self.users: dict[str, int] = {}  # username -> how many local sockets
        self.last: list[str] | None = None  # the usernames last read from the table
        self.frame = b""  # the presence frame of `last`
        self.untold: set[Watcher] = set()  # local sockets not yet sent `frame`


class Presence:
    """This web process's watchers of sessions, reported to and read from the bus."""

    def __init__(
        self,
        bus: Bus,
        *,
        process_id: str | None = None,
        interval: float = PRESENCE_INTERVAL,
        ttl: float = PRESENCE_TTL,
    ) -> None:
        self.bus = bus
        self.process_id = process_id or uuid.uuid4().hex[:12]
        self.interval = interval
        self.ttl = ttl
        self._sessions: dict[str, _Session] = {}
        self._changed: set[str] = set()  # sessions a socket joined or left since the last round
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def member(self, username: str) -> str:
        """This process's member in a presence table for `username`."""
        return f"{username} {self.process_id}"

    # -- sockets joining and leaving ------------------------------------------------------
    def join(self, session: str, socket: Watcher) -> None:
        """`socket` watches `session` from now on: it is sent who watches it at once, then
        whenever that changes."""
        state = self._sessions.get(session)
        if state is None:
            state = self._sessions[session] = _Session()
        if socket in state.sockets:
            return
        state.sockets.add(socket)
        state.untold.add(socket)
        state.users[socket.username] = state.users.get(socket.username, 0) + 1
        self._changed.add(session)
        self._wake.set()

    async def leave(self, session: str, socket: Watcher) -> None:
        """`socket` no longer watches `session`; if it was its user's last local socket there,
        the user's member goes at once."""
        state = self._sessions.get(session)
        if state is None or socket not in state.sockets:
            return
        state.sockets.discard(socket)
        state.untold.discard(socket)
        username = socket.username
        count = state.users[username] - 1
        if count:
            state.users[username] = count
            return
        del state.users[username]
        if not state.sockets:
            del self._sessions[session]
        with contextlib.suppress(CellbusError):
            await self.bus.remove_load(keys.presence(session), self.member(username))
        self._changed.add(session)  # after the removal: the round must not read it back
        self._wake.set()

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    # -- the loop -------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="presence")

    async def _run(self) -> None:
        """Every `interval`, a round of every session; in between, on a wake, a round of
        the sessions that sockets joined or left."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            self._wake.clear()
            if loop.time() >= due:
                due = loop.time() + self.interval
                sessions = list(self._sessions)
            else:
                sessions = list(self._changed)
            self._changed.clear()
            for session in sessions:
                try:
                    await self.update(session)
                except CellbusError as exc:
                    log.warning("presence of %s: %s", session, exc)
                except Exception:
                    log.exception("presence of %s failed", session)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(due):
                    await self._wake.wait()

    async def update(self, session: str) -> None:
        """Renew this process's members of `session`'s table, read the table, and tell the
        local sockets that have not been told its usernames."""
        state = self._sessions.get(session)
        if state is None:
            return
        bus, table = self.bus, keys.presence(session)
        for username in list(state.users):
            if not self._watching(session, username):
                continue
            await bus.report_load(table, self.member(username), 1, self.ttl)
            if not self._watching(session, username):
                # its last socket left while this renewal was in flight: `leave`'s removal
                # may have come first
                await bus.remove_load(table, self.member(username))
        members = await bus.loads(table)
        if self._sessions.get(session) is not state:
            return  # every local socket left meanwhile
        users = sorted({member.split(" ", 1)[0] for member in members})
        if users != state.last:
            state.last = users
            state.frame = msgspec.json.encode(
                {"type": "presence", "session": session, "users": users}
            )
            state.untold = set(state.sockets)
        if state.untold:
            state.untold = {s for s in state.untold if not s.show_presence(session, state.frame)}

    async def watches(self, session: str, username: str) -> bool:
        """Whether `username` watches `session` through any socket, here or in another web
        process (its table)."""
        if self._watching(session, username):
            return True
        members = await self.bus.loads(keys.presence(session))
        return any(member.split(" ", 1)[0] == username for member in members)

    def _watching(self, session: str, username: str) -> bool:
        state = self._sessions.get(session)
        return state is not None and username in state.users

    async def close(self) -> None:
        """Stop, and take this process's members out of every table (its sockets are gone
        or going: the shutdown closes them first)."""
        await tasks.stop(self._task)
        self._task = None
        sessions, self._sessions = self._sessions, {}
        for session, state in sessions.items():
            for username in state.users:
                with contextlib.suppress(Exception):  # the bus may be closing too
                    await self.bus.remove_load(keys.presence(session), self.member(username))
