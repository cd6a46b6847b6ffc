"""The accounts service's settings, read from ``CELLBUS_*`` variables once, in ``main()``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AccountsSettings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    """CELLBUS_REDIS_URL: the bus (with `redis_cluster`: the cluster's seed nodes,
    ``redis://user:password@host1:6379,host2:6379``)."""
    redis_cluster: bool = False
    """CELLBUS_REDIS_CLUSTER: the bus is a Redis Cluster (docs/scaling.md)."""
    namespace: str = "cellbus"
    """CELLBUS_NAMESPACE: prefix of every Redis key."""
    database_url: str = "postgresql://postgres@127.0.0.1:5432/cellbus"
    """CELLBUS_DATABASE_URL: postgresql://... or sqlite:///path/file.db."""
    open_signup: bool = True
    """CELLBUS_OPEN_SIGNUP: anyone may register (the first user may always register)."""
    allow_unsandboxed: bool = False
    """CELLBUS_ALLOW_UNSANDBOXED: let more than one account be made although a kernel worker
    cannot sandbox user code (no Landlock): every user could then reach everything its user
    can, other users' sessions included."""
    token_ttl_days: float = 30.0
    """CELLBUS_TOKEN_TTL_DAYS: how long a login token lasts."""
    max_source_bytes: int = 1024 * 1024
    """CELLBUS_MAX_SOURCE_BYTES: the largest cell source accepted."""
    feed_retention: int = 10_000
    """CELLBUS_FEED_RETENTION: messages kept per session feed. The accounts service publishes
    on session feeds too (document updates), and every publish trims the feed to its
    publisher's retention, so it must be the kernel workers' (the same variable)."""
    max_update_bytes: int = 1024 * 1024
    """CELLBUS_MAX_UPDATE_BYTES: the largest document update a client may send at once."""
    max_import_bytes: int = 64 * 1024 * 1024
    """CELLBUS_MAX_IMPORT_BYTES: the largest document an imported notebook may make."""
    login_attempts: int = 10
    """CELLBUS_LOGIN_ATTEMPTS: passwords checked per username per `login_window`, from any
    number of addresses, counting checks that fail or are still running (see
    store/logins.py and docs/security.md)."""
    login_clean_reserve: int = 3
    """CELLBUS_LOGIN_CLEAN_RESERVE: how many of those are kept for addresses with no failed
    login on that username within the window, so its owner still gets in while an attacker
    elsewhere is refused."""
    login_window: float = 60.0
    """CELLBUS_LOGIN_WINDOW: seconds over which login attempts are counted."""
    login_address_attempts: int = 100
    """CELLBUS_LOGIN_ADDRESS_ATTEMPTS: passwords checked per client address per window, over
    all usernames."""
    log_level: str = "INFO"
    """CELLBUS_LOG_LEVEL."""
