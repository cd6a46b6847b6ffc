"""The systems the adversarial suite attacks, in each mode cellbus runs in, and the people in
them: `victim` (a user with a session holding secrets) and `attacker` (an ordinary account).

Modes:

- ``one-program``: ``cellbus serve`` as the test's user (root in CI: its sessions keep uid 0
  but lose every capability);
- ``one-program-as-user``: ``cellbus serve`` run by an unprivileged user (``nobody``), as a
  person runs ``make run`` on their own machine;
- ``one-program-session-user``: ``cellbus serve`` as root with ``CELLBUS_SESSION_USER=nobody``,
  as a container runs it;
- ``services``: the services apart, as a deployment runs them: on PostgreSQL and a Redis of
  their own that has a password-protected user per service with only its grants
  (`cellbus_protocol.acl`), sessions as ``nobody``.

``nobody`` stands for `UNPRIVILEGED`: under `make test`, a user of each pytest process's own.
The last two need root; a program run as another user needs an installation every user can
read (`scripts/shared-runtime.sh`, built once per test run and pytest process).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..support.api import Client, new_user, poll_until_done, stdout_of
from ..support.stack import AclServicesStack, OneProgramStack, ServicesStack, Stack

ROOT = Path(__file__).resolve().parents[2]
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
"""Which of `make test`'s pytest processes this is (gw0, gw1), or None for a single one."""
RUNTIME = Path(f"/opt/cellbus-test-runtime-{WORKER or 'main'}")
"""Each pytest process builds its own: one process rebuilding it must not change the files
another one's services are running from."""
UNPRIVILEGED = f"cellbus-test-{WORKER}" if WORKER else "nobody"
"""The user the sandboxed modes run sessions as. `RLIMIT_NPROC` counts every process of a
user (docs/security.md): two pytest processes whose sessions shared one user would share one
process limit, and a fork bomb in one would leave the other's sessions unable to start. So
each pytest process of `make test` has a user of its own (`session_user` makes it)."""
USERS_LOCK = "/tmp/cellbus-test-useradd.lock"
MODES = ["one-program", "one-program-as-user", "one-program-session-user", "services"]
WITH_SESSION_USER = MODES[1:]
"""The modes whose sessions run as an unprivileged user (the others, as uid 0 with no
capability, only when the tests run as root)."""
SANDBOX_SETTINGS = {
    "session_max_file_mb": 8,
    "session_max_open_files": 256,
    "session_max_processes": 64,
    "workspace_quota_mb": 64,  # more than session_max_file_mb: each limit is met apart
    "parallel_max_workers": 1,  # the victim's and the attacker's Dask workers: one core each
}


@dataclass
class Target:
    """A running system under attack, and what an attacker would look for in it."""

    mode: str
    stack: Stack
    data_dir: Path | None  # the one program's data folder (database, secret)
    sessions_dir: Path
    redis_port: int = 6379  # the bus's (the one program uses none: the machine's Redis)

    @property
    def url(self) -> str:
        return self.stack.urls[0]

    @property
    def web_port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServicesStack]:
    """The services apart on the machine's Redis and PostgreSQL (a module's tests share it)."""
    with ServicesStack(tmp_path_factory.mktemp("logs")) as system:
        yield system


@pytest.fixture(scope="session")
def shared_runtime() -> Path:
    """cellbus installed where `nobody` can read it (rebuilt from this checkout each run)."""
    subprocess.run(["bash", str(ROOT / "scripts/shared-runtime.sh"), str(RUNTIME)], check=True)
    return RUNTIME


@pytest.fixture(scope="session")
def session_user() -> str:
    """`UNPRIVILEGED`, made (a system user with no home and no shell) if the machine has no
    such user; the pytest processes make theirs one at a time, as useradd needs."""
    try:
        pwd.getpwnam(UNPRIVILEGED)
    except KeyError:
        with open(USERS_LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                 "--shell", "/usr/sbin/nologin", UNPRIVILEGED],
                check=True,
            )  # fmt: skip
    return UNPRIVILEGED


