"""The repl's pieces that need no terminal: when Enter runs the input, scripts, completion,
and Ctrl-C during a run becoming `session.interrupt`."""

from __future__ import annotations

import asyncio
import io
import os
import signal
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document

from cellbus_cli.client import FeedSocket, RpcClient
from cellbus_cli.errors import RpcError
from cellbus_cli.repl import Repl, SessionCompleter, is_complete, next_indent, split_script
from cellbus_cli.terminal import Printer

from .test_cli_fakeserver import FakeCellbus


@pytest.mark.parametrize(
    ("text", "complete"),
    [
        ("", True),
        ("x = 1", True),
        ("%timeit x", True),  # not Python: IPython on the server decides
        ("for i in range(3):", False),
        ("x = (1,", False),
        ("def f():\n    return 1", False),  # a block ends with an empty line
        ("def f():\n    return 1\n", True),
        ("x = (1,\n2)", True),
        ("if x:\n  a\nelse:", False),
    ],
)
def test_is_complete(text: str, complete: bool) -> None:
    assert is_complete(text) is complete


def test_next_indent() -> None:
    assert next_indent("for i in x:") == "    "
    assert next_indent("for i in x:\n    y = i") == "    "
    assert next_indent("x = (1,") == ""


def test_split_script() -> None:
    lines = ["x = 1\n", "\n", "def f():\n", "    return 2\n", "\n", "f()\n", "y = (1,\n", "2)\n"]
    assert list(split_script(lines)) == [
        "x = 1\n",
        "def f():\n    return 2\n",
        "f()\n",
        "y = (1,\n2)\n",
    ]
    assert list(split_script(["if x:\n", "    pass\n"])) == ["if x:\n    pass\n"]  # ends at EOF


class StubRpc:
    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def call(self, method: str, /, **params: Any) -> Any:
        self.calls.append((method, params))
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


async def complete(rpc: StubRpc, text: str) -> list[tuple[str, int]]:
    completer = SessionCompleter(rpc, "s1")
    document = Document(text, len(text))
    event = CompleteEvent(completion_requested=True)
    return [
        (c.text, c.start_position) async for c in completer.get_completions_async(document, event)
    ]


async def test_completions_come_from_the_session() -> None:
    rpc = StubRpc({"matches": ["math.pi", "math.pow"], "cursor_start": 0, "cursor_end": 6})
    assert await complete(rpc, "math.p") == [("math.pi", -6), ("math.pow", -6)]
    assert rpc.calls == [("session.complete", {"session": "s1", "code": "math.p", "cursor_pos": 6})]


async def test_a_failed_completion_offers_nothing() -> None:
    assert await complete(StubRpc(RpcError(-32050, "unavailable")), "ma") == []


async def test_ctrl_c_while_running_interrupts_the_session() -> None:
    """SIGINT during a run sends session.interrupt (and is not a KeyboardInterrupt here)."""
    before = signal.getsignal(signal.SIGINT)
    cellbus = FakeCellbus()
    token = cellbus.add_user("alice")
    out = io.StringIO()
    printer = Printer(color=False, stdout=out, stderr=io.StringIO())
    async with TestServer(cellbus.app, host="127.0.0.1") as server:
        url = str(server.make_url("")).rstrip("/")
        async with RpcClient(url, token) as rpc, FeedSocket(url, token) as feed:
            await feed.subscribe("s1", "now")
            repl = Repl(rpc, feed, "s1", printer, me="alice")
            repl.start()
            try:
                running = asyncio.create_task(repl.execute("sleep(100)\n"))
                async with asyncio.timeout(5):
                    await cellbus.sleeping.wait()
                    os.kill(os.getpid(), signal.SIGINT)
                    await running
                assert repl.prompt() == "In [2]: "
            finally:
                await repl.stop()
    assert [c[0] for c in cellbus.calls].count("session.interrupt") == 1
    assert out.getvalue() == "KeyboardInterrupt\n"
    assert signal.getsignal(signal.SIGINT) is before  # restored once the run ended
