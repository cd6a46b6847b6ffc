"""Running code: results, streams while code runs, rich display, errors, queued executions."""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path

from cellbus_protocol import codec, keys

from ..support.feeds import collect, first_message, run_code
from .conftest import Kernel

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# A 1x1 PNG.
PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


async def test_expression_value_and_message_order(kernel: Kernel, session: str) -> None:
    run = await run_code(kernel.client, session, "1 + 1")
    assert run.types == ["status", "execute_input", "execute_result", "execute_reply", "status"]
    assert [m.content.execution_state for m in run.of_type("status")] == ["busy", "idle"]
    (result,) = run.of_type("execute_result")
    assert result.content.data["text/plain"] == "2"
    assert run.reply.content.status == "ok"
    assert result.content.execution_count == run.reply.content.execution_count == 1
    # Every output names the request and who sent it, so every watcher sees who ran what.
    for msg in run.messages:
        assert msg.parent_header.msg_id == run.request.msg_id
        assert msg.header.username == "alice"
        assert msg.header.session == session
    (echo,) = run.of_type("execute_input")
    assert echo.content.code == "1 + 1"


async def test_execution_count_grows(kernel: Kernel, session: str) -> None:
    counts = [(await run_code(kernel.client, session, "pass")).reply.content.execution_count
              for _ in range(3)]  # fmt: skip
    assert counts == [1, 2, 3]
    silent = await run_code(kernel.client, session, "x = 1", silent=True)
    assert silent.reply.content.execution_count is None
    assert "execute_input" not in silent.types


async def test_stream_is_published_while_code_runs(
    kernel: Kernel, session: str, tmp_path: Path
) -> None:
    gate = tmp_path / "go"
    code = (
        "import os, time\n"
        "print('waiting for the gate', flush=True)\n"
        f"while not os.path.exists({str(gate)!r}): time.sleep(0.005)\n"
        "print('through')\n"
    )
    after = await kernel.bus.last_seq(keys.feed(session))
    request = await kernel.client.execute(session, code)
    _, first = await first_message(
        kernel.bus, session, after, lambda msg: msg.msg_type in ("stream", "execute_reply")
    )
    assert first.msg_type == "stream", "the reply came before the output"
    assert first.content.text == "waiting for the gate\n"
    gate.touch()  # the cell is still running: its first line arrived while it waited
    run = await collect(kernel.bus, request, after)
    assert run.stdout == "waiting for the gate\nthrough\n"


async def test_a_cell_without_output_is_shown_running_while_it_runs(
    kernel: Kernel, session: str, tmp_path: Path
) -> None:
    # busy and execute_input wait a few milliseconds for a first output to go out with; a
    # cell that has none by then is announced on its own
    gate = tmp_path / "go"
    code = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.005)\n"
    after = await kernel.bus.last_seq(keys.feed(session))
    request = await kernel.client.execute(session, code)
    _, echo = await first_message(
        kernel.bus, session, after, lambda msg: msg.msg_type == "execute_input"
    )
    assert echo.parent_header.msg_id == request.msg_id
    gate.touch()  # it was still running
    run = await collect(kernel.bus, request, after)
    assert run.types == ["status", "execute_input", "execute_reply", "status"]
    assert [m.content.execution_state for m in run.of_type("status")] == ["busy", "idle"]


async def test_stdout_and_stderr_in_order(kernel: Kernel, session: str) -> None:
    code = (
        "import sys\n"
        "for i in range(5):\n"
        "    print('out', i)\n"
        "    print('err', i, file=sys.stderr)\n"
    )
    run = await run_code(kernel.client, session, code)
    assert run.stdout == "".join(f"out {i}\n" for i in range(5))
    assert run.stderr == "".join(f"err {i}\n" for i in range(5))
    assert run.types.index("stream") < run.types.index("execute_reply")


