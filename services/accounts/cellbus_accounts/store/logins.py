"""The login throttle's counts, kept in the database so that every accounts process (and so
every web process) shares them, and decided in the same transaction that counts the attempt.

Each password check is counted *before* it runs (`LoginAttempts.begin`), under a lock on the
username and one on the address, so concurrent logins and the calls of one JSON-RPC batch are
each counted, and none is checked once the budget is spent. A successful check removes its row
(`LoginAttempts.succeeded`): only running and failed checks count.

The budget of one username over any `LoginLimits.window`:

- ``shared``: ``attempts - clean_reserve`` checks, from any addresses;
- ``clean``: once those are spent, ``clean_reserve`` more, each for an address with no running
  or failed check on this username in the window (a "clean" address: the owner at home, while
  an attacker elsewhere has spent the shared budget). A clean address that fails is no longer
  clean.

So at most ``attempts`` passwords per username per window are ever checked, from any number of
addresses. Besides, one address gets at most ``per_address`` checks per window over all
usernames (one client trying many usernames).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from enum import StrEnum

from .database import Database


class Tier(StrEnum):
    """Which part of a username's budget an attempt was counted against."""

    SHARED = "shared"
    CLEAN = "clean"


@dataclass(frozen=True)
class LoginLimits:
    attempts: int = 10
    clean_reserve: int = 3
    window: float = 60.0
    per_address: int = 100

    def __post_init__(self) -> None:
        if not 0 <= self.clean_reserve < self.attempts:
            raise ValueError("the clean reserve must be at least 0 and less than the attempts")
        if self.window <= 0 or self.per_address < 1:
            raise ValueError("the login window and the per-address attempts must be positive")


@dataclass(frozen=True)
class LoginTicket:
    """`begin`'s decision: `attempt` is the counted attempt's id, or None if refused, with
    `retry_after` the seconds until a slot this address may use leaves the window."""

    attempt: uuid.UUID | None
    retry_after: float = 0.0
    tier: Tier | None = None


class LoginAttempts:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def begin(
        self, username: str, address: str, limits: LoginLimits, now: float
    ) -> LoginTicket:
        """Count an attempt on `username` (case-insensitive) from `address` at Unix time
        `now`, or refuse it; the decision and the count are one transaction."""
        username = username.lower()
        since = now - limits.window
        async with self.database.transaction() as db:
            await self.database.lock(db, f"login-user:{username}")
            await self.database.lock(db, f"login-address:{address}")
            await db.execute("DELETE FROM login_attempts WHERE at <= $1", since)
            from_address = await db.fetch(
                "SELECT at FROM login_attempts WHERE address = $1 AND at > $2 ORDER BY at",
                address, since,
            )  # fmt: skip
            rows = await db.fetch(
                """SELECT address, tier, at FROM login_attempts
                   WHERE username = $1 AND at > $2 ORDER BY at""",
                username, since,
            )  # fmt: skip
            shared = [row["at"] for row in rows if row["tier"] == Tier.SHARED]
            clean = [row["at"] for row in rows if row["tier"] == Tier.CLEAN]
            is_clean = all(row["address"] != address for row in rows)
            if len(from_address) >= limits.per_address:
                return _refused(from_address[0]["at"], limits, now)
            if len(shared) < limits.attempts - limits.clean_reserve:
                tier = Tier.SHARED
            elif is_clean and len(clean) < limits.clean_reserve:
                tier = Tier.CLEAN
            else:  # the shared budget is spent (it has at least one slot), and no clean one
                return _refused(min(shared[:1] + (clean[:1] if is_clean else [])), limits, now)
            attempt = uuid.uuid4()
            await db.execute(
                """INSERT INTO login_attempts (id, username, address, tier, at)
                   VALUES ($1, $2, $3, $4, $5)""",
                attempt, username, address, tier.value, now,
            )  # fmt: skip
        return LoginTicket(attempt, tier=tier)

    async def succeeded(self, attempt: uuid.UUID) -> None:
        """The attempt's password was right: it no longer counts."""
        async with self.database.transaction() as db:
            await db.execute("DELETE FROM login_attempts WHERE id = $1", attempt)


def _refused(oldest: float, limits: LoginLimits, now: float) -> LoginTicket:
    return LoginTicket(None, max(0.1, math.ceil((oldest + limits.window - now) * 10) / 10))
