"""Requests to the accounts service, its replies, and the records it returns.

The accounts service answers request/reply calls on the `keys.ACCOUNTS` queue. A request is
one struct per operation, tagged by its name in ``op`` (``{"op": "cell.update", ...}``);
``actor`` is the id of the authenticated user it acts for, set by the caller (the web
service, after authenticating). The accounts service checks every permission itself.

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

from typing import Any, Literal

import msgspec

from . import keys
from .bus import Bus
from .errors import RemoteError, ValidationError

ERROR_CODES = ("invalid", "too_large", "unauthenticated", "forbidden", "not_found", "conflict",
               "taken", "rate_limited", "unavailable", "internal")  # fmt: skip
Role = Literal["viewer", "editor", "owner"]


# -- records, as clients see them ---------------------------------------------------------


class UserView(msgspec.Struct, kw_only=True):
    id: str
    username: str
    is_admin: bool
    created_at: str


class TokenView(msgspec.Struct, kw_only=True):
    id: str
    label: str
    created_at: str
    expires_at: str
    revoked: bool


class LoginResult(msgspec.Struct, kw_only=True):
    token: str  # shown once; only its hash is stored
    user: UserView


class WorksheetView(msgspec.Struct, kw_only=True):
    id: str
    title: str
    session: str
    owner: str
    role: Role
    created_at: str
    updated_at: str


class CellView(msgspec.Struct, kw_only=True):
    id: str
    worksheet: str
    source: str
    version: int
    outputs: list[dict[str, Any]]
    execution_count: int | None
    run_by: str | None
    run_at: str | None
    run_msg_id: str | None


class MemberView(msgspec.Struct, kw_only=True):
    username: str
    role: Role


class WorksheetWithCells(WorksheetView, kw_only=True):
    cells: list[CellView]
    members: list[MemberView]


# -- requests -----------------------------------------------------------------------------


class Request(msgspec.Struct, tag_field="op", kw_only=True, forbid_unknown_fields=True):
    actor: str = ""


class Register(Request, tag="auth.register"):
    username: str
    password: str


class Login(Request, tag="auth.login"):
    """Check a password and make a token. `address` is the client's (the web service's
    view of it): the login throttle counts attempts per username and per address."""

    username: str
    password: str
    label: str = ""
    address: str = ""


class Authenticate(Request, tag="auth.authenticate"):
    """Who holds this token; ``unauthenticated`` if nobody (unknown, expired, revoked)."""

    token: str


class Logout(Request, tag="auth.logout"):
    token: str


class ListTokens(Request, tag="auth.tokens"):
    pass


class RevokeToken(Request, tag="auth.revoke"):
    id: str


class WhoAmI(Request, tag="auth.whoami"):
    pass


class ListUsers(Request, tag="user.list"):
    pass


class CreateWorksheet(Request, tag="worksheet.create"):
    title: str


class ListWorksheets(Request, tag="worksheet.list"):
    pass


class GetWorksheet(Request, tag="worksheet.get"):
    id: str


class RenameWorksheet(Request, tag="worksheet.rename"):
    id: str
    title: str


class DeleteWorksheet(Request, tag="worksheet.delete"):
    id: str


class ShareWorksheet(Request, tag="worksheet.share"):
    id: str
    username: str
    role: Literal["viewer", "editor", "owner", "none"]


class CreateCell(Request, tag="cell.create"):
    worksheet: str
    source: str = ""
    after: str | None = None


class UpdateCell(Request, tag="cell.update"):
    id: str
    source: str
    version: int


class MoveCell(Request, tag="cell.move"):
    id: str
    after: str | None = None


class DeleteCell(Request, tag="cell.delete"):
    id: str


class StartRun(Request, tag="cell.run"):
    """The actor runs the cell as execute_request `msg_id`: its saved outputs start over.
    Returns the cell; its worksheet's session is where to send the request."""

    id: str
    msg_id: str


class SessionRole(Request, tag="session.role"):
    """The actor's role on `session`: on the worksheet it runs, or ``owner`` of a bare
    session the actor started (``not_found`` if none)."""

    session: str


class CreateSession(Request, tag="session.create"):
    """Record the actor as the owner of `session`, a new session with no worksheet."""

    session: str


class ImportedCell(msgspec.Struct, kw_only=True):
    source: str
    outputs: list[dict[str, Any]] = msgspec.field(default_factory=list)
    execution_count: int | None = None


class ImportWorksheet(Request, tag="worksheet.import"):
    """A new worksheet of the actor's holding `cells` in order, created whole or not at all."""

    title: str
    cells: list[ImportedCell]


AnyRequest = (
    Register | Login | Authenticate | Logout | ListTokens | RevokeToken | WhoAmI | ListUsers
    | CreateWorksheet | ListWorksheets | GetWorksheet | RenameWorksheet | DeleteWorksheet
    | ShareWorksheet | CreateCell | UpdateCell | MoveCell | DeleteCell | StartRun | SessionRole
    | CreateSession | ImportWorksheet
)  # fmt: skip


# -- replies ------------------------------------------------------------------------------


class ErrorInfo(msgspec.Struct, kw_only=True):
    code: str
    message: str
    data: Any = None


class Reply(msgspec.Struct, kw_only=True, omit_defaults=True):
    result: Any = None
    error: ErrorInfo | None = None


_request_decoder = msgspec.json.Decoder(AnyRequest)
_reply_decoder = msgspec.json.Decoder(Reply)
_encoder = msgspec.json.Encoder()


def decode_request(data: bytes) -> AnyRequest:
    try:
        return _request_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValidationError(f"bad accounts request: {exc}") from None


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


# -- announcements ------------------------------------------------------------------------


class AccessChanged(msgspec.Struct, kw_only=True, tag_field="change", tag="session"):
    """On `keys.ACCESS_CHANGES`: who may use `session` changed (a worksheet's members changed,
    or the worksheet was deleted). Web processes drop the roles they remembered for it."""

    session: str

    def encode(self) -> bytes:
        return _encoder.encode(self)

    @staticmethod
    def decode(data: bytes) -> AccessChanged | TokenRevoked:
        """The announcement in `data` (either kind); ValueError if it is not one."""
        try:
            return _access_changed_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise ValueError(f"bad access change: {exc}") from None


class TokenRevoked(msgspec.Struct, kw_only=True, tag_field="change", tag="token"):
    """On `keys.ACCESS_CHANGES`: a token of user `user` (an id) was revoked (a logout or
    ``auth.revoke``). `token_hash` is the hex SHA-256 of the token, never the token. Web
    processes stop trusting it at once and close the WebSockets opened with it."""

    user: str
    token_hash: str

    def encode(self) -> bytes:
        return _encoder.encode(self)


_access_changed_decoder = msgspec.json.Decoder(AccessChanged | TokenRevoked)


class AccountsClient:
    """Calls the accounts service over the bus; errors come back as `RemoteError`."""

    def __init__(self, bus: Bus, *, timeout: float = 10.0) -> None:
        self.bus = bus
        self.timeout = timeout

    async def call(self, request: Request, result_type: Any = Any) -> Any:
        data = await self.bus.request(keys.ACCOUNTS, encode(request), timeout=self.timeout)
        reply = _reply_decoder.decode(data)
        if reply.error is not None:
            raise RemoteError(reply.error.code, reply.error.message, reply.error.data)
        return (
            msgspec.convert(reply.result, result_type) if result_type is not Any else reply.result
        )
