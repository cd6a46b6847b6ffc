"""`Printer`: writes `Rendered` text to stdout/stderr for a person.

Stream text is written as it comes, with no newline added; a block (an output, a banner, a
note) starts on a fresh line and ends with one. ANSI escape sequences are kept when the stream
is a terminal and stripped otherwise (`color=` overrides, for stdout). The streams are looked up
at each write (`sys.stdout` by default), so that prompt_toolkit's `patch_stdout` in the repl
and pytest's capture both see the text.
"""

from __future__ import annotations

import re
import sys
from typing import TextIO

from .render import Rendered

ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor movement
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC: titles, hyperlinks
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
)


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Printer:
    """Writes output for people; remembers whether each stream is at the start of a line."""

    def __init__(
        self,
        *,
        color: bool | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self._stdout = stdout
        self._stderr = stderr
        self.color = _is_tty(self.out) if color is None else color
        self.err_color = _is_tty(self.err) if color is None else color
        self._fresh = {False: True, True: True}  # stderr? -> at the start of a line

    @property
    def out(self) -> TextIO:
        return self._stdout if self._stdout is not None else sys.stdout

    @property
    def err(self) -> TextIO:
        return self._stderr if self._stderr is not None else sys.stderr

    def show(self, rendered: Rendered | None) -> None:
        if rendered is None:
            return
        if rendered.inline:
            self.write(rendered.text, stderr=rendered.stderr)
        else:
            self.line(rendered.text, stderr=rendered.stderr)

    def write(self, text: str, *, stderr: bool = False) -> None:
        """Write `text` exactly (but for ANSI stripping), and flush."""
        if not text:
            return
        stream = self.err if stderr else self.out
        if not (self.err_color if stderr else self.color):
            text = strip_ansi(text)
        stream.write(text)
        stream.flush()
        self._fresh[stderr] = text.endswith("\n")

    def line(self, text: str, *, stderr: bool = False) -> None:
        """Write `text` as a block: on a fresh line, ending with a newline."""
        start = "" if self._fresh[stderr] else "\n"
        end = "" if text.endswith("\n") else "\n"
        self.write(start + text + end, stderr=stderr)

    def note(self, text: str) -> None:
        """A line for the person on stderr (progress, what is followed), never data."""
        self.line(text, stderr=True)
