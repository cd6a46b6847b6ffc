"""Least privilege on the bus: each service's Redis user, against a real Redis.

A private ``redis-server`` runs with exactly the users that docker-compose.yml gives Redis
(`cellbus_protocol.acl.server_args`, the generator that docker-compose.yml is checked against
below). The three services run as a deployment runs them (``python -P -m cellbus_accounts``,
``cellbus_kernel``, ``cellbus_web``), each with its own credential, and a user does everything
a user does; Redis's ACL log then shows that nothing was refused. After that, each credential
is used as a thief would use it, and Redis refuses what that service has no business doing.
"""

from __future__ import annotations

import asyncio
import fnmatch
import inspect
import re
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from redis import Redis
from ruamel.yaml import YAML

from cellbus_protocol import acl, keys
from cellbus_protocol.acl import Service
from cellbus_protocol.bus import RedisClusterBus

from ..support.api import Client, new_user, stdout_of
from ..support.private_redis import PrivateRedis
from ..support.redis_cluster import LoopbackCluster
from ..support.stack import AclServicesStack

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "cellbus-acl"
WORKER_ID = "acl-kernel-1"
SESSION = "a1b2c3"
"""Some session's id, for the refusals (any id: the patterns cover every session)."""
NOPERM = redis.exceptions.NoPermissionError


@dataclass
class Deployment:
    redis: PrivateRedis
    passwords: dict[Service, str]
    envs: dict[Service, dict[str, str]]
    url: str
    startup_refusals: list[dict[str, Any]]

    def as_(self, service: Service) -> Redis:  # `redis` here is the attribute above
        """A client holding `service`'s credential (as a thief who found it would)."""
        return self.redis.client(service.value, self.passwords[service])

    def key(self, name: str) -> str:
        return f"{NAMESPACE}:{name}"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    kernel = {"worker_id": WORKER_ID, "checkpoint_delay": 0.1}
    with AclServicesStack(tmp_path_factory.mktemp("acl"), NAMESPACE, kernel) as stack:
        startup = [dict(entry) for entry in stack.redis.admin.acl_log(count=100)]
        yield Deployment(stack.redis, stack.passwords, stack.envs, stack.urls[0], startup)


@pytest.fixture
async def ada(deployment: Deployment) -> AsyncIterator[Client]:
    client = await new_user(deployment.url, "ada")
    yield client
    await client.close()


def _refused_commands(deployment: Deployment) -> list[dict[str, Any]]:
    """What Redis refused since the server started (its ACL log, newest first)."""
    return [dict(entry) for entry in deployment.redis.admin.acl_log(count=100)]


def _run_check(module: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-m", module], env=env, capture_output=True, text=True, timeout=30
    )


# -- the grants suffice --------------------------------------------------------------------------


async def test_every_service_does_its_whole_job_with_its_own_credential_only(
    deployment: Deployment, ada: Client
) -> None:
    """Register, log in, a worksheet with a cell, run it and watch it on the socket (with
    presence), its output saved, a fork from the checkpoint, a restart, a second account, the
    health checks: and not one command refused."""
    assert deployment.startup_refusals == []
    deployment.redis.admin.acl_log_reset()
    sheet = await ada.call("worksheet.create", title="ACL")
    cell = await ada.call("cell.create", worksheet=sheet["id"], source="x = 6 * 7\nprint(x)")
    feed = await ada.socket()
    await feed.subscribe(worksheet=sheet["id"], cursor="now")
    run = await ada.call("cell.evaluate", id=cell["id"])
    assert stdout_of(await feed.until_done(run["msg_id"])) == "42\n"
    await feed.message(lambda m: m["header"]["msg_type"] == "checkpoint"
                       and m["content"]["event"] == "saved")  # fmt: skip
    async with asyncio.timeout(30):  # the accounts service saves outputs as it reads the feed
        while True:
            saved = (await ada.call("worksheet.get", id=sheet["id"]))["cells"][0]["outputs"]
            if saved:
                break
            await asyncio.sleep(0.05)

    fork = (await ada.call("session.fork", session=sheet["session"]))["session"]
    await feed.subscribe(session=fork, cursor=0)
    forked = await ada.call("session.execute", session=fork, code="print(x + 1)")
    assert stdout_of(await feed.until_done(forked["msg_id"])) == "43\n"

    await ada.call("session.restart", session=sheet["session"])
    after = await ada.call("session.execute", session=sheet["session"], code="x")
    errors = [m["content"]["ename"] for m in await feed.until_done(after["msg_id"])
              if m["header"]["msg_type"] == "error"]  # fmt: skip
    assert errors == ["NameError"]
    await feed.close()
    # A second account: accounts first reads how well the live workers sandbox sessions.
    bob = await new_user(deployment.url, "bob")
    await bob.close()

    for module, service in (("cellbus_accounts.healthcheck", Service.ACCOUNTS),
                            ("cellbus_kernel.healthcheck", Service.KERNEL)):  # fmt: skip
        result = _run_check(module, deployment.envs[service])
        assert result.returncode == 0, result.stdout + result.stderr
    response = await ada.http.get(deployment.url + "/healthz")
    assert response.status == 200, await response.text()
    refused = _refused_commands(deployment)
    assert refused == [], refused


