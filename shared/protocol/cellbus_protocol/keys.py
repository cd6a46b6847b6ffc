"""Every name on the bus, built here and nowhere else.

These are logical names. The Redis bus prefixes each with its namespace (``cellbus:`` by
default, so ``session:{sid}:feed`` is the Redis key ``cellbus:session:{sid}:feed``); the
in-process bus uses them as they are. `docs/protocol.md` lists them with what each holds.

Every key of one session carries the session id in braces, a Redis Cluster *hash tag*: only
the part in braces decides the key's hash slot, so all of a session's keys live in one slot
on one node, and a command (or script) over several of them never crosses slots. Keys of one
bus instance (its wake streams, its reply channel) are tagged with the instance id the same
way. The queues that every session passes through (`SHARDED_QUEUES`) are, on Redis Cluster,
spread over `QUEUE_SHARDS` streams (`queue_shards`), each tagged with its own number so the
shards land on different nodes.
"""

from __future__ import annotations

import re

NEW_SESSIONS = "sessions:new"
"""Queue of `SessionOpen` records; kernel workers take new sessions from it."""

KERNEL_GROUP = "kernel-workers"
"""Consumer group of the kernel workers on every queue they read."""

KERNEL_CONTROL = "kernel:control"
"""Queue of control requests about whole sessions (`messages.ControlRequest`: fork, status,
discard, end), request/reply; every kernel worker reads it in `KERNEL_GROUP`. Other services
ask the kernel this way rather than touching its checkpoints and leases."""

WORKERS = "workers"
"""Load table: worker id -> number of sessions it hosts, with a deadline (liveness)."""

WORKER_ISOLATION = "workers:isolation"
"""Registry: worker id -> how well it sandboxes its session processes (`isolation`), set when
the worker starts; read with the load table, which says which workers are alive."""

SESSION_HOSTS = "sessions:hosts"
"""Registry of hosted sessions: session id -> the worker hosting it. Written when a worker
starts hosting a session, removed when the session ends or hibernates; a session whose worker
has left the load table is taken over from it (failover)."""

PARALLEL_LOAD = "parallel:load"
"""Load table: kernel worker id -> Dask workers it runs for parallel cells (`cellbus.parallel`),
with a deadline; a session that needs more workers than its own kernel worker gives asks the
least loaded of the others."""

PARALLEL_DASHBOARDS = "parallel:dashboards"
"""Registry: session id -> where its Dask scheduler serves its dashboard (``http://host:port``,
reachable only by services: sandboxes may not connect to the dashboard ports). Written by the
session's kernel worker, read by the web service's dashboard proxy."""


def parallel_requests(worker: str) -> str:
    """Queue of `messages.ParallelRequest` for one kernel worker (request/reply): start Dask
    workers for another worker's session, or stop them."""
    if not _WORKER_ID.match(worker):
        raise ValueError(f"invalid worker id {worker!r}")
    return f"parallel:requests:{{{worker}}}"


_WORKER_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")

_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_session_id(session: str) -> str:
    """A session id, checked to be safe inside a key; raises ValueError otherwise."""
    if not _SESSION_ID.match(session):
        raise ValueError(f"invalid session id {session!r}")
    return session


def session_of(name: str) -> str:
    """The session id in one of a session's names (``session:{sid}:requests`` -> ``sid``)."""
    prefix, _, rest = name.partition(":{")
    session, closed, _ = rest.partition("}")
    if prefix != "session" or not closed:
        raise ValueError(f"{name!r} is not a session's name")
    return check_session_id(session)


def feed(session: str) -> str:
    """The session's feed: every change of the session, in order, with a cursor (``seq``)."""
    return f"session:{{{check_session_id(session)}}}:feed"


def requests(session: str) -> str:
    """Queue of Jupyter request messages for the session; read by the worker hosting it."""
    return f"session:{{{check_session_id(session)}}}:requests"


def session_host(session: str) -> str:
    """Lease naming the worker that hosts the session; held while the worker is alive."""
    return f"session:{{{check_session_id(session)}}}:host"


def checkpoint(session: str) -> str:
    """Blob: the session's latest checkpoint (its namespace, signed by the worker that saved it)."""
    return f"session:{{{check_session_id(session)}}}:checkpoint"


def presence(session: str) -> str:
    """Who is watching the session: a load table (member: ``username process-id``, one per
    user per web process, with a time to live) that every web process renews for its sockets
    and reads once per round for presence frames (`cellbus_web.presence`)."""
    return f"session:{{{check_session_id(session)}}}:presence"


def live(session: str) -> str:
    """Broadcast channel of what people do on the worksheet the session runs that the others
    should see at once (awareness: who is in which cell, cursors; document updates before
    they are committed): between web processes, never stored (`cellbus_web.relay`)."""
    return f"session:{{{check_session_id(session)}}}:live"


ACCOUNTS = "accounts:requests"
"""Queue of accounts requests (request/reply); read by the accounts service."""

ACCOUNTS_GROUP = "accounts"

QUEUE_SHARDS = 8
"""Streams each of `SHARDED_QUEUES` is spread over on Redis Cluster (a single Redis, and the
in-process bus, keep each in one stream)."""

SHARDED_QUEUES = frozenset({NEW_SESSIONS, KERNEL_CONTROL, ACCOUNTS})
"""The queues that span sessions: every session start, control request and accounts request
goes through one of them, so on Redis Cluster each is sharded (`queue_shards`) and no one
node carries all of that traffic."""


def queue_shards(queue: str) -> list[str]:
    """The streams of a sharded queue on Redis Cluster: ``<queue>:{0}`` .. ``{QUEUE_SHARDS-1}``
    (each number its own hash tag, so the shards hash to different slots)."""
    if queue not in SHARDED_QUEUES:
        raise ValueError(f"{queue!r} is not a sharded queue")
    return [f"{queue}:{{{shard}}}" for shard in range(QUEUE_SHARDS)]


"""Consumer group of the accounts service processes."""

ACCESS_CHANGES = "access:changes"
"""Feed of `accounts.AccessChanged` (``{"change": "session", "session": ...}``), published by
the accounts service when who may use a session changes, and of `accounts.TokenRevoked`
(``{"change": "token", ...}``) when a token is revoked; web processes follow it to drop the
roles and tokens they remembered and to close a revoked token's sockets."""

HEALTH_PROBE = "healthz"
"""Never written: the web service's ``/healthz`` reads its (empty) feed to prove it reaches the
bus, so the probe touches no key that holds anything."""


def wake(instance: str, consumer: str | None = None) -> str:
    """Private stream of one bus instance (or of one of its consumers) that ends its own blocking
    read early when it starts following another stream (`cellbus_protocol.bus.redis`); it holds
    nothing but a marker."""
    tagged = f"bus:{{{instance}}}"
    return f"{tagged}:wake" if consumer is None else f"{tagged}:{consumer}:wake"


def replies(instance: str) -> str:
    """Pub/sub channel of one bus instance: replies to the requests it sent (request/reply)."""
    return f"reply:{{{instance}}}"
