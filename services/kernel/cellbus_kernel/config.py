"""The kernel worker's settings, read from ``CELLBUS_*`` variables once, in ``main()``."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class KernelSettings:
    redis_url: str = "redis://127.0.0.1:6379/0"
    """CELLBUS_REDIS_URL: the bus (with `redis_cluster`: the cluster's seed nodes,
    ``redis://user:password@host1:6379,host2:6379``)."""
    redis_cluster: bool = False
    """CELLBUS_REDIS_CLUSTER: the bus is a Redis Cluster (docs/scaling.md)."""
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
    lease_ttl: float = 5.0
    """CELLBUS_LEASE_TTL: seconds a session stays bound to a worker that stops renewing; after
    that (and once the worker has left the load table) another worker takes the session over."""
    heartbeat_interval: float = 1.0
    """CELLBUS_HEARTBEAT_INTERVAL: seconds between load reports and lease renewals."""
    start_timeout: float = 30.0
    """CELLBUS_START_TIMEOUT: seconds a new session process has to say it is ready."""
    answer_timeout: float = 10.0
    """CELLBUS_ANSWER_TIMEOUT: seconds a completion or inspection may take."""
    session_user: str = ""
    """CELLBUS_SESSION_USER: when the worker runs as root, the user session processes run as
    (it must be able to read the Python installation). As root without one, session processes
    stay uid 0 but lose every capability."""
    sessions_dir: str = ""
    """CELLBUS_SESSIONS_DIR: where each session's own folder is made (`<dir>/<session>`: its
    working directory and HOME, with its private TMPDIR inside); the only place a session may
    write. Default: ``cellbus-sessions-<uid>`` in the system's temporary folder."""
    workspaces_dir: str = ""
    """CELLBUS_WORKSPACES_DIR: the root of the worksheets' workspaces (`<dir>/<session>`: a
    session's working directory, its files and its own packages), shared by every kernel
    worker and web process (a volume). Default: ``cellbus-workspaces-<uid>`` in the system's
    temporary folder; the one program uses ``CELLBUS_DATA_DIR/workspaces``."""
    workspace_quota_mb: int = 4096
    """CELLBUS_WORKSPACE_QUOTA_MB: the most a workspace may hold, in MiB, whoever writes it (a
    cell, an upload, ``%pip``)."""
    session_ports: str = "80,443"
    """CELLBUS_SESSION_PORTS: TCP ports a session may connect to: a comma-separated list,
    ``none`` or ``any``."""
    session_bind_ports: str = "none"
    """CELLBUS_SESSION_BIND_PORTS: TCP ports a session may listen on (same forms)."""
    session_max_processes: int = 256
    """CELLBUS_SESSION_MAX_PROCESSES: processes and threads a session may start beyond those
    its user already runs (RLIMIT_NPROC; 0: no limit)."""
    session_max_open_files: int = 1024
    """CELLBUS_SESSION_MAX_OPEN_FILES: files and sockets a session process may hold open."""
    session_max_file_mb: int = 4096
    """CELLBUS_SESSION_MAX_FILE_MB: the largest file a session may write, in MiB (0: no
    limit)."""
    parallel_cores: int = 0
    """CELLBUS_PARALLEL_CORES: Dask workers (one core each) this kernel worker runs for
    parallel cells (`cellbus.parallel`), all sessions together; a session that wants more
    gets them from other kernel workers. 0: this machine's cores (`os.cpu_count`)."""
    parallel_max_workers: int = 8
    """CELLBUS_PARALLEL_MAX_WORKERS: the most Dask workers one session may have (0: parallel
    cells are off)."""
    parallel_max_workers_per_user: int = 16
    """CELLBUS_PARALLEL_MAX_WORKERS_PER_USER: the most Dask workers one user's sessions may
    have together, across every kernel worker."""
    parallel_idle_seconds: float = 60.0
    """CELLBUS_PARALLEL_IDLE_SECONDS: a session's Dask workers that ran nothing for this long
    end and free their cores for others (the next use starts new ones; 0: they stay until the
    session ends). Workers that hold results the session still refers to stay."""
    parallel_ports: str = "47000-47299"
    """CELLBUS_PARALLEL_PORTS: TCP ports Dask's schedulers and workers listen on and connect to
    (every session and Dask worker may; no service may listen on one): ``first-last`` or a
    list. Other sessions reach them too, and are refused by each session's TLS credentials."""
    parallel_dashboard_ports: str = "47300-47599"
    """CELLBUS_PARALLEL_DASHBOARD_PORTS: TCP ports the schedulers and workers serve HTTP on
    (their dashboards): sandboxes may listen on them but never connect to them, so only the
    services (the web's authenticated proxy) reach a session's dashboard."""
    parallel_host: str = ""
    """CELLBUS_PARALLEL_HOST: the address other kernel workers' Dask workers and the web
    service reach this one's on (its container's address in compose). Default: 127.0.0.1,
    for one machine."""
    secret: str = field(default="", repr=False)
    """CELLBUS_SECRET: the key that signs checkpoints (HMAC-SHA256). Without it the worker
    saves no checkpoints: sessions are not hibernated, and a session taken over from a dead
    worker starts with a fresh namespace. Every worker of a deployment needs the same one."""
    checkpoint_delay: float = 1.0
    """CELLBUS_CHECKPOINT_DELAY: seconds a session must be idle, nothing queued, after an
    execution before its namespace is saved."""
    checkpoint_interval: float = 30.0
    """CELLBUS_CHECKPOINT_INTERVAL: the longest a changed namespace goes unsaved while a
    session runs executions back to back (never idle for CELLBUS_CHECKPOINT_DELAY): it is then
    saved between two executions, so a worker's crash costs at most this much work."""
    checkpoint_max_mb: int = 256
    """CELLBUS_CHECKPOINT_MAX_MB: the largest checkpoint, in MiB; a larger namespace is not
    saved (the feed says so) and the previous checkpoint is kept."""
    hibernate_after: float = 900.0
    """CELLBUS_HIBERNATE_AFTER: seconds without any request after which a session is
    checkpointed, its process ended and its worker released (0: never)."""
    drain_timeout: float = 10.0
    """CELLBUS_DRAIN_TIMEOUT: on SIGTERM, seconds running executions get to finish before
    their sessions are handed over without them."""
    log_level: str = "INFO"
    """CELLBUS_LOG_LEVEL."""

    @property
    def checkpoints(self) -> bool:
        return bool(self.secret)