# -- and nothing more ----------------------------------------------------------------------------

Probe = Callable[[redis.Redis, Callable[[str], str]], object]

REFUSALS: list[tuple[Service, str, Probe]] = [
    (Service.KERNEL, "forge an accounts request (make itself owner of a worksheet)",
     lambda r, k: r.xadd(k(keys.ACCOUNTS), {"d": b"{}"})),
    (Service.KERNEL, "read the accounts requests (passwords, tokens)",
     lambda r, k: r.xrange(k(keys.ACCOUNTS))),
    (Service.KERNEL, "announce a change of access",
     lambda r, k: r.xadd(k(keys.ACCESS_CHANGES), {"d": b"{}"})),
    (Service.KERNEL, "read who watches a session (web's presence)",
     lambda r, k: r.hgetall(k(keys.presence(SESSION)))),
    (Service.KERNEL, "write web's presence table",
     lambda r, k: r.hset(k(keys.presence(SESSION)), "eve 1", "1 9999999999999")),
    (Service.KERNEL, "read the /healthz probe web reads",
     lambda r, k: r.xrevrange(k(keys.HEALTH_PROBE), count=1)),
    (Service.WEB, "read the code queued on a session",
     lambda r, k: r.xrange(k(keys.requests(SESSION)))),
    (Service.WEB, "publish a forged feed message",
     lambda r, k: r.xadd(k(keys.feed(SESSION)), {"d": b"{}"})),
    (Service.WEB, "take a session's lease from its worker",
     lambda r, k: r.set(k(keys.session_host(SESSION)), "eve")),
    (Service.WEB, "read the kernels' registry", lambda r, k: r.hgetall(k(keys.SESSION_HOSTS))),
    (Service.WEB, "report a fake worker", lambda r, k: r.hset(k(keys.WORKERS), "eve", "0 1")),
    (Service.WEB, "read the accounts requests", lambda r, k: r.xrange(k(keys.ACCOUNTS))),
    (Service.WEB, "answer a request as accounts or a kernel",
     lambda r, k: r.publish(k(keys.replies("someone")), b"forged")),
    (Service.ACCOUNTS, "queue code on a session",
     lambda r, k: r.xadd(k(keys.requests(SESSION)), {"d": b"{}"})),
    (Service.ACCOUNTS, "start a session on the kernels",
     lambda r, k: r.xadd(k(keys.NEW_SESSIONS), {"d": b"{}"})),
    (Service.ACCOUNTS, "read a checkpoint", lambda r, k: r.get(k(keys.checkpoint(SESSION)))),
    (Service.ACCOUNTS, "write a checkpoint (forge a restore)",
     lambda r, k: r.set(k(keys.checkpoint(SESSION)), b"forged")),
    (Service.ACCOUNTS, "report a fake worker", lambda r, k: r.hset(k(keys.WORKERS), "eve", "0 1")),
    (Service.ACCOUNTS, "announce a fake sandbox",
     lambda r, k: r.hset(k(keys.WORKER_ISOLATION), "eve", '{"level":"full"}')),
    (Service.WEB, "announce a fake sandbox",
     lambda r, k: r.hset(k(keys.WORKER_ISOLATION), "eve", '{"level":"full"}')),
    (Service.WEB, "read a worker's isolation other than by HGETALL",
     lambda r, k: r.hget(k(keys.WORKER_ISOLATION), "eve")),
    *[(service, "use a key outside its namespace",
       lambda r, k: r.xrange("other-deployment:" + keys.feed(SESSION)))
      for service in Service],
    *[(service, f"run {name}", probe) for service in Service for name, probe in [
        ("KEYS", lambda r, k: r.keys("*")),
        ("FLUSHALL", lambda r, k: r.flushall()),
        ("CONFIG SET", lambda r, k: r.config_set("dir", "/tmp")),
        ("ACL SETUSER", lambda r, k: r.acl_setuser("eve", enabled=True)),
        ("EVAL", lambda r, k: r.eval("return 1", 0)),
        ("SCAN", lambda r, k: r.scan(0)),
        ("CLIENT LIST", lambda r, k: r.client_list()),
    ]],
]  # fmt: skip


