"""The frames that cross the pipe between a worker and one of its session processes.

A frame is a 4-byte big-endian length and a msgpack-encoded `Frame`. The first frame a
process gets is `Assign`: it was forked ahead as a spare (`template`) and learns there which
session it serves. The worker then sends
requests (`Execute`, `Complete`, `Inspect`, `IsComplete`, `History`, `CommInfo`,
`WidgetState`, `Interrupt`, `Checkpoint`, `Restore`), comm messages from clients (`CommIn`)
and answers to ``input()`` (`InputValue`); the session process answers with `Ready` once, then
`Output` frames while code runs (and `InputWanted` when it waits for a line), `Done` when an
execution ends, `Answer` for the other requests, `Checkpointed` and `Restored`. The
session process never talks to the bus: the worker turns these frames into feed messages, and
it alone signs and verifies checkpoints, so the session process holds no credential and no
connection of the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import msgspec

from .sandbox import Spec

HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024
"""The largest frame a worker reads, unless it allows larger checkpoints (`FramedStream`)."""


class Role(enum.Enum):
    """What a process forked from the template becomes (`Assign`)."""

    SESSION = "session"  # serves the session's requests (`child`)
    DASK_WORKER = "dask-worker"  # a Dask worker of the session's parallel cells (`dask_worker`)


class Assign(msgspec.Struct, tag="assign"):
    """A spare process's first frame: what it becomes (`Role`), in which
    sandbox (`Spec`: the session, its folders, user, ports and limits), the cap on an
    execution's output and, for a session, where its Dask scheduler may listen
    (`cluster.Settings`)."""

    role: Role
    sandbox: Spec
    output_cap: int
    parallel: dict[str, Any] = {}


class Execute(msgspec.Struct, tag="execute"):
    id: str
    code: str
    silent: bool = False
    store_history: bool = True
    user_expressions: dict[str, str] = {}
    allow_stdin: bool = False


class Complete(msgspec.Struct, tag="complete"):
    id: str
    code: str
    cursor_pos: int


class Inspect(msgspec.Struct, tag="inspect"):
    id: str
    code: str
    cursor_pos: int
    detail_level: int = 0


class IsComplete(msgspec.Struct, tag="is_complete"):
    id: str
    code: str


class History(msgspec.Struct, tag="history"):
    """A ``history_request``'s fields (see `cellbus_protocol.messages.HistoryRequest`)."""

    id: str
    hist_access_type: str = "tail"
    output: bool = False
    raw: bool = True
    session: int = 0
    start: int = 0
    stop: int | None = None
    n: int | None = None
    pattern: str = ""
    unique: bool = False


class CommInfo(msgspec.Struct, tag="comm_info"):
    id: str
    target_name: str | None = None


class WidgetState(msgspec.Struct, tag="widget_state"):
    """The state of the session's ipywidgets, for a saved notebook's ``metadata.widgets``."""

    id: str


class CommIn(msgspec.Struct, tag="comm_in"):
    """A client's ``comm_open``, ``comm_msg`` or ``comm_close`` (`id`: its msg_id, the parent
    of what its handler publishes); handled between executions, answered by an `Answer`
    once handled."""

    id: str
    msg_type: str
    content: dict[str, Any]
    header: dict[str, Any] = {}


class InputValue(msgspec.Struct, tag="input_value"):
    """The line typed for input wait `seq` of execution `id`, or, with `cancelled`, why the
    wait ends without one (the person left)."""

    id: str
    seq: int
    value: str = ""
    cancelled: str = ""


class Interrupt(msgspec.Struct, tag="interrupt"):
    """Interrupt execution `id`: now if it runs, as soon as it starts if it has not yet."""

    id: str


class FileLimit(msgspec.Struct, tag="file_limit"):
    """Set the process's file size soft limit (RLIMIT_FSIZE) to `soft` bytes, within its hard
    limit: what the workspace's quota leaves (`workspace`). The process sets it itself, from
    its reader thread: a worker without CAP_SYS_RESOURCE (a container's root) may not set
    another user's limits."""

    soft: int


class Checkpoint(msgspec.Struct, tag="checkpoint"):
    """Save the user namespace (between executions); at most `max_bytes` of it."""

    id: str
    max_bytes: int


HistoryEntry = tuple[int, str, str]
"""One input of IPython's history: its execution count, the source as run, as typed."""


class Restore(msgspec.Struct, tag="restore"):
    """Load a checkpoint's namespace (verified by the worker) into the user namespace, and
    go on counting executions from `execution_count`; `history`: the inputs it had run."""

    id: str
    data: bytes
    execution_count: int
    history: list[HistoryEntry] = []


class Ready(msgspec.Struct, tag="ready"):
    pid: int
    execution_count: int
    python_version: str
    ipython_version: str
    banner: str


class Output(msgspec.Struct, tag="output"):
    """One feed message's content, for the request `id` (the parent), and its message
    `metadata` (a comm_open's widget protocol version)."""

    id: str
    msg_type: str
    content: dict[str, Any]
    metadata: dict[str, Any] = {}


class InputWanted(msgspec.Struct, tag="input_wanted"):
    """Execution `id` waits for a line (``input()``, ``getpass()``): its `seq`-th wait."""

    id: str
    seq: int
    prompt: str
    password: bool


class Done(msgspec.Struct, tag="done"):
    """An execution ended; `content` is its execute_reply content."""

    id: str
    content: dict[str, Any]


class Answer(msgspec.Struct, tag="answer"):
    """The reply content of a direct request (completion, inspection...), or of a handled
    `CommIn` (empty)."""

    id: str
    content: dict[str, Any]