async def test_hundred_thousand_lines_arrive_coalesced(kernel: Kernel, session: str) -> None:
    run = await run_code(kernel.client, session, "for i in range(100000): print(i)")
    assert run.stdout.splitlines() == [str(i) for i in range(100000)]
    streams = run.of_type("stream")
    assert len(streams) <= 60, f"{len(streams)} stream messages for 100,000 lines"
    # What was printed lives on the feed, not in the session's memory: IPython's own output
    # history (which would keep every line for the session's life) stays empty.
    kept = await run_code(kernel.client, session, "len(get_ipython().history_manager.outputs)")
    assert kept.of_type("execute_result")[0].content.data["text/plain"] == "0"


async def test_output_cap_cuts_with_a_note(kernel: Kernel, session: str) -> None:
    run = await run_code(kernel.client, session, "for i in range(300000): print('x' * 9)")
    assert len(run.stdout) == 2_000_000
    assert "output truncated" in run.stderr
    assert "1,000,000 more characters (100,000 lines)" in run.stderr
    assert run.reply.content.status == "ok"
    # The next execution has its whole budget again.
    assert (await run_code(kernel.client, session, "print('fresh')")).stdout == "fresh\n"


async def test_rich_display(kernel: Kernel, session: str) -> None:
    code = (
        "from IPython.display import display, Image, Markdown\n"
        "class Table:\n"
        "    def _repr_html_(self): return '<table><tr><td>1</td></tr></table>'\n"
        f"display(Image(data={PNG_1PX!r}))\n"
        "display(Markdown('**bold**'))\n"
        "Table()\n"
    )
    run = await run_code(kernel.client, session, code)
    image, markdown = run.of_type("display_data")
    assert base64.b64decode(image.content.data["image/png"]) == PNG_1PX
    assert markdown.content.data["text/markdown"] == "**bold**"
    (result,) = run.of_type("execute_result")
    assert result.content.data["text/html"] == "<table><tr><td>1</td></tr></table>"


async def test_update_display_and_clear_output(kernel: Kernel, session: str) -> None:
    code = (
        "from IPython.display import display, clear_output\n"
        "handle = display('first', display_id=True)\n"
        "handle.update('second')\n"
        "clear_output(wait=True)\n"
    )
    run = await run_code(kernel.client, session, code)
    assert run.types[2:5] == ["display_data", "update_display_data", "clear_output"]
    shown, updated, cleared = run.messages[2:5]
    display_id = shown.content.transient["display_id"]
    assert updated.content.transient["display_id"] == display_id
    assert updated.content.data["text/plain"] == "'second'"
    assert cleared.content.wait is True


