"""Saving and loading a session's namespace with dill, inside the session process.

This runs in the session process only: a checkpoint is code (unpickling runs whatever the
pickle says), so it is loaded nowhere else, and only after the worker has verified its
signature (`checkpoints`). The worker never unpickles anything.

What is saved: every name of the user namespace except IPython's own (its input and output
caches ``_``, ``__``, ``___``, ``_i``, ``_ii``, ``_iii``, ``_iN``, ``_N``, ``_ih``, ``_oh``,
``_dh``, ``In``, ``Out``, ``get_ipython``, ``exit``, ``quit``, the names IPython put there
itself and still holds, and dunder names such as ``__builtins__``), and Dask's clients and
futures (`cellbus.parallel`: they belong to the process). Modules are saved by
reference (``np`` is re-imported on load); functions and classes defined in cells by value.

All names are pickled together, so that two names bound to one object are still one object
after a restore. When that fails, each name is tried on its own to find those that cannot be
saved (a generator, a socket, a lock held...), and the rest are saved together.

File objects are saved as their name and mode and restored closed, and a load opens no file
for writing (`open_files`); the names that held open files are reported, so that users know.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Mapping
from typing import Any, NamedTuple

from .open_files import FoundOpenFile, Pickler, Unpickler, guard

IPYTHON_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit"})
_CACHES = re.compile(r"_+|_\d+|_i{1,3}|_i\d+|_ih|_oh|_dh|__.*__")
"""IPython's input and output caches, and dunder names."""


class TooLarge(Exception):
    """The pickle grew past the limit."""


class _Bounded(io.BytesIO):
    """A BytesIO that refuses to grow past `limit` bytes (so a huge namespace costs the
    session process at most `limit` bytes of memory before it is given up)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def write(self, data: Any) -> int:
        if self.tell() + memoryview(data).nbytes > self.limit:
            raise TooLarge
        return super().write(data)


class _Counter:
    """A sink that only counts (to try pickling a value without keeping the bytes)."""

    def __init__(self, limit: int) -> None:
        self.size = 0
        self.limit = limit

    def write(self, data: Any) -> int:
        self.size += memoryview(data).nbytes
        if self.size > self.limit:
            raise TooLarge
        return len(data)


def user_names(namespace: Mapping[str, Any], hidden: Mapping[str, Any]) -> dict[str, Any]:
    """The names of `namespace` that are the user's (see the module docstring); `hidden` is
    IPython's ``user_ns_hidden``: what it put in the namespace itself."""
    return {
        name: value
        for name, value in namespace.items()
        if name not in IPYTHON_NAMES
        and not _CACHES.fullmatch(name)
        and not (name in hidden and hidden[name] is value)
        and not _left_out(value)
    }


def _left_out(value: Any) -> bool:
    """A value of Dask's distributed (a client, a future): it holds connections to the
    session's scheduler and workers, which end with the process; `cellbus.parallel` makes
    new ones when it is next used."""
    return type(value).__module__.partition(".")[0] == "distributed"


class Saved(NamedTuple):
    data: memoryview
    """The pickle."""
    skipped: list[str]
    """Names left out: they cannot be pickled."""
    open_files: list[str]
    """Names whose values hold files that were open: a restore gives them back closed."""


def _dump(names: dict[str, Any], sink: Any, *, stop_at_open_file: bool = False) -> Pickler:
    pickler = Pickler(sink, stop_at_open_file=stop_at_open_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pickler.dump(names)
    return pickler


def _savable(value: Any, limit: int) -> bool:
    try:
        _dump({"value": value}, _Counter(limit))
    except TooLarge:
        return True  # savable, just big: the whole checkpoint will be too large
    except Exception:
        return False
    return True


def _holds_open_file(value: Any, limit: int) -> bool:
    try:
        _dump({"value": value}, _Counter(limit), stop_at_open_file=True)
    except FoundOpenFile:
        return True
    except Exception:
        return False
    return False


def save(names: dict[str, Any], limit: int) -> Saved:
    """The pickle of `names`, the names left out because they cannot be pickled, and the
    names that hold open files. Raises `TooLarge` past `limit` bytes; other exceptions if
    even the rest cannot be saved."""
    skipped: list[str] = []
    buffer = _Bounded(limit)
    try:
        pickler = _dump(names, buffer)
    except TooLarge:
        raise
    except Exception:
        skipped = sorted(name for name, value in names.items() if not _savable(value, limit))
        names = {k: v for k, v in names.items() if k not in skipped}
        buffer = _Bounded(limit)
        pickler = _dump(names, buffer)
    open_files: list[str] = []
    if pickler.open_files:  # rare: find which names hold them (pickling each into a counter)
        open_files = sorted(n for n, v in names.items() if _holds_open_file(v, limit))
    return Saved(buffer.getbuffer(), skipped, open_files)


def load(data: bytes) -> dict[str, Any]:
    """The names saved in `data` (already verified by the worker). No file is opened for
    writing meanwhile (`open_files.guard`)."""
    with warnings.catch_warnings(), guard():
        warnings.simplefilter("ignore")
        names = Unpickler(io.BytesIO(data)).load()
    if not isinstance(names, dict) or not all(isinstance(k, str) for k in names):
        raise TypeError("the checkpoint does not hold a namespace")
    return names
