"""What runs inside a session process: an IPython shell served over the worker's pipe.

`prepare_shell` runs in the template process, before any fork, so that every session process
starts with IPython imported and a shell built; `serve` runs in the forked session process.

Two threads share the work, as a Jupyter kernel's shell and control channels do: the main
thread runs executions one at a time, while the reader thread answers questions (`questions`:
completion, inspection, history...) at once, even while a long cell runs, hands the running
execution the line it waits for (`stdin`), and turns an interrupt frame into SIGINT for the
main thread (KeyboardInterrupt in user code) while that execution runs. Checkpoints and
restores (`namespace`), and clients' comm messages (`comms`), also run in the main thread,
between executions, never during one.
"""

from __future__ import annotations

import contextlib
import os
import platform
import queue
import signal
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import IPython
from IPython.core import page, payloadpage
from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell
from traitlets import Type

from . import comms, frames, namespace, packages, questions, sandbox
from .capture import OutputCapture, start_daemon
from .cluster import CLUSTER
from .stdin import STDIN


class _Channel:
    """Where the shell's outputs go: the pipe, tagged with the request being served."""

    def __init__(self) -> None:
        self.pipe: frames.FramedSocket | None = None
        self.parent_id = ""
        self.capture: OutputCapture | None = None

    def send(
        self, msg_type: str, content: dict[str, Any], metadata: dict[str, Any] | None = None
    ) -> None:
        if self.pipe is not None:
            output = frames.Output(
                id=self.parent_id, msg_type=msg_type, content=content, metadata=metadata or {}
            )
            self.pipe.send(output)

    def stream(self, name: str, text: str) -> None:
        self.send("stream", {"name": name, "text": text})

    def flush_streams(self) -> None:
        if self.capture is not None:
            self.capture.flush()


CHANNEL = _Channel()


class _Interrupts:
    """Which execution runs, so an interrupt reaches exactly that one.

    An interrupt names its execution. The reader thread signals the main thread only while
    that execution runs; one that arrives before its execution starts is remembered and
    stops it at once. SIGINT is never sent between executions, so it cannot be lost there
    or hit the wrong cell.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: str | None = None
        self.early: set[str] = set()

    def request(self, execution_id: str) -> None:
        with self.lock:
            if self.running == execution_id:
                main = threading.main_thread().ident
                assert main is not None  # it has started: it runs this process
                signal.pthread_kill(main, signal.SIGINT)
            else:
                self.early.add(execution_id)

    def begin(self, execution_id: str) -> bool:
        """Mark `execution_id` running; False if it was interrupted before it started."""
        with self.lock:
            interrupted = execution_id in self.early
            # Any other early interrupt was for an execution that has already ended.
            self.early.clear()
            self.running = None if interrupted else execution_id
            return not interrupted

    def end(self) -> None:
        with self.lock:
            self.running = None


INTERRUPTS = _Interrupts()


class FeedDisplayPublisher(DisplayPublisher):
    """`display()` and `clear_output()` as display_data / update_display_data / clear_output."""

    def publish(
        self,
        data: dict[str, Any],
        metadata: dict[str, Any] | None = None,
        source: str | None = None,
        *,
        transient: dict[str, Any] | None = None,
        update: bool = False,
        **kwargs: Any,
    ) -> None:
        CHANNEL.flush_streams()
        content = {"data": data, "metadata": metadata or {}, "transient": transient or {}}
        CHANNEL.send("update_display_data" if update else "display_data", content)

    def clear_output(self, wait: bool = False) -> None:
        CHANNEL.flush_streams()
        CHANNEL.send("clear_output", {"wait": wait})


class FeedDisplayHook(DisplayHook):
    """The value of a cell's last expression, as execute_result."""

    def start_displayhook(self) -> None:
        self._content: dict[str, Any] = {"data": {}, "metadata": {}}

    def write_output_prompt(self) -> None:
        self._content["execution_count"] = self.prompt_count

    def write_format_data(self, format_dict: dict[str, Any], md_dict: Any = None) -> None:
        self._content["data"] = format_dict
        self._content["metadata"] = md_dict or {}

    def finish_displayhook(self) -> None:
        CHANNEL.flush_streams()
        if self._content.get("data"):
            self._content.setdefault("execution_count", self.prompt_count)
            CHANNEL.send("execute_result", self._content)


