"""The bus: one interface (`Bus`), two transports, chosen by URL scheme.

``memory://`` gives the in-process bus (everything in one program); ``redis://`` and
``rediss://`` give the Redis bus. See `base` for the contract both keep.
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
from .redis import RedisBus

__all__ = [
    "DEFAULT_FEED_RETENTION",
    "Bus",
    "Consumer",
    "FeedEntry",
    "InMemoryBus",
    "Listening",
    "QueueItem",
    "RedisBus",
    "Subscription",
    "create_bus",
]


def create_bus(
    url: str, *, namespace: str = "cellbus", feed_retention: int = DEFAULT_FEED_RETENTION
) -> Bus:
    """The bus for `url`: ``memory://`` or ``redis://host:port/db``."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return InMemoryBus(feed_retention=feed_retention)
    if scheme in ("redis", "rediss", "unix"):
        return RedisBus(url, namespace=namespace, feed_retention=feed_retention)
    raise ValueError(f"unsupported bus URL {url!r}: use memory:// or redis://host:port/db")
