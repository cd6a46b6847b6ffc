"""Answering ``input()`` from the terminal: the CLI's side of the session's stdin.

When code that the user ran asks for a line (an ``input_request`` on the feed addressed to
them: its header names who ran the cell), the CLI prompts on the terminal with the request's
prompt (masked with `getpass` when ``password`` is set) and answers with ``session.input``.
Ctrl-D answers end-of-file (the cell's ``input()`` raises EOFError, as at a terminal); in
``cellbus repl`` Ctrl-C at that prompt interrupts the cell instead. Someone
else's request is only told (`render.describe_event`), never answered.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from .errors import RpcError, ServerUnreachable, describe
from .terminal import Printer

EOT = "\x04"
"""The answer for end-of-file: the session's ``input()`` raises EOFError on it."""

ReadLine = Callable[[str, bool], Awaitable[str]]
"""Reads a line from the person at the terminal: (prompt, masked) -> the line; EOFError at
end of file."""


class Caller(Protocol):
    async def call(self, method: str, /, **params: Any) -> Any: ...


async def read_terminal_line(prompt: str, password: bool) -> str:
    """A line from the terminal (in a thread: reading blocks), masked for a password."""
    if password:
        return await asyncio.to_thread(getpass.getpass, prompt)
    return await asyncio.to_thread(input, prompt)


async def answer_input(
    rpc: Caller,
    session: str,
    message: Mapping[str, Any],
    printer: Printer,
    read_line: ReadLine = read_terminal_line,
) -> None:
    """Prompt for the line `message` (an ``input_request``) asks for, and send it."""
    content = message.get("content") or {}
    prompt, password = str(content.get("prompt") or ""), bool(content.get("password"))
    try:
        value = await read_line(prompt, password)
    except EOFError:
        value = EOT
    except KeyboardInterrupt:  # the reader interrupted the cell instead: nothing to send
        return
    msg_id = (message.get("header") or {}).get("msg_id")
    try:
        await rpc.call("session.input", session=session, value=value, input_request=msg_id)
    except (RpcError, ServerUnreachable) as error:  # the wait ended meanwhile (an interrupt)
        printer.note(f"cellbus: {describe(error)}")