class CellbusShell(InteractiveShell):
    """IPython's shell with its outputs sent to the feed instead of the terminal."""

    display_pub_class = Type(FeedDisplayPublisher)
    displayhook_class = Type(FeedDisplayHook)
    last_error: dict[str, Any] | None = None

    def _showtraceback(self, etype: Any, evalue: Any, stb: list[str]) -> None:
        CHANNEL.flush_streams()
        text = str(evalue)
        if hint := sandbox.limit_hint(evalue):
            text = f"{text}. {hint}"
            stb = [*stb, hint]
        error = {"ename": etype.__name__, "evalue": text, "traceback": stb}
        self.last_error = error
        CHANNEL.send("error", error)

    def enable_gui(self, gui: Any = None) -> None:  # there is no GUI event loop here
        pass

    def set_next_input(self, s: str, replace: bool = False) -> None:
        """``%load`` and friends: the text goes to the client, which puts it in a cell (a
        ``set_next_input`` payload of the execute_reply, as in ipykernel)."""
        payload = {"source": "set_next_input", "text": s, "replace": replace}
        self.payload_manager.write_payload(payload)  # type: ignore[union-attr]  # built by the shell

    @contextlib.contextmanager
    def _tee(self, channel: str) -> Iterator[None]:
        """IPython 9 wraps stdout and stderr during every cell to keep each write in its
        output history (`history_manager.outputs`), which cellbus never reads: outputs live
        on the feed and on the saved cells. The wrapper was half of a printing loop's time
        and kept every printed line for the session's life, so it is left out."""
        yield


def prepare_shell() -> CellbusShell:
    """Build the shell once, in the template, so forks start with it ready."""
    from traitlets.config import Config

    config = Config()
    # History on, in memory: the sandbox allows no database file, and a session's history
    # lives as long as its namespace (a checkpoint keeps both, `questions.kept_history`).
    config.HistoryManager.enabled = True
    config.HistoryManager.hist_file = ":memory:"
    config.InteractiveShell.colors = "linux"
    config.Completer.use_jedi = False
    config.InteractiveShell.autocall = 0
    # Matplotlib is not imported here (it is heavy); the session's environment names the
    # inline backend (MPLBACKEND), which publishes figures as image/png when a cell ends.
    shell = CellbusShell.instance(config=config)
    # Help (``len?``) goes to the execute_reply as a ``page`` payload, as in ipykernel, not
    # into the cell's outputs.
    shell.set_hook("show_in_pager", page.as_hook(payloadpage.page), 99)
    comms.install(CHANNEL)
    comms.preload_widgets()
    packages.prepare(shell)  # %pip, %uv, !pip: the worksheet's own environment
    _warm_up(shell)
    return shell


def warm_up_spare(shell: CellbusShell) -> None:
    """In a spare, while it waits (see `template`): run an empty cell, as the
    template did (`_warm_up`). A fork's first cell writes to hundreds of pages it shares
    with the template, each copied on that first write; done here, the copies are made
    before the session exists rather than on its first request (the first cell of a new
    process: 6.3 ms before, 4.9 ms after, the process's start 5.3 -> 3.3 ms). Nothing is
    kept: no number, no history, nothing in the user's namespace."""
    shell.run_cell("pass", store_history=False, silent=False)


def _warm_up(shell: CellbusShell) -> None:
    """Take once, in the template, the paths every session takes: IPython imports much of what
    it needs for running a cell, formatting a traceback, completing and inspecting on first
    use, which would otherwise cost each new session (the first traceback alone ~150 ms).

    The cell is run as sessions run theirs, not silent: on the first cell that is not,
    IPython 9 imports and builds its transcript logger (``shell.logger``), and a session
    that did so itself wrote ~0.6 MiB of its own pages, for it compiled
    ``IPython/core/logger.py`` anew (the sandbox keeps it from writing the bytecode cache).
    Without history the cell gets no number and leaves nothing in the user's namespace."""
    shell.run_cell("pass", store_history=False, silent=False)
    try:
        raise ValueError("warm-up")
    except ValueError as exc:
        shell.InteractiveTB.structured_traceback(type(exc), exc, exc.__traceback__)
    questions.complete(shell, frames.Complete(id="warm-up", code="pri", cursor_pos=3))
    shell.object_inspect_mime("print")
    if shell.display_formatter is not None:
        shell.display_formatter.format(1)


