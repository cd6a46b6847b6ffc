"""The kernel worker's settings, read from ``CELLBUS_*`` variables once, in ``main()``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KernelSettings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    """CELLBUS_REDIS_URL: the bus."""
    namespace: str = "cellbus"
    """CELLBUS_NAMESPACE: prefix of every Redis key (several deployments can share a Redis)."""
    worker_id: str = ""
    """CELLBUS_WORKER_ID: this worker's name on the bus; default: host name, pid, random."""
    max_sessions: int = 200
    """CELLBUS_MAX_SESSIONS: the most sessions this worker takes."""
    memory_limit_mb: int = 4096
    """CELLBUS_MEMORY_LIMIT_MB: resident memory a session process may use (0: no limit)."""
    memory_poll_interval: float = 0.1
    """CELLBUS_MEMORY_POLL_INTERVAL: seconds between memory checks of a session process."""
    output_cap: int = 10_000_000
    """CELLBUS_OUTPUT_CAP: characters of stream output one execution may publish."""
    feed_retention: int = 10_000
    """CELLBUS_FEED_RETENTION: messages kept per session feed."""
    lease_ttl: float = 10.0
    """CELLBUS_LEASE_TTL: seconds a session stays bound to a worker that stops renewing."""
    heartbeat_interval: float = 1.0
    """CELLBUS_HEARTBEAT_INTERVAL: seconds between load reports and lease renewals."""
    start_timeout: float = 30.0
    """CELLBUS_START_TIMEOUT: seconds a new session process has to say it is ready."""
    answer_timeout: float = 10.0
    """CELLBUS_ANSWER_TIMEOUT: seconds a completion or inspection may take."""
    session_user: str = ""
    """CELLBUS_SESSION_USER: when the worker runs as root, the user session processes run as
    (it must be able to read the Python installation)."""
    log_level: str = "INFO"
    """CELLBUS_LOG_LEVEL."""
