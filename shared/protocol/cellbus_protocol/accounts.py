"""Requests to the accounts service, its replies, and the records it returns.

The accounts service answers request/reply calls on the `keys.ACCOUNTS` queue. A request is
one struct per operation, tagged by its name in ``op`` (``{"op": "cell.update", ...}``);
``actor`` is the id of the authenticated user it acts for, set by the caller (the web
service, after authenticating). The accounts service checks every permission itself.

Each request class names the type of its result as its parameter (``class WhoAmI(
Request[UserView])``); `result_type` reads it, `AccountsClient.call` decodes every reply into
it, and ``mypy`` knows it at the call site: no caller handles an untyped result.

A reply holds either ``result`` or ``error`` {code, message, data}. Error codes are stable:

=================  ======================================================================
``invalid``        bad input: a malformed request, a bad username, title or version
``too_large``      a cell source over the cap, or an import of too many cells
``unauthenticated``  wrong username or password, or an unknown, expired or revoked token
``forbidden``      the actor may see the worksheet but not do this (a viewer editing)
``not_found``      no such record, or one the actor may not see
``conflict``       a stale cell version (``data`` is the current cell)
``taken``          a unique name is in use (a username)
``rate_limited``   too many login attempts on the username or from the address lately
                   (``data``: ``{"retry_after": seconds}``); the password was not checked
``unavailable``    the database is away; nothing was written; try again
``internal``       an unexpected failure, logged by the accounts service with the request id
=================  ======================================================================
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast, get_args, get_origin

import msgspec

from . import codec, keys
from .bus import Bus
from .errors import RemoteError, ValidationError
from .roles import Grant, Role
from .views import (
    CellType,
    CellView,
    DocAck,
    DocState,
    LoginResult,
    MemberView,
    NotebookCell,
    RunStarted,
    TokenView,
    UserView,
    WorksheetSession,
    WorksheetView,
    WorksheetWithCells,
)

# Re-exported (the records are defined in `views`; callers know them as ``accounts.CellView``).
# Every name defined in this module is public as well.
__all__ = [
    "CellType", "CellView", "DocAck", "DocState", "LoginResult", "MemberView", "NotebookCell",
    "Role", "RunStarted", "TokenView", "UserView", "WorksheetSession", "WorksheetView",
    "WorksheetWithCells",
]  # fmt: skip

ERROR_CODES = ("invalid", "too_large", "unauthenticated", "forbidden", "not_found", "conflict",
               "taken", "rate_limited", "unavailable", "internal")  # fmt: skip


# -- requests -----------------------------------------------------------------------------


R = TypeVar("R")


class Request(msgspec.Struct, Generic[R], tag_field="op", kw_only=True, forbid_unknown_fields=True):
    """A request whose reply's result is an `R`."""

    actor: str = ""


class Register(Request[UserView], tag="auth.register"):
    username: str
    password: str


class Login(Request[LoginResult], tag="auth.login"):
    """Check a password and make a token. `address` is the client's (the web service's
    view of it): the login throttle counts attempts per username and per address."""

    username: str
    password: str
    label: str = ""
    address: str = ""


class Authenticate(Request[UserView], tag="auth.authenticate"):
    """Who holds this token; ``unauthenticated`` if nobody (unknown, expired, revoked)."""

    token: str


class Logout(Request[None], tag="auth.logout"):
    token: str


class ListTokens(Request[list[TokenView]], tag="auth.tokens"):
    pass


class RevokeToken(Request[None], tag="auth.revoke"):
    id: str


class WhoAmI(Request[UserView], tag="auth.whoami"):
    pass


class ListUsers(Request[list[UserView]], tag="user.list"):
    pass


class CreateWorksheet(Request[WorksheetView], tag="worksheet.create"):
    title: str


class ListWorksheets(Request[list[WorksheetView]], tag="worksheet.list"):
    pass


class GetWorksheet(Request[WorksheetWithCells], tag="worksheet.get"):
    id: str


class GetWorksheetSession(Request[WorksheetSession], tag="worksheet.session"):
    """A worksheet's session (viewers and up): one query, where ``worksheet.get`` also reads
    every cell and its outputs."""

    id: str


class RenameWorksheet(Request[WorksheetView], tag="worksheet.rename"):
    id: str
    title: str


class DeleteWorksheet(Request[None], tag="worksheet.delete"):
    id: str


class ShareWorksheet(Request[list[MemberView]], tag="worksheet.share"):
    id: str
    username: str
    role: Grant


class CreateCell(Request[CellView], tag="cell.create"):
    worksheet: str
    source: str = ""
    after: str | None = None
    cell_type: CellType = "code"
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class UpdateCell(Request[CellView], tag="cell.update"):
    """Change what is given of a cell's source, type and metadata, as one document edit.
    With `version`, only if the cell is still at that version (compare-and-set)."""

    id: str
    worksheet: str | None = None  # needed only when the id is in several of the actor's
    source: str | None = None
    cell_type: CellType | None = None
    metadata: dict[str, Any] | None = None
    version: int | None = None


