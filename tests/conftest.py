"""Fixtures shared by every test: the real Redis, a namespace per test, buses and workers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cellbus_protocol.bus import Bus, InMemoryBus, RedisBus

from .support.redis import REDIS_URL, delete_namespace, new_namespace, require_redis

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def namespace() -> Iterator[str]:
    """A Redis key prefix of this test's own, deleted afterwards."""
    require_redis()
    name = new_namespace()
    yield name
    delete_namespace(name)


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Bus]:
    """Each transport in turn: the contract tests run over both."""
    if request.param == "memory":
        instance: Bus = InMemoryBus()
    else:
        instance = RedisBus(REDIS_URL, namespace=namespace)
    await instance.start()
    yield instance
    await instance.close()


@pytest.fixture
async def redis_bus(namespace: str) -> AsyncIterator[RedisBus]:
    instance = RedisBus(REDIS_URL, namespace=namespace)
    await instance.start()
    yield instance
    await instance.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI every test must run: a skipped test fails the run."""
    import os

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("CI") == "true" and skipped:
        if reporter:
            reporter.write_line(
                f"CI: {skipped} test(s) skipped; every test must run in CI", red=True
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
