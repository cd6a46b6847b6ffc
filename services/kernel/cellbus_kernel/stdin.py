"""``input()`` and ``getpass()`` in a session process: a line asked of whoever ran the cell.

Jupyter's stdin channel, over the worker's pipe. While an execution that allows stdin runs,
``input()`` (and ``getpass.getpass()``, masked) flushes the cell's output, sends an
`frames.InputWanted` (the worker publishes it as an ``input_request`` on the feed, addressed
to the execution's requester) and blocks until the worker forwards the answer
(`frames.InputValue`). Each wait has a number: an answer meant for an earlier wait (one that
an interrupt ended while the answer was on its way) is dropped, never given to a later one.

Nothing here hangs for good: an interrupt raises KeyboardInterrupt out of the wait; a restart
ends the process; the person leaving arrives as an `InputValue` with ``cancelled`` set, which
raises `InputCancelled`. An execution that does not allow stdin (``allow_stdin`` false, or
code run outside an execution: a comm handler) gets IPython's StdinNotImplementedError, as
ipykernel gives.
"""

from __future__ import annotations

import builtins
import getpass
import queue
import threading
from collections.abc import Callable
from typing import Any

from IPython.core.error import StdinNotImplementedError

from . import frames

EOT = "\x04"
"""An answer of Ctrl-D: ``input()`` raises EOFError, as at a terminal (and in ipykernel)."""


class InputCancelled(EOFError):
    """The wait for a line ended without one: the person asked has left the session."""


class Stdin:
    """The one pending wait of this process for a line, and the builtins that start it."""

    def __init__(self) -> None:
        self.send: Callable[[frames.FromSession], None] | None = None
        self.flush: Callable[[], None] = lambda: None
        self.execution: str | None = None  # the execution that may ask, if it allows stdin
        self._lock = threading.Lock()
        self._seq = 0
        self._waiting: int | None = None
        self._values: queue.SimpleQueue[frames.InputValue] = queue.SimpleQueue()

    def install(
        self, send: Callable[[frames.FromSession], None], flush: Callable[[], None]
    ) -> None:
        """Replace the builtins (before user code runs: a later ``from getpass import
        getpass`` gets this one too)."""
        self.send, self.flush = send, flush
        builtins.input = self.input
        getpass.getpass = self.getpass

    def allow(self, execution: str | None) -> None:
        """Execution `execution` may ask for input (None: nothing may)."""
        self.execution = execution

    def input(self, prompt: object = "") -> str:
        return self.ask(str(prompt), password=False)

    def getpass(self, prompt: str = "Password: ", stream: Any = None) -> str:
        return self.ask(str(prompt), password=True)

    def ask(self, prompt: str, *, password: bool) -> str:
        execution = self.execution
        if execution is None or self.send is None:
            raise StdinNotImplementedError(
                "raw_input was called, but this frontend does not support input requests."
            )
        self.flush()
        with self._lock:
            self._seq += 1
            seq = self._waiting = self._seq
        try:
            self.send(frames.InputWanted(id=execution, seq=seq, prompt=prompt, password=password))
            while True:
                answer = self._values.get()  # KeyboardInterrupt ends the wait (an interrupt)
                if answer.seq == seq and answer.id == execution:
                    break
        finally:
            with self._lock:
                self._waiting = None
        if answer.cancelled:
            raise InputCancelled(answer.cancelled)
        if answer.value == EOT:
            raise EOFError("EOF when reading a line")
        return answer.value

    def deliver(self, answer: frames.InputValue) -> None:
        """From the reader thread: the answer to a wait (dropped unless it is the current
        one's)."""
        with self._lock:
            if self._waiting == answer.seq:
                self._values.put(answer)


STDIN = Stdin()