class MoveCell(Request[CellView], tag="cell.move"):
    id: str
    worksheet: str | None = None
    after: str | None = None


class DeleteCell(Request[None], tag="cell.delete"):
    id: str
    worksheet: str | None = None


class ApplyUpdate(Request[DocAck], tag="document.update"):
    """Apply a Yjs update (from an editor's client) to the worksheet's document: committed,
    then published on the feed as ``doc_update``, then acknowledged."""

    worksheet: str
    update: bytes


class SyncDocument(Request[DocState], tag="document.sync"):
    """The Yjs sync handshake's step 2 for a client at `state_vector` (viewers and up)."""

    worksheet: str
    state_vector: bytes


class StartRun(Request[RunStarted], tag="cell.run"):
    """The actor runs the cell as execute_request `msg_id`: its saved outputs start over.
    Returns the cell; its worksheet's session is where to send the request."""

    id: str
    msg_id: str
    worksheet: str | None = None


class SessionRole(Request[Role], tag="session.role"):
    """The actor's role on `session`: on the worksheet it runs, or ``owner`` of a bare
    session the actor started (``not_found`` if none)."""

    session: str


class CreateSession(Request[None], tag="session.create"):
    """Record the actor as the owner of `session`, a new session with no worksheet."""

    session: str


class AnnounceFilesChanged(Request[None], tag="files.changed"):
    """Announce on the worksheet's feed (``files_changed``, signed by the actor) that the
    actor changed `paths` of its workspace through the files API (editors and up). The web
    service asks for it after each write: it may not publish on feeds itself."""

    worksheet: str
    paths: list[str]


class ClearOutputs(Request[list[str]], tag="worksheet.clear_outputs"):
    """Clear the saved outputs and execution counts of the worksheet's code cells `cells`
    (None: all of them; ids not in the worksheet are left out), announced on its feed
    (``outputs_cleared``). Editors and owners. Returns the ids of the cells cleared."""

    worksheet: str
    cells: list[str] | None = None


class ImportWorksheet(Request[WorksheetView], tag="worksheet.import"):
    """A new worksheet of the actor's holding a notebook's `cells` in order and its
    `metadata`, created whole or not at all: its document's first update."""

    title: str
    cells: list[NotebookCell]
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    nbformat_minor: int = 5


class CheckpointView(msgspec.Struct, kw_only=True):
    """A named checkpoint of a worksheet's document: its id, name, when (`created`, ISO 8601)
    and by whom it was saved ("" once their account is deleted), and its size in bytes."""

    id: str
    name: str
    created: str
    username: str
    size: int = 0


class CheckpointRestored(msgspec.Struct, kw_only=True):
    """A checkpoint restored. `changed`: the cells were not the checkpoint's already. With
    `update` (asked for with ``apply`` false), the edit was not made: it is that edit, a Yjs
    update for the caller to apply as its own; without, the service made it (one update on
    the feed)."""

    checkpoint: CheckpointView
    changed: bool
    update: bytes | None = None


class SaveCheckpoint(Request[CheckpointView], tag="worksheet.checkpoint"):
    """Save the worksheet's document as it is now under `name` (editors and up; a default
    name says when): the oldest checkpoints past the cap are dropped."""

    id: str
    name: str | None = None


class ListCheckpoints(Request[list[CheckpointView]], tag="worksheet.checkpoints"):
    """The worksheet's checkpoints, newest first (viewers and up)."""

    id: str


class RestoreCheckpoint(Request[CheckpointRestored], tag="worksheet.restore_checkpoint"):
    """Make the worksheet's cells equal to checkpoint `checkpoint`'s, as one new edit of the
    document (editors and up; history is not rewritten). Cells keep their records (outputs)
    by id. With `apply` false the edit is returned instead of made, unless it is larger than
    a client's update may be (then it is made)."""

    id: str
    checkpoint: str
    apply: bool = True


class DeleteCheckpoint(Request[None], tag="worksheet.delete_checkpoint"):
    """Delete checkpoint `checkpoint` of the worksheet (editors and up)."""

    id: str
    checkpoint: str


class JupyterKernelView(msgspec.Struct, kw_only=True):
    """A kernel started through the Jupyter Server API: the session of worksheet `worksheet`,
    started as kernelspec `name`, and the Jupyter session (/api/sessions) attached, if any."""

    session: str
    worksheet: str
    name: str
    created_at: str
    jupyter_session: str | None = None
    path: str = ""
    session_name: str = ""
    session_type: str = ""


class StartJupyterKernel(Request[JupyterKernelView], tag="jupyter.kernel_start"):
    """A new worksheet of the actor's titled `title`, whose session is a kernel the Jupyter
    API lists (with a Jupyter session attached if `jupyter_session` is given)."""

    name: str
    title: str
    jupyter_session: str | None = None
    path: str = ""
    session_name: str = ""
    session_type: str = ""


class ListJupyterKernels(Request[list[JupyterKernelView]], tag="jupyter.kernel_list"):
    """The kernels started through the Jupyter API on worksheets the actor is a member of."""


