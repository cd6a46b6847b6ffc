"""Open files in a checkpoint: saved as a name and a mode, restored closed, never reopened.

dill saves an open file object as "reopen this path with this mode" and does so on load, so
restoring a namespace that held ``open("results.txt", "w")`` truncated that file: in the
session itself after every hibernation, failover or drain, and in the owner's directory when a
viewer forked the session. Reopening even for reading is not safe either (a FIFO blocks the
restore, the path may name another file by then, and a fork must not touch the directory of
the session it was forked from), so a restore never opens a file at all:

- **Saving** (`Pickler`, dill's pickler with the public ``persistent_id`` hook): every file
  object (``io.FileIO``, the buffered readers and writers, ``io.TextIOWrapper``, their
  ``_pyio`` twins, ``tempfile`` wrappers, subclasses of these, open or closed, wherever it is:
  a name, a list, a dict, an attribute) is written as a record of its name and mode. The
  process's own ``sys.__stdin__``/``__stdout__``/``__stderr__`` are written as references.
- **Loading** (`Unpickler`): a record becomes a `ClosedFile`, which keeps the name and mode
  as they were (a relative name stays relative: it is never resolved against any directory)
  and says, when used, that the file must be opened again. A checkpoint made by plain dill
  (older ones, or a forged one) names dill's ``_create_filehandle``; that name resolves to a
  function that makes a `ClosedFile` too.
- **Whatever else a pickle calls** (`guard`): while a checkpoint loads, an audit hook
  (``sys.addaudithook``, installed by the first restore of a process) refuses, in the loading
  thread, every open for writing, creating, truncating or appending, removing, renaming,
  linking or changing the mode of a file, and starting a process; libraries that write a cache
  while being imported get the ``PermissionError`` they already handle. This is defence in
  depth: a pickle is code, and code can reach libc through ``ctypes`` or undo the guard; what
  keeps forged checkpoints out is the signature (`checkpoints`), and what bounds any session's
  code is its sandbox.
"""

from __future__ import annotations

import _pyio
import contextlib
import importlib
import io
import os
import pickle
import sys
import tempfile
import threading
import types
from collections.abc import Iterator
from typing import Any

import dill

FILE_TYPES: tuple[type, ...] = (
    io.FileIO, io.BufferedReader, io.BufferedWriter, io.BufferedRandom, io.TextIOWrapper,
    _pyio.FileIO, _pyio.BufferedReader, _pyio.BufferedWriter, _pyio.BufferedRandom,
    _pyio.TextIOWrapper,
)  # fmt: skip
"""What dill would reopen (it registers exactly these types, open or closed)."""
_TEMPFILE_WRAPPER: type[Any] = tempfile._TemporaryFileWrapper
"""``NamedTemporaryFile``'s class (the one private name used: the public function returns it).
Saved whole as one file: restoring its inner closer would delete the file by name when the
restored copy is collected, in the session it was forked from too."""
_STD_STREAMS = ("stdin", "stdout", "stderr")
_FILE_TAG, _STD_TAG, _MODULE_TAG = "cellbus:file", "cellbus:std", "cellbus:module"
SESSION_API = "cellbus"
"""The package cells import cellbus's own features from (``from cellbus import parallel``): its
modules are saved by name. dill saves a module it does not find in site-packages (an editable
install, as in ``make run``) with its state, which holds the session's Dask client."""


