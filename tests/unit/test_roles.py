"""The web process's memory of roles: kept until the accounts service says they changed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cellbus_protocol import keys
from cellbus_protocol.accounts import AccessChanged
from cellbus_protocol.bus import InMemoryBus
from cellbus_web.roles import RoleCache


class Accounts:
    """Answers role questions from a table, counting them."""

    def __init__(self) -> None:
        self.roles = {("ada", "s1"): "owner", ("bob", "s1"): "editor"}
        self.asked = 0
        self.hold: asyncio.Event | None = None

    def ask(self, user: str, session: str):
        async def answer() -> str:
            self.asked += 1
            role = self.roles.get((user, session))
            if self.hold is not None:
                await self.hold.wait()
            if role is None:
                raise LookupError(f"no session {session}")
            return role

        return answer


@pytest.fixture
async def bus() -> AsyncIterator[InMemoryBus]:
    async with InMemoryBus() as bus:
        yield bus


@pytest.fixture
async def roles(bus: InMemoryBus) -> AsyncIterator[RoleCache]:
    cache = RoleCache(bus, ttl=60.0)
    await cache.start()
    yield cache
    await cache.close()


async def announce(bus: InMemoryBus, session: str) -> None:
    await bus.publish(keys.ACCESS_CHANGES, AccessChanged(session=session).encode())
    for _ in range(10):  # let the follower run
        await asyncio.sleep(0)


async def test_a_role_is_asked_once_then_remembered(roles: RoleCache) -> None:
    accounts = Accounts()
    for _ in range(3):
        assert await roles.role("bob", "s1", accounts.ask("bob", "s1")) == "editor"
    assert accounts.asked == 1


async def test_a_change_announced_on_the_bus_is_seen_at_once(
    bus: InMemoryBus, roles: RoleCache
) -> None:
    accounts = Accounts()
    await roles.role("bob", "s1", accounts.ask("bob", "s1"))
    await roles.role("ada", "s1", accounts.ask("ada", "s1"))
    accounts.roles[("bob", "s1")] = "viewer"
    await announce(bus, "s1")
    assert await roles.role("bob", "s1", accounts.ask("bob", "s1")) == "viewer"
    assert await roles.role("ada", "s1", accounts.ask("ada", "s1")) == "owner"
    assert accounts.asked == 4
    del accounts.roles[("bob", "s1")]
    await announce(bus, "s1")
    with pytest.raises(LookupError):
        await roles.role("bob", "s1", accounts.ask("bob", "s1"))


async def test_other_sessions_stay_remembered(bus: InMemoryBus, roles: RoleCache) -> None:
    accounts = Accounts()
    await roles.role("bob", "s1", accounts.ask("bob", "s1"))
    await announce(bus, "s2")
    await roles.role("bob", "s1", accounts.ask("bob", "s1"))
    assert accounts.asked == 1


async def test_no_access_is_never_remembered(roles: RoleCache) -> None:
    accounts = Accounts()
    for _ in range(2):
        with pytest.raises(LookupError):
            await roles.role("eve", "s1", accounts.ask("eve", "s1"))
    accounts.roles[("eve", "s1")] = "viewer"  # shared with her, announced or not
    assert await roles.role("eve", "s1", accounts.ask("eve", "s1")) == "viewer"
    assert accounts.asked == 3


async def test_an_answer_that_was_in_flight_during_a_change_is_not_kept(
    bus: InMemoryBus, roles: RoleCache
) -> None:
    accounts = Accounts()
    accounts.hold = asyncio.Event()
    asking = asyncio.create_task(roles.role("bob", "s1", accounts.ask("bob", "s1")))
    await asyncio.sleep(0)
    accounts.roles[("bob", "s1")] = "viewer"  # the change lands after the answer was made
    await announce(bus, "s1")
    accounts.hold.set()
    await asking
    accounts.hold = None
    assert await roles.role("bob", "s1", accounts.ask("bob", "s1")) == "viewer"


async def test_answers_expire(bus: InMemoryBus) -> None:
    cache = RoleCache(bus, ttl=0.05)
    await cache.start()
    try:
        accounts = Accounts()
        await cache.role("bob", "s1", accounts.ask("bob", "s1"))
        await asyncio.sleep(0.1)
        await cache.role("bob", "s1", accounts.ask("bob", "s1"))
        assert accounts.asked == 2
    finally:
        await cache.close()


async def test_nothing_is_remembered_unless_following_the_changes(bus: InMemoryBus) -> None:
    cache = RoleCache(bus, ttl=60.0)  # never started: it would not hear of changes
    accounts = Accounts()
    for _ in range(2):
        await cache.role("bob", "s1", accounts.ask("bob", "s1"))
    assert accounts.asked == 2


async def test_a_malformed_announcement_forgets_everything(
    bus: InMemoryBus, roles: RoleCache
) -> None:
    accounts = Accounts()
    await roles.role("bob", "s1", accounts.ask("bob", "s1"))
    await bus.publish(keys.ACCESS_CHANGES, b'{"not": "an announcement"}')
    for _ in range(10):
        await asyncio.sleep(0)
    await roles.role("bob", "s1", accounts.ask("bob", "s1"))
    assert accounts.asked == 2
