"""A Redis Cluster on loopback: three masters, each with a replica, as private servers.

``redis-server --cluster-enabled yes`` on six free ports, then ``redis-cli --cluster create
... --cluster-replicas 1``: the cluster a deployment would run, small. Nodes keep nothing on
disk and stop with the cluster. `kill_master` kills the master of a slot the way a crash
would (SIGKILL) and returns once its replica has taken over.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis
from redis.crc import key_slot

from .private_redis import PrivateRedis

MASTERS = 3
NODE_TIMEOUT_MS = 1_000
"""How long a master may be silent before its replica takes over (the default is 15 s)."""
READY_TIMEOUT = 30.0


def cluster_port() -> int:
    """A free port whose cluster bus port (10,000 higher, so at most 55535) is free too."""
    for _ in range(1000):
        port = random.randint(20_000, 55_535)
        try:
            with socket.socket() as first, socket.socket() as second:
                first.bind(("127.0.0.1", port))
                second.bind(("127.0.0.1", port + 10_000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports for a Redis Cluster node")


class LoopbackCluster:
    """Three masters and three replicas on 127.0.0.1, in `folder`."""

    def __init__(
        self, folder: Path, *, acl_args: list[str] | None = None, admin_password: str | None = None
    ) -> None:
        """`acl_args`: users for every node (`cellbus_protocol.acl.server_args`), whose
        ``default`` user has `admin_password` (the replicas and redis-cli log in as it)."""
        self.nodes: list[PrivateRedis] = []
        self._admin_password = admin_password
        replication = ["--masteruser", "default", "--masterauth", admin_password or ""]
        acl_args = [*(acl_args or []), *(replication if admin_password else [])]
        try:
            for index in range(MASTERS * 2):
                node_folder = folder / f"node-{index}"
                node_folder.mkdir(parents=True, exist_ok=True)
                timeout = str(NODE_TIMEOUT_MS)
                args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                        "--cluster-node-timeout", timeout, *(acl_args or [])]  # fmt: skip
                admin = "default" if admin_password else None
                node = PrivateRedis(node_folder, args, admin, admin_password, cluster_port())
                self.nodes.append(node)
            self._create()
        except BaseException:
            self.close()
            raise

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """The bus URL: every node a seed."""
        auth = f"{user or ''}:{password}@" if password else ""
        return "redis://" + auth + ",".join(f"127.0.0.1:{port}" for port in self.ports) + "/0"

    def _create(self) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed; `make test` installs it")
        addresses = [f"127.0.0.1:{port}" for port in self.ports]
        auth = ["--user", "default", "--pass", self._admin_password] if self._admin_password else []
        subprocess.run(
            [cli, *auth, "--cluster", "create", *addresses, "--cluster-replicas", "1",
             "--cluster-yes"],
            check=True, capture_output=True, timeout=READY_TIMEOUT,
        )  # fmt: skip
        self.wait_healthy(len(self.nodes))
        self._wait_replicated()

    def _wait_replicated(self) -> None:
        """Until each replica's link to its master is up (a replica that has never synced
        does not take over when its master dies)."""
        deadline = time.monotonic() + READY_TIMEOUT
        for node in self.nodes:
            while True:
                replication = node.admin.info("replication")
                if replication["role"] == "master" or replication["master_link_status"] == "up":
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the replica on {node.port} did not sync")
                time.sleep(0.05)

    def live_nodes(self) -> list[PrivateRedis]:
        return [node for node in self.nodes if node.process.poll() is None]

    def wait_healthy(self, known: int) -> None:
        """Until every live node says the cluster is ok, knows `known` nodes, and agrees on
        the masters of all 16384 slots."""
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self._healthy(known):
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the loopback Redis Cluster did not become healthy")
            time.sleep(0.05)

    def _healthy(self, known: int) -> bool:
        views = set()
        for node in self.live_nodes():
            try:
                info = node.admin.cluster("info")
                slots = node.admin.cluster("slots")
            except redis.RedisError:
                return False
            if info["cluster_state"] != "ok" or int(info["cluster_known_nodes"]) < known:
                return False
            views.add(tuple(sorted((start, end, master[1]) for start, end, master, *_ in slots)))
        return len(views) == 1 and sum(end - start + 1 for start, end, _ in views.pop()) == 16384

    def master_of(self, key: str) -> PrivateRedis:
        """The node now serving `key`'s slot."""
        slot = key_slot(key.encode())
        for start, end, master, *_ in self.live_nodes()[0].admin.cluster("slots"):
            if start <= slot <= end:
                return next(node for node in self.nodes if node.port == master[1])
        raise LookupError(f"no node serves slot {slot}")

    def kill_master(self, key: str) -> PrivateRedis:
        """SIGKILL the master serving `key`; returns (the dead node) once a replica serves."""
        master = self.master_of(key)
        master.process.kill()
        master.process.wait()
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._healthy(len(self.nodes)) or self.master_of(key) is master:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no replica took over from the master on {master.port}")
            time.sleep(0.05)
        return master

    def delete_namespace(self, namespace: str) -> None:
        for node in self.live_nodes():
            if node.admin.info("replication")["role"] != "master":
                continue
            for key in list(node.admin.scan_iter(match=f"{namespace}:*", count=1000)):
                node.admin.delete(key)

    def close(self) -> None:
        for node in self.nodes:
            node.close()
