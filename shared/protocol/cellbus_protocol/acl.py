"""Least privilege on the bus: the Redis user of each service, and nothing else it may do.

A deployment gives each service (kernel workers, web, accounts) its own Redis user, so that a
leaked credential is worth only what that service needs: a kernel's cannot write the accounts
request stream (forge a request as any user) nor read accounts' queue or the web's presence
tables; web's cannot read the kernels' registries or a session's queued requests; accounts'
cannot queue code on a session. This module is the one place those rules are written; every
key pattern comes from `keys` (prefixed with the deployment's namespace), every command from
what `bus.redis` and `bus.redis_queue` send for the operations the service uses.

Two forms come out of it, from the same rules:

- `server_args`: ``--user ...`` arguments of ``redis-server`` (docker-compose.yml starts Redis
  with them; passwords come in as they are, here from the environment);
- `acl_file`: an ACL file (``aclfile`` in redis.conf) whose passwords are SHA-256 hashes.

``python -P -m cellbus_protocol.acl`` prints either (see ``--help``). A grant marked
`KeyGrant.until` exists only for code that another change is moving away; docs/deploy.md lists
them. The ``default`` user is the administrator: protected by its own password, used by no
service.
"""

from __future__ import annotations

import argparse
import enum
import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from . import keys

DEFAULT_NAMESPACE = "cellbus"
_NAMESPACE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_PASSWORD = re.compile(r"^[A-Za-z0-9]{16,256}$")
_ANY_SESSION = "ANYSESSION"
"""A valid session id put into a `keys` function and replaced by ``*`` to get its pattern."""


class Service(enum.Enum):
    """A service with a Redis user of its own; the value is the user's name."""

    KERNEL = "kernel"
    WEB = "web"
    ACCOUNTS = "accounts"

    @property
    def password_variable(self) -> str:
        """The environment variable (docker-compose.yml, .env) holding this user's password."""
        return f"REDIS_{self.name}_PASSWORD"


class Access(enum.Enum):
    """What a service may do to the keys of a grant (Redis 7 key selectors)."""

    READ = "%R~"
    WRITE = "%W~"
    READ_WRITE = "%RW~"


@dataclass(frozen=True)
class KeyGrant:
    """Access to the keys matching `pattern` (a logical bus name, ``*`` for any part)."""

    pattern: str
    access: Access
    why: str
    until: str = ""
    """Non-empty: the grant exists only until the change named here lands."""
    only: tuple[str, ...] = ()
    """Non-empty: only these commands on these keys (a Redis selector), not all of the
    service's. E.g. web may drop expired rows of the kernels' load table (HDEL) but never
    write one (HSET), which it may do to its presence tables."""


@dataclass(frozen=True)
class ServiceRules:
    """Everything one service's Redis user may do."""

    service: Service
    commands: tuple[str, ...]
    keys: tuple[KeyGrant, ...]
    channels: tuple[str, ...]
    """Pub/sub channel patterns (logical names); which of PUBLISH and SUBSCRIBE it may send is
    in `commands`."""
    publish_only_to: tuple[str, ...] = ()
    """Channel patterns it may PUBLISH to although `commands` has no PUBLISH: each an ACL
    selector of its own (Redis applies channel patterns to PUBLISH and SUBSCRIBE alike, so the
    web service, which subscribes to its reply channel, would otherwise be able to forge
    replies)."""


def session_pattern(key: Callable[[str], str]) -> str:
    """The pattern of a per-session key of `keys` (``keys.feed`` -> ``session:*:feed``)."""
    return key(_ANY_SESSION).replace(_ANY_SESSION, "*")


_WAKE = keys.wake("ANYBUS").replace("ANYBUS}", "*")
"""``bus:{*:wake``: every bus's wake stream (``bus:{id}:wake``) and its consumers'
(``bus:{id}:<name>:wake``)."""
_REPLIES = keys.replies("*")

_BUS = ("ping", "cluster|slots", "cluster|shards", "command")
"""Every bus's start (and the health checks'): PING. AUTH and HELLO need no grant. On Redis
Cluster the client also asks any node which node serves which slots (CLUSTER SLOTS, or
SHARDS), again whenever a node moves or fails, and lists the server's commands once (COMMAND:
where each command's keys are, to route it)."""
_FEED_READ = ("xrange", "xrevrange", "xread")
"""Following a feed: catch up (XRANGE), find its end (XREVRANGE), one blocking XREAD."""
_WAKE_STREAM = ("xadd", "expire", "del")
"""Each bus's (and consumer's) private wake stream: poke it, let it expire, delete it."""
_CONSUMER = ("xgroup|create", "xreadgroup", "xack", "xdel", "xautoclaim")
"""A queue's consumer group: create it, take entries, retire them, claim abandoned ones."""
_SCRIPTS = ("evalsha", "script|load", "pexpire")
"""Leases and registries change atomically in small Lua scripts (`bus.redis`: _RENEW runs GET
and PEXPIRE, _RELEASE GET and DEL, _REMOVE_ENTRY HGET and HDEL); Redis checks each command a
script runs against the same user, so a script reaches no more than the user."""

