"""Fixtures shared by every test: the real Redis, a namespace per test, buses and workers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cellbus_protocol.bus import Bus, InMemoryBus, RedisBus, RedisClusterBus

from .support.redis import REDIS_URL, delete_namespace, new_namespace, require_redis
from .support.redis_cluster import LoopbackCluster

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


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackCluster]:
    """A Redis Cluster of three masters with a replica each, on loopback, for the whole run
    (tests work in namespaces of their own on it too)."""
    cluster = LoopbackCluster(tmp_path_factory.mktemp("redis-cluster"))
    yield cluster
    cluster.close()


@pytest.fixture
async def redis_cluster_bus(
    redis_cluster: LoopbackCluster, namespace: str
) -> AsyncIterator[RedisClusterBus]:
    instance = RedisClusterBus(redis_cluster.url(), namespace=namespace)
    await instance.start()
    yield instance
    await instance.close()
    redis_cluster.delete_namespace(namespace)


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def bus(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Bus]:
    """Each transport in turn: the contract tests run over all of them."""
    if request.param == "memory":
        instance: Bus = InMemoryBus()
    elif request.param == "redis":
        instance = RedisBus(REDIS_URL, namespace=namespace)
    else:
        cluster: LoopbackCluster = request.getfixturevalue("redis_cluster")
        instance = RedisClusterBus(cluster.url(), namespace=namespace)
        request.addfinalizer(lambda: cluster.delete_namespace(namespace))
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
