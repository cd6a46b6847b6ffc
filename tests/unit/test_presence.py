"""Who watches a session: one presence loop per web process, one table member per user."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from cellbus_protocol import keys
from cellbus_protocol.bus import InMemoryBus
from cellbus_web.presence import Presence

S1 = "11111111-1111-1111-1111-111111111111"
S2 = "22222222-2222-2222-2222-222222222222"


class Socket:
    """A local socket as presence sees it: it keeps the presence frames it is given."""

    def __init__(self, username: str, room: bool = True) -> None:
        self.username = username
        self.room = room
        self.frames: list[dict[str, Any]] = []

    def show_presence(self, session: str, frame: bytes) -> bool:
        if not self.room:
            return False
        self.frames.append(json.loads(frame))
        assert self.frames[-1]["session"] == session
        return True

    @property
    def users(self) -> list[str] | None:
        return self.frames[-1]["users"] if self.frames else None


class CountingBus(InMemoryBus):
    """Counts the presence calls made on the bus."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = {"report_load": 0, "loads": 0, "remove_load": 0}

    async def report_load(self, table: str, member: str, load: int, ttl: float) -> None:
        self.calls["report_load"] += 1
        await super().report_load(table, member, load, ttl)

    async def loads(self, table: str) -> dict[str, int]:
        self.calls["loads"] += 1
        return await super().loads(table)

    async def remove_load(self, table: str, member: str) -> None:
        self.calls["remove_load"] += 1
        await super().remove_load(table, member)


@pytest.fixture
async def bus() -> AsyncIterator[CountingBus]:
    async with CountingBus() as bus:
        yield bus


async def started(bus: InMemoryBus, **kwargs: float) -> Presence:
    presence = Presence(bus, interval=kwargs.get("interval", 60.0), ttl=kwargs.get("ttl", 60.0))
    await presence.start()
    return presence


