"""Faults a user can cause: a crashing process, the memory limit, bad messages on the bus;
and what user code must not reach: the worker's settings and connections."""

from __future__ import annotations

import json

import pytest

from cellbus_kernel.worker import KernelWorker
from cellbus_protocol import codec, keys
from cellbus_protocol import messages as m
from cellbus_protocol.envelope import new_message

from ..support.feeds import run_code
from .conftest import Kernel


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("import os; os._exit(3)", "exited with code 3"),
        ("import ctypes; ctypes.string_at(0)", "killed by signal 11 (SIGSEGV)"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "killed by signal 9 (SIGKILL)"),
    ],
    ids=["exit", "segfault", "sigkill"],
)
async def test_a_dying_process_is_reported_and_replaced(
    kernel: Kernel, session: str, code: str, reason: str
) -> None:
    await run_code(kernel.client, session, "lost = 1")
    run = await run_code(kernel.client, session, code)
    (error,) = run.of_type("error")
    assert error.content.ename == "SessionProcessDied"
    assert reason in error.content.evalue
    assert run.reply.content.status == "error"
    assert run.messages[-1].msg_type == "session_state"  # no idle: it ends the run
    dead = run.messages[-1].content
    assert dead.state == "dead"
    assert reason in dead.reason
    # The worker survives; the next request starts a fresh process.
    after = await run_code(kernel.client, session, "print('alive'); lost")
    assert after.stdout == "alive\n"
    assert after.reply.content.ename == "NameError"
    assert [s.content.execution_state for s in after.of_type("status")] == [
        "starting",
        "busy",
        "idle",
    ]


async def test_memory_limit_kills_the_process_with_a_clear_reason(
    kernel: Kernel, session: str
) -> None:
    run = await run_code(
        kernel.client, session, "hog = []\nwhile True:\n    hog.append(b'x' * 10_000_000)"
    )
    (error,) = run.of_type("error")
    assert "memory limit of 400 MiB" in error.content.evalue
    assert [s.content.state for s in run.of_type("session_state")] == ["dead"]
    assert (await run_code(kernel.client, session, "print(1)")).stdout == "1\n"


async def test_malformed_messages_are_dropped_and_the_worker_keeps_serving(
    kernel: Kernel, session: str
) -> None:
    queue = keys.requests(session)
    valid = new_message(m.ExecuteRequest(code="1"), session=session, username="mallory")
    wrong_session = new_message(m.ExecuteRequest(code="1"), session="other", username="mallory")
    bad_content = json.loads(codec.encode(valid))
    bad_content["content"] = {"code": 42}
    unknown_type = json.loads(codec.encode(valid))
    unknown_type["header"]["msg_type"] = "format_disk_request"
    feed_message = new_message(m.Stream(name="stdout", text="x"), session=session, username="m")
    for data in (
        b"\x00\xffnot json",
        b"[]",
        json.dumps(bad_content).encode(),
        json.dumps(unknown_type).encode(),
        codec.encode(wrong_session),
        codec.encode(feed_message),
    ):
        await kernel.bus.enqueue(queue, data)
    run = await run_code(kernel.client, session, "print('still serving')")
    assert run.stdout == "still serving\n"
    if kernel.transport == "memory":
        assert isinstance(kernel.worker, KernelWorker) and kernel.worker.drops.total == 6
    else:
        assert kernel.log_text().count("dropped invalid message") >= 6


async def test_session_process_holds_no_service_settings_or_connections(
    kernel: Kernel, session: str
) -> None:
    code = (
        "import os\n"
        "print(sorted(k for k in os.environ if k.startswith('CELLBUS')))\n"
        "print(open('/proc/self/environ', 'rb').read().count(b'CELLBUS'))\n"
        "links = []\n"
        "for fd in os.listdir('/proc/self/fd'):\n"
        "    try: links.append(os.readlink(f'/proc/self/fd/{fd}'))\n"
        "    except FileNotFoundError: pass  # the listing's own descriptor\n"
        "print(sum(link.startswith('socket:') for link in links))\n"
    )
    run = await run_code(kernel.client, session, code)
    assert run.reply.content.status == "ok", run.reply.content
    # No CELLBUS_* variable, not even in the process's initial environment block, and one
    # socket only: the pipe to its worker (no Redis or database connection).
    assert run.stdout == "[]\n0\n1\n"


async def test_a_session_process_that_garbles_its_pipe_is_stopped(
    kernel: Kernel, session: str
) -> None:
    # User code can write anything to its own pipe; the worker must not trust it.
    code = (
        "from cellbus_kernel.child import CHANNEL\nCHANNEL.pipe._sock.sendall(b'\\0\\0\\0\\3abc')"
    )
    run = await run_code(kernel.client, session, code)
    assert run.reply.content.ename == "SessionProcessDied"
    assert "sent a malformed message and was stopped" in run.reply.content.evalue
    assert [s.content.state for s in run.of_type("session_state")] == ["dead"]
    assert (await run_code(kernel.client, session, "print('fresh')")).stdout == "fresh\n"


async def test_requests_still_arrive_after_their_stream_is_deleted(
    kernel: Kernel, session: str
) -> None:
    await run_code(kernel.client, session, "kept = 'yes'")
    # An operator deletes the session's request stream (and with it the consumer group).
    await kernel.bus.delete(keys.requests(session))
    run = await run_code(kernel.client, session, "kept")
    assert run.of_type("execute_result")[0].content.data["text/plain"] == "'yes'"
