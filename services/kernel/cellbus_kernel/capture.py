"""stdout and stderr of a session process, published while code runs.

Writes are buffered and flushed as one `stream` output when the buffer is older than
`interval` seconds or larger than `max_chunk` characters, so a loop that prints 100,000 lines
yields a few dozen messages, not 100,000. Each execution may publish at most `cap` characters
of stream output; the rest is counted and dropped, and `end_cell` reports what was cut.

Output written to file descriptors 1 and 2 (C extensions, subprocesses) is read from pipes by
threads and joins the same buffers.
"""

from __future__ import annotations

import _thread
import io
import os
import threading
import time
from collections.abc import Callable

Sink = Callable[[str, str], None]
"""Called with (stream name, text) to publish one stream output."""


class OutputBudget:
    """The per-execution cap on stream output, shared by stdout and stderr."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.used = 0
        self.dropped_chars = 0
        self.dropped_lines = 0
        self.lock = threading.Lock()

    def reset(self) -> None:
        with self.lock:
            self.used = self.dropped_chars = self.dropped_lines = 0

    def take(self, text: str) -> str:
        """The part of `text` that fits; the rest is counted as dropped."""
        with self.lock:
            room = self.cap - self.used
            if len(text) <= room:
                self.used += len(text)
                return text
            kept, cut = text[: max(room, 0)], text[max(room, 0) :]
            self.used = self.cap
            self.dropped_chars += len(cut)
            self.dropped_lines += cut.count("\n")
            return kept

    def report(self) -> str | None:
        with self.lock:
            if not self.dropped_chars:
                return None
            return (
                f"\n[cellbus: output truncated: {self.dropped_chars:,} more characters "
                f"({self.dropped_lines:,} lines) were not shown; the limit is {self.cap:,} "
                "characters per execution]\n"
            )


class CapturedStream(io.TextIOBase):
    """A text stream that buffers writes and hands them to `sink` in chunks."""

    def __init__(
        self,
        name: str,
        sink: Sink,
        budget: OutputBudget,
        interval: float,
        max_chunk: int,
        pending: threading.Event | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.pending = pending or threading.Event()  # set when a buffer starts filling
        self._sink = sink
        self._budget = budget
        self._interval = interval
        self._max_chunk = max_chunk
        self._parts: list[str] = []
        self._size = 0
        self._since = 0.0
        self._lock = threading.RLock()

    # io.TextIOBase API --------------------------------------------------------------------
    encoding = "utf-8"  # shadows io's read-only descriptor (typeshed: a plain `str` attribute)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return 1 if self.name == "stdout" else 2

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if not text:
            return 0
        with self._lock:
            if not self._parts:
                self._since = time.monotonic()
                self.pending.set()
            self._parts.append(text)
            self._size += len(text)
            if self._size >= self._max_chunk:
                self._flush_locked()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    # for the flusher thread ---------------------------------------------------------------
    @property
    def buffered(self) -> bool:
        return bool(self._parts)

    def flush_if_due(self, now: float) -> None:
        with self._lock:
            if self._parts and now - self._since >= self._interval:
                self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._parts:
            return
        text = "".join(self._parts)
        self._parts.clear()
        self._size = 0
        kept = self._budget.take(text)
        if kept:
            self._sink(self.name, kept)


class OutputCapture:
    """Installs captured sys.stdout/sys.stderr and fd 1/2 pipes, and flushes them on a timer."""

    def __init__(self, sink: Sink, cap: int, interval: float = 0.05, max_chunk: int = 1 << 20):
        self.budget = OutputBudget(cap)
        self.pending = threading.Event()
        self.stdout = CapturedStream("stdout", sink, self.budget, interval, max_chunk, self.pending)
        self.stderr = CapturedStream("stderr", sink, self.budget, interval, max_chunk, self.pending)
        self._interval = interval
        self._sink = sink

    def install(self) -> None:
        import sys

        sys.stdout = self.stdout
        sys.stderr = self.stderr
        for fd, stream in ((1, self.stdout), (2, self.stderr)):
            self._redirect_fd(fd, stream)
        self.start_flusher()

    def start_flusher(self) -> None:
        start_daemon(self._flush_forever)

    def _redirect_fd(self, fd: int, stream: CapturedStream) -> None:
        read_end, write_end = os.pipe()
        os.dup2(write_end, fd)
        os.close(write_end)

        def pump() -> None:
            with open(read_end, "rb", buffering=0) as pipe:
                while chunk := pipe.read(65536):
                    stream.write(chunk.decode("utf-8", errors="replace"))

        start_daemon(pump)

    def _flush_forever(self) -> None:
        """Publish buffers older than the interval; asleep while nothing is buffered, so an
        idle session costs no wake-ups (a write that starts a buffer sets `pending`)."""
        while True:
            self.pending.wait()
            self.pending.clear()
            while True:
                time.sleep(self._interval / 2)
                now = time.monotonic()
                self.stdout.flush_if_due(now)
                self.stderr.flush_if_due(now)
                if not (self.stdout.buffered or self.stderr.buffered):
                    break

    def flush(self) -> None:
        self.stdout.flush()
        self.stderr.flush()

    def begin_cell(self) -> None:
        self.flush()
        self.budget.reset()

    def end_cell(self) -> None:
        self.flush()
        note = self.budget.report()
        if note:
            self._sink("stderr", note)


def start_daemon(target: Callable[..., object], *args: object) -> None:
    """Run `target(*args)` in a new thread that dies with the process, without waiting for
    it to start. `threading.Thread.start` waits until the new thread runs, which on a busy
    machine is a wait for the scheduler: a new session process starts four threads on its
    way to serving (2-7 ms of a restore's path, measured); these start while the main thread
    goes on. (A session process ends with ``os._exit``: no thread is joined.)"""
    _thread.start_new_thread(target, args)
