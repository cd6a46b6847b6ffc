"""Guessing passwords through the API: batches, concurrency, several web processes and many
addresses get no more than the documented budget (docs/security.md, "The API"), the owner
still gets in from a clean address, an unknown username costs the same time as a known one,
and weak passwords are refused with the rule they break.

The services run apart (two web processes, PostgreSQL) with the default limits: 10 checks per
username per minute, 3 of them kept for clean addresses.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cellbus_accounts.store import LoginLimits, Postgres, Sqlite, Store, Tier

from ..support.api import PASSWORD, Client
from ..support.postgres import create_database, drop_database
from ..support.stack import ServicesStack
from .api_people import From, batch, code, registered, request

UNAUTHENTICATED, INVALID_PARAMS, RATE_LIMITED = -32001, -32602, -32029
ATTEMPTS, CLEAN_RESERVE, WINDOW = 10, 3, 60.0  # the accounts service's defaults
SHARED = ATTEMPTS - CLEAN_RESERVE


def wrong(username: str, i: int = 0) -> dict[str, Any]:
    return request("auth.login", username=username, password=f"wrong guess {i}")


async def test_a_batch_of_100_guesses_is_counted_call_by_call_and_the_password_then_refused(
    stack: ServicesStack,
) -> None:
    # The attack that got in: 99 wrong passwords and the right one in one batch, all checked.
    # The calls of a batch run concurrently, so which of them are checked is not their order:
    # all wrong here, the right one after, and no more than the budget is ever checked.
    victim = await registered(stack.urls[0], "batch")
    attacker = From(stack.urls[0], "127.0.0.2")
    try:
        replies = await batch(attacker, [wrong(victim, i) for i in range(100)])
        codes = [code(reply) for reply in replies]
        assert codes.count(UNAUTHENTICATED) == SHARED  # each call counted, one address
        assert codes.count(RATE_LIMITED) == 100 - SHARED
        again = await attacker.error("auth.login", username=victim, password=PASSWORD)
        assert again.code == RATE_LIMITED
    finally:
        await attacker.close()


async def test_50_concurrent_logins_on_two_web_processes_from_five_addresses_check_at_most_10(
    stack: ServicesStack,
) -> None:
    victim = await registered(stack.urls[0], "crowd")
    clients = [From(url, f"127.0.1.{i}") for i in range(1, 6) for url in stack.urls]
    try:
        calls = [
            client.error("auth.login", username=victim, password=f"guess {i} {n}")
            for i, client in enumerate(clients)
            for n in range(5)
        ]
        errors = await asyncio.gather(*calls)
        codes = [error.code for error in errors]
        assert len(codes) == 50 and set(codes) <= {UNAUTHENTICATED, RATE_LIMITED}
        assert SHARED <= codes.count(UNAUTHENTICATED) <= ATTEMPTS
    finally:
        for client in clients:
            await client.close()


async def test_the_owner_gets_in_from_a_clean_address_while_the_attacker_is_refused(
    stack: ServicesStack,
) -> None:
    victim = await registered(stack.urls[0], "owner")
    attacker = From(stack.urls[0], "127.0.2.1")
    owner = From(stack.urls[1], "127.0.2.2")
    fresh = [From(stack.urls[0], f"127.0.2.{i}") for i in range(3, 3 + CLEAN_RESERVE + 1)]
    try:
        for i in range(SHARED):
            assert (
                await attacker.error("auth.login", username=victim, password=f"x{i}-guess")
            ).code == UNAUTHENTICATED
        refused = await attacker.error("auth.login", username=victim, password=PASSWORD)
        assert refused.code == RATE_LIMITED
        assert refused.message.startswith("too many login attempts; try again in ")
        assert 0 < refused.data["retry_after"] <= WINDOW

        logged_in = await owner.call("auth.login", username=victim, password=PASSWORD)
        assert logged_in["user"]["username"] == victim

        # the reserve is bounded: fresh addresses get CLEAN_RESERVE checks between them, then
        # none, so this username has had at most ATTEMPTS guesses checked in the window
        outcomes = [
            (await client.error("auth.login", username=victim, password="guess again")).code
            for client in fresh
        ]
        assert outcomes == [UNAUTHENTICATED] * CLEAN_RESERVE + [RATE_LIMITED]
    finally:
        for client in (attacker, owner, *fresh):
            await client.close()


async def test_an_unknown_username_takes_as_long_as_a_known_one(stack: ServicesStack) -> None:
    known = await registered(stack.urls[0], "timed")

    async def median_seconds(username: str, address: str) -> float:
        client = From(stack.urls[0], address)
        times = []
        try:
            for i in range(5):  # under the shared budget: every one is checked
                start = time.perf_counter()
                error = await client.error("auth.login", username=username, password=f"no {i}")
                times.append(time.perf_counter() - start)
                assert error.code == UNAUTHENTICATED
                assert error.message == "wrong username or password"
        finally:
            await client.close()
        return statistics.median(times)

    for _ in range(2):  # interleaved: this machine's speed changes within a minute
        known_median = await median_seconds(known, "127.0.4.1")
        unknown_median = await median_seconds(f"ghost-{known}", "127.0.4.2")
        assert unknown_median >= 0.5 * known_median, (unknown_median, known_median)
        known = await registered(stack.urls[0], "timed")


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short", "a password needs at least 8 characters"),
        ("password", "this password is one of the most common passwords; choose another"),
        ("12345678", "this password is one of the most common passwords; choose another"),
        ("Sunshine", "this password is one of the most common passwords; choose another"),
        ("        ", "a password must not be one character repeated"),
        ("{USERNAME}", "a password must not be the username"),
        ("{USERNAME_UPPER}", "a password must not be the username"),
    ],
)
async def test_a_weak_password_is_refused_with_the_rule_it_breaks(
    stack: ServicesStack, password: str, rule: str
) -> None:
    client = Client(stack.urls[0])
    username = f"weak-{time.monotonic_ns() % 10**8}"
    password = password.replace("{USERNAME}", username).replace(
        "{USERNAME_UPPER}", username.upper()
    )
    try:
        error = await client.error("auth.register", username=username, password=password)
        assert (error.code, error.message) == (INVALID_PARAMS, rule)
        user = await client.call("auth.register", username=username, password=PASSWORD)
        assert user["username"] == username
    finally:
        await client.close()


# -- the throttle's store, on PostgreSQL and SQLite, with the clock in the test's hands --------

SMALL = LoginLimits(attempts=4, clean_reserve=1, window=60.0, per_address=6)


@pytest.fixture(params=["postgres", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        instance = Store(Sqlite(tmp_path / "accounts.db"))
        await instance.open()
        yield instance
        await instance.close()
        return
    name, url = await create_database()
    instance = Store(Postgres(url))
    await instance.open()
    yield instance
    await instance.close()
    await drop_database(name)


async def test_concurrent_attempts_are_counted_with_their_decision(store: Store) -> None:
    tickets = await asyncio.gather(
        *(store.logins.begin("Ada", f"10.0.0.{i % 3}", SMALL, 1000.0) for i in range(50))
    )
    admitted = [t for t in tickets if t.attempt is not None]
    assert len(admitted) <= SMALL.attempts
    assert sum(1 for t in admitted if t.tier == Tier.SHARED) == SMALL.attempts - 1


async def test_the_window_slides_and_a_success_does_not_count(store: Store) -> None:
    logins = store.logins
    first = await logins.begin("ada", "10.0.0.1", SMALL, 1000.0)
    assert first.attempt is not None
    await logins.succeeded(first.attempt)
    for second in range(SMALL.attempts - 1):  # the shared budget, all of it
        assert (await logins.begin("ADA", "10.0.0.1", SMALL, 1001.0 + second)).tier == Tier.SHARED
    refused = await logins.begin("ada", "10.0.0.1", SMALL, 1010.0)
    assert refused.attempt is None and refused.retry_after == 51.0  # 1001 + 60 - 1010
    clean = await logins.begin("ada", "10.0.0.2", SMALL, 1010.0)
    assert clean.tier == Tier.CLEAN
    assert (await logins.begin("ada", "10.0.0.3", SMALL, 1010.0)).attempt is None
    assert (await logins.begin("ada", "10.0.0.1", SMALL, 1061.5)).tier == Tier.SHARED


async def test_one_address_is_limited_over_all_usernames(store: Store) -> None:
    for n in range(SMALL.per_address):
        assert (await store.logins.begin(f"user{n}", "10.0.0.9", SMALL, 1000.0 + n)).attempt
    refused = await store.logins.begin("someone-else", "10.0.0.9", SMALL, 1010.0)
    assert refused.attempt is None and refused.retry_after == 50.0
    assert (await store.logins.begin("someone-else", "10.0.0.8", SMALL, 1010.0)).attempt


def test_limits_that_make_no_sense_are_refused() -> None:
    with pytest.raises(ValueError, match="clean reserve"):
        LoginLimits(attempts=3, clean_reserve=3)
    with pytest.raises(ValueError, match="positive"):
        LoginLimits(window=0)
