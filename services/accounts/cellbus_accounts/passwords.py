"""Passwords: the policy a new password must meet, and argon2id hashing.

The policy follows NIST SP 800-63B (5.1.1.2): at least `MIN_LENGTH` characters, no
composition rules, and refused if it is a password attackers try first: one of the most common
passwords (``common_passwords.txt``, shipped with this package; see its header for origin and
license), the username itself, or one character repeated. Each refusal says which rule failed,
so a person can pick another at once.

Hashing uses argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile). It is
deliberately slow (tens of milliseconds), so it runs in a thread, off the loop. A login for an
unknown username is verified against `_dummy_hash`, a hash of the same parameters, so that it
costs the same time as one for a real user: the time of a login does not tell whether a
username exists.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()

MIN_LENGTH = 8
MAX_LENGTH = 1024
COMMON_PASSWORDS_FILE = "common_passwords.txt"


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords, lower-cased (read once, on first use)."""
    text = resources.files(__package__).joinpath(COMMON_PASSWORDS_FILE).read_text("utf-8")
    lines = (line.strip() for line in text.splitlines())
    return frozenset(line.lower() for line in lines if line and not line.startswith("#"))


def check_strength(password: str, username: str) -> str | None:
    """Why `password` cannot be `username`'s password, or None if it can."""
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"a password may have at most {MAX_LENGTH} characters"
    if password.casefold() == username.casefold():
        return "a password must not be the username"
    if len(set(password)) == 1:
        return "a password must not be one character repeated"
    if password.lower() in common_passwords():
        return "this password is one of the most common passwords; choose another"
    return None


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether `password` matches `password_hash`. With None (no such user) the password is
    checked against a dummy hash, taking the same time, and the answer is False."""

    def verify() -> bool:
        try:
            return _hasher.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random secret with the hasher's parameters (made once, on first use)."""
    return _hasher.hash(secrets.token_urlsafe(32))
