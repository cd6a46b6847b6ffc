"""Every message content cellbus sends, one typed struct per ``msg_type``.

The names and fields follow the Jupyter messaging spec (version 5.3) so that anyone who knows
Jupyter knows these. Where cellbus adds something, the field's comment says so.

Requests go to a session's request queue; ``execute_request`` is answered on the session's feed
(``execute_reply`` and the outputs), the others by a direct reply to the requester
(request/reply on the bus). Feed messages are published on the session's feed, in order, each
with a cursor (``seq``) given by the bus.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec

from .envelope import PROTOCOL_VERSION


class Content(msgspec.Struct, kw_only=True):
    """Base of every content struct; `msg_type` is the wire name.

    Every field is written out, defaults included, as Jupyter clients expect (a reply always
    has its ``status``); only the ``reason`` of `Status` and `SessionState`, cellbus additions,
    is left out when empty.
    """

    msg_type: ClassVar[str]


class Reply(Content, kw_only=True):
    """Base of every ``*_reply``: ``status`` plus the error fields when it is not ``ok``."""

    status: Literal["ok", "error", "aborted"] = "ok"
    ename: str = ""
    evalue: str = ""
    traceback: list[str] = msgspec.field(default_factory=list)


# --- requests and their replies -----------------------------------------------------------


class ExecuteRequest(Content, kw_only=True):
    msg_type: ClassVar[str] = "execute_request"
    code: str
    silent: bool = False
    store_history: bool = True
    user_expressions: dict[str, str] = msgspec.field(default_factory=dict)
    allow_stdin: bool = False
    stop_on_error: bool = True


class ExecuteReply(Reply, kw_only=True):
    msg_type: ClassVar[str] = "execute_reply"
    execution_count: int | None = None
    user_expressions: dict[str, Any] = msgspec.field(default_factory=dict)
    payload: list[dict[str, Any]] = msgspec.field(default_factory=list)


class CompleteRequest(Content, kw_only=True):
    msg_type: ClassVar[str] = "complete_request"
    code: str
    cursor_pos: int


class CompleteReply(Reply, kw_only=True):
    msg_type: ClassVar[str] = "complete_reply"
    matches: list[str] = msgspec.field(default_factory=list)
    cursor_start: int = 0
    cursor_end: int = 0
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class InspectRequest(Content, kw_only=True):
    msg_type: ClassVar[str] = "inspect_request"
    code: str
    cursor_pos: int
    detail_level: Literal[0, 1] = 0


class InspectReply(Reply, kw_only=True):
    msg_type: ClassVar[str] = "inspect_reply"
    found: bool = False
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class InterruptRequest(Content, kw_only=True):
    msg_type: ClassVar[str] = "interrupt_request"


class InterruptReply(Reply, kw_only=True):
    msg_type: ClassVar[str] = "interrupt_reply"


class RestartRequest(Content, kw_only=True):
    """cellbus: a request of its own (Jupyter restarts through ``shutdown_request``)."""

    msg_type: ClassVar[str] = "restart_request"


class RestartReply(Reply, kw_only=True):
    msg_type: ClassVar[str] = "restart_reply"


class ShutdownRequest(Content, kw_only=True):
    msg_type: ClassVar[str] = "shutdown_request"
    restart: bool = False


class ShutdownReply(Reply, kw_only=True):
    msg_type: ClassVar[str] = "shutdown_reply"
    restart: bool = False


class KernelInfoRequest(Content, kw_only=True):
    msg_type: ClassVar[str] = "kernel_info_request"


class LanguageInfo(msgspec.Struct, kw_only=True):
    name: str = "python"
    version: str = ""
    mimetype: str = "text/x-python"
    file_extension: str = ".py"
    pygments_lexer: str = "ipython3"
    codemirror_mode: dict[str, Any] = msgspec.field(
        default_factory=lambda: {"name": "ipython", "version": 3}
    )
    nbconvert_exporter: str = "python"


class KernelInfoReply(Reply, kw_only=True):
    msg_type: ClassVar[str] = "kernel_info_reply"
    protocol_version: str = PROTOCOL_VERSION
    implementation: str = "cellbus"
    implementation_version: str = ""
    language_info: LanguageInfo = msgspec.field(default_factory=LanguageInfo)
    banner: str = ""
    help_links: list[dict[str, str]] = msgspec.field(default_factory=list)


class SessionInfoRequest(Content, kw_only=True):
    """cellbus: what the session is doing (not in the Jupyter spec)."""

    msg_type: ClassVar[str] = "session_info_request"


class QueuedRequest(msgspec.Struct, kw_only=True):
    msg_id: str
    username: str
    date: str


class SessionInfoReply(Reply, kw_only=True):
    """The session's state, the execution running and those queued, with who sent them."""

    msg_type: ClassVar[str] = "session_info_reply"
    state: FeedState | Literal[""] = ""  # "" when the reply is not ok
    execution_count: int = 1
    running: QueuedRequest | None = None
    queued: list[QueuedRequest] = msgspec.field(default_factory=list)