def serve(
    shell: CellbusShell, pipe: frames.FramedSocket, output_cap: int, parallel: dict[str, Any]
) -> None:
    """Serve requests on `pipe` until the worker goes away; never returns. `parallel`: where
    the session's Dask scheduler may listen (`cluster.Settings`).

    `Ready` goes first: the setup below (some milliseconds of a fresh fork's page faults)
    then overlaps with the worker's own work for the new process, and what the worker sends
    meanwhile waits on the socket for the reader thread."""
    pipe.send(
        frames.Ready(
            pid=os.getpid(),
            execution_count=shell.execution_count,
            python_version=platform.python_version(),
            ipython_version=IPython.__version__,
            banner=f"Python {platform.python_version()} on cellbus, IPython {IPython.__version__}",
        )
    )
    packages.activate()  # the worksheet's packages importable, before any user code
    CLUSTER.configure(parallel, pipe.send)
    CHANNEL.pipe = pipe
    CHANNEL.capture = OutputCapture(CHANNEL.stream, cap=output_cap)
    CHANNEL.capture.install()
    STDIN.install(pipe.send, CHANNEL.flush_streams)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    executions: queue.Queue[MainThreadWork] = queue.Queue()
    start_daemon(_read_requests, shell, pipe, executions)
    while True:
        try:
            request = executions.get()
        except KeyboardInterrupt:  # a stray SIGINT (from outside cellbus) between executions
            continue
        with contextlib.suppress(KeyboardInterrupt):
            if isinstance(request, frames.Execute):
                _execute(shell, pipe, request)
            elif isinstance(request, frames.CommIn):
                _handle_comm(pipe, request)
            elif isinstance(request, frames.Checkpoint):
                _checkpoint(shell, pipe, request)
            else:
                _restore(shell, pipe, request)


MainThreadWork = frames.Execute | frames.CommIn | frames.Checkpoint | frames.Restore


def _read_requests(
    shell: CellbusShell, pipe: frames.FramedSocket, executions: queue.Queue[MainThreadWork]
) -> None:
    while True:
        try:
            request = pipe.receive()
        except Exception:
            request = None
        if request is None:  # the worker has gone: so does this process
            os._exit(0)
        if isinstance(request, frames.Execute | frames.CommIn | frames.Checkpoint | frames.Restore):
            executions.put(request)
        elif isinstance(request, frames.Interrupt):
            INTERRUPTS.request(request.id)
        elif isinstance(request, frames.InputValue):
            STDIN.deliver(request)
        elif isinstance(request, frames.FileLimit):
            sandbox.set_file_limit(request.soft)
        elif isinstance(request, frames.ParallelGranted):
            CLUSTER.deliver(request)
        elif isinstance(request, frames.ParallelPorts | frames.Assign):
            continue  # only ever sent to a Dask worker's process, or to a spare
        else:
            pipe.send(frames.Answer(id=request.id, content=questions.answer(shell, request)))