_SESSION_FEED = session_pattern(keys.feed)
_SESSION_REQUESTS = session_pattern(keys.requests)
_SESSION_HOST = session_pattern(keys.session_host)
_SESSION_CHECKPOINT = session_pattern(keys.checkpoint)
_SESSION_PRESENCE = session_pattern(keys.presence)
_SESSION_LIVE = session_pattern(keys.live)
_PARALLEL_REQUESTS = keys.parallel_requests("ANYWORKER").replace("ANYWORKER", "*")


def sharded(queue: str) -> str:
    """The pattern of a queue of `keys.SHARDED_QUEUES`: the queue and, on Redis Cluster, its
    shards (``accounts:requests`` and ``accounts:requests:{0}`` ...)."""
    if queue not in keys.SHARDED_QUEUES:
        raise ValueError(f"{queue!r} is not a sharded queue")
    return f"{queue}*"


_WEAKEST_SANDBOX = (
    KeyGrant(keys.WORKERS, Access.READ_WRITE, "which workers are alive (`isolation.weakest`); "
             "drops expired rows as every reader does", only=("hgetall", "hdel")),
    KeyGrant(keys.WORKER_ISOLATION, Access.READ, "how well the live workers sandbox sessions "
             "(`isolation.weakest`)", only=("hgetall",)),
)  # fmt: skip
"""Web (``/healthz``) and accounts (a second account only with a sandbox) read how well the
weakest live worker sandboxes user code: the load table and the workers' announcements."""

