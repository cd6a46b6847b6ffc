"""Requests that do not wait their turn: interrupt, restart, completion, inspection, info."""

from __future__ import annotations

from pathlib import Path

from cellbus_protocol import codec, keys
from cellbus_protocol.envelope import Message
from cellbus_protocol.messages import state_of

from ..support.feeds import collect, first_message, run_code
from .conftest import Kernel


async def start_running(kernel: Kernel, session: str, code: str) -> tuple[Message, int]:
    """Send `code` and return once its execute_input is on the feed (it is running)."""
    after = await kernel.bus.last_seq(keys.feed(session))
    request = await kernel.client.execute(session, code)

    def is_echo(msg: Message) -> bool:
        return msg.msg_type == "execute_input" and msg.parent_header.msg_id == request.msg_id

    await first_message(kernel.bus, session, after, is_echo)
    return request, after


async def test_interrupt_stops_the_cell_and_keeps_the_namespace(
    kernel: Kernel, session: str
) -> None:
    await run_code(kernel.client, session, "kept = 41")
    request, after = await start_running(
        kernel, session, "import time\nwhile True:\n    time.sleep(0.01)"
    )
    reply = await kernel.client.interrupt(session)
    assert reply.status == "ok"
    run = await collect(kernel.bus, request, after)
    assert run.reply.content.status == "error"
    assert run.reply.content.ename == "KeyboardInterrupt"
    assert (await run_code(kernel.client, session, "kept + 1")).of_type("execute_result")[
        0
    ].content.data["text/plain"] == "42"


async def test_interrupt_when_idle_changes_nothing(kernel: Kernel, session: str) -> None:
    await run_code(kernel.client, session, "value = 'still here'")
    assert (await kernel.client.interrupt(session)).status == "ok"
    run = await run_code(kernel.client, session, "value")
    assert run.of_type("execute_result")[0].content.data["text/plain"] == "'still here'"


async def test_restart_gives_a_fresh_namespace(kernel: Kernel, session: str) -> None:
    await run_code(kernel.client, session, "forgotten = 1")
    after = await kernel.bus.last_seq(keys.feed(session))
    assert (await kernel.client.restart(session)).status == "ok"
    states = [
        (msg.msg_type, state_of(msg.content))
        for msg in map(
            codec.decode, (e.data for e in await kernel.bus.read_feed(keys.feed(session), after))
        )
        if state_of(msg.content) is not None
    ]
    assert states == [("session_state", "restarting"), ("status", "starting"), ("status", "idle")]
    run = await run_code(kernel.client, session, "forgotten")
    assert run.reply.content.ename == "NameError"
    assert run.reply.content.execution_count == 1


async def test_restart_while_running_ends_the_running_cell(kernel: Kernel, session: str) -> None:
    request, after = await start_running(kernel, session, "import time; time.sleep(60)")
    assert (await kernel.client.restart(session)).status == "ok"
    run = await collect(kernel.bus, request, after, until_reply=True)
    assert run.reply.content.status == "error"
    assert run.reply.content.ename == "SessionRestarted"
    assert (await run_code(kernel.client, session, "print('back')")).stdout == "back\n"


async def test_completion_answers_while_a_cell_runs(
    kernel: Kernel, session: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    await run_code(kernel.client, session, "import os\nmy_variable = 1")
    request, after = await start_running(
        kernel,
        session,
        f"import time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.005)",
    )
    reply = await kernel.client.complete(session, "my_va", 5)
    assert reply.status == "ok"
    assert "my_variable" in reply.matches
    assert (reply.cursor_start, reply.cursor_end) == (0, 5)
    code = "x = os.pa"
    attributes = await kernel.client.complete(session, code, len(code))
    completed = {
        code[: attributes.cursor_start] + match + code[attributes.cursor_end :]
        for match in attributes.matches
    }
    assert "x = os.path" in completed
    # The cell was still running all along: it ends only when the gate opens.
    info = await kernel.client.kernel_info(session)
    assert info.status == "ok"
    gate.touch()
    assert (await collect(kernel.bus, request, after)).reply.content.status == "ok"


async def test_inspect_shows_the_docstring(kernel: Kernel, session: str) -> None:
    await run_code(kernel.client, session, "def area(r):\n    'Area of a circle of radius r.'\n")
    reply = await kernel.client.inspect(session, "area(", 2)
    assert reply.found is True
    assert "Area of a circle of radius r." in reply.data["text/plain"]
    missing = await kernel.client.inspect(session, "no_such_name", 3)
    assert missing.found is False


async def test_kernel_info(kernel: Kernel, session: str) -> None:
    info = await kernel.client.kernel_info(session)
    assert info.implementation == "cellbus"
    assert info.language_info.name == "python"
    assert info.language_info.version.startswith("3.")


async def test_session_info_shows_the_running_and_queued_requests_and_who_sent_them(
    kernel: Kernel, session: str
) -> None:
    await run_code(kernel.client, session, "import time")
    running, after = await start_running(kernel, session, "while True:\n    time.sleep(0.01)")
    queued = await kernel.client.execute(session, "1 + 1")
    info = await kernel.client.session_info(session)
    assert info.state == "busy"
    assert info.running is not None
    assert (info.running.msg_id, info.running.username) == (running.msg_id, "alice")
    assert [(q.msg_id, q.username) for q in info.queued] == [(queued.msg_id, "alice")]
    await kernel.client.interrupt(session)
    await collect(kernel.bus, running, after)
    aborted = await collect(kernel.bus, queued, after, until_reply=True)
    assert aborted.reply.content.status == "aborted"  # stop_on_error
    info = await kernel.client.session_info(session)
    assert (info.state, info.running, info.queued) == ("idle", None, [])