class IsCompleteRequest(Content, kw_only=True):
    msg_type: ClassVar[str] = "is_complete_request"
    code: str


class IsCompleteReply(Content, kw_only=True):
    """Not a `Reply`: its ``status`` says whether the code is complete, not whether the
    request succeeded (``unknown`` when the session cannot tell)."""

    msg_type: ClassVar[str] = "is_complete_reply"
    status: Literal["complete", "incomplete", "invalid", "unknown"]
    indent: str = ""  # for ``incomplete``: how to indent the next line


class HistoryRequest(Content, kw_only=True):
    msg_type: ClassVar[str] = "history_request"
    output: bool = False
    raw: bool = True
    hist_access_type: Literal["range", "tail", "search"] = "tail"
    session: int = 0  # for range: 0 is the current session, -1 the one before, ...
    start: int = 0
    stop: int | None = None
    n: int | None = None  # for tail and search
    pattern: str = ""  # for search: a glob
    unique: bool = False


class HistoryReply(Reply, kw_only=True):
    msg_type: ClassVar[str] = "history_reply"
    # (session, line_number, input) or, with ``output``, (session, line_number, [input,
    # output or None])
    history: list[list[Any]] = msgspec.field(default_factory=list)


class CommInfoRequest(Content, kw_only=True):
    msg_type: ClassVar[str] = "comm_info_request"
    target_name: str | None = None  # only the comms of this target


class CommInfoReply(Reply, kw_only=True):
    msg_type: ClassVar[str] = "comm_info_reply"
    comms: dict[str, dict[str, str]] = msgspec.field(default_factory=dict)  # id -> target_name


class WidgetStateRequest(Content, kw_only=True):
    """cellbus: the state of the session's widgets, to save with an exported notebook."""

    msg_type: ClassVar[str] = "widget_state_request"


class WidgetStateReply(Reply, kw_only=True):
    """``state``: ipywidgets' manager state (``{version_major: 2, version_minor: 0, state:
    {model_id: ...}}``, the ``application/vnd.jupyter.widget-state+json`` of a notebook's
    ``metadata.widgets``), or empty when the session has no widgets."""

    msg_type: ClassVar[str] = "widget_state_reply"
    state: dict[str, Any] = msgspec.field(default_factory=dict)


MAX_INPUT_CHARS = 1024 * 1024
"""The longest line an ``input_reply`` may carry (a session refuses a longer one)."""
MAX_COMM_BYTES = 4 * 1024 * 1024
"""The largest ``data`` (as JSON) a client's comm message may carry."""


class InputReply(Content, kw_only=True):
    """The answer to an ``input_request``; its parent is the ``input_request`` (Jupyter's
    stdin channel). cellbus answers it directly with an `InputAck`."""

    msg_type: ClassVar[str] = "input_reply"
    value: str


class InputAck(Reply, kw_only=True):
    """cellbus: whether an `InputReply` was taken: ``error`` with ename ``NoInputAwaited``
    when the session waits for no input from that person with that request (it was
    answered, interrupted, or the cell ended)."""

    msg_type: ClassVar[str] = "input_ack"


class CommOpen(Content, kw_only=True):
    """Opens a comm; from the kernel (on the feed) or from a client (a request, answered by
    no reply: ``busy`` and ``idle`` on the feed with it as parent)."""

    msg_type: ClassVar[str] = "comm_open"
    comm_id: str
    target_name: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)
    target_module: str | None = None


class CommMsg(Content, kw_only=True):
    msg_type: ClassVar[str] = "comm_msg"
    comm_id: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)


class CommClose(Content, kw_only=True):
    msg_type: ClassVar[str] = "comm_close"
    comm_id: str
    data: dict[str, Any] = msgspec.field(default_factory=dict)


# --- feed messages ------------------------------------------------------------------------

ExecutionState = Literal["starting", "busy", "idle"]
"""Jupyter's execution states: the only ones ``status`` carries."""

SessionLife = Literal["restarting", "dead", "hibernated", "restoring"]
"""cellbus's own states of a session, which `SessionState` carries (see there)."""

