"""The bus: one interface (`Bus`), two transports, chosen by URL scheme.

``memory://`` gives the in-process bus (everything in one program), ``memory:///path/bus.db``
the same bus keeping what a restart needs in that SQLite file (`persistent`); ``redis://``
and ``rediss://`` give the Redis bus, on a Redis Cluster when `cluster` is set (the URL then
names seed nodes: ``redis://user:password@host1:7000,host2:7001``). See `base` for the
contract they all keep.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .base import (
    DEFAULT_FEED_RETENTION,
    Bus,
    Consumer,
    FeedEntry,
    Listening,
    QueueItem,
    Subscription,
)
from .memory import InMemoryBus
from .persistent import PersistentBus
from .redis import RedisBus
from .redis_cluster import RedisClusterBus

__all__ = [
    "DEFAULT_FEED_RETENTION",
    "Bus",
    "Consumer",
    "FeedEntry",
    "InMemoryBus",
    "Listening",
    "PersistentBus",
    "QueueItem",
    "RedisBus",
    "RedisClusterBus",
    "Subscription",
    "create_bus",
]


def create_bus(
    url: str,
    *,
    namespace: str = "cellbus",
    feed_retention: int = DEFAULT_FEED_RETENTION,
    cluster: bool = False,
) -> Bus:
    """The bus for `url`: ``memory://``, ``memory:///path/bus.db`` or ``redis://host:port/db``
    (`cluster`: ``redis://host:port,host:port`` are a Redis Cluster's seed nodes)."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme == "memory" and parts.path not in ("", "/"):
        return PersistentBus(parts.path, feed_retention=feed_retention)
    if scheme == "memory":
        return InMemoryBus(feed_retention=feed_retention)
    if cluster:
        if scheme not in ("redis", "rediss"):
            raise ValueError(f"a Redis Cluster needs a redis:// or rediss:// URL, not {url!r}")
        return RedisClusterBus(url, namespace=namespace, feed_retention=feed_retention)
    if scheme in ("redis", "rediss", "unix"):
        return RedisBus(url, namespace=namespace, feed_retention=feed_retention)
    raise ValueError(f"unsupported bus URL {url!r}: use memory:// or redis://host:port/db")