def _execute(shell: CellbusShell, pipe: frames.FramedSocket, request: frames.Execute) -> None:
    CHANNEL.parent_id = request.id
    assert CHANNEL.capture is not None
    CHANNEL.capture.begin_cell()
    shell.last_error = None
    failed = True
    count_before = shell.execution_count
    payload_manager = shell.payload_manager
    assert payload_manager is not None
    payload_manager.clear_payload()
    try:
        if not INTERRUPTS.begin(request.id):
            raise KeyboardInterrupt
        STDIN.allow(request.id if request.allow_stdin else None)
        result = shell.run_cell(
            request.code, store_history=request.store_history, silent=request.silent
        )
        failed = result.error_before_exec is not None or result.error_in_exec is not None
    except BaseException as exc:  # what escapes IPython is reported, not raised
        shell.last_error = {
            "ename": type(exc).__name__,
            "evalue": str(exc),
            "traceback": traceback.format_exception_only(exc),
        }
        CHANNEL.send("error", shell.last_error)
    finally:
        # From here on the reply must get out whole: hold off any interrupt still in flight.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        STDIN.allow(None)
        INTERRUPTS.end()
    try:
        with pipe.together():  # the last output and the reply
            CHANNEL.capture.end_cell()
            # IPython counts an execution that ran with history on; one it did not count
            # (silent, without history, or stopped before it started) has no number.
            counted = shell.execution_count > count_before
            content: dict[str, Any] = {
                "execution_count": count_before if counted else None,
                "payload": payload_manager.read_payload(),  # whatever the outcome, as ipykernel
            }
            payload_manager.clear_payload()
            if failed:
                content.update(status="error", **(shell.last_error or _unknown_error()))
            else:
                content.update(status="ok", user_expressions=_user_expressions(shell, request))
            pipe.send(frames.Done(id=request.id, content=content))
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _checkpoint(shell: CellbusShell, pipe: frames.FramedSocket, request: frames.Checkpoint) -> None:
    """Pickle the user namespace; interruptible (an interrupt frame naming this checkpoint)."""
    reply = frames.Checkpointed(id=request.id, data=b"", skipped=[], error="interrupted")
    try:
        if INTERRUPTS.begin(request.id):
            names = namespace.user_names(shell.user_ns, shell.user_ns_hidden)
            saved = namespace.save(names, request.max_bytes)
            reply = frames.Checkpointed(
                id=request.id,
                data=saved.data,  # type: ignore[arg-type]  # msgspec encodes a memoryview as bytes, uncopied
                skipped=saved.skipped,
                open_files=saved.open_files,
                history=questions.kept_history(shell),
            )  # fmt: skip
    except namespace.TooLarge:
        reply = frames.Checkpointed(id=request.id, data=b"", skipped=[], too_large=True)
    except KeyboardInterrupt:  # the worker gave up waiting: answer "interrupted"
        pass
    except Exception as exc:
        reply.error = f"{type(exc).__name__}: {exc}"
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        INTERRUPTS.end()
    try:
        pipe.send(reply)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _restore(shell: CellbusShell, pipe: frames.FramedSocket, request: frames.Restore) -> None:
    try:
        names = namespace.load(request.data)
    except BaseException as exc:  # whatever the pickle raised, the process goes on, fresh
        pipe.send(frames.Restored(id=request.id, ok=False, error=f"{type(exc).__name__}: {exc}"))
        return
    shell.user_ns.update(names)
    shell.execution_count = request.execution_count
    try:
        questions.restore_history(shell, request.history)
    except Exception:  # a namespace without its history is still the namespace
        traceback.print_exc()
    pipe.send(frames.Restored(id=request.id, ok=True, names=sorted(names)))


def _unknown_error() -> dict[str, Any]:
    return {"ename": "UnknownError", "evalue": "the execution failed", "traceback": []}


def _user_expressions(shell: CellbusShell, request: frames.Execute) -> dict[str, Any]:
    if not request.user_expressions:
        return {}
    values: dict[str, Any] = shell.user_expressions(request.user_expressions)
    return values


def _handle_comm(pipe: frames.FramedSocket, request: frames.CommIn) -> None:
    """A client's comm message, between executions; what its handler publishes has it as
    parent. Interruptible as an execution is (an ``interact`` callback runs user code).
    Answered (empty) once handled, so the worker can say ``idle``."""
    CHANNEL.parent_id = request.id
    try:
        if INTERRUPTS.begin(request.id):
            comms.handle(request)
    except Exception:  # the manager reports handler failures; this is one of its own
        traceback.print_exc()
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        INTERRUPTS.end()
        try:
            CHANNEL.flush_streams()
            pipe.send(frames.Answer(id=request.id, content={}))
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