async def until(check: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110 - polls what the presence loops do
            await asyncio.sleep(0.005)


async def test_a_socket_is_told_who_watches_at_once_and_a_users_sockets_count_once(
    bus: CountingBus,
) -> None:
    presence = await started(bus)  # a long interval: only the wake events drive it
    try:
        first, second = Socket("ada"), Socket("ada")
        presence.join(S1, first)
        await until(lambda: first.users == ["ada"])
        presence.join(S1, second)
        await until(lambda: second.users == ["ada"])
        assert list(await bus.loads(keys.presence(S1))) == [presence.member("ada")]
        await presence.update(S1)  # a round
        assert len(first.frames) == 1  # nothing changed for it: told nothing again
        await presence.leave(S1, first)  # ada still watches through `second`
        assert list(await bus.loads(keys.presence(S1))) == [presence.member("ada")]
    finally:
        await presence.close()
    assert await bus.loads(keys.presence(S1)) == {}  # closing takes its members away


async def test_a_second_process_sees_the_first_ones_users_and_leaving_is_seen_at_once(
    bus: CountingBus,
) -> None:
    one, two = await started(bus), await started(bus, interval=0.05)
    try:
        ada, bob = Socket("ada"), Socket("bob")
        one.join(S1, ada)
        await until(lambda: ada.users == ["ada"])
        two.join(S1, bob)
        await until(lambda: bob.users == ["ada", "bob"])
        await one.leave(S1, ada)  # its member goes at once, not after the time to live
        assert list(await bus.loads(keys.presence(S1))) == [two.member("bob")]
        await until(lambda: bob.users == ["bob"])  # within the other process's interval
        one.join(S1, Socket("ada"))  # and one's own sockets are told at once (a wake)
        await until(lambda: bob.users == ["ada", "bob"])
    finally:
        await one.close()
        await two.close()


async def test_the_last_local_socket_of_a_user_leaving_tells_the_others_at_once(
    bus: CountingBus,
) -> None:
    presence = await started(bus)
    try:
        ada, bob1, bob2 = Socket("ada"), Socket("bob"), Socket("bob")
        for socket in (ada, bob1, bob2):
            presence.join(S1, socket)
        await until(lambda: ada.users == ["ada", "bob"])
        await presence.leave(S1, bob1)
        await presence.update(S1)  # a round: bob still watches through bob2
        assert ada.users == ["ada", "bob"]
        await presence.leave(S1, bob2)
        await until(lambda: ada.users == ["ada"])
        assert presence.sessions == 1
        await presence.leave(S1, ada)
        assert presence.sessions == 0
        assert await bus.loads(keys.presence(S1)) == {}
    finally:
        await presence.close()


class SlowRemovalBus(CountingBus):
    """A bus whose removals take a few steps of the event loop, as a Redis round trip does."""

    async def remove_load(self, table: str, member: str) -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        await super().remove_load(table, member)


async def test_a_user_leaving_is_told_at_once_though_the_removal_takes_a_while() -> None:
    async with SlowRemovalBus() as bus:
        presence = await started(bus)  # a long interval: only the wake events drive it
        try:
            ada, bob = Socket("ada"), Socket("bob")
            presence.join(S1, ada)
            presence.join(S1, bob)
            await until(lambda: ada.users == ["ada", "bob"])
            await presence.leave(S1, bob)
            await until(lambda: ada.users == ["ada"])
        finally:
            await presence.close()


async def test_a_dead_processs_watchers_expire(bus: CountingBus) -> None:
    dead = await started(bus, interval=0.02, ttl=0.3)
    alive = await started(bus, interval=0.02, ttl=0.3)
    ada, bob = Socket("ada"), Socket("bob")
    dead.join(S1, ada)
    alive.join(S1, bob)
    await until(lambda: bob.users == ["ada", "bob"])
    assert dead._task is not None
    dead._task.cancel()  # it stops renewing, as if its process died, and removes nothing
    with contextlib.suppress(asyncio.CancelledError):
        await dead._task
    assert presence_members(await bus.loads(keys.presence(S1))) == ["ada", "bob"]
    await until(lambda: bob.users == ["bob"], timeout=3.0)
    await alive.close()


def presence_members(members: dict[str, int]) -> list[str]:
    return sorted(member.split(" ")[0] for member in members)


async def test_a_socket_without_room_is_told_on_a_later_round(bus: CountingBus) -> None:
    presence = await started(bus, interval=0.02)
    try:
        full = Socket("ada", room=False)
        presence.join(S1, full)
        for _ in range(2):
            await presence.update(S1)  # rounds in which it had no room
        assert full.frames == []
        full.room = True
        await until(lambda: full.users == ["ada"])
    finally:
        await presence.close()


async def test_sessions_are_apart(bus: CountingBus) -> None:
    presence = await started(bus)
    try:
        ada, bob = Socket("ada"), Socket("bob")
        presence.join(S1, ada)
        presence.join(S2, bob)
        await until(lambda: ada.users == ["ada"] and bob.users == ["bob"])
    finally:
        await presence.close()


@pytest.mark.parametrize("sockets", [1, 10, 1000])
async def test_bus_calls_per_round_do_not_grow_with_the_sockets_on_a_session(
    bus: CountingBus, sockets: int
) -> None:
    presence = Presence(bus, interval=60.0, ttl=60.0)  # rounds run by hand: no loop
    watchers = [Socket("ada") for _ in range(sockets)] + [Socket("bob") for _ in range(sockets)]
    for socket in watchers:
        presence.join(S1, socket)
    await presence.update(S1)
    assert all(w.users == ["ada", "bob"] for w in watchers)
    for name in bus.calls:
        bus.calls[name] = 0
    for _ in range(5):
        await presence.update(S1)
    # each round: one renewal per local user and one read of the table, whatever `sockets`
    assert bus.calls == {"report_load": 2 * 5, "loads": 5, "remove_load": 0}
    assert all(len(w.frames) == 1 for w in watchers)  # nothing changed: nobody told again


async def test_a_socket_joining_wakes_a_round_of_its_session_only(bus: CountingBus) -> None:
    presence = await started(bus)  # the first full round runs at once, the next in 60 s
    try:
        ada = Socket("ada")
        presence.join(S1, ada)
        await until(lambda: ada.users == ["ada"])
        for name in bus.calls:
            bus.calls[name] = 0
        bob = Socket("bob")
        presence.join(S2, bob)
        await until(lambda: bob.users == ["bob"])
        assert bus.calls == {"report_load": 1, "loads": 1, "remove_load": 0}
    finally:
        await presence.close()
