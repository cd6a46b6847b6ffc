"""The accounts service's settings, read from ``CELLBUS_*`` variables once, in ``main()``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AccountsSettings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    """CELLBUS_REDIS_URL: the bus."""
    namespace: str = "cellbus"
    """CELLBUS_NAMESPACE: prefix of every Redis key."""
    database_url: str = "postgresql://postgres@127.0.0.1:5432/cellbus"
    """CELLBUS_DATABASE_URL: postgresql://... or sqlite:///path/file.db."""
    open_signup: bool = True
    """CELLBUS_OPEN_SIGNUP: anyone may register (the first user may always register)."""
    token_ttl_days: float = 30.0
    """CELLBUS_TOKEN_TTL_DAYS: how long a login token lasts."""
    max_source_bytes: int = 1024 * 1024
    """CELLBUS_MAX_SOURCE_BYTES: the largest cell source accepted."""
    log_level: str = "INFO"
    """CELLBUS_LOG_LEVEL."""