@pytest.mark.parametrize(
    ("service", "what", "probe"),
    REFUSALS,
    ids=[f"{service.value}: {what}" for service, what, _ in REFUSALS],
)
def test_a_stolen_credential_cannot(
    deployment: Deployment, service: Service, what: str, probe: Probe
) -> None:
    client = deployment.as_(service)
    try:
        with pytest.raises(NOPERM):
            probe(client, deployment.key)
    finally:
        client.close()


def test_a_script_runs_with_its_callers_rights_only(deployment: Deployment) -> None:
    """The kernel may load and run scripts (its leases); what a script does is checked
    against the kernel's user like any command."""
    kernel = deployment.as_(Service.KERNEL)
    try:
        sha = kernel.script_load("return redis.call('XADD', KEYS[1], '*', 'd', 'forged')")
        with pytest.raises(redis.exceptions.ResponseError, match=r"NOPERM|permission"):
            kernel.evalsha(sha, 1, deployment.key(keys.ACCOUNTS))
        entries = deployment.redis.admin.xrange(deployment.key(keys.ACCOUNTS))
        assert entries is not None
        assert not [fields for _, fields in entries if fields and fields.get(b"d") == b"forged"]
    finally:
        kernel.close()


def test_web_cannot_read_checkpoints(deployment: Deployment) -> None:
    """Checkpoints are the kernel's: web forks and discards them by asking the kernel
    (control requests), so it has no grant on them and cannot read a session's variables."""
    pattern = acl.session_pattern(keys.checkpoint)
    assert not [grant for grant in acl.RULES[Service.WEB].keys if grant.pattern == pattern]
    web = deployment.as_(Service.WEB)
    try:
        with pytest.raises(NOPERM):
            web.get(deployment.key(keys.checkpoint(SESSION)))
    finally:
        web.close()


def test_nobody_gets_in_without_a_password(deployment: Deployment) -> None:
    anonymous = deployment.redis.client()
    wrong = deployment.redis.client("default", "not-the-password")
    guessed = deployment.redis.client(Service.KERNEL.value, deployment.passwords[Service.WEB])
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            anonymous.ping()
        for client in (wrong, guessed):
            with pytest.raises(redis.exceptions.AuthenticationError):
                client.ping()
    finally:
        for client in (anonymous, wrong, guessed):
            client.close()


# -- one definition, every form ------------------------------------------------------------------


