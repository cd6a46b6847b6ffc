"""The web process's memory of roles: kept until the accounts service says they changed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from cellbus_protocol import codec, keys
from cellbus_protocol.accounts import AccessChanged
from cellbus_protocol.bus import InMemoryBus
from cellbus_protocol.roles import Role
from cellbus_web.roles import RoleCache


class Accounts:
    """Answers role questions from a table, counting them; `hold` keeps an answer back."""

    def __init__(self) -> None:
        self.roles: dict[tuple[str, str], Role] = {("ada", "s1"): "owner", ("bob", "s1"): "editor"}
        self.asked = 0
        self.hold: asyncio.Event | None = None
        self.answering = asyncio.Event()

    async def role(self, cache: RoleCache, user: str, session: str = "s1") -> Role:
        """`user`'s role on `session` through `cache`, which asks this table if it must."""

        async def ask() -> Role:
            self.asked += 1
            role = self.roles.get((user, session))
            self.answering.set()
            if self.hold is not None:
                await self.hold.wait()
            if role is None:
                raise LookupError(f"no session {session}")
            return role

        return await cache.role(user, session, ask)


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


async def announce(bus: InMemoryBus, roles: RoleCache, data: bytes) -> None:
    """Publish `data` on the access changes feed and wait until `roles` has taken it in."""
    seen = roles.changes
    await bus.publish(keys.ACCESS_CHANGES, data)
    async with asyncio.timeout(5):
        while roles.changes == seen:  # noqa: ASYNC110 - the follower signals nothing else
            await asyncio.sleep(0)


def change(session: str) -> bytes:
    return codec.encode_record(AccessChanged(session=session))


async def test_a_role_is_asked_once_then_remembered(roles: RoleCache) -> None:
    accounts = Accounts()
    for _ in range(3):
        assert await accounts.role(roles, "bob") == "editor"
    assert accounts.asked == 1


async def test_a_change_announced_on_the_bus_is_seen_at_once(
    bus: InMemoryBus, roles: RoleCache
) -> None:
    accounts = Accounts()
    await accounts.role(roles, "bob")
    await accounts.role(roles, "ada")
    accounts.roles[("bob", "s1")] = "viewer"
    await announce(bus, roles, change("s1"))
    assert await accounts.role(roles, "bob") == "viewer"
    assert await accounts.role(roles, "ada") == "owner"
    assert accounts.asked == 4
    del accounts.roles[("bob", "s1")]
    await announce(bus, roles, change("s1"))
    with pytest.raises(LookupError):
        await accounts.role(roles, "bob")


async def test_other_sessions_stay_remembered(bus: InMemoryBus, roles: RoleCache) -> None:
    accounts = Accounts()
    await accounts.role(roles, "bob")
    await announce(bus, roles, change("s2"))
    await accounts.role(roles, "bob")
    assert accounts.asked == 1


async def test_no_access_is_never_remembered(roles: RoleCache) -> None:
    accounts = Accounts()
    for _ in range(2):
        with pytest.raises(LookupError):
            await accounts.role(roles, "eve")
    accounts.roles[("eve", "s1")] = "viewer"  # shared with her, announced or not
    assert await accounts.role(roles, "eve") == "viewer"
    assert accounts.asked == 3


async def test_an_answer_that_was_in_flight_during_a_change_is_not_kept(
    bus: InMemoryBus, roles: RoleCache
) -> None:
    accounts = Accounts()
    accounts.hold = asyncio.Event()
    asking = asyncio.create_task(accounts.role(roles, "bob"))
    await accounts.answering.wait()  # the answer is made: "editor"
    accounts.roles[("bob", "s1")] = "viewer"  # then the change lands
    await announce(bus, roles, change("s1"))
    accounts.hold.set()
    assert await asking == "editor"
    accounts.hold = None
    assert await accounts.role(roles, "bob") == "viewer"


async def test_answers_expire(bus: InMemoryBus) -> None:
    cache = RoleCache(bus, ttl=0.05)
    await cache.start()
    try:
        accounts = Accounts()
        await accounts.role(cache, "bob")
        await asyncio.sleep(0.1)  # past the time to live: what is tested is that it passes
        await accounts.role(cache, "bob")
        assert accounts.asked == 2
    finally:
        await cache.close()


async def test_nothing_is_remembered_unless_following_the_changes(bus: InMemoryBus) -> None:
    cache = RoleCache(bus, ttl=60.0)  # never started: it would not hear of changes
    accounts = Accounts()
    for _ in range(2):
        await accounts.role(cache, "bob")
    assert accounts.asked == 2


async def test_a_malformed_announcement_forgets_everything(
    bus: InMemoryBus, roles: RoleCache
) -> None:
    accounts = Accounts()
    await accounts.role(roles, "bob")
    await announce(bus, roles, b'{"not": "an announcement"}')
    await accounts.role(roles, "bob")
    assert accounts.asked == 2