FeedState = ExecutionState | SessionLife
"""Where a session is, as its feed last said: the state of its last ``status`` or
``session_state``."""


class Status(Content, kw_only=True, omit_defaults=True):
    msg_type: ClassVar[str] = "status"
    execution_state: ExecutionState
    # cellbus: why the state changed, for people; only the ``idle`` that ends a restore has
    # one ("Restored the namespace saved after execution 3 ..."). A Jupyter client ignores it.
    reason: str = ""


class SessionState(Content, kw_only=True, omit_defaults=True):
    """cellbus: the session's life outside Jupyter's execution states, in a message of its own
    so that ``status`` stays as the spec has it and a Jupyter client can ignore this one.

    - ``restarting``: a ``restart_request`` ends the process; ``status`` ``starting`` follows.
    - ``dead``: the process ended and nothing replaces it: it crashed, was killed, ran out of
      memory or did not start, the session was shut down, or its worker stopped with no
      checkpoints. The next request starts a fresh process.
    - ``hibernated``: checkpointed, no process, no worker: the next request restores it.
    - ``restoring``: a process is being started from the session's checkpoint (instead of
      ``status`` ``starting``); ``status`` ``idle`` follows, its ``reason`` the outcome.
    """

    msg_type: ClassVar[str] = "session_state"
    state: SessionLife
    reason: str = ""  # for people, a whole sentence ("The session process was killed by ...")


def state_of(content: Content) -> FeedState | None:
    """The session state a feed message announces (a ``status`` or a ``session_state``);
    None for any other message."""
    if isinstance(content, Status):
        return content.execution_state
    if isinstance(content, SessionState):
        return content.state
    return None


class ExecuteInput(Content, kw_only=True):
    msg_type: ClassVar[str] = "execute_input"
    code: str
    execution_count: int | None = None


class Stream(Content, kw_only=True):
    msg_type: ClassVar[str] = "stream"
    name: Literal["stdout", "stderr"]
    text: str


class DisplayData(Content, kw_only=True):
    msg_type: ClassVar[str] = "display_data"
    data: dict[str, Any]
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    transient: dict[str, Any] = msgspec.field(default_factory=dict)


class UpdateDisplayData(Content, kw_only=True):
    msg_type: ClassVar[str] = "update_display_data"
    data: dict[str, Any]
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    transient: dict[str, Any] = msgspec.field(default_factory=dict)


class ExecuteResult(Content, kw_only=True):
    msg_type: ClassVar[str] = "execute_result"
    execution_count: int | None
    data: dict[str, Any]
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class Error(Content, kw_only=True):
    msg_type: ClassVar[str] = "error"
    ename: str
    evalue: str
    traceback: list[str] = msgspec.field(default_factory=list)


class ClearOutput(Content, kw_only=True):
    msg_type: ClassVar[str] = "clear_output"
    wait: bool = False


class InputRequest(Content, kw_only=True):
    """The running execution waits for a line from whoever ran it (``input()``; masked for
    ``getpass()``): their username is in the header. Every watcher sees it; only that
    person may answer (`InputReply`). An interrupt, a restart or that person leaving ends
    the wait with an error in the execution."""

    msg_type: ClassVar[str] = "input_request"
    prompt: str = ""
    password: bool = False


class Checkpoint(Content, kw_only=True):
    """cellbus: what became of the session's checkpoint, its namespace saved on the bus."""

    msg_type: ClassVar[str] = "checkpoint"
    # saved: a checkpoint was written; not_saved: it could not be (too large, or failed), and
    # the previous one is kept; refused: the checkpoint found when the session was hosted
    # failed verification and was not loaded; restore_failed: it was verified but could not
    # be loaded. In the last two cases the namespace is fresh.
    event: Literal["saved", "not_saved", "refused", "restore_failed"]
    execution_count: int | None = None  # the last execution whose effects the checkpoint holds
    skipped: list[str] = msgspec.field(default_factory=list)  # names that could not be saved,
    # each reported once per session
    size: int = 0  # bytes, when saved
    reason: str = ""  # for people, a whole sentence; empty for a plain save
    open_files: list[str] = msgspec.field(default_factory=list)  # names whose values hold files
    # that were open: a restore gives them back closed (it never reopens a file); each once


