"""A Redis Cluster master dying under load: its replica takes over, every service carries on,
and nothing acknowledged is lost.

The services run apart (accounts, a kernel worker, two web processes) on a Redis Cluster of
their own (three masters with a replica each, on loopback; ``CELLBUS_REDIS_CLUSTER=true``).
While three people type into a worksheet over the WebSocket and a fourth adds cells through
the API to another worksheet, the master serving the first worksheet's session (its feed,
queue, lease and checkpoint share one slot) is killed with SIGKILL. Edits fail for the
moment the cluster needs to notice and promote the replica; then they go through again,
every acknowledged edit and update is in the stored document, the three typists end with the
same notebook, and the session runs code with the variables it had.

(test_web.py runs its tests on the cluster too; the bus contract, tests/contract/test_bus.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellbus_protocol import keys

from ..support.api import ApiError, new_user, poll_until_done, stdout_of
from ..support.doc_client import Typists
from ..support.redis_cluster import LoopbackCluster
from ..support.stack import ServicesStack

RECOVERY_TIMEOUT = 60.0


@pytest.fixture
def cluster_stack(tmp_path: Path) -> Iterator[ServicesStack]:
    cluster = LoopbackCluster(tmp_path / "cluster")
    try:
        stack = ServicesStack(tmp_path, cluster)
    except BaseException:
        cluster.close()
        raise
    with stack:  # closes the cluster too
        yield stack


async def test_a_master_killed_under_load_loses_nothing_acknowledged(
    cluster_stack: ServicesStack,
) -> None:
    stack = cluster_stack
    assert stack.cluster is not None
    people = [await new_user(stack.urls[i % 2], f"p{i}") for i in range(4)]
    owner, editor = people[0], people[3]  # the typists: people[:3]
    try:
        sheet = await owner.call("worksheet.create", title="Through a master's death")
        first = await owner.call("cell.create", worksheet=sheet["id"], source="x = 20")
        run = await owner.call("cell.evaluate", id=first["id"])
        await poll_until_done(owner, sheet["session"], run["msg_id"])
        for person in people[1:]:
            await owner.call(
                "worksheet.share", id=sheet["id"], username=person.username, role="editor"
            )
        ledger = await editor.call("worksheet.create", title="Cells added meanwhile")
        acknowledged: list[str] = []

        async def keep_adding_cells() -> None:  # not where the typists are: they delete cells
            for i in range(10_000):
                with contextlib.suppress(ApiError):  # refused while the slot has no master
                    cell = await editor.call("cell.create", worksheet=ledger["id"], source=f"# {i}")
                    acknowledged.append(cell["id"])
                await asyncio.sleep(0.02)

        typists = Typists.of([p.token for p in people[:3]], sheet["id"], stack.urls, seed=5)
        typists.start()
        adding = asyncio.create_task(keep_adding_cells())
        try:
            await typists.acked_more(20)
            session_key = f"{stack.namespace}:{keys.feed(sheet['session'])}"
            killed = stack.cluster.master_of(session_key)
            replica_took_over = asyncio.to_thread(stack.cluster.kill_master, session_key)
            await replica_took_over
            assert stack.cluster.master_of(session_key).port != killed.port  # it failed over
            assert killed.process.poll() is not None
            seen = len(acknowledged)
            deadline = time.monotonic() + RECOVERY_TIMEOUT
            while len(acknowledged) < seen + 5:  # edits go through again
                assert time.monotonic() < deadline, "the API did not carry on after the failover"
                await asyncio.sleep(0.1)
            await typists.acked_more(20, timeout=RECOVERY_TIMEOUT)
        finally:
            adding.cancel()
            await asyncio.gather(adding, return_exceptions=True)
            await typists.stop()
        await typists.check(stack.database_url, sheet["id"])
        await typists.close()
        cells = {c["id"] for c in (await editor.call("worksheet.get", id=ledger["id"]))["cells"]}
        assert set(acknowledged) <= cells, "an acknowledged edit was lost"
        again = await owner.call("session.execute", session=sheet["session"], code="print(x + 1)")
        assert stdout_of(await poll_until_done(owner, sheet["session"], again["msg_id"])) == "21\n"
    finally:
        for person in people:
            await person.close()
