"""The warm template process that new session processes are forked from.

The worker starts one template (``python -m cellbus_kernel.template FD``) with a scrubbed
environment and no inherited connections. The template imports IPython and builds a shell
once; each new session is then a ``fork()`` of it, which answers its first request in
milliseconds instead of the half second a fresh interpreter needs. A template that had to
compile what it imported (no bytecode cache yet) starts once more before forking anything,
so that sessions share a heap without the compiler's leftovers (`_start_again`).

Control protocol on the socket FD (one JSON object per line from the template):

- worker -> template: ``{"spare": {"sandbox": {...}}}`` with a socket attached (SCM_RIGHTS):
  fork a spare process, which waits on that socket for its session. ``sandbox`` is the
  `sandbox.Spec` its session will most likely have (the worker's, without a session): the
  spare builds its Landlock ruleset for it ahead;
- template -> worker: ``{"spawned": PID}``, and ``{"exited": PID, "status": WAITSTATUS}``
  whenever a process ends (the template is their parent and reaps them).

**Spares.** Forking the template (40 MiB) and a fresh fork's first steps (the copy-on-write
faults of its first writes, dropping the template's plumbing, building a Landlock ruleset)
took 8-10 ms of the 13 ms a session process took to be ready, on the path of every new and
restored session. So each process is forked ahead of need: the worker keeps one spare ready
(named `isolation.SPARE_NAME` until then) and hands it a session itself, with an
`frames.Assign` frame on the spare's socket, which becomes the session's pipe; the template
is not on that path. While it waits, the spare also runs an empty cell
(`child.warm_up_spare`), so the pages a first cell writes are copied before the session
needs them. Given its session, it enters that session's sandbox (`sandbox.Policy.enter`)
and serves it (`child.serve`, or `dask_worker.serve`). Until then it holds nothing of any
session, runs no one's code and talks only to the worker; one whose worker closes the
socket exits. Measured on its own: from the request to `Ready` 13 ms before, 3-4 ms now.

The template ends when the worker does (PR_SET_PDEATHSIG, and end of file on the socket).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any, NoReturn

import msgspec

from . import frames, isolation, sandbox

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
    plumbing = (control, selector, wake_read, wake_write)
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
                request = json.loads(line)["spare"]
                expected = msgspec.convert(request["sandbox"], sandbox.Spec)
                tasks = _tasks.get(sandbox.session_uid(expected))
                spare_fd = fds.pop(0)
                # Named before the fork, so that it never shows as a session's process.
                name = isolation.rename_process(isolation.SPARE_NAME)
                pid = os.fork()
                if pid == 0:
                    _be_spare(shell, policy, plumbing, spare_fd, expected, tasks, name)
                isolation.rename_process(name)
                os.close(spare_fd)  # the spare's alone
                _children.add(pid)
                send({"spawned": pid})
                _tasks.refresh()


Plumbing = tuple[socket.socket, selectors.BaseSelector, int, int]
"""The template's control socket, selector and signal wake pipe, which a child drops."""


def _be_spare(
    shell: CellbusShell,
    policy: sandbox.Policy,
    plumbing: Plumbing,
    fd: int,
    expected: sandbox.Spec,
    tasks: int,
    name: str,
) -> NoReturn:
    """In a fresh fork: drop the template's plumbing, get ready for a session like
    `expected`, wait for the worker's `frames.Assign`, then become that session's process
    in its sandbox. `tasks`: how many tasks `expected`'s user runs, as the template last
    counted them (`sandbox.TaskCounts`); `name`: the process's own name, once it has its
    session (`isolation.SPARE_NAME` until then)."""
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control, selector, *wake_fds = plumbing
        selector.close()
        control.close()
        for wake_fd in wake_fds:
            os.close(wake_fd)
        os.setsid()  # a terminal's Ctrl-C reaches the worker, not every session
        rules = policy.rules(expected)
        from . import child

        child.warm_up_spare(shell)
        pipe = frames.FramedSocket(socket.socket(fileno=fd))
        assign = pipe.receive()
        if not isinstance(assign, frames.Assign):  # the worker closed it: not needed
            os._exit(0)
        spec = assign.sandbox
        if not sandbox.same_rules(expected, spec):
            if rules is not None:
                rules.close()
            rules = policy.rules(spec)
        if spec.user != expected.user:  # not the user counted for
            tasks = sandbox.tasks_of(sandbox.session_uid(spec))
        isolation.rename_process(name)  # a session's process, or a Dask worker's
        sandbox.set_environment(spec)
        policy.enter(spec, rules, tasks)
        isolation.allow_inspection()  # for its own user's debuggers; the template stays closed
        if assign.role is frames.Role.DASK_WORKER:
            from . import dask_worker

            dask_worker.serve(pipe)
        child.serve(shell, pipe, assign.output_cap, assign.parallel)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(1)


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
