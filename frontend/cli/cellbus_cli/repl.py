"""`cellbus repl`: an interactive prompt on a session, shared with whoever else uses it.

A background task shows the session's feed as it comes: the outputs of one's own runs (with
`Out[n]:`), and other people's runs and worksheet changes as `cellbus tail` shows them, printed
above the prompt (`patch_stdout`). Enter runs the input when it is complete Python (`codeop`;
input it cannot parse, such as `%magic`, counts as complete); a block ends with an empty line;
Esc Enter runs the input as it is. Tab completes through `session.complete`. While code runs,
Ctrl-C sends `session.interrupt`; at the prompt it clears the line; Ctrl-D leaves. When the
code asks for input (``input()``, ``getpass()``), a prompt asks for the line (masked for a
password) and sends it (`stdin`). The history
is kept in the config dir (0600). Without a SESSION a new one is created, and shut down on exit.
When stdin is not a terminal, the input is read as a script: each complete statement is run in
turn and its outputs shown, with no prompt.
"""

from __future__ import annotations

import asyncio
import codeop
import contextlib
import signal
import sys
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from prompt_toolkit import PromptSession
from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.patch_stdout import patch_stdout

from .client import RpcClient
from .config import history_path
from .context import Context
from .errors import RpcError, ServerUnreachable, describe
from .feed import FeedSocket
from .follow import msg_type, parent_id, state_of
from .render import render_message, short_id
from .resolve import resolve_session
from .stdin import answer_input
from .terminal import Printer

COMPLETE_TIMEOUT = 3.0
INDENT = "    "


def is_complete(text: str) -> bool:
    """Whether Enter should run `text`: complete Python, and a block ended by an empty line."""
    if not text.strip():
        return True
    lines = text.split("\n")
    if len(lines) > 1 and not lines[-1].strip():
        return True
    try:
        compiled = codeop.compile_command(text, "<input>", "exec")
    except (SyntaxError, ValueError, OverflowError):
        return True  # the server's IPython decides (magics, or a real syntax error to show)
    if compiled is None:
        return False
    return len(lines) == 1 or not lines[-1].startswith((" ", "\t"))


def next_indent(text: str) -> str:
    """The indentation of a new line after `text`: the last line's, one deeper after ':'."""
    last = text.split("\n")[-1]
    indent = last[: len(last) - len(last.lstrip())]
    return indent + INDENT if last.rstrip().endswith(":") else indent


def split_script(lines: Iterable[str]) -> Iterator[str]:
    """Lines of a script as the pieces a person would have entered one by one."""
    buffer: list[str] = []
    for line in lines:
        if not buffer and not line.strip():
            continue
        buffer.append(line.rstrip("\r\n"))
        if is_complete("\n".join(buffer)):
            yield "\n".join(buffer).rstrip("\n") + "\n"
            buffer = []
    if any(line.strip() for line in buffer):
        yield "\n".join(buffer).rstrip("\n") + "\n"


class Caller(Protocol):
    """What the completer needs of a client: one JSON-RPC call (`RpcClient`, or a test's)."""

    async def call(self, method: str, /, **params: Any) -> Any: ...


class SessionCompleter(Completer):
    """Completions from the session's kernel (`session.complete`), on Tab."""

    def __init__(self, rpc: Caller, session: str, *, timeout: float = COMPLETE_TIMEOUT) -> None:
        self.rpc = rpc
        self.session = session
        self.timeout = timeout

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterable[Completion]:
        return ()  # only the asynchronous path asks the server

    async def get_completions_async(
        self, document: Document, complete_event: CompleteEvent
    ) -> AsyncGenerator[Completion, None]:
        cursor = document.cursor_position
        try:
            async with asyncio.timeout(self.timeout):
                reply = await self.rpc.call(
                    "session.complete", session=self.session, code=document.text, cursor_pos=cursor
                )
        except (RpcError, ServerUnreachable, TimeoutError):
            return
        start = reply.get("cursor_start", cursor)
        for match in reply.get("matches") or []:
            yield Completion(str(match), start_position=min(0, start - cursor))


def key_bindings() -> KeyBindings:
    bindings = KeyBindings()

    @bindings.add("enter")
    def _enter(event: KeyPressEvent) -> None:
        buffer = event.current_buffer
        state = buffer.complete_state
        if state is not None and state.current_completion is not None:
            buffer.apply_completion(state.current_completion)
        elif is_complete(buffer.text):
            buffer.validate_and_handle()
        else:
            buffer.insert_text("\n" + next_indent(buffer.document.text_before_cursor))

    @bindings.add("escape", "enter")
    def _run(event: KeyPressEvent) -> None:
        event.current_buffer.validate_and_handle()

    return bindings