def test_docker_compose_gives_redis_exactly_the_generated_users() -> None:
    services = YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())["services"]
    command = services["redis"]["command"]
    assert isinstance(command, list), "a list: Compose v2 would split a string at & and >"
    assert command[0] == "redis-server"
    users = command[command.index("--user") :]
    assert users == acl.compose_args(), "run `python -P -m cellbus_protocol.acl compose`"
    assert "--requirepass" not in command  # the default user's password is in its own rules
    for service in Service:
        url = services[service.value]["environment"]["CELLBUS_REDIS_URL"]
        assert url == f"redis://{service.value}:{acl.compose_password(service.password_variable)}" \
            "@redis:6379/0"  # fmt: skip


def test_the_acl_file_defines_the_same_users_as_the_arguments(tmp_path: Path) -> None:
    """An ``aclfile`` (for deployments without compose) loads into Redis as the same users,
    with no password in it in the clear."""
    passwords = {service: secrets.token_hex(16) for service in Service}
    admin = secrets.token_hex(16)
    text = acl.acl_file(NAMESPACE, passwords, admin)
    assert not any(p in text for p in [admin, *passwords.values()])
    (tmp_path / "args").mkdir()
    (tmp_path / "file").mkdir()
    acl_path = tmp_path / "file" / "users.acl"
    acl_path.write_text(text)
    from_args = PrivateRedis(
        tmp_path / "args", acl.server_args(NAMESPACE, passwords, admin), "default", admin
    )
    from_file = PrivateRedis(tmp_path / "file", ["--aclfile", str(acl_path)], "default", admin)
    try:

        def users(server: PrivateRedis) -> list[set[str | frozenset[str]]]:
            """Each user's rules, its selectors ``(...)`` apart: Redis lists them unordered."""
            listed: list[set[str | frozenset[str]]] = []
            for line in server.admin.acl_list():
                assert isinstance(line, str)  # redis-py decodes ACL LIST's lines
                rules: set[str | frozenset[str]] = set()
                for part in re.split(r"(\([^)]*\))", line):
                    if part.startswith("("):
                        rules.add(frozenset(part.strip("()").split()))
                    else:
                        rules.update(part.split())
                listed.append(rules)
            return listed

        assert users(from_args) == users(from_file)
        assert len(users(from_file)) == 1 + len(Service)
        web = from_file.client(Service.WEB.value, passwords[Service.WEB])
        assert web.ping()
        web.close()
    finally:
        from_args.close()
        from_file.close()


def _bus_names() -> tuple[list[str], list[str]]:
    """An example of every key and every channel that `keys` builds."""
    names: list[str] = []
    channels: list[str] = []
    for name, value in vars(keys).items():
        if name.startswith("_") or name.endswith("_GROUP"):  # groups are not keys
            continue
        if isinstance(value, str):
            names.append(value)
        elif inspect.isfunction(value) and value.__module__ == keys.__name__:
            if name == "replies":
                channels.append(value("i"))
            elif name == "live":
                channels.append(value(SESSION))
            elif name == "wake":
                names += [value("i"), value("i", "c")]
            elif name == "queue_shards":  # on Redis Cluster
                names += [shard for queue in keys.SHARDED_QUEUES for shard in value(queue)]
            elif name not in ("check_session_id", "session_of"):
                names.append(value(SESSION))
    return names, channels


def test_every_bus_name_is_granted_to_some_service() -> None:
    """A key added to `keys` without a grant would be refused to every service in a
    deployment: each name there must be covered by some service's patterns."""
    names, channels = _bus_names()
    assert len(names) >= 12 and channels
    patterns = {grant.pattern for rules in acl.RULES.values() for grant in rules.keys}
    for name in names:
        assert any(fnmatch.fnmatchcase(name, p) for p in patterns), f"{name}: no grant in acl.py"
    granted_channels = {c for rules in acl.RULES.values() for c in rules.channels}
    for channel in channels:
        assert any(fnmatch.fnmatchcase(channel, p) for p in granted_channels), channel


@pytest.mark.parametrize(
    ("namespace", "passwords_ok"), [("cell*bus", True), ("cellbus", False), ("a b", True)]
)
def test_unsafe_names_and_passwords_get_a_clear_error(namespace: str, passwords_ok: bool) -> None:
    good = secrets.token_hex(16)
    passwords = {service: good if passwords_ok else "short" for service in Service}
    with pytest.raises(ValueError, match=r"namespace|letters and digits"):
        acl.server_args(namespace, passwords, good)


