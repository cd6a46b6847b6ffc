"""The Jupyter kernel protocol, as a client sees it: stdin, comms and widgets, is_complete,
history, comm_info, execute options, inspect detail, payloads, kernel_info.

Each test talks to a kernel worker as a Jupyter client would (through `KernelClient`, over
the in-process bus and over Redis with the worker in its own process) and checks what the
feed and the replies say.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from cellbus_kernel.config import KernelSettings
from cellbus_kernel.worker import KernelWorker
from cellbus_protocol import codec, keys
from cellbus_protocol import messages as m
from cellbus_protocol.bus import Bus, InMemoryBus
from cellbus_protocol.envelope import Message
from cellbus_protocol.kernel_client import KernelClient

from ..support.feeds import FEED_TIMEOUT, Run, collect, first_message, run_code, wait_for_state
from .conftest import Kernel

ANSI = re.compile(r"\x1b\[[0-9;]*m")


async def asked(bus: Bus, session: str, after: int) -> Message:
    """The next ``input_request`` on the feed."""
    _, msg = await first_message(bus, session, after, lambda x: x.msg_type == "input_request")
    return msg


async def handled(bus: Bus, request: Message, after: int) -> list[Message]:
    """The feed messages of a comm message from a client, up to its ``idle``."""
    out: list[Message] = []
    async with await bus.subscribe(keys.feed(request.session), after) as subscription:
        async with asyncio.timeout(FEED_TIMEOUT):
            async for entry in subscription:
                msg = codec.decode(entry.data)
                if msg.parent_header.msg_id != request.msg_id:
                    continue
                out.append(msg)
                if msg.msg_type == "status" and msg.content.execution_state == "idle":
                    return out
    raise AssertionError("unreachable")


# -- stdin ------------------------------------------------------------------------------------
async def test_input_asks_whoever_ran_the_cell_and_only_they_may_answer(
    kernel: Kernel, session: str
) -> None:
    after = await kernel.bus.last_seq(keys.feed(session))
    code = "name = input('Your name? ')\nprint('Hello', name)"
    request = await kernel.client.execute(session, code, allow_stdin=True)
    question = await asked(kernel.bus, session, after)
    assert question.content == m.InputRequest(prompt="Your name? ", password=False)
    assert question.header.username == "alice"  # every watcher sees who is asked
    assert question.parent_header.msg_id == request.msg_id

    bob = KernelClient(kernel.bus, "bob")
    refused = await bob.input(session, "Mallory", question.msg_id)
    assert (refused.status, refused.ename) == ("error", "NoInputAwaited")
    wrong_request = await kernel.client.input(session, "Ada", "not-that-request")
    assert wrong_request.ename == "NoInputAwaited"

    assert (await kernel.client.input(session, "Ada", question.msg_id)).status == "ok"
    run = await collect(kernel.bus, request, after)
    assert run.stdout == "Hello Ada\n"
    assert run.reply.content.status == "ok"
    assert run.types.index("input_request") < run.types.index("stream")
    again = await kernel.client.input(session, "Ada", question.msg_id)
    assert again.ename == "NoInputAwaited"  # answered once, not twice


async def test_getpass_asks_for_a_masked_line(kernel: Kernel, session: str) -> None:
    after = await kernel.bus.last_seq(keys.feed(session))
    code = "import getpass\nsecret = getpass.getpass()\nprint(len(secret))"
    request = await kernel.client.execute(session, code, allow_stdin=True)
    question = await asked(kernel.bus, session, after)
    assert question.content == m.InputRequest(prompt="Password: ", password=True)
    await kernel.client.input(session, "hunter2", question.msg_id)
    run = await collect(kernel.bus, request, after)
    assert run.stdout == "7\n"  # the secret itself is never printed


async def test_an_interrupt_ends_the_wait_for_input(kernel: Kernel, session: str) -> None:
    after = await kernel.bus.last_seq(keys.feed(session))
    request = await kernel.client.execute(session, "input('never answered')", allow_stdin=True)
    question = await asked(kernel.bus, session, after)
    # While the cell waits, direct requests are answered at once (the reader thread).
    assert (await kernel.client.is_complete(session, "x = 1")).status == "complete"
    assert (await kernel.client.comm_info(session)).status == "ok"
    assert (await kernel.client.history(session, m.HistoryRequest())).status == "ok"
    assert (await kernel.client.kernel_info(session)).protocol_version == "5.3"
    await kernel.client.interrupt(session)
    run = await collect(kernel.bus, request, after)
    assert run.reply.content.status == "error"
    assert run.reply.content.ename == "KeyboardInterrupt"
    late = await kernel.client.input(session, "too late", question.msg_id)
    assert late.ename == "NoInputAwaited"
    assert (await run_code(kernel.client, session, "1 + 1")).reply.content.status == "ok"


async def test_the_person_leaving_ends_the_wait_with_a_clear_error(
    kernel: Kernel, session: str
) -> None:
    after = await kernel.bus.last_seq(keys.feed(session))
    request = await kernel.client.execute(session, "input('?')", allow_stdin=True)
    question = await asked(kernel.bus, session, after)
    bob = KernelClient(kernel.bus, "bob")  # only the one asked can call the wait off
    assert (await bob.cancel_input(session, question.msg_id, "bob left")).status == "error"
    ack = await kernel.client.cancel_input(session, question.msg_id, "alice left the session.")
    assert ack.status == "ok"
    run = await collect(kernel.bus, request, after)
    (error,) = run.of_type("error")
    assert (error.content.ename, error.content.evalue) == (
        "InputCancelled",
        "alice left the session.",
    )


async def test_a_restart_ends_the_wait_for_input(kernel: Kernel, session: str) -> None:
    after = await kernel.bus.last_seq(keys.feed(session))
    request = await kernel.client.execute(session, "input('?')", allow_stdin=True)
    question = await asked(kernel.bus, session, after)
    assert (await kernel.client.restart(session)).status == "ok"
    run = await collect(kernel.bus, request, after, until_reply=True)
    assert run.reply.content.ename == "SessionRestarted"
    assert (await kernel.client.input(session, "x", question.msg_id)).ename == "NoInputAwaited"


async def test_without_allow_stdin_input_raises_as_in_ipykernel(
    kernel: Kernel, session: str
) -> None:
    run = await run_code(kernel.client, session, "input('?')")
    assert run.reply.content.ename == "StdinNotImplementedError"
    assert "input_request" not in run.types


# -- comms and widgets ------------------------------------------------------------------------
SLIDER = """\
import ipywidgets
slider = ipywidgets.IntSlider(value=5, max=10)
changes = []
slider.observe(lambda change: changes.append(change["new"]), "value")
slider
"""


async def watch(bus: Bus, session: str, after: int, seen: list[Message]) -> None:
    """A feed watcher, as a second person's browser: everything up to the next run's end.

    It stops at the first cell run to go idle, not when the test is done, so that what it
    saw does not depend on how far it had read when the test stopped it."""
    async with await bus.subscribe(keys.feed(session), after) as subscription:
        async for entry in subscription:
            msg = codec.decode(entry.data)
            seen.append(msg)
            ran = msg.parent_header.msg_type == "execute_request"
            if ran and msg.msg_type == "status" and msg.content.execution_state == "idle":
                return


async def test_a_slider_moved_by_one_person_moves_for_everyone_and_once_in_the_kernel(
    kernel: Kernel, session: str
) -> None:
    run = await run_code(kernel.client, session, SLIDER)
    (shown,) = run.of_type("execute_result")
    model_id = shown.content.data["application/vnd.jupyter.widget-view+json"]["model_id"]
    (opened,) = [o for o in run.of_type("comm_open") if o.content.comm_id == model_id]
    assert opened.content.target_name == "jupyter.widget"
    assert opened.metadata == {"version": "2.1.0"}  # the widget protocol, as managers check
    assert opened.content.data["state"]["value"] == 5

    after = await kernel.bus.last_seq(keys.feed(session))
    watchers: list[list[Message]] = [[], []]
    tasks = [asyncio.create_task(watch(kernel.bus, session, after, w)) for w in watchers]
    update = {"method": "update", "state": {"value": 7}, "buffer_paths": []}
    moved = await kernel.client.comm(session, model_id, update)
    messages = await handled(kernel.bus, moved, after)
    assert [msg.msg_type for msg in messages] == ["status", "comm_msg", "status"]
    echo = messages[1].content
    assert echo.data == {"method": "echo_update", "state": {"value": 7}, "buffer_paths": []}
    check = await run_code(kernel.client, session, "slider.value, changes")
    async with asyncio.timeout(FEED_TIMEOUT):
        await asyncio.gather(*tasks)
    assert check.of_type("execute_result")[0].content.data["text/plain"] == "(7, [7])"
    for seen in watchers:  # both watchers saw the echo of the one change
        echoes = [x for x in seen if x.msg_type == "comm_msg" and x.content.comm_id == model_id]
        assert [x.content.data["state"] for x in echoes] == [{"value": 7}]


async def test_comms_opened_and_closed_by_a_client_and_comm_info(
    kernel: Kernel, session: str
) -> None:
    code = (
        "import comm\n"
        "got = []\n"
        "def opened(c, msg):\n"
        "    c.on_msg(lambda m: (got.append(m['content']['data']), c.send({'echo': m['content']['data']})))\n"  # noqa: E501
        "comm.get_comm_manager().register_target('demo', opened)\n"
    )
    assert (await run_code(kernel.client, session, code)).reply.content.status == "ok"
    after = await kernel.bus.last_seq(keys.feed(session))
    opened = await kernel.client.comm(session, "c1", {}, kind="open", target_name="demo")
    await handled(kernel.bus, opened, after)
    info = await kernel.client.comm_info(session, "demo")
    assert info.comms == {"c1": {"target_name": "demo"}}
    sent = await kernel.client.comm(session, "c1", {"n": 1})
    messages = await handled(kernel.bus, sent, after)
    (reply,) = [x for x in messages if x.msg_type == "comm_msg"]
    assert (reply.content.comm_id, reply.content.data) == ("c1", {"echo": {"n": 1}})
    closed = await kernel.client.comm(session, "c1", {}, kind="close")
    await handled(kernel.bus, closed, after)
    assert (await kernel.client.comm_info(session)).comms == {}
    assert (
        "[{'n': 1}]"
        in (await run_code(kernel.client, session, "got"))
        .of_type("execute_result")[0]
        .content.data["text/plain"]
    )


async def test_widget_state_for_an_exported_notebook(kernel: Kernel, session: str) -> None:
    assert (await kernel.client.widget_state(session)).state == {}  # no widgets: nothing
    await run_code(kernel.client, session, SLIDER)
    state = (await kernel.client.widget_state(session)).state
    assert (state["version_major"], state["version_minor"]) == (2, 0)
    models = [w for w in state["state"].values() if w["model_name"] == "IntSliderModel"]
    assert [w["state"]["value"] for w in models] == [5]


# -- requests ---------------------------------------------------------------------------------
async def test_is_complete(kernel: Kernel, session: str) -> None:
    client = kernel.client
    assert await client.is_complete(session, "x = 1") == m.IsCompleteReply(status="complete")
    assert await client.is_complete(session, "for i in range(3):") == m.IsCompleteReply(
        status="incomplete", indent="    "
    )
    assert (await client.is_complete(session, "1 +* 2")).status == "invalid"


async def test_history_of_the_session(kernel: Kernel, session: str) -> None:
    await run_code(kernel.client, session, "a = 1")
    await run_code(kernel.client, session, "b = a + 1")
    await run_code(kernel.client, session, "secret = 3", store_history=False)
    tail = await kernel.client.history(session, m.HistoryRequest(n=10))
    assert [entry[1:] for entry in tail.history] == [[1, "a = 1"], [2, "b = a + 1"]]
    found = await kernel.client.history(
        session, m.HistoryRequest(hist_access_type="search", pattern="b*", n=5)
    )
    assert [entry[2] for entry in found.history] == ["b = a + 1"]


async def test_kernel_info_is_complete(kernel: Kernel, session: str) -> None:
    info = await kernel.client.kernel_info(session)
    assert info.protocol_version == "5.3"
    assert info.language_info.name == "python"
    assert re.fullmatch(r"3\.\d+\.\d+", info.language_info.version)
    assert info.language_info.file_extension == ".py"
    assert "IPython" in info.banner and info.help_links


async def test_inspect_detail_level_one_shows_the_source(kernel: Kernel, session: str) -> None:
    await run_code(kernel.client, session, "def twice(x):\n    return 2 * x  # doubled\n")
    brief = await kernel.client.inspect(session, "twice", 5, detail_level=0)
    full = await kernel.client.inspect(session, "twice", 5, detail_level=1)
    assert "# doubled" not in brief.data["text/plain"]
    assert "# doubled" in full.data["text/plain"]


# -- execute options and payloads -------------------------------------------------------------
async def test_help_goes_to_a_page_payload_not_to_the_outputs(kernel: Kernel, session: str) -> None:
    run = await run_code(kernel.client, session, "len?")
    assert run.types == ["status", "execute_input", "execute_reply", "status"]  # no stream
    (page,) = run.reply.content.payload
    assert (page["source"], page["start"]) == ("page", 0)
    assert "Return the number of items" in ANSI.sub("", page["data"]["text/plain"])


async def test_set_next_input_is_a_payload(kernel: Kernel, session: str) -> None:
    run = await run_code(kernel.client, session, "get_ipython().set_next_input('x = 42')")
    payload = run.reply.content.payload
    assert payload == [{"source": "set_next_input", "text": "x = 42", "replace": False}]
    later = await run_code(kernel.client, session, "pass")
    assert later.reply.content.payload == []  # a payload is given once


async def test_user_expressions_and_silent(kernel: Kernel, session: str) -> None:
    run = await run_code(
        kernel.client, session, "x = 6", user_expressions={"double": "x * 2", "bad": "1/0"}
    )
    expressions: dict[str, Any] = run.reply.content.user_expressions
    assert expressions["double"]["data"] == {"text/plain": "12"}
    assert (expressions["bad"]["status"], expressions["bad"]["ename"]) == (
        "error",
        "ZeroDivisionError",
    )
    silent = await run_code(kernel.client, session, "print('shh'); x", silent=True)
    assert silent.types == ["status", "stream", "execute_reply", "status"]  # no input, no result
    assert silent.reply.content.execution_count is None
    assert (await kernel.client.history(session, m.HistoryRequest())).history[-1][2] == "x = 6"


# -- history across hibernation (its checkpoint) ----------------------------------------------
async def test_history_is_restored_with_the_checkpoint() -> None:
    bus = InMemoryBus()
    settings = KernelSettings(secret="s", hibernate_after=0.3, checkpoint_delay=0.05)
    worker = KernelWorker(settings, bus)
    running = asyncio.create_task(worker.run())
    await worker.ready.wait()
    client = KernelClient(bus, "alice")
    try:
        session = await client.create_session()
        await wait_for_state(bus, session, "idle")
        await run_code(client, session, "a = 1")
        await run_code(client, session, "b = a + 1")
        await wait_for_state(bus, session, "hibernated")
        await client.ensure_session(session)
        restored: Run = await run_code(client, session, "In[1:]")
        assert restored.of_type("execute_result")[0].content.data["text/plain"] == (
            "['a = 1', 'b = a + 1', 'In[1:]']"
        )
        tail = await client.history(session, m.HistoryRequest(n=5))
        assert [entry[1:] for entry in tail.history] == [
            [1, "a = 1"],
            [2, "b = a + 1"],
            [3, "In[1:]"],
        ]
    finally:
        worker.stop()
        await running
        await bus.close()


async def test_a_comm_handler_that_never_ends_can_be_interrupted(
    kernel: Kernel, session: str
) -> None:
    code = (
        "import comm, time\n"
        "def opened(c, msg):\n"
        "    def forever(m):\n"
        "        while True: time.sleep(0.01)\n"
        "    c.on_msg(forever)\n"
        "comm.get_comm_manager().register_target('slow', opened)\n"
    )
    await run_code(kernel.client, session, code)
    after = await kernel.bus.last_seq(keys.feed(session))
    await kernel.client.comm(session, "s1", {}, kind="open", target_name="slow")
    stuck = await kernel.client.comm(session, "s1", {"go": 1})
    await first_message(
        kernel.bus,
        session,
        after,
        lambda x: x.parent_header.msg_id == stuck.msg_id and x.msg_type == "status",
    )  # busy: its handler runs
    await kernel.client.interrupt(session)
    ended = await handled(kernel.bus, stuck, after)
    assert [x.content.execution_state for x in ended] == ["busy", "idle"]
    assert (await run_code(kernel.client, session, "1 + 1")).reply.content.status == "ok"


async def test_the_kernel_refuses_oversized_input_and_comm_messages_from_any_client(
    kernel: Kernel, session: str
) -> None:
    """Not only the web checks the limits: a client on the bus is refused by the kernel."""
    after = await kernel.bus.last_seq(keys.feed(session))
    request = await kernel.client.execute(session, "print(input())", allow_stdin=True)
    question = await asked(kernel.bus, session, after)
    huge = await kernel.client.input(session, "x" * (m.MAX_INPUT_CHARS + 1), question.msg_id)
    assert (huge.status, huge.ename) == ("error", "TooLarge")
    big = await kernel.client.comm(session, "c", {"blob": "x" * m.MAX_COMM_BYTES})
    await kernel.client.input(session, "fine", question.msg_id)  # still awaited
    run = await collect(kernel.bus, request, after)
    assert run.stdout == "fine\n"
    check = await run_code(kernel.client, session, "1")
    feed = [codec.decode(e.data) for e in await kernel.bus.read_feed(keys.feed(session), after)]
    assert check.reply.content.status == "ok"
    assert not [x for x in feed if x.parent_header.msg_id == big.msg_id]  # dropped whole


async def test_an_output_widget_captures_the_outputs_of_the_request_it_runs_in(
    kernel: Kernel, session: str
) -> None:
    await run_code(kernel.client, session, "import ipywidgets\nout = ipywidgets.Output()")
    run = await run_code(kernel.client, session, "with out:\n    print('inside')")
    updates = [x.content.data["state"] for x in run.of_type("comm_msg")]
    # The widget is told to show this execution's outputs (then, after it, none).
    assert {"msg_id": run.request.msg_id} in updates and updates[-1] == {"msg_id": ""}
    assert run.stdout == "inside\n"  # on the feed, with the execution as parent
