"""The real Redis the tests use, and a namespace per test that is deleted afterwards.

Tests never flush the server: each works under its own key prefix, so the suite can share a
Redis with anything else.
"""

from __future__ import annotations

import os
import uuid

import redis

REDIS_URL = os.environ.get("CELLBUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def require_redis() -> None:
    """Fail (never skip) when Redis is not there: `make test` starts it."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.ConnectionError as exc:
        raise RuntimeError(
            f"Redis is not answering at {REDIS_URL}; run the suite with `make test`, "
            "which starts it"
        ) from exc


def new_namespace() -> str:
    return f"cellbus-test-{uuid.uuid4().hex[:10]}"


def delete_namespace(namespace: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
