"""The warm template process that new session processes are forked from.

The worker starts one template (``python -m cellbus_kernel.template FD``) with a scrubbed
environment and no inherited connections. The template imports IPython and builds a shell
once; each new session is then a ``fork()`` of it, which answers its first request in
milliseconds instead of the half second a fresh interpreter needs. A template that had to
compile what it imported (no bytecode cache yet) starts once more before forking anything,
so that sessions share a heap without the compiler's leftovers (`_start_again`).

Control protocol on the socket FD (one JSON object per line from the template):

- worker -> template: ``{"spawn": {"role": R, "output_cap": N, "sandbox": {...},
  "parallel": {...}}}`` with the session's socket attached (SCM_RIGHTS); ``role`` is
  `spawner.Role` (a session process, or a Dask worker of one); ``sandbox`` is a
  `sandbox.Spec`: the session, its folder, its user, ports and limits; ``parallel`` what a
  session's Dask scheduler needs (`cluster.Settings`);
- template -> worker: ``{"spawned": PID}``, and ``{"exited": PID, "status": WAITSTATUS}``
  whenever a session process ends (the template is their parent and reaps them).

The template ends when the worker does (PR_SET_PDEATHSIG, and end of file on the socket).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import msgspec

from . import isolation, sandbox

if TYPE_CHECKING:  # child is imported after the template's setup, not at its start
    from .child import CellbusShell

_children: set[int] = set()
"""Session processes alive, killed if the worker goes away."""
_tasks = sandbox.TaskCounts()
"""Tasks each session user runs (for its process limit)."""


def main() -> None:
    # The template builds what sessions share without collecting (as CPython's documentation
    # of gc.freeze advises): a collection frees objects between the shared ones, and forks
    # then put their own objects in those holes, copying the pages (0.1-0.15 MiB per idle
    # session). What the build left, garbage too, is frozen with the rest: out of every later
    # collection, here and in the forks, so never written to.
    gc.disable()
    control = socket.socket(fileno=int(sys.argv[1]))
    isolation.die_with_parent()
    isolation.forbid_inspection()
    shell = _warm_shell()
    policy = sandbox.Policy.for_this_system()
    spare = sandbox.SpareRules(policy)
    gc.freeze()
    gc.enable()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ, "control")
    selector.register(wake_read, selectors.EVENT_READ, "signal")
    buffer = b""

    def send(obj: dict[str, Any]) -> None:
        control.sendall(json.dumps(obj).encode() + b"\n")

    while True:
        for key, _ in selector.select():
            if key.data == "signal":
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_read, 4096)
                for pid, status in _reap():
                    send({"exited": pid, "status": status})
                _tasks.refresh()  # a session's processes are gone
                continue
            data, fds, _, _ = socket.recv_fds(control, 65536, 16)
            if not data:
                _kill_children()
                os._exit(0)
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)["spawn"]
                spec = msgspec.convert(request["sandbox"], sandbox.Spec)
                tasks = _tasks.get(sandbox.session_uid(spec))
                session_fd = fds.pop(0)
                rules = spare.take(spec)
                sandbox.set_environment(spec)
                pid = os.fork()
                if pid == 0:
                    enter = functools.partial(policy.enter, spec, rules, tasks)
                    plumbing = (control, selector, wake_read, wake_write)
                    _become_session(shell, session_fd, request, enter, plumbing)
                os.close(session_fd)
                if rules is not None:
                    rules.close()  # the child's copy is the child's alone
                _children.add(pid)
                send({"spawned": pid})
                # Off the path of the fork just made: the next ruleset, the user's tasks.
                spare.refill(spec)
                _tasks.refresh()


def _warm_shell() -> CellbusShell:
    """IPython imported and a shell built (`child.prepare_shell`), from the bytecode cache."""
    started = time.time()
    from . import child

    shell = child.prepare_shell()
    if len(sys.argv) == 2 and _compiled_since(started):
        _start_again()
    return shell


def _compiled_since(started: float) -> bool:
    """Whether this process wrote the bytecode cache of a module it imported, that is
    compiled it from source: the first start after an install that compiles nothing ahead
    (``uv sync``), or after a change to the code. (The file system's clock lags a little:
    a second of margin; a cache dated in the future was not written now.)"""
    earliest, latest = started - 1.0, time.time() + 1.0
    for module in list(sys.modules.values()):
        cached = getattr(module, "__cached__", None)
        if isinstance(cached, str):
            with contextlib.suppress(OSError):
                if earliest <= os.stat(cached).st_mtime <= latest:
                    return True
    return False


def _start_again() -> NoReturn:
    """Replace this process with a fresh template, once (the extra argument says so).

    Compiling IPython leaves the heap full of holes (its syntax trees, freed); the session
    processes, which share the template's pages, fill them with their own objects and copy
    the pages they land on: 0.8-0.9 MiB more per idle session, and 5 MiB more in the
    template. The second start reads the bytecode just written. Same process, same socket
    (inherited: the worker passed it), no session forked yet."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [*sys.orig_argv, "compiled"])


Plumbing = tuple[socket.socket, selectors.BaseSelector, int, int]
"""The template's control socket, selector and signal wake pipe, which a child drops."""


def _become_session(
    shell: CellbusShell,
    session_fd: int,
    request: dict[str, Any],
    enter: Callable[[], object],
    plumbing: Plumbing,
) -> None:
    """In the forked child: drop the template's plumbing, `enter` the sandbox, serve."""
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control, selector, *wake_fds = plumbing
        selector.close()
        control.close()
        for fd in wake_fds:
            os.close(fd)
        os.setsid()  # a terminal's Ctrl-C reaches the worker, not every session
        enter()
        isolation.allow_inspection()  # for its own user's debuggers; the template stays closed
        sock = socket.socket(fileno=session_fd)
        if request.get("role") == "dask-worker":
            from . import dask_worker

            dask_worker.serve(sock)
        from . import child

        child.serve(shell, sock, int(request["output_cap"]), request.get("parallel") or {})
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(1)


def _reap() -> list[tuple[int, int]]:
    ended = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        _children.discard(pid)
        ended.append((pid, status))
    return ended


def _kill_children() -> None:
    for pid in _children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