def _unprivileged_folder(prefix: str, user: str) -> Path:
    """A folder `user` owns, outside pytest's root-only temporary tree."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    entry = pwd.getpwnam(user)
    os.chown(folder, entry.pw_uid, entry.pw_gid)
    return folder


@pytest.fixture(scope="module", params=MODES)
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    mode: str = request.param
    logs = tmp_path_factory.mktemp("logs")
    if mode != "one-program" and os.geteuid() != 0:
        pytest.skip(f"{mode} needs root (CI runs as root)")
    user: str = request.getfixturevalue("session_user") if mode != "one-program" else ""
    cleanup: list[Path] = []
    if mode == "services":
        runtime = request.getfixturevalue("shared_runtime")
        sessions = Path(tempfile.mkdtemp(prefix="cellbus-sessions-"))
        cleanup.append(sessions)
        kernel = {"sessions_dir": sessions, "session_user": user, **SANDBOX_SETTINGS}
        python = str(runtime / "bin/python")
        services = AclServicesStack(logs, "cellbus-sandbox", kernel, python)
        stack: Stack = services
        system = Target(mode, stack, None, sessions, services.redis.port)
    else:
        runtime = request.getfixturevalue("shared_runtime") if mode != "one-program" else None
        if mode == "one-program-as-user":
            assert runtime is not None
            data = _unprivileged_folder("cellbus-data-", user)
            python = str(runtime / "bin/python")
            argv = ["runuser", "-u", user, "--", python, "-P", "-m", "cellbus_allinone"]
            extra: dict[str, Any] = {}  # settings of every kind, for the environment
        elif mode == "one-program-session-user":
            assert runtime is not None
            data = Path(tempfile.mkdtemp(prefix="cellbus-data-"))
            argv = [str(runtime / "bin/python"), "-P", "-m", "cellbus_allinone"]
            extra = {"session_user": user}
        else:
            data = tmp_path_factory.mktemp("data")
            argv, extra = None, {}
        cleanup.append(data)
        stack = OneProgramStack(logs, data, argv, **{**SANDBOX_SETTINGS, **extra})
        system = Target(mode, stack, data, data / "sessions")
    try:
        yield system
    finally:
        stack.close()
        for folder in cleanup:
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Person:
    """A logged-in user with a session of their own."""

    client: Client
    session: str
    facts: dict[str, str] = field(default_factory=dict)  # what the `victim` fixture found out

    async def run(self, code: str) -> Run:
        """Run `code` in this person's session; its stdout and errors once it is done."""
        started = await self.client.call(
            "session.execute", session=self.session, code=textwrap.dedent(code)
        )
        messages = await poll_until_done(self.client, self.session, started["msg_id"])
        errors = [m["content"] for m in messages if m["header"]["msg_type"] == "error"]
        return Run(stdout_of(messages), errors)


@dataclass
class Run:
    stdout: str
    errors: list[dict[str, Any]]

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


async def _person(target: Target, name: str) -> Person:
    client = await new_user(target.url, name)
    session = (await client.call("session.create"))["session"]
    return Person(client, session)


@pytest.fixture
async def victim(target: Target) -> AsyncIterator[Person]:
    """A user whose session holds a secret in memory, in a file in its folder and in its TMPDIR,
    and prints where they are: ``pid``, ``cwd`` and ``tmp`` lines."""
    person = await _person(target, "victim")
    run = await person.run(
        """
        import os, tempfile
        SECRET = "victim-secret-" + "42"
        open("secret.txt", "w").write(SECRET)
        open(os.path.join(tempfile.gettempdir(), "secret.txt"), "w").write(SECRET)
        print("pid", os.getpid()); print("cwd", os.getcwd()); print("tmp", tempfile.gettempdir())
        """
    )
    assert not run.errors, run.errors
    person.facts = dict(line.split(" ", 1) for line in run.lines)
    yield person
    with contextlib.suppress(Exception):
        await person.client.call("session.shutdown", session=person.session)
    await person.client.close()


@pytest.fixture
async def attacker(target: Target) -> AsyncIterator[Person]:
    person = await _person(target, "mallory")
    yield person
    with contextlib.suppress(Exception):
        await person.client.call("session.shutdown", session=person.session)
    await person.client.close()


ATTEMPT = """
import errno, os
def attempt(label, action):
    try:
        action()
    except OSError as exc:
        print(label, "refused", errno.errorcode.get(exc.errno, exc.errno))
    else:
        print(label, "ALLOWED")
"""
"""A helper every attacking cell starts with: one line per attempt, ``<label> refused EACCES``
or ``<label> ALLOWED``."""
