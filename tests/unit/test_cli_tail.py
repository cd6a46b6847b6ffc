"""`cellbus tail`: someone else's runs and worksheet edits, as they happen, from a live feed.

The command runs against `FakeCellbus` in this test's event loop; bob runs code and alice
edits a cell; the output names who did what. The test waits for the text it expects.
"""

from __future__ import annotations

import argparse
import asyncio
import io
from pathlib import Path

from aiohttp.test_utils import TestServer

from cellbus_cli.commands.running import cmd_tail
from cellbus_cli.config import Config
from cellbus_cli.context import Context
from cellbus_cli.terminal import Printer

from .test_cli_fakeserver import FakeCellbus, jupyter


class WatchedIO(io.StringIO):
    """A StringIO that can be waited on until it contains some text."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def write(self, text: str) -> int:
        self.changed.set()
        return super().write(text)

    async def wait_for(self, text: str) -> str:
        async with asyncio.timeout(5):
            while text not in self.getvalue():
                self.changed.clear()
                await self.changed.wait()
        return self.getvalue()


async def test_tail_shows_who_runs_what_and_who_edits(tmp_path: Path) -> None:
    cellbus = FakeCellbus()
    token = cellbus.add_user("alice")
    cellbus.add_user("bob", token="b" * 32)
    worksheet = cellbus.add_worksheet("Shared", "alice")
    session = worksheet["session"]
    cellbus.publish(session, jupyter("stream", {"name": "stdout", "text": "old\n"}))
    async with TestServer(cellbus.app, host="127.0.0.1") as server:
        url = str(server.make_url("")).rstrip("/")
        out, err = WatchedIO(), WatchedIO()
        ctx = Context(tmp_path, printer=Printer(color=False, stdout=out, stderr=err))
        ctx._config = Config(url=url, token=token, username="alice")
        args = argparse.Namespace(session="Shared", from_start=False)
        tail = asyncio.create_task(cmd_tail(ctx, args))
        try:
            await err.wait_for(f"following session {session}")
            cellbus.m_session_execute("bob", session, "print(1)")
            await out.wait_for("42\n")
            cellbus.publish(session, jupyter("doc_update", {"update": "AAA="}, user="alice"))
            cellbus.publish(session, jupyter("worksheet_renamed", {"title": "Two"}, user="alice"))
            text = await out.wait_for("alice renamed the worksheet to 'Two'")
        finally:
            tail.cancel()
            await asyncio.gather(tail, return_exceptions=True)
    assert text == (  # (an edit of the document is not told)
        "── bob runs [1]:\nprint(1)\nran: print(1)\n42\n── alice renamed the worksheet to 'Two'\n"
    )
    assert "old" not in text  # without --from-start, only what happens from now on