class CellRun(Content, kw_only=True):
    """cellbus: a worksheet cell's execution was taken by its session (queued), published
    before the execution's ``busy`` with the ``execute_request`` as parent, so every watcher
    maps the run to its cell and sees the queue without asking for it. Only executions whose
    request metadata names a cell (``{"cellbus": {"cell_id": ...}}``) have one; the same run
    may be announced again if its session moves to another worker before it starts."""

    msg_type: ClassVar[str] = "cell_run"
    cell_id: str
    msg_id: str  # the execute_request's msg_id
    username: str  # who sent it


# --- worksheet changes (cellbus): published by the accounts service on the worksheet's
# session feed, with the acting user in the header, so every viewer follows edits live.


class DocUpdate(Content, kw_only=True):
    """cellbus: an update of the worksheet's document (a Yjs update, v1 encoding; base64 in
    JSON) was committed; the header's ``username`` is its author (``cellbus`` for the
    service's own edits). Applying it twice or out of order is harmless."""

    msg_type: ClassVar[str] = "doc_update"
    update: bytes


class WorksheetRenamed(Content, kw_only=True):
    msg_type: ClassVar[str] = "worksheet_renamed"
    title: str


class WorksheetShared(Content, kw_only=True):
    msg_type: ClassVar[str] = "worksheet_shared"
    username: str
    role: Literal["viewer", "editor", "owner", "none"]


class FilesChanged(Content, kw_only=True):
    """cellbus: files of the worksheet's workspace changed: written by a person (through the
    files API; the header's ``username`` is theirs) or by code (after an execution that changed
    any; the parent is that execution). `paths` are the workspace-relative paths that changed
    (a folder for a whole subtree; empty: anything may have changed, list again)."""

    msg_type: ClassVar[str] = "files_changed"
    paths: list[str]


class OutputsCleared(Content, kw_only=True):
    """cellbus: the saved outputs of the worksheet's cells `cells` (ids) were cleared, with
    their execution counts (``worksheet.clear_outputs``; the header's ``username`` is who
    cleared them): every page shows those cells without outputs, as if never run."""

    msg_type: ClassVar[str] = "outputs_cleared"
    cells: list[str]
    cursor: int | None = None
    """The feed's cursor when they were cleared: what those cells' runs printed after it is
    kept (an accounts process that saves a run's outputs, and was not the one that cleared
    them, reads it again from the feed)."""


REQUEST_TYPES: tuple[type[Content], ...] = (
    ExecuteRequest,
    CompleteRequest,
    InspectRequest,
    InterruptRequest,
    RestartRequest,
    ShutdownRequest,
    KernelInfoRequest,
    SessionInfoRequest,
    IsCompleteRequest,
    HistoryRequest,
    CommInfoRequest,
    WidgetStateRequest,
    InputReply,
    CommOpen,
    CommMsg,
    CommClose,
)
REPLY_TYPES: tuple[type[Content], ...] = (
    ExecuteReply,
    CompleteReply,
    InspectReply,
    InterruptReply,
    RestartReply,
    ShutdownReply,
    KernelInfoReply,
    SessionInfoReply,
    IsCompleteReply,
    HistoryReply,
    CommInfoReply,
    WidgetStateReply,
    InputAck,
)
FEED_TYPES: tuple[type[Content], ...] = (
    Status,
    SessionState,
    ExecuteInput,
    Stream,
    DisplayData,
    UpdateDisplayData,
    ExecuteResult,
    Error,
    ClearOutput,
    ExecuteReply,
    InputRequest,
    CommOpen,
    CommMsg,
    CommClose,
    Checkpoint,
    CellRun,
    DocUpdate,
    WorksheetRenamed,
    WorksheetShared,
    FilesChanged,
    OutputsCleared,
)

CONTENT_TYPES: dict[str, type[Content]] = {
    cls.msg_type: cls for cls in (*REQUEST_TYPES, *REPLY_TYPES, *FEED_TYPES)
}
"""Every msg_type cellbus knows, mapped to its content struct."""

# Requests answered by a direct reply to the requester rather than on the feed. Comm
# messages from clients have no reply (as in Jupyter); executions are answered on the feed.
DIRECT_REPLY: dict[str, type[Content]] = {
    "complete_request": CompleteReply,
    "inspect_request": InspectReply,
    "interrupt_request": InterruptReply,
    "restart_request": RestartReply,
    "shutdown_request": ShutdownReply,
    "kernel_info_request": KernelInfoReply,
    "session_info_request": SessionInfoReply,
    "is_complete_request": IsCompleteReply,
    "history_request": HistoryReply,
    "comm_info_request": CommInfoReply,
    "widget_state_request": WidgetStateReply,
    "input_reply": InputAck,
}