async def test_matplotlib_figure_is_png(kernel: Kernel, session: str) -> None:
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('t')\n"
    run = await run_code(kernel.client, session, code)
    assert run.reply.content.status == "ok", run.reply.content
    (figure,) = run.of_type("display_data")
    assert base64.b64decode(figure.content.data["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"


async def test_error_has_a_formatted_traceback(kernel: Kernel, session: str) -> None:
    run = await run_code(kernel.client, session, "def f():\n    return 1 / 0\nf()")
    (error,) = run.of_type("error")
    assert error.content.ename == "ZeroDivisionError"
    assert error.content.evalue == "division by zero"
    shown = ANSI.sub("", "\n".join(error.content.traceback))  # what a terminal shows
    assert "----> 2     return 1 / 0" in shown
    assert "ZeroDivisionError: division by zero" in shown
    assert run.reply.content.status == "error"
    assert run.reply.content.ename == "ZeroDivisionError"
    assert run.of_type("status")[-1].content.execution_state == "idle"


async def test_magics_work(kernel: Kernel, session: str) -> None:
    run = await run_code(kernel.client, session, "%time x = sum(range(10))\nx")
    assert "Wall time" in run.stdout
    assert run.of_type("execute_result")[0].content.data["text/plain"] == "45"


async def test_queued_executions_run_in_order_one_at_a_time(kernel: Kernel, session: str) -> None:
    after = await kernel.bus.last_seq(keys.feed(session))
    requests = [
        await kernel.client.execute(session, f"import time; time.sleep(0.05); print({i})")
        for i in range(3)
    ]
    runs = [await collect(kernel.bus, request, after) for request in requests]
    assert [run.stdout for run in runs] == ["0\n", "1\n", "2\n"]
    # On the feed, each execution is over (idle) before the next is busy.
    feed = await kernel.bus.read_feed(keys.feed(session), after)
    states = [
        (msg.parent_header.msg_id, msg.content.execution_state)
        for msg in map(codec.decode, (entry.data for entry in feed))
        if msg.msg_type == "status"
    ]
    expected = [(r.msg_id, state) for r in requests for state in ("busy", "idle")]
    assert states == expected


async def test_stop_on_error_aborts_the_queue(kernel: Kernel, session: str, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    after = await kernel.bus.last_seq(keys.feed(session))
    # The failing cell waits for the gate, so the others are surely queued behind it.
    failing = await kernel.client.execute(
        session,
        f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.005)\n1/0",
    )
    queued = [await kernel.client.execute(session, "print('should not run')") for _ in range(2)]
    gate.touch()
    assert (await collect(kernel.bus, failing, after)).reply.content.status == "error"
    for request in queued:
        run = await collect(kernel.bus, request, after, until_reply=True)
        assert run.reply.content.status == "aborted"
        assert run.stdout == ""
    # Later requests run as usual.
    assert (await run_code(kernel.client, session, "print('ok')")).stdout == "ok\n"


async def test_without_stop_on_error_the_queue_runs(kernel: Kernel, session: str) -> None:
    after = await kernel.bus.last_seq(keys.feed(session))
    failing = await kernel.client.execute(session, "1/0", stop_on_error=False)
    queued = await kernel.client.execute(session, "print('ran')")
    assert (await collect(kernel.bus, failing, after)).reply.content.status == "error"
    assert (await collect(kernel.bus, queued, after)).stdout == "ran\n"


async def test_every_subscriber_sees_every_message(kernel: Kernel, session: str) -> None:
    after = await kernel.bus.last_seq(keys.feed(session))
    request = await kernel.client.execute(session, "for i in range(3): print(i)\n42")
    runs = await asyncio.gather(*(collect(kernel.bus, request, after) for _ in range(5)))
    first = [codec.encode(m) for m in runs[0].messages]
    assert all([codec.encode(m) for m in run.messages] == first for run in runs)
    assert runs[0].stdout == "0\n1\n2\n"


async def test_executions_without_history_have_no_number(kernel: Kernel, session: str) -> None:
    run = await run_code(kernel.client, session, "1 + 1", store_history=False)
    (echo,) = run.of_type("execute_input")
    assert echo.content.execution_count is None
    assert run.reply.content.execution_count is None
    counted = await run_code(kernel.client, session, "2")
    assert counted.reply.content.execution_count == 1


async def test_a_cells_run_is_announced_when_queued_before_it_starts(
    kernel: Kernel, session: str, tmp_path: Path
) -> None:
    # A run that names its cell is announced (cell_run) as soon as the session takes it, so
    # watchers see the queue: the second cell's announcement arrives while the first runs.
    gate = tmp_path / "go"
    code = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.005)\n"
    after = await kernel.bus.last_seq(keys.feed(session))
    first = await kernel.client.execute(session, code, cell_id="cell-1")
    second = await kernel.client.execute(session, "print('second')", cell_id="cell-2")
    _, announced = await first_message(
        kernel.bus, session, after,
        lambda msg: msg.msg_type == "cell_run" and msg.parent_header.msg_id == second.msg_id,
    )  # fmt: skip
    assert announced.content.cell_id == "cell-2"
    assert announced.content.msg_id == second.msg_id
    assert announced.content.username == announced.header.username == "alice"
    gate.touch()  # the first cell was still running when the second was announced
    runs = [await collect(kernel.bus, request, after) for request in (first, second)]
    for run, cell_id in zip(runs, ("cell-1", "cell-2"), strict=True):
        assert run.types[:2] == ["cell_run", "status"]
        assert run.messages[0].content.cell_id == cell_id
        assert run.messages[1].content.execution_state == "busy"
    assert runs[1].stdout == "second\n"
    # A run that names no cell is not announced.
    plain = await run_code(kernel.client, session, "1 + 1")
    assert "cell_run" not in plain.types
