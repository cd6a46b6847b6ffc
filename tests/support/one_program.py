"""The one program as tests restart it: killed (SIGKILL) or stopped, and started again on the
same data folder and port, with its bus's database (``bus.db``) to read what it committed."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .stack import OneProgramStack


class Program:
    """``cellbus serve`` on a data folder of its own."""

    def __init__(self, stack: OneProgramStack, data_dir: Path) -> None:
        self.stack = stack
        self.url = stack.urls[0]
        self.db = data_dir / "bus.db"

    def kill(self) -> None:
        """SIGKILL: nothing is flushed, nothing is said to anyone."""
        self.stack.kill()

    def start(self) -> None:
        self.stack.start_again()

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """Read the bus's database as the program left it so far (read only)."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
            return db.execute(sql, params).fetchall()

    def committed(self, sql: str, *params: object) -> bool:
        """Whether the count `sql` makes is not 0 yet."""
        return bool(self.query(sql, *params)[0][0])


@contextlib.contextmanager
def started_program(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Program]:
    """A one program of its own (logs and data in new folders named after `name`), which
    checkpoints a session 0.1 s after its last run, closed at the end."""
    logs = tmp_path_factory.mktemp(f"{name}-logs")
    data = tmp_path_factory.mktemp(f"{name}-data")
    stack = OneProgramStack(logs, data, checkpoint_delay=0.1)
    try:
        yield Program(stack, data)
    finally:
        stack.close()