# --- bus records that are not Jupyter messages -------------------------------------------


class SessionOpen(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A request for a worker to host a session; put on the new-sessions queue."""

    session: str
    username: str
    date: str
    fork_of: str = ""
    """The session whose checkpoint this one starts from (``session.fork``): its checkpoint,
    copied to this session's key, is accepted although it names the other session."""
    previous_host: str = ""
    """For a takeover (the worker died) or a handover (it stopped): the worker that hosted the
    session. The record is stale, and dropped, once the registry names another worker."""


# --- control requests to the kernel workers (cellbus) -------------------------------------
# Requests about a session as a whole, which the kernel answers because it owns what they
# touch (checkpoints, host leases): put on `keys.KERNEL_CONTROL` with `bus.request`, taken by
# any worker (one consumer group), answered with a `ControlReply`. Only services send them,
# after checking the caller's role; `username` is who asked, for the logs and for the header
# of any request the kernel sends on the user's behalf.

ControlErrorCode = Literal["not_found", "invalid", "unavailable", "internal"]


class ControlRequest(msgspec.Struct, tag_field="op", kw_only=True, forbid_unknown_fields=True):
    session: str
    username: str


class Forked(msgspec.Struct, kw_only=True):
    session: str  # the new session, started from a copy of the other's checkpoint


class ForkSession(ControlRequest, tag="fork"):
    """Copy `session`'s latest checkpoint to a new session and have a worker host it
    (`SessionOpen.fork_of`). ``not_found`` if `session` has no checkpoint."""


class SessionStatus(msgspec.Struct, kw_only=True):
    state: Literal["hosted", "stopped"]  # stopped: hibernated, shut down or never started

    @property
    def hosted(self) -> bool:
        return self.state == "hosted"


class GetSessionStatus(ControlRequest, tag="status"):
    """Whether a worker hosts the session (only then does its request queue answer)."""


class Discarded(msgspec.Struct, kw_only=True):
    hosted: bool  # a worker hosts the session: nothing was discarded; ask the session itself


class DiscardSession(ControlRequest, tag="discard"):
    """Forget the namespace of a session that no worker hosts (a restart or shutdown of a
    hibernated session): its checkpoint is deleted, so nothing restores it. A hosted
    session is left alone (``hosted``): its own ``restart_request`` or ``shutdown_request``
    does this."""


class Ended(msgspec.Struct, kw_only=True):
    hosted: bool  # it was hosted: it was sent a ``shutdown_request``


class EndSession(ControlRequest, tag="end"):
    """The session's worksheet is gone: shut it down if hosted, and delete its checkpoint
    either way."""


AnyControlRequest = ForkSession | GetSessionStatus | DiscardSession | EndSession


class ControlError(msgspec.Struct, kw_only=True):
    code: ControlErrorCode
    message: str  # for people


class ControlReply(msgspec.Struct, kw_only=True):
    """Either `result` (the request's result struct, decoded by the requester, which knows
    its type) or `error`."""

    result: msgspec.Raw = msgspec.Raw(b"null")
    error: ControlError | None = None


# --- parallel cells: Dask workers for another kernel worker's session (cellbus) --------------
# A session's own kernel worker starts its Dask workers up to CELLBUS_PARALLEL_CORES; beyond
# that it asks other kernel workers, least loaded first, on their `keys.parallel_requests`
# queues (`bus.request`, answered with a `ParallelStarted`). Only kernel workers send them.


class ParallelTLS(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A session's temporary TLS credentials (PEM): its scheduler and workers accept only each
    other. Never written to disk; a session's workers get them from their kernel worker."""

    ca: str
    cert: str
    key: str


class ParallelRequest(msgspec.Struct, tag_field="op", kw_only=True, forbid_unknown_fields=True):
    session: str


class ParallelStart(ParallelRequest, tag="start"):
    """Start up to `count` Dask workers for `session` (owned by `username`), in its sandbox,
    joining `scheduler` with `tls`; `sys_path` adds the session's import folders that lie in
    its workspace (its own packages)."""

    username: str
    scheduler: str
    tls: ParallelTLS
    count: int
    sys_path: list[str] = []


class ParallelStop(ParallelRequest, tag="stop"):
    """Stop every Dask worker this kernel worker runs for `session` (it restarted, shut down,
    hibernated or left)."""


AnyParallelRequest = ParallelStart | ParallelStop


class ParallelStarted(msgspec.Struct, kw_only=True):
    started: int  # how many workers were started (0 for a stop)
    note: str = ""  # why fewer than asked, for people
