"""Fixtures many test modules want alike, made by a call: a module writes
``stack = both_stacks()`` and ``ada = signed_in("ada")`` instead of the same ten lines."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from .api import Client, new_user
from .stack import Stack, start_stack


def both_stacks(*, cluster: bool = False) -> Any:
    """The module's ``stack`` fixture: each test runs on the services apart (Redis and
    PostgreSQL) and on the one program (in-process bus and SQLite), each started once per
    module; with `cluster`, also on the services on a Redis Cluster."""
    kinds = ["services", "one-program", *(["services-cluster"] if cluster else [])]

    @pytest.fixture(scope="module", params=kinds, name="stack")
    def stack(
        request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[Stack]:
        with start_stack(request.param, tmp_path_factory) as system:
            yield system

    return stack


def signed_in(name: str, web: int = 0) -> Any:
    """A fixture named `name`: a new user (``name-xxxxxx``) signed in through the module's
    ``stack``'s web process number `web` (-1: the last, another process on the services),
    signed out after the test."""

    @pytest.fixture(name=name)
    async def user(stack: Stack) -> AsyncIterator[Client]:
        client = await new_user(stack.urls[web], name)
        yield client
        await client.close()

    return user