RULES: Mapping[Service, ServiceRules] = {
    Service.KERNEL: ServiceRules(
        Service.KERNEL,
        commands=(
            *_BUS,
            "xadd",
            "xrange",
            "xlen",
            *_WAKE_STREAM,
            *_CONSUMER,
            "publish",
            "spublish",
            "get",
            "set",
            "copy",
            "hget",
            "hset",
            "hdel",
            "hgetall",
            *_SCRIPTS,
        ),
        keys=(
            KeyGrant(
                sharded(keys.NEW_SESSIONS), Access.READ_WRITE, "takes new sessions; hands some back"
            ),
            KeyGrant(sharded(keys.KERNEL_CONTROL), Access.READ_WRITE, "answers control requests"),
            KeyGrant(keys.WORKERS, Access.READ_WRITE, "reports its load; places sessions"),
            KeyGrant(keys.WORKER_ISOLATION, Access.READ_WRITE, "announces its sandbox"),
            KeyGrant(keys.SESSION_HOSTS, Access.READ_WRITE, "registers hosted sessions; failover"),
            KeyGrant(_SESSION_HOST, Access.READ_WRITE, "holds the lease of each session it hosts"),
            KeyGrant(_SESSION_REQUESTS, Access.READ_WRITE, "takes the requests of its sessions"),
            KeyGrant(_SESSION_FEED, Access.READ_WRITE, "publishes; reads back on a takeover"),
            KeyGrant(_SESSION_CHECKPOINT, Access.READ_WRITE, "saves and restores sessions"),
            KeyGrant(
                keys.PARALLEL_LOAD,
                Access.READ_WRITE,
                "reports its Dask workers; places a session's beyond its own worker's cores",
            ),
            KeyGrant(
                keys.PARALLEL_DASHBOARDS,
                Access.READ_WRITE,
                "where each session's Dask dashboard is served",
            ),
            KeyGrant(
                _PARALLEL_REQUESTS,
                Access.READ_WRITE,
                "asks other workers for Dask workers; answers their asks",
            ),
            KeyGrant(_WAKE, Access.READ_WRITE, "its consumers' wake streams"),
        ),
        channels=(_REPLIES,),  # answers completions, inspections, interrupts, restarts
    ),
    Service.WEB: ServiceRules(
        Service.WEB,
        commands=(
            *_BUS,
            "xadd",
            *_FEED_READ,
            *_WAKE_STREAM,
            "subscribe",
            "unsubscribe",
            "ssubscribe",
            "sunsubscribe",
            "pubsub|numsub",
            "get",
            "hset",
            "hdel",
            "hgetall",
        ),
        keys=(
            KeyGrant(
                sharded(keys.ACCOUNTS), Access.WRITE, "sends requests to the accounts service"
            ),
            KeyGrant(sharded(keys.NEW_SESSIONS), Access.WRITE, "starts sessions"),
            KeyGrant(
                sharded(keys.KERNEL_CONTROL), Access.WRITE, "forks, ends and asks after sessions"
            ),
            KeyGrant(_SESSION_REQUESTS, Access.WRITE, "sends requests to sessions"),
            KeyGrant(_SESSION_HOST, Access.READ, "ensure_session: is a session hosted (one GET)"),
            KeyGrant(_SESSION_FEED, Access.READ, "relays feeds to clients"),
            KeyGrant(_SESSION_PRESENCE, Access.READ_WRITE, "who is watching each session"),
            KeyGrant(keys.ACCESS_CHANGES, Access.READ, "forgets roles when accounts says so"),
            KeyGrant(keys.HEALTH_PROBE, Access.READ, "/healthz"),
            KeyGrant(
                keys.PARALLEL_DASHBOARDS,
                Access.READ,
                "proxies a session's Dask dashboard (one HGET)",
                only=("hget",),
            ),
            *_WEAKEST_SANDBOX,
            KeyGrant(_WAKE, Access.READ_WRITE, "its feed hub's wake stream"),
        ),
        # replies to its requests; what people do live, relayed between web processes
        channels=(_REPLIES, _SESSION_LIVE),
        publish_only_to=(_SESSION_LIVE,),
    ),
    Service.ACCOUNTS: ServiceRules(
        Service.ACCOUNTS,
        commands=(
            *_BUS,
            "xadd",
            *_FEED_READ,
            *_WAKE_STREAM,
            *_CONSUMER,
            "publish",
            "spublish",
            "subscribe",
            "unsubscribe",
            "ssubscribe",
            "sunsubscribe",
        ),
        keys=(
            KeyGrant(
                sharded(keys.ACCOUNTS), Access.READ_WRITE, "serves requests; its health check asks"
            ),
            KeyGrant(_SESSION_FEED, Access.READ_WRITE, "announces cell edits; saves outputs"),
            KeyGrant(keys.ACCESS_CHANGES, Access.WRITE, "announces changes of access"),
            *_WEAKEST_SANDBOX,
            KeyGrant(_WAKE, Access.READ_WRITE, "its consumers' and feed hub's wake streams"),
        ),
        channels=(_REPLIES,),  # replies; its health check's own replies
    ),
}


def check_namespace(namespace: str) -> str:
    """A namespace that is safe inside a key pattern (no glob characters, no spaces)."""
    if not _NAMESPACE.match(namespace):
        raise ValueError(
            f"namespace {namespace!r}: use 1-64 letters, digits, '.', '_' or '-' "
            "(it becomes part of Redis ACL key patterns)"
        )
    return namespace


def check_password(service: str, password: str) -> str:
    """A password that fits an ACL rule and a redis:// URL unescaped."""
    if not _PASSWORD.match(password):
        raise ValueError(
            f"the Redis password of {service} must be 16-256 letters and digits "
            "(e.g. `openssl rand -hex 24`)"
        )
    return password


def rules(service: Service, namespace: str) -> list[str]:
    """The ACL rules of `service`'s user (no name, no password): everything it may do."""
    return _rules(service, check_namespace(namespace))


def _rules(service: Service, namespace: str) -> list[str]:
    """`rules` with `namespace` taken as it is (docker-compose.yml passes an interpolation)."""
    spec = RULES[service]
    return [
        "resetkeys",
        "resetchannels",
        "clearselectors",
        "-@all",
        *(f"+{command}" for command in dict.fromkeys(spec.commands)),
        *(_key_rule(grant, namespace) for grant in spec.keys),
        *(f"&{namespace}:{channel}" for channel in spec.channels),
        *(f"(&{namespace}:{channel} +publish +spublish)" for channel in spec.publish_only_to),
    ]


def _key_rule(grant: KeyGrant, namespace: str) -> str:
    rule = f"{grant.access.value}{namespace}:{grant.pattern}"
    if not grant.only:
        return rule
    return "(" + " ".join([rule, *(f"+{command}" for command in grant.only)]) + ")"


def _admin_rules() -> list[str]:
    return ["~*", "&*", "+@all", "sanitize-payload"]  # as Redis's own default user