def test_the_generator_command_says_which_password_is_missing() -> None:
    env = {"PATH": "/usr/bin:/bin", "REDIS_PASSWORD": secrets.token_hex(16)}
    result = subprocess.run(
        [sys.executable, "-P", "-m", "cellbus_protocol.acl", "aclfile"],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode != 0
    assert "REDIS_KERNEL_PASSWORD" in result.stderr and "REDIS_WEB_PASSWORD" in result.stderr
    env |= {service.password_variable: secrets.token_hex(16) for service in Service}
    result = subprocess.run(
        [sys.executable, "-P", "-m", "cellbus_protocol.acl", "aclfile", "--namespace", "nb"],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [line.split()[1] for line in result.stdout.splitlines()] == [
        "default", "kernel", "web", "accounts"
    ]  # fmt: skip
    assert "%RW~nb:session:{*}:requests" in result.stdout


# -- on a Redis Cluster ------------------------------------------------------------------------


async def test_each_service_does_its_bus_work_on_a_redis_cluster_with_its_own_user(
    tmp_path: Path,
) -> None:
    """The same users on every node of a Redis Cluster: each service can reach the cluster
    (its slot map), the sharded queues, sharded pub/sub and a session's keys as its work needs,
    and still not what it must not (kernel: the accounts queue; web: a checkpoint)."""
    passwords = {service: secrets.token_hex(16) for service in Service}
    admin = secrets.token_hex(16)
    cluster = LoopbackCluster(
        tmp_path, acl_args=acl.server_args(NAMESPACE, passwords, admin), admin_password=admin
    )
    try:
        url = {service: cluster.url(service.value, passwords[service]) for service in Service}
        async with (
            RedisClusterBus(url[Service.WEB], namespace=NAMESPACE) as web,
            RedisClusterBus(url[Service.ACCOUNTS], namespace=NAMESPACE) as accounts,
            RedisClusterBus(url[Service.KERNEL], namespace=NAMESPACE) as kernel,
        ):
            # web asks accounts (a sharded queue; the reply on web's sharded reply channel)
            serving = accounts.consumer(keys.ACCOUNTS_GROUP, "accounts-1")
            await serving.add(keys.ACCOUNTS)

            async def answer() -> None:
                item = await serving.get(timeout=10)
                assert item is not None
                await accounts.reply(item, b"re: " + item.data)
                await serving.ack(item)

            answering = asyncio.create_task(answer())
            assert await web.request(keys.ACCOUNTS, b"who", timeout=10) == b"re: who"
            await answering
            # web starts a session; the kernel takes it, publishes on its feed, checkpoints
            session = "0a1b2c3d4e5f"
            taking = kernel.consumer(keys.KERNEL_GROUP, "kernel-1:new", batch=1)
            await taking.add(keys.NEW_SESSIONS)
            await web.enqueue(keys.NEW_SESSIONS, session.encode())
            taken = await taking.get(timeout=10)
            assert taken is not None and taken.data == session.encode()
            await taking.ack(taken)
            watching = await web.subscribe(keys.feed(session), after=0)
            await kernel.publish(keys.feed(session), b"output")
            entry = await watching.next(timeout=10)
            assert entry is not None and entry.data == b"output"
            await watching.close()
            await kernel.put_blob(keys.checkpoint(session), b"signed")
            # what each must not do
            with pytest.raises(redis.exceptions.NoPermissionError):
                await kernel._redis.xadd(f"{NAMESPACE}:{keys.queue_shards(keys.ACCOUNTS)[0]}",
                                         {"d": "x"})  # fmt: skip
            with pytest.raises(redis.exceptions.NoPermissionError):
                await web._redis.get(f"{NAMESPACE}:{keys.checkpoint(session)}")
            for consumer in (serving, taking):
                await consumer.close()
    finally:
        cluster.close()