class GetJupyterKernel(Request[JupyterKernelView], tag="jupyter.kernel_get"):
    """One such kernel (viewers and up; ``not_found`` otherwise)."""

    session: str


class ForgetJupyterKernel(Request[None], tag="jupyter.kernel_forget"):
    """Take a kernel off the Jupyter API's list (editors and up); its worksheet stays."""

    session: str


class SetJupyterSession(Request[JupyterKernelView], tag="jupyter.session_set"):
    """Attach a Jupyter session to kernel `session` (editors and up), taking it off any other
    kernel; with `jupyter_session` None, detach the kernel's."""

    session: str
    jupyter_session: str | None
    path: str = ""
    session_name: str = ""
    session_type: str = ""


AnyRequest = (
    Register | Login | Authenticate | Logout | ListTokens | RevokeToken | WhoAmI | ListUsers
    | CreateWorksheet | ListWorksheets | GetWorksheet | GetWorksheetSession | RenameWorksheet
    | DeleteWorksheet
    | ShareWorksheet | CreateCell | UpdateCell | MoveCell | DeleteCell | StartRun | SessionRole
    | CreateSession | ImportWorksheet | ApplyUpdate | SyncDocument
    | StartJupyterKernel | ListJupyterKernels | GetJupyterKernel | ForgetJupyterKernel
    | SetJupyterSession | AnnounceFilesChanged
    | SaveCheckpoint | ListCheckpoints | RestoreCheckpoint | DeleteCheckpoint | ClearOutputs
)  # fmt: skip


# -- replies ------------------------------------------------------------------------------


def result_type(request_type: type[Request[Any]]) -> Any:
    """The result type a request class names as its parameter (``Request[UserView]``)."""
    for cls in request_type.__mro__:
        for base in getattr(cls, "__orig_bases__", ()):
            if get_origin(base) is Request:
                return get_args(base)[0]
    raise TypeError(f"{request_type.__name__} names no result type: derive from Request[R]")


class ErrorInfo(msgspec.Struct, kw_only=True):
    code: str
    message: str
    data: Any = None


class Reply(msgspec.Struct, Generic[R], kw_only=True, omit_defaults=True):
    result: R | None = None
    error: ErrorInfo | None = None


_request_decoder: msgspec.json.Decoder[AnyRequest] = msgspec.json.Decoder(AnyRequest)


def _reply_decoder(request_type: type[Request[Any]]) -> msgspec.json.Decoder[Reply[Any]]:
    reply: Any = Reply  # parameterised with a type found at run time, which mypy cannot check
    return msgspec.json.Decoder(reply[result_type(request_type)])


# One decoder per request type, made at import: a request type without a result fails here.
_reply_decoders = {
    request_type: _reply_decoder(request_type) for request_type in get_args(AnyRequest)
}


def decode_request(data: bytes) -> AnyRequest:
    try:
        return _request_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValidationError(f"bad accounts request: {exc}") from None


# -- announcements ------------------------------------------------------------------------


class AccessChanged(msgspec.Struct, kw_only=True, tag_field="change", tag="session"):
    """On `keys.ACCESS_CHANGES`: who may use `session` changed (a worksheet's members changed,
    or the worksheet was deleted). Web processes drop the roles they remembered for it."""

    session: str


class TokenRevoked(msgspec.Struct, kw_only=True, tag_field="change", tag="token"):
    """On `keys.ACCESS_CHANGES`: a token of user `user` (an id) was revoked (a logout or
    ``auth.revoke``). `token_hash` is the hex SHA-256 of the token, never the token. Web
    processes stop trusting it at once and close the WebSockets opened with it."""

    user: str
    token_hash: str


AccessChange = AccessChanged | TokenRevoked
_access_change_decoder: msgspec.json.Decoder[AccessChange] = msgspec.json.Decoder(AccessChange)


def decode_access_change(data: bytes) -> AccessChange:
    """The announcement in `data` (either kind); `ValidationError` if it is not one. (Encode
    one with `codec.encode_record`, as every record on the bus.)"""
    try:
        return _access_change_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValidationError(f"bad access change: {exc}") from None


class AccountsClient:
    """Calls the accounts service over the bus; errors come back as `RemoteError`."""

    def __init__(self, bus: Bus, *, timeout: float = 10.0) -> None:
        self.bus = bus
        self.timeout = timeout

    async def call(self, request: Request[R]) -> R:
        """The request's result, decoded into (and checked against) its result type."""
        data = await self.bus.request(
            keys.ACCOUNTS, codec.encode_record(request), timeout=self.timeout
        )
        try:
            reply: Reply[R] = _reply_decoders[type(request)].decode(data)
        except msgspec.DecodeError as exc:
            raise ValidationError(f"bad reply to {type(request).__name__}: {exc}") from None
        if reply.error is not None:
            raise RemoteError(reply.error.code, reply.error.message, reply.error.data)
        return cast(R, reply.result)  # None only where R allows it: the decoder checked
