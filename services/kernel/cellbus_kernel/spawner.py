"""The worker's side of the template: start it, have it fork spares, hand each its session,
learn of exits.

A `SessionProcess` is one forked session: its pid, the framed pipe to it, and a future that
resolves to its wait status when the template reaps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys

import msgspec

from .frames import MAX_FRAME, Assign, FramedStream, Role, close_writer
from .sandbox import Spec

log = logging.getLogger(__name__)


def describe_exit(status: int | None) -> str:
    """A wait status in words: 'was killed by signal 11 (SIGSEGV)', 'exited with code 3'."""
    if status is None:
        return "ended (its exit status is unknown)"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown"
        return f"was killed by signal {number} ({name})"
    if os.WIFEXITED(status):
        return f"exited with code {os.WEXITSTATUS(status)}"
    return f"ended with wait status {status}"


class SessionProcess:
    """One forked session process, as the worker sees it."""

    def __init__(self, pid: int, pipe: FramedStream, exited: asyncio.Future[int | None]) -> None:
        self.pid = pid
        self.pipe = pipe
        self.exited = exited

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def signal_group(self, signum: int) -> None:
        """Signal the process and what it started in its process group (it leads one: the
        template calls setsid), e.g. a ``!dd`` writing in the background."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)
        self.signal(signum)

    async def kill(self, timeout: float = 5.0) -> int | None:
        """SIGKILL the process, close the pipe, and wait for its wait status."""
        self.signal(signal.SIGKILL)
        await self.pipe.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                return await asyncio.shield(self.exited)
        return None


class Spawner:
    """Owns the template process and the spare forked from it: a session process is the
    spare, given its session (see `template`'s docstring), and the next spare is forked at
    once, off the session's path."""

    def __init__(self, env: dict[str, str], sandbox: Spec, max_frame: int = MAX_FRAME) -> None:
        self._env = env
        self.sandbox = sandbox  # every session's, but for its id
        self._max_frame = max_frame  # the largest frame read from a session process
        self._process: asyncio.subprocess.Process | None = None
        self._control: socket.socket | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lines: asyncio.Task[None] | None = None
        self._spawned: asyncio.Queue[int] = asyncio.Queue()
        self._exits: dict[int, asyncio.Future[int | None]] = {}
        self._lock = asyncio.Lock()  # one spawn at a time takes the spare
        self._spare: asyncio.Task[SessionProcess] | None = None  # the next process, forking
        self._closing = False

    @property
    def template_pid(self) -> int | None:
        return self._process.pid if self._process else None

    async def start(self) -> None:
        """Start the template, and fork the first spare."""
        await self._start_template()
        self._spare = asyncio.create_task(self._fork_spare(), name="spare-process")

    async def _start_template(self) -> None:
        if self._writer is not None:  # a template that died: its end of the pipe goes too
            await close_writer(self._writer)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._process = await asyncio.create_subprocess_exec(
            sys.executable, "-P", "-m", "cellbus_kernel.template", str(theirs.fileno()),
            pass_fds=[theirs.fileno()], env=self._env, stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        theirs.close()
        self._control = ours
        self._reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        self._lines = asyncio.create_task(self._read_lines(), name="template-lines")
        log.info("template process %d started", self._process.pid)

    async def _read_lines(self) -> None:
        assert self._reader is not None
        while line := await self._reader.readline():
            event = json.loads(line)
            if "spawned" in event:
                # Registered here, before anyone awaits it, so an instant exit is not missed.
                self._exits[event["spawned"]] = asyncio.get_running_loop().create_future()
                self._spawned.put_nowait(event["spawned"])
            elif "exited" in event:
                future = self._exits.pop(event["exited"], None)
                if future is not None:
                    future.set_result(event["status"])
        log.log(logging.INFO if self._closing else logging.WARNING, "template process ended")
        for future in self._exits.values():
            if not future.done():
                future.set_result(None)
        self._exits.clear()

    async def spawn(
        self,
        session: str,
        output_cap: int,
        timeout: float = 10.0,
        *,
        role: Role = Role.SESSION,
        private: str = "",
        parallel: dict[str, object] | None = None,
    ) -> SessionProcess:
        """A process for `session`, in the session's sandbox: the session's own
        (`Role.SESSION`, which learns `parallel`, where its Dask scheduler may listen) or one
        of its Dask workers (`Role.DASK_WORKER`, with the private folder `private`). It
        is the spare, told so by an `Assign` frame; it answers `Ready` once it is in."""
        spec = msgspec.structs.replace(self.sandbox, session=session, private=private)
        assign = Assign(role=role, sandbox=spec, output_cap=output_cap, parallel=parallel or {})
        process = await self._take_spare(timeout)
        try:
            await process.pipe.send(assign)
        except BaseException:
            await process.kill()
            raise
        return process

    async def _take_spare(self, timeout: float) -> SessionProcess:
        """The spare (forked now if there was none or it died); the next one starts forking."""
        async with self._lock, asyncio.timeout(timeout):
            forking, self._spare = self._spare, None
            process: SessionProcess | None = None
            if forking is not None:
                with contextlib.suppress(Exception):  # e.g. its template died: fork again
                    process = await forking
            if process is None or process.exited.done():
                if process is not None:
                    await process.pipe.close()
                process = await self._fork_spare()
            self._spare = asyncio.create_task(self._fork_spare(), name="spare-process")
            return process

    async def _fork_spare(self) -> SessionProcess:
        """Have the template fork a spare (the template started again if it died)."""
        if self._process is None or self._process.returncode is not None:
            await self._start_template()
        assert self._control is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                expected = msgspec.to_builtins(self.sandbox)
                request = json.dumps({"spare": {"sandbox": expected}}).encode() + b"\n"
                socket.send_fds(self._control, [request], [theirs.fileno()])
            finally:
                theirs.close()
            pid = await self._spawned.get()
            exited = self._exits[pid]
        except BaseException:  # no process to talk to over our end: it goes too
            ours.close()
            raise
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        return SessionProcess(pid, FramedStream(reader, writer, self._max_frame), exited)

    async def close(self) -> None:
        self._closing = True
        if self._spare is not None:  # its end of file makes the spare exit
            self._spare.cancel()
            (spare,) = await asyncio.gather(self._spare, return_exceptions=True)
            if isinstance(spare, SessionProcess):
                await spare.pipe.close()
            self._spare = None
        if self._writer is not None:
            await close_writer(self._writer)
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()
        if self._lines is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                async with asyncio.timeout(2):
                    await self._lines
