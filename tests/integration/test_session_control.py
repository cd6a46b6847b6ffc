"""Control requests: what other services ask the kernel about a whole session (fork, status,
discard, end), answered by any worker, because the kernel owns checkpoints and leases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest

from cellbus_kernel.config import KernelSettings
from cellbus_kernel.worker import KernelWorker
from cellbus_protocol import keys
from cellbus_protocol.bus import InMemoryBus
from cellbus_protocol.envelope import Message
from cellbus_protocol.errors import RemoteError
from cellbus_protocol.kernel_client import KernelClient
from cellbus_protocol.messages import ControlReply

from ..support.feeds import first_message, run_code, wait_for_state
from ..support.polling import eventually
from .conftest import Kernel


def result_of(results: list[Message]) -> str:
    """The text of the only ``execute_result`` of a run."""
    (result,) = results
    return str(result.content.data["text/plain"])


async def test_a_session_without_a_checkpoint_cannot_be_forked(
    kernel: Kernel, session: str
) -> None:
    with pytest.raises(RemoteError) as refused:
        await kernel.client.fork_session(session)
    assert refused.value.code == "not_found"
    assert "no checkpoint" in refused.value.message


async def test_a_fork_starts_from_the_checkpoint_and_goes_its_own_way(
    kernel: Kernel, session: str
) -> None:
    after = await kernel.bus.last_seq(keys.feed(session))
    await run_code(kernel.client, session, "x = 41")
    await first_message(
        kernel.bus, session, after,
        lambda msg: msg.msg_type == "checkpoint" and msg.content.event == "saved",
    )  # fmt: skip
    fork = (await kernel.client.fork_session(session)).session
    assert fork != session
    changed = await run_code(kernel.client, fork, "x += 1\nx")
    assert result_of(changed.of_type("execute_result")) == "42"
    untouched = await run_code(kernel.client, session, "x")
    assert result_of(untouched.of_type("execute_result")) == "41"
    await kernel.client.end_session(fork)


async def test_status_says_whether_a_worker_hosts_the_session(kernel: Kernel, session: str) -> None:
    assert (await kernel.client.session_status(session)).hosted
    never_started = "never-started-" + session[:8]
    status = await kernel.client.session_status(never_started)
    assert status.state == "stopped" and not status.hosted
    # Nothing was started by asking.
    assert (await kernel.client.session_status(never_started)).state == "stopped"


async def test_discard_leaves_a_hosted_session_alone(kernel: Kernel, session: str) -> None:
    await run_code(kernel.client, session, "kept = 1")
    assert (await kernel.client.discard_session(session)).hosted
    kept = await run_code(kernel.client, session, "kept")
    assert result_of(kept.of_type("execute_result")) == "1"


async def test_ending_a_hosted_session_shuts_it_down(kernel: Kernel, session: str) -> None:
    after = await kernel.bus.last_seq(keys.feed(session))
    assert (await kernel.client.end_session(session)).hosted
    await wait_for_state(kernel.bus, session, "dead", after)

    async def let_go() -> bool:  # and then no worker hosts it (its lease is let go)
        return not (await kernel.client.session_status(session)).hosted

    await eventually(let_go)


@pytest.fixture
async def hibernating() -> AsyncIterator[KernelClient]:
    """A worker on the in-process bus whose sessions hibernate after 0.3 s idle."""
    bus = InMemoryBus()
    settings = KernelSettings(secret="s", hibernate_after=0.3, checkpoint_delay=0.05)
    worker = KernelWorker(settings, bus)
    running = asyncio.create_task(worker.run())
    await worker.ready.wait()
    yield KernelClient(bus, "alice")
    worker.stop()
    await running
    await bus.close()


async def hibernated_session(client: KernelClient) -> str:
    """A new session that ran ``x = 1`` and then hibernated (no worker hosts it)."""
    session = await client.create_session()
    await run_code(client, session, "x = 1")
    await wait_for_state(client.bus, session, "hibernated")
    return session


async def test_restarting_a_hibernated_session_loses_its_variables(
    hibernating: KernelClient,
) -> None:
    client = hibernating
    session = await hibernated_session(client)
    assert (await client.session_status(session)).state == "stopped"
    # What session.restart does for a session that no worker hosts.
    assert not (await client.discard_session(session)).hosted
    await client.ensure_session(session)
    run = await run_code(client, session, "x")
    assert run.reply.content.ename == "NameError"


async def test_ending_a_hibernated_session_deletes_its_checkpoint(
    hibernating: KernelClient,
) -> None:
    client = hibernating
    session = await hibernated_session(client)
    assert await client.bus.get_blob(keys.checkpoint(session)) is not None
    assert not (await client.end_session(session)).hosted
    assert await client.bus.get_blob(keys.checkpoint(session)) is None
    with pytest.raises(RemoteError) as refused:
        await client.fork_session(session)
    assert refused.value.code == "not_found"


async def test_a_malformed_control_request_is_answered_invalid(kernel: Kernel) -> None:
    for data in (b"not json", b'{"op": "explode", "session": "s", "username": "u"}',
                 b'{"op": "status", "session": "../etc", "username": "u"}'):  # fmt: skip
        reply = msgspec.json.decode(
            await kernel.bus.request(keys.KERNEL_CONTROL, data, timeout=10), type=ControlReply
        )
        assert reply.error is not None and reply.error.code == "invalid"
    # The worker goes on answering.
    assert (await kernel.client.session_status("still-answering")).state == "stopped"
