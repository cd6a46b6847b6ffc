"""The web service's settings, read from ``CELLBUS_*`` variables once, in ``main()``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WebSettings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    """CELLBUS_REDIS_URL: the bus (with `redis_cluster`: the cluster's seed nodes,
    ``redis://user:password@host1:6379,host2:6379``)."""
    redis_cluster: bool = False
    """CELLBUS_REDIS_CLUSTER: the bus is a Redis Cluster (docs/scaling.md)."""
    namespace: str = "cellbus"
    """CELLBUS_NAMESPACE: prefix of every Redis key."""
    host: str = "127.0.0.1"
    """CELLBUS_HOST: the address to listen on (0.0.0.0 in a container)."""
    port: int = 8888
    """CELLBUS_PORT: the port to listen on."""
    public_origins: str = ""
    """CELLBUS_PUBLIC_ORIGINS: comma-separated origins (``https://nb.example.org``) that
    browsers may call the API and open the WebSocket from, besides the request's own host."""
    secure_cookies: bool = False
    """CELLBUS_SECURE_COOKIES: mark the session cookie Secure (set it behind HTTPS)."""
    input_leave_grace: float = 2.0
    """CELLBUS_INPUT_LEAVE_GRACE: seconds a person whose last feed socket on a session closed
    has to come back (a page reload) before the ``input()`` waiting for them ends."""
    workspaces_dir: str = ""
    """CELLBUS_WORKSPACES_DIR: the root of the worksheets' workspaces, the same shared folder
    the kernel workers use (the web service serves files straight from it)."""
    workspace_quota_mb: int = 4096
    """CELLBUS_WORKSPACE_QUOTA_MB: the most a workspace may hold, in MiB (uploads are refused
    past it)."""
    max_upload_mb: int = 1024
    """CELLBUS_MAX_UPLOAD_MB: the largest file one upload may make, in MiB."""
    max_body_bytes: int = 16 * 1024 * 1024
    """CELLBUS_MAX_BODY_BYTES: the largest JSON-RPC request body (a notebook import)."""
    auth_cache_seconds: float = 5.0
    """CELLBUS_AUTH_CACHE_SECONDS: how long a checked token is trusted without asking the
    accounts service again (a revocation is announced on the bus and takes effect at once;
    this bounds it if the announcement is lost), and
    the longest a caller's role on a session is remembered (a change of role is announced on
    the bus and takes effect at once; this bounds it if the announcement is lost)."""
    socket_queue: int = 2000
    """CELLBUS_SOCKET_QUEUE: feed messages buffered per WebSocket before a slow client is
    disconnected (with its cursors, to resume)."""
    ping_interval: float = 20.0
    """CELLBUS_PING_INTERVAL: seconds between WebSocket keep-alive pings."""
    poll_timeout_max: float = 60.0
    """CELLBUS_POLL_TIMEOUT_MAX: the longest wait `feed.poll` grants."""
    call_timeout: float = 10.0
    """CELLBUS_CALL_TIMEOUT: seconds to wait for the accounts service or a session."""
    static_dir: str = ""
    """CELLBUS_STATIC_DIR: the built frontend (default: frontend/web/dist of the checkout)."""
    log_level: str = "INFO"
    """CELLBUS_LOG_LEVEL."""

    def origins(self) -> set[str]:
        return {o.strip().rstrip("/") for o in self.public_origins.split(",") if o.strip()}