class ClosedFile(io.IOBase):
    """A file object that was in a checkpoint: closed, with the name and mode it had.

    Every read or write raises a ``ValueError`` that says why it is closed and how to open it
    again; ``closed`` is true and closing it again does nothing."""

    def __init__(self, name: str | int | None, mode: str) -> None:
        super().__init__()
        self._name, self._mode = name, mode
        super().close()  # IOBase.close flushes: `flush` raises only from here on
        self._restored = True

    @property
    def name(self) -> str | int | None:
        return self._name

    @property
    def mode(self) -> str:
        return self._mode

    def _error(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError(self.explanation())

    read = readline = readlines = readinto = readall = read1 = _error
    write = writelines = seek = tell = truncate = fileno = _error
    __iter__ = __next__ = __enter__ = _error

    def flush(self) -> None:
        if getattr(self, "_restored", False):
            self._error()

    def explanation(self) -> str:
        """The message every use of the file raises."""
        if not isinstance(self._name, str):
            return (
                "This unnamed temporary file was saved in the session's checkpoint and is "
                "closed: restoring a checkpoint never reopens files, and this one has no name "
                "to open again."
            )
        reopen = "r" if "b" not in self._mode else "rb"
        return (
            f"The file {self._name!r} (mode {self._mode!r}) was saved in the session's "
            f"checkpoint and is closed: restoring a checkpoint never reopens files. Open it "
            f"again, for example open({self._name!r}, {reopen!r})."
        )

    def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<ClosedFile name={self._name!r} mode={self._mode!r} (restored closed)>"


_INTERCEPTED = (*FILE_TYPES, _TEMPFILE_WRAPPER, ClosedFile, types.ModuleType)


def _record(obj: Any) -> tuple[str | int | None, str, bool]:
    """(name, mode, open) of a file object, read defensively (a detached wrapper raises)."""
    target = obj.file if isinstance(obj, _TEMPFILE_WRAPPER) else obj
    values: list[Any] = []
    for attribute, default in (("name", None), ("mode", ""), ("closed", True)):
        try:
            values.append(getattr(obj if attribute == "name" else target, attribute))
        except Exception:
            values.append(default)
    name, mode, closed = values
    if isinstance(name, os.PathLike | bytes):  # io.FileIO(Path(...)) keeps the Path
        try:
            name = os.fsdecode(name)
        except Exception:
            name = None
    if not isinstance(name, str | int):
        name = None
    return name, mode if isinstance(mode, str) else "", not closed


class FoundOpenFile(Exception):
    """Raised by a `Pickler` with ``stop_at_open_file`` at the first open file."""


class Pickler(dill.Pickler):  # type: ignore[misc]  # dill is untyped: its Pickler is Any
    """dill's pickler that writes file objects as records (see the module docstring);
    `open_files` counts those that were open."""

    def __init__(self, file: Any, *, stop_at_open_file: bool = False) -> None:
        super().__init__(file)
        self.open_files = 0
        self._stop = stop_at_open_file
        self._indexes: dict[int, int] = {}  # id(file) -> its record's index: shared stays shared

    def persistent_id(self, obj: Any) -> Any:
        if not isinstance(obj, _INTERCEPTED):
            return None
        if isinstance(obj, types.ModuleType):
            if obj.__name__.partition(".")[0] == SESSION_API:
                return (_MODULE_TAG, obj.__name__)
            return None
        for which in _STD_STREAMS:
            if obj is getattr(sys, f"__{which}__"):
                return (_STD_TAG, which)
        if isinstance(obj, ClosedFile):
            return (_FILE_TAG, self._index(obj), obj.name, obj.mode)
        name, mode, is_open = _record(obj)
        if is_open:
            if self._stop:
                raise FoundOpenFile
            self.open_files += 1
        return (_FILE_TAG, self._index(obj), name, mode)

    def _index(self, obj: Any) -> int:
        return self._indexes.setdefault(id(obj), len(self._indexes))


class Unpickler(dill.Unpickler):  # type: ignore[misc]  # dill is untyped: its Unpickler is Any
    """dill's unpickler that restores file records, and dill's own file records, closed."""

    def __init__(self, file: Any) -> None:
        super().__init__(file)
        self._files: dict[int, ClosedFile] = {}

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) == 2 and pid[0] == _STD_TAG:
            if pid[1] in _STD_STREAMS:
                return getattr(sys, f"__{pid[1]}__")
        elif isinstance(pid, tuple) and len(pid) == 2 and pid[0] == _MODULE_TAG:
            if isinstance(pid[1], str) and pid[1].partition(".")[0] == SESSION_API:
                return importlib.import_module(pid[1])
        elif isinstance(pid, tuple) and len(pid) == 4 and pid[0] == _FILE_TAG:
            _, index, name, mode = pid
            if isinstance(index, int) and isinstance(name, str | int | None):
                if isinstance(mode, str):
                    return self._files.setdefault(index, ClosedFile(name, mode))
        raise pickle.UnpicklingError(f"the checkpoint holds an unknown reference {pid!r}")

    def find_class(self, module: str, name: str) -> Any:
        if module in ("dill._dill", "dill.dill") and name == "_create_filehandle":
            return _closed_instead_of_reopened
        return super().find_class(module, name)


def _closed_instead_of_reopened(name: Any, mode: Any, *_args: Any) -> Any:
    """What dill's ``_create_filehandle`` (a plain dill checkpoint's file) loads as here."""
    std = {"<stdin>": sys.__stdin__, "<stdout>": sys.__stdout__, "<stderr>": sys.__stderr__}
    if isinstance(name, str) and name in std:
        return std[name]
    return ClosedFile(name if isinstance(name, str | int) else None, str(mode))


# -- the guard around a load ---------------------------------------------------------------
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_REFUSED_EVENTS = frozenset({
    "os.truncate", "os.remove", "os.rename", "os.rmdir", "os.link", "os.symlink", "os.chmod",
    "os.chown", "shutil.rmtree", "shutil.move", "shutil.copyfile", "subprocess.Popen",
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "pty.spawn",
})  # fmt: skip
_guarded_thread: int | None = None
_hook_installed = False
_hook_lock = threading.Lock()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _guarded_thread is None or _guarded_thread != threading.get_ident():
        return
    if event == "open":
        flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
        if flags & _WRITE_FLAGS:
            raise PermissionError(
                f"restoring a checkpoint never opens a file for writing (refused: {args[0]!r})"
            )
    elif event in _REFUSED_EVENTS:
        raise PermissionError(f"restoring a checkpoint never changes files (refused: {event})")


@contextlib.contextmanager
def guard() -> Iterator[None]:
    """Refuse, in this thread, what a restore must never do (see the module docstring)."""
    global _guarded_thread, _hook_installed
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_audit)
            _hook_installed = True
    _guarded_thread = threading.get_ident()
    try:
        yield
    finally:
        _guarded_thread = None
