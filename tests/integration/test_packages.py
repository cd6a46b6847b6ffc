"""Packages: ``%pip``, ``!pip`` and ``%uv`` install into the worksheet's own environment, kept
in its workspace (``.cellbus/``) over the base environment, which has the scientific stack.

No registry is needed: a cell writes a wheel (a zip file, `WHEEL_MAKER`) into its workspace
and installs it from there, as a user installs a wheel they uploaded. On the kernel workers
of a deployment (separate processes on the real Redis sharing one workspaces folder) the
installed package is still importable after the session hibernated and was restored on
another worker.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cellbus_protocol import keys
from cellbus_protocol.kernel_client import KernelClient

from ..support.api import Client, stdout_of
from ..support.feeds import Run, collect, run_code, wait_for_state
from ..support.fixtures import both_stacks, signed_in
from ..support.stack import Stack
from ..support.wheels import WHEEL_MAKER
from ..support.workers import WorkerProcess

stack = both_stacks()


ada = signed_in("ada")


TINY_V1 = (
    "wheel('tinypkg', '1.0', 'VALUE = 1\\ndef main():\\n    print(\"tiny\", VALUE)\\n',"
    " requires=['numpy>=1'], scripts={'tinycmd': 'tinypkg:main'})"
)
TINY_V2 = "wheel('tinypkg', '2.0', 'VALUE = 2\\n', requires=['numpy>=1'])"
OTHER = "wheel('otherpkg', '1.0', 'NAME = \"other\"\\n')"


async def execute(client: Client, session: str, code: str) -> list[dict[str, Any]]:
    feed = await client.socket()
    try:
        await feed.subscribe(session=session, cursor="now")
        run = await client.call("session.execute", session=session, code=code)
        return await feed.until_done(run["msg_id"], timeout=120)
    finally:
        await feed.close()


def errors_of(messages: list[dict[str, Any]]) -> list[str]:
    return [
        f"{m['content']['ename']}: {m['content']['evalue']}"
        for m in messages
        if m["header"]["msg_type"] == "error"
    ]


async def output(client: Client, session: str, code: str) -> str:
    """What `code` printed (without uv's colours); it must raise nothing."""
    messages = await execute(client, session, code)
    assert not errors_of(messages), errors_of(messages)
    return re.sub(r"\x1b\[[0-9;]*m", "", stdout_of(messages))


async def test_the_base_environment_has_the_scientific_stack(ada: Client) -> None:
    session = (await ada.call("session.create"))["session"]
    printed = await output(
        ada,
        session,
        "import numpy, pandas, scipy.stats, matplotlib, ipywidgets, tqdm\n"
        "frame = pandas.DataFrame({'x': numpy.arange(4)})\n"
        "print(int(frame.x.sum()), round(float(scipy.stats.norm.cdf(0)), 2))\n"
        "for _ in tqdm.tqdm(range(3)): pass\n",
    )
    assert printed == "6 0.5\n"


async def test_pip_installs_a_wheel_into_the_worksheets_environment(
    ada: Client, stack: Stack
) -> None:
    sheet = await ada.call("worksheet.create", title="Packages")
    session = sheet["session"]
    await output(ada, session, WHEEL_MAKER + TINY_V1 + "\n" + OTHER)

    installed = await output(
        ada, session, "%pip install ./dist/tinypkg-1.0-py3-none-any.whl\nimport tinypkg\n"
        "print(tinypkg.VALUE, tinypkg.__file__)\n!tinycmd"
    )  # fmt: skip
    workspace = stack.workspaces / session
    layer = workspace / ".cellbus" / "site-packages"
    assert f"1 {layer}/tinypkg/__init__.py\n" in installed
    assert "Restart" not in installed  # nothing imported was replaced
    # numpy came from the base: the layer holds the one package installed.
    assert sorted(p.name for p in layer.iterdir() if not p.name.startswith(".")) == [
        "bin", "tinypkg", "tinypkg-1.0.dist-info",
    ]  # fmt: skip

    listed = await output(ada, session, "%pip list")
    rows = {tuple(line.split()[:3]) for line in listed.splitlines()}
    assert ("tinypkg", "1.0", "worksheet") in rows
    assert any(row[0] == "pandas" and row[2] == "base" for row in rows)
    assert listed.splitlines()[0].split() == ["Package", "Version", "Layer"]

    # `!pip` is uv too. A package not imported yet needs no restart; replacing one that is
    # imported does, and says so.
    other = await output(ada, session, "!pip install ./dist/otherpkg-1.0-py3-none-any.whl")
    assert "otherpkg==1.0" in other and "Restart" not in other
    assert await output(ada, session, "import otherpkg; print(otherpkg.NAME)") == "other\n"
    await output(ada, session, WHEEL_MAKER + TINY_V2)
    upgraded = await output(ada, session, "%uv pip install ./dist/tinypkg-2.0-py3-none-any.whl")
    assert "Restart to use updated packages (already imported: tinypkg)." in upgraded

    await ada.call("session.restart", session=session)
    assert await output(ada, session, "import tinypkg; print(tinypkg.VALUE)") == "2\n"
    listed = await output(ada, session, "!pip list")
    assert ("tinypkg", "2.0", "worksheet") in {tuple(x.split()[:3]) for x in listed.splitlines()}

    # uv's cache is the session's own, outside the workspace: nothing of it is listed there.
    # (uv marks its cache's root with a CACHEDIR.TAG file.)
    assert not list(workspace.rglob("CACHEDIR.TAG"))
    messages = await execute(ada, session, "%pip uninstall otherpkg")
    assert not errors_of(messages), errors_of(messages)
    uninstalled = "".join(  # uv says what it removed on stderr
        m["content"]["text"] for m in messages if m["header"]["msg_type"] == "stream"
    )
    assert "otherpkg==1.0" in uninstalled and "Restart" not in uninstalled
    assert not (layer / "otherpkg").exists()


FAST = {"checkpoint_delay": 0.1, "heartbeat_interval": 0.3, "lease_ttl": 1.5}


@pytest.fixture
def workspaces(tmp_path: Path) -> Path:
    return tmp_path / "workspaces"


@pytest.fixture
def first_worker(namespace: str, tmp_path: Path, workspaces: Path) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(
        namespace, "worker-1", tmp_path, **FAST, workspaces_dir=workspaces, hibernate_after=1
    )
    worker.wait_ready()
    yield worker
    worker.stop()


@pytest.fixture
def second_worker(namespace: str, tmp_path: Path, workspaces: Path) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(
        namespace, "worker-2", tmp_path, **FAST, workspaces_dir=workspaces, hibernate_after=60
    )
    yield worker
    worker.stop()


def ok(run: Run) -> Run:
    assert run.reply.content.status == "ok", (run.reply.content, run.stderr)
    return run


async def test_an_installed_package_is_imported_after_hibernation_on_another_worker(
    first_worker: WorkerProcess,
    second_worker: WorkerProcess,
    redis_client: KernelClient,
) -> None:
    session = await redis_client.create_session()
    await wait_for_state(redis_client.bus, session, "idle")
    ok(await run_code(redis_client, session, WHEEL_MAKER + TINY_V1))
    installed = ok(
        await run_code(
            redis_client,
            session,
            "%pip install ./dist/tinypkg-1.0-py3-none-any.whl\nimport tinypkg\n"
            "print(tinypkg.VALUE)",
        )
    )
    assert installed.stdout.endswith("1\n"), installed.stdout

    # Idle for a second: hibernated; its next request restores it on the other worker.
    after = await redis_client.bus.last_seq(keys.feed(session))
    hibernated = await wait_for_state(redis_client.bus, session, "hibernated", after)
    second_worker.wait_ready()
    first_worker.stop()
    request = await redis_client.execute(session, "import tinypkg; print(tinypkg.VALUE)")
    assert await redis_client.ensure_session(session)
    restored = await collect(redis_client.bus, request, hibernated)
    assert restored.stdout == "1\n", restored.stderr
    assert await redis_client.bus.lease_holder(keys.session_host(session)) == "worker-2"