class Checkpointed(msgspec.Struct, tag="checkpointed"):
    """The saved namespace (dill), the names that could not be saved, and the names that
    hold open files (a restore gives them back closed). `data` is empty when nothing was
    saved: `too_large` (over `max_bytes`) or `error` says why."""

    id: str
    data: bytes
    skipped: list[str]
    too_large: bool = False
    error: str = ""
    open_files: list[str] = []
    history: list[HistoryEntry] = []


class Restored(msgspec.Struct, tag="restored"):
    """Whether the checkpoint was loaded, and the names it set."""

    id: str
    ok: bool
    error: str = ""
    names: list[str] = []


class ParallelWanted(msgspec.Struct, tag="parallel_wanted"):
    """The session's Dask scheduler (`cellbus.parallel`) wants `count` more workers: its
    address, its TLS credentials (PEM: CA, certificate, key) and the session's import folders
    in its workspace. The worker answers with `ParallelGranted`."""

    id: str
    scheduler: str
    dashboard_port: int
    tls: tuple[str, str, str]
    count: int
    sys_path: list[str] = []


class ParallelGranted(msgspec.Struct, tag="parallel_granted"):
    """How many workers were started (`local` on the session's kernel worker, `remote` on
    others), `note` why fewer than wanted (a cap, no free core), and `dashboard`: the path of
    the session's dashboard through the web service."""

    id: str
    local: int
    remote: int
    note: str = ""
    dashboard: str = ""


class ParallelPorts(msgspec.Struct, tag="parallel_ports"):
    """What a Dask worker process needs from its kernel worker, its first and only frame:
    where to find its scheduler, its credentials, the ports it may listen on (Dask's and HTTP)
    and the address it is reached at."""

    scheduler: str
    tls: tuple[str, str, str]
    host: str
    ports: list[int]
    http_ports: list[int]
    name: str
    memory_limit: int
    sys_path: list[str] = []


Question = Complete | Inspect | IsComplete | History | CommInfo | WidgetState
"""Requests the session process answers at once, even while code runs (its reader thread)."""
ToSession = (
    Question
    | Assign
    | Execute
    | Interrupt
    | Checkpoint
    | Restore
    | CommIn
    | InputValue
    | FileLimit
    | ParallelGranted
    | ParallelPorts
)
FromSession = (
    Ready | Output | InputWanted | Done | Answer | Checkpointed | Restored | ParallelWanted
)

_encoder = msgspec.msgpack.Encoder()
_to_session: msgspec.msgpack.Decoder[ToSession] = msgspec.msgpack.Decoder(ToSession)
_from_session: msgspec.msgpack.Decoder[FromSession] = msgspec.msgpack.Decoder(FromSession)


SMALL_FRAME = 64 * 1024
"""Bodies up to this size are sent in one write with their length prefix."""


def pack(frame: ToSession | FromSession) -> tuple[bytes, bytes]:
    """The length prefix and the body (two pieces: a checkpoint's body is not copied again)."""
    body = _encoder.encode(frame)
    return HEADER.pack(len(body)), body


class FrameError(Exception):
    """Bytes on the pipe that are not a valid frame."""


class FramedSocket:
    """The session process's side: blocking reads, thread-safe writes."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._file = sock.makefile("rb")
        self._lock = threading.Lock()
        self._held: list[bytes] | None = None  # frames sent inside `together`

    def send(self, frame: FromSession) -> None:
        header, body = pack(frame)
        with self._lock:
            if self._held is not None:
                self._held += (header, body)
            elif len(body) < SMALL_FRAME:
                self._sock.sendall(header + body)  # one write: the worker wakes once
            else:
                self._sock.sendall(header)
                self._sock.sendall(body)

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """Frames sent inside, from any thread, go out in one write at the end: an
        execution's last output with its reply, which the worker then reads and publishes
        in one step (and the feed's watchers get in one write)."""
        with self._lock:
            self._held = []
        try:
            yield
        finally:
            with self._lock:
                held, self._held = self._held, None
                if held:
                    self._sock.sendall(b"".join(held))

    def receive(self) -> ToSession | None:
        """The next request, or None when the worker has gone."""
        header = self._file.read(HEADER.size)
        if len(header) < HEADER.size:
            return None
        (size,) = HEADER.unpack(header)
        body = self._file.read(size)
        if len(body) < size:
            return None
        return _to_session.decode(body)


class FramedStream:
    """The worker's side, over asyncio streams."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_frame: int = MAX_FRAME,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._max_frame = max_frame

    async def send(self, frame: ToSession) -> None:
        header, body = pack(frame)
        self._writer.write(header)
        self._writer.write(body)
        await self._writer.drain()

    async def receive(self) -> FromSession | None:
        """The next frame, or None at end of stream; `FrameError` for bytes that are not one."""
        try:
            header = await self._reader.readexactly(HEADER.size)
            (size,) = HEADER.unpack(header)
            if size > self._max_frame:
                raise FrameError(f"frame of {size} bytes is over the limit of {self._max_frame}")
            return _from_session.decode(await self._reader.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        except msgspec.DecodeError as exc:
            raise FrameError(str(exc)) from None

    async def close(self, timeout: float = 2.0) -> None:
        """Close the pipe and wait, at most `timeout` seconds, until its socket is closed.
        Never raises (but lets a cancellation through); closing twice is harmless."""
        await close_writer(self._writer, timeout)


async def close_writer(writer: asyncio.StreamWriter, timeout: float = 2.0) -> None:
    """Close `writer` (its transport and socket) and wait, at most `timeout` seconds, until
    it is closed. Never raises but a cancellation: this is cleanup, and a pipe whose peer
    died ends with the peer's error (``ConnectionResetError``, ``BrokenPipeError``)."""
    with contextlib.suppress(Exception):
        writer.close()
        async with asyncio.timeout(timeout):
            await writer.wait_closed()