def server_args(
    namespace: str, passwords: Mapping[Service, str], admin_password: str, *, checked: bool = True
) -> list[str]:
    """``redis-server`` arguments that define every user: ``default`` (the administrator,
    with `admin_password`) and one per service. With ``checked=False`` the namespace and
    passwords go in unchecked (docker-compose.yml's ``${...}`` interpolations)."""
    if checked:
        check_namespace(namespace)
        check_password("default", admin_password)
        for service in Service:
            check_password(service.value, passwords[service])
    args = ["--user", "default", "on", f">{admin_password}", *_admin_rules()]
    for service in Service:
        args += ["--user", service.value, "on", f">{passwords[service]}"]
        args += _rules(service, namespace)
    return args


COMPOSE_NAMESPACE = "${CELLBUS_NAMESPACE:-cellbus}"
"""The namespace as docker-compose.yml spells it (the services get the same)."""


def compose_password(variable: str) -> str:
    """A password as docker-compose.yml spells it: required, from the environment."""
    return f"${{{variable}:?set {variable} (letters and digits)}}"


def compose_args() -> list[str]:
    """The users part of the redis service's command in docker-compose.yml (a test holds the
    file to exactly this; ``python -P -m cellbus_protocol.acl compose`` prints it)."""
    passwords = {service: compose_password(service.password_variable) for service in Service}
    return server_args(
        COMPOSE_NAMESPACE, passwords, compose_password("REDIS_PASSWORD"), checked=False
    )


def compose_text(width: int = 94) -> str:
    """`compose_args` as docker-compose.yml writes them: items of the redis service's
    ``command: [...]`` flow list (6 spaces in), each user from a new line, wrapped at `width`.
    A list, not a string: Compose v2 splits a string command like a shell, where ``&`` and
    ``>`` end it."""
    lines: list[str] = []
    for arg in compose_args():
        item = json.dumps(arg) + ","
        if arg == "--user" or len(lines[-1]) + 1 + len(item) > width:
            lines.append(item)
        else:
            lines[-1] += " " + item
    return "".join(f"      {line}\n" for line in lines)


def acl_file(namespace: str, passwords: Mapping[Service, str], admin_password: str) -> str:
    """An ACL file (redis.conf ``aclfile``) with every user; passwords as SHA-256 hashes."""
    check_namespace(namespace)

    def hashed(owner: str, password: str) -> str:
        return "#" + hashlib.sha256(check_password(owner, password).encode()).hexdigest()

    lines = [" ".join(["user default on", hashed("default", admin_password), *_admin_rules()])]
    for service in Service:
        password = hashed(service.value, passwords[service])
        lines.append(" ".join(["user", service.value, "on", password, *rules(service, namespace)]))
    return "\n".join(lines) + "\n"


def redis_url(service: Service, password: str, host: str = "redis", port: int = 6379) -> str:
    """The CELLBUS_REDIS_URL of `service`: its own user and password."""
    return f"redis://{service.value}:{check_password(service.value, password)}@{host}:{port}/0"


def _passwords_from(environ: Mapping[str, str]) -> tuple[dict[Service, str], str]:
    missing = [s.password_variable for s in Service if not environ.get(s.password_variable)]
    if not environ.get("REDIS_PASSWORD"):
        missing.insert(0, "REDIS_PASSWORD")
    if missing:
        raise SystemExit(f"set {', '.join(missing)} (letters and digits, at least 16)")
    return {s: environ[s.password_variable] for s in Service}, environ["REDIS_PASSWORD"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -P -m cellbus_protocol.acl",
        description="Print the Redis users of a cellbus deployment, one per service. "
        "Passwords come from REDIS_PASSWORD (the administrator, user default) and "
        + ", ".join(s.password_variable for s in Service)
        + ".",
    )
    parser.add_argument(
        "form",
        choices=["aclfile", "args", "compose"],
        help="aclfile: an ACL file (passwords hashed); args: redis-server arguments, one per "
        "line; compose: the users part of the redis command of docker-compose.yml (no "
        "passwords needed: it reads them from the environment)",
    )
    parser.add_argument(
        "--namespace", default=os.environ.get("CELLBUS_NAMESPACE", DEFAULT_NAMESPACE)
    )
    args = parser.parse_args(argv)
    if args.form == "compose":
        sys.stdout.write(compose_text())
        return
    try:
        passwords, admin = _passwords_from(os.environ)
        if args.form == "aclfile":
            sys.stdout.write(acl_file(args.namespace, passwords, admin))
        else:
            sys.stdout.write("\n".join(server_args(args.namespace, passwords, admin)) + "\n")
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


if __name__ == "__main__":
    main()