@contextlib.contextmanager
def on_sigint(callback: Callable[[], None]) -> Iterator[None]:
    """Call `callback` in the event loop on Ctrl-C, instead of raising KeyboardInterrupt."""
    loop = asyncio.get_running_loop()
    try:
        previous = signal.signal(signal.SIGINT, lambda *_: loop.call_soon_threadsafe(callback))
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Repl:
    """One person's prompt on a session whose feed `feed` is subscribed to."""

    def __init__(
        self,
        rpc: RpcClient,
        feed: FeedSocket,
        session: str,
        printer: Printer,
        *,
        me: str | None,
        execution_count: int = 0,
    ) -> None:
        self.rpc = rpc
        self.feed = feed
        self.session = session
        self.printer = printer
        self.me = me
        self.count = execution_count
        self._own: set[str] = set()
        self._idle: dict[str, asyncio.Event] = {}
        self._pump: asyncio.Task[None] | None = None
        self.interactive = False

    async def run(self, history: Path | None, *, interactive: bool) -> None:
        """Read and run input until Ctrl-D (or the end of a piped script)."""
        self.start()
        self.interactive = interactive
        try:
            if interactive:
                await self._interactive(history)
            else:
                await self._scripted()
        finally:
            await self.stop()

    def start(self) -> None:
        """Start showing the feed."""
        self._pump = asyncio.create_task(self._show_feed(), name="cellbus-repl-feed")

    async def stop(self) -> None:
        """Stop showing the feed; raises what ended it, if it ended by itself."""
        pump, self._pump = self._pump, None
        if pump is None:
            return
        if not pump.done():
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            return
        pump.result()

    async def execute(self, code: str) -> None:
        """Run `code` and wait for its `idle` (its outputs are shown by the feed task)."""
        pump = self._pump
        assert pump is not None, "Repl.start() first"
        try:
            started = await self.rpc.call("session.execute", session=self.session, code=code)
        except (RpcError, ServerUnreachable) as error:
            self.printer.note(f"cellbus: {describe(error)}")
            return
        msg_id = started["msg_id"]
        self._own.add(msg_id)
        idle = self._idle.setdefault(msg_id, asyncio.Event())
        interrupts: list[asyncio.Task[Any]] = []

        def interrupt() -> None:
            self.printer.note("^C: interrupting")
            call = self.rpc.call("session.interrupt", session=self.session)
            interrupts.append(asyncio.create_task(call))

        with on_sigint(interrupt):
            waiter = asyncio.create_task(idle.wait())
            try:
                await asyncio.wait({waiter, pump}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
        for task in interrupts:
            try:
                await task
            except (RpcError, ServerUnreachable) as error:
                self.printer.note(f"cellbus: the interrupt failed: {describe(error)}")
        self._idle.pop(msg_id, None)
        if pump.done():
            pump.result()  # the feed ended: raise why

    def prompt(self) -> str:
        return f"In [{self.count + 1}]: "

    async def _interactive(self, history: Path | None) -> None:
        pump = self._pump
        assert pump is not None
        prompt: PromptSession[str] = PromptSession(
            history=FileHistory(str(history)) if history else None,
            completer=SessionCompleter(self.rpc, self.session),
            complete_while_typing=False,
            multiline=True,
            key_bindings=key_bindings(),
            prompt_continuation=lambda width, *_: "...: ".rjust(width),
        )

        def feed_ended(_: object) -> None:
            if prompt.app.is_running:
                prompt.app.exit(exception=EOFError())

        pump.add_done_callback(feed_ended)
        with patch_stdout(raw=True):
            while not pump.done():
                try:
                    code = await prompt.prompt_async(self.prompt)
                except KeyboardInterrupt:
                    continue
                except EOFError:
                    break
                if code.strip():
                    await self.execute(code.rstrip() + "\n")

    async def _scripted(self) -> None:
        for code in split_script(await asyncio.to_thread(sys.stdin.readlines)):
            await self.execute(code)

    async def _show_feed(self) -> None:
        while True:
            message = (await self.feed.next()).message
            header = message.get("header") or {}
            content = message.get("content") or {}
            parent = parent_id(message)
            mine = parent in self._own or (
                self.me is not None and header.get("username") == self.me
            )
            kind = msg_type(message)
            if kind == "input_request" and parent in self._own:  # asks whoever ran it: me
                await answer_input(self.rpc, self.session, message, self.printer, self._read_line)
                continue
            self.printer.show(render_message(message, follow=not mine, out_prompt=True))
            if kind in ("execute_input", "execute_reply") and isinstance(
                content.get("execution_count"), int
            ):
                self.count = content["execution_count"]
            if parent and mine and state_of(message) in ("idle", "dead"):
                self._idle.setdefault(parent, asyncio.Event()).set()

    async def _read_line(self, prompt: str, password: bool) -> str:
        """The line asked for: at a prompt of its own when interactive (Ctrl-C there
        interrupts the cell); a script's input is its stdin, already read (end of file)."""
        if not self.interactive:
            raise EOFError
        try:
            reader: PromptSession[str] = PromptSession()
            return await reader.prompt_async(prompt, is_password=password)
        except KeyboardInterrupt:
            self.printer.note("^C: interrupting")
            with contextlib.suppress(RpcError, ServerUnreachable):
                await self.rpc.call("session.interrupt", session=self.session)
            raise


async def run_repl(ctx: Context, session_ref: str | None) -> int:
    url = ctx.server_url()
    printer = ctx.printer
    async with ctx.rpc(url) as rpc:
        created = session_ref is None
        if session_ref is None:
            session = (await rpc.call("session.create"))["session"]
            printer.note(f"new session {session} (shut down when you leave)")
        else:
            session = await resolve_session(rpc, session_ref)
        try:
            info = await rpc.call("session.info", session=session)
            async with ctx.feed(url) as feed:
                await feed.subscribe(session, "now")
                interactive = sys.stdin.isatty()
                if interactive:
                    printer.note(f"session {short_id(session)}: Ctrl-D to leave")
                repl = Repl(
                    rpc,
                    feed,
                    session,
                    printer,
                    me=ctx.config.username,
                    execution_count=int(info.get("execution_count") or 0),
                )
                await repl.run(
                    history_path(ctx.config_dir) if interactive else None, interactive=interactive
                )
        finally:
            if created:
                with contextlib.suppress(RpcError, ServerUnreachable):
                    await rpc.call("session.shutdown", session=session)
    return 0
