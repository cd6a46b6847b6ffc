"""One function per accounts operation; every permission rule of cellbus lives here.

Roles rank viewer < editor < owner (`cellbus_protocol.roles`). A viewer reads a worksheet and
watches its feed; an editor also edits and runs cells; an owner also renames, shares and
deletes it. Someone with no role gets ``not_found`` for a worksheet, as if it did not exist;
someone whose role is too low gets ``forbidden``. Every change to a worksheet or cell is
announced on its session feed with the acting user, so every viewer follows edits live.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from cellbus_protocol import accounts as a
from cellbus_protocol import codec, isolation, keys
from cellbus_protocol import messages as m
from cellbus_protocol.bus import Bus
from cellbus_protocol.envelope import new_message
from cellbus_protocol.errors import BusError
from cellbus_protocol.roles import Role, role_allows, too_low

from . import passwords
from .checkpoints import cells_of, restore, restore_update, state_of
from .config import AccountsSettings
from .documents import (
    SERVICE,
    Author,
    DocumentError,
    DocumentOf,
    Documents,
    default_metadata,
    new_document,
)
from .errors import AccountsError as AccountsError  # re-exported: the service raises it
from .jupyter_kernels import JupyterKernelHandlers
from .notebook_doc import CellContent, NotebookDoc, new_cell_id
from .saver import OutputSaver
from .store import (
    CellRecord,
    Checkpoint,
    LoginLimits,
    NewCellRecord,
    Store,
    StoreUnavailable,
    UniqueViolation,
    User,
    Worksheet,
)

log = logging.getLogger(__name__)

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,31}$")
MAX_TITLE = 200
MAX_IMPORTED_CELLS = 10_000
MAX_VERSION = 2**31 - 1  # a PostgreSQL integer
MAX_ANNOUNCED_PATHS = 100  # a files_changed names at most this many paths (a folder for more)
MAX_ANNOUNCED_PATH = 4096  # bytes of one path (PATH_MAX)
CELL_ID = re.compile(r"[a-zA-Z0-9_-]{1,64}")  # nbformat 4.5's rule for cell ids
MAX_CHECKPOINTS = 100  # per worksheet: saving one more drops the oldest
MAX_CHECKPOINT_NAME = 200  # characters
MAX_CHECKPOINT_BYTES = 8 * 1024 * 1024  # of a checkpoint's data: the cells' text, metadata


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time(value: str | None) -> datetime | None:
    """A time from an imported notebook (``metadata.cellbus.run_at``); None if it is not
    one."""
    try:
        parsed = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed and parsed.tzinfo is None else parsed


def user_view(user: User) -> a.UserView:
    return a.UserView(
        id=str(user.id), username=user.username, is_admin=user.is_admin,
        created_at=user.created_at.isoformat(),
    )  # fmt: skip


def worksheet_view(sheet: Worksheet) -> a.WorksheetView:
    return a.WorksheetView(
        id=str(sheet.id), title=sheet.title, session=sheet.session, owner=sheet.owner,
        role=sheet.role, created_at=sheet.created_at.isoformat(),
        updated_at=sheet.updated_at.isoformat(),
    )  # fmt: skip


def cell_view(sheet: Worksheet, content: CellContent, record: CellRecord | None) -> a.CellView:
    """A cell as clients see it: what the document holds, and its record beside it (a cell
    no update has counted yet, or never run, has none)."""
    return a.CellView(
        id=content.id, worksheet=str(sheet.id), cell_type=content.cell_type,
        source=content.source, metadata=content.metadata, attachments=content.attachments,
        version=record.version if record else 1,
        outputs=record.outputs if record else [],
        execution_count=record.execution_count if record else content.execution_count,
        run_by=record.run_by if record else None,
        run_at=_iso(record.run_at) if record else None,
        run_msg_id=record.run_msg_id if record else None,
    )  # fmt: skip


def checkpoint_view(checkpoint: Checkpoint) -> a.CheckpointView:
    return a.CheckpointView(
        id=str(checkpoint.id), name=checkpoint.name, created=checkpoint.created_at.isoformat(),
        username=checkpoint.username, size=checkpoint.size,
    )  # fmt: skip


def _index_of(notebook: NotebookDoc, cell_id: str) -> int:
    index = notebook.index_of(cell_id)
    if index is None:
        raise AccountsError("not_found", f"no cell {cell_id}")
    return index


def _index_after(notebook: NotebookDoc, after: str | None) -> int:
    """Where a cell placed just after cell `after` goes (None: at the top)."""
    if after is None:
        return 0
    index = notebook.index_of(after)
    if index is None:
        raise AccountsError("not_found", f"no cell {after} here")
    return index + 1


def author_of(user: User) -> Author:
    return Author(user.id, user.username)


def _uuid(value: str | None, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise AccountsError("not_found", f"no {what} {value!r}") from None


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Handlers:
    """The accounts operations over a store, announcing changes on the bus."""

    def __init__(
        self,
        store: Store,
        bus: Bus,
        settings: AccountsSettings,
        saver: OutputSaver | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.settings = settings
        self.saver = saver
        self.documents = Documents(store, bus, max_update_bytes=settings.max_update_bytes)
        if saver is not None:
            saver.on_counted = self._count_in_document
        self.login_limits = LoginLimits(
            attempts=settings.login_attempts, clean_reserve=settings.login_clean_reserve,
            window=settings.login_window, per_address=settings.login_address_attempts,
        )  # fmt: skip
        self._table: dict[type, Callable[[Any], Awaitable[Any]]] = {
            a.Register: self.register, a.Login: self.login, a.Authenticate: self.authenticate,
            a.Logout: self.logout, a.ListTokens: self.list_tokens, a.RevokeToken: self.revoke,
            a.WhoAmI: self.whoami, a.ListUsers: self.list_users,
            a.CreateWorksheet: self.create_worksheet, a.ListWorksheets: self.list_worksheets,
            a.GetWorksheet: self.get_worksheet, a.GetWorksheetSession: self.worksheet_session,
            a.RenameWorksheet: self.rename_worksheet,
            a.DeleteWorksheet: self.delete_worksheet, a.ShareWorksheet: self.share_worksheet,
            a.CreateCell: self.create_cell, a.UpdateCell: self.update_cell,
            a.MoveCell: self.move_cell, a.DeleteCell: self.delete_cell,
            a.StartRun: self.start_run, a.SessionRole: self.session_role,
            a.CreateSession: self.create_session, a.ImportWorksheet: self.import_worksheet,
            a.ApplyUpdate: self.apply_update, a.SyncDocument: self.sync_document,
            a.AnnounceFilesChanged: self.files_changed,
            a.SaveCheckpoint: self.save_checkpoint, a.ListCheckpoints: self.list_checkpoints,
            a.RestoreCheckpoint: self.restore_checkpoint,
            a.DeleteCheckpoint: self.delete_checkpoint, a.ClearOutputs: self.clear_outputs,
        }  # fmt: skip
        self._table.update(JupyterKernelHandlers(self, store).table())

    async def handle(self, request: a.Request[Any]) -> Any:
        return await self.handler_for(type(request))(request)

    def handler_for(self, request_type: type[a.Request[Any]]) -> Callable[[Any], Awaitable[Any]]:
        """The method that answers requests of `request_type` (it returns the request's
        result type: tests/unit/test_accounts_requests.py checks each)."""
        return self._table[request_type]

    # -- who is asking ------------------------------------------------------------------------
    async def _actor(self, request: a.Request[Any]) -> User:
        user = None
        if request.actor:
            try:
                user = await self.store.user_by_id(uuid.UUID(request.actor))
            except ValueError:
                user = None
        if user is None:
            raise AccountsError("unauthenticated", "sign in first")
        return user

    async def _actor_on(
        self, request: a.Request[Any], worksheet_id: str, needs: Role
    ) -> tuple[Author, Worksheet]:
        """The actor and the worksheet, in one query (the actor's role on it): for requests
        as frequent as keystrokes. The actor id was set by the web service once it had
        authenticated the token; a user deleted since has no role, so gets ``not_found``."""
        try:
            actor = uuid.UUID(request.actor)
        except ValueError:
            raise AccountsError("unauthenticated", "sign in first") from None
        sheet = await self.store.worksheet_for(_uuid(worksheet_id, "worksheet"), actor)
        if sheet is None:
            raise AccountsError("not_found", f"no worksheet {worksheet_id}")
        if not role_allows(sheet.role, needs):
            raise AccountsError("forbidden", too_low(sheet.role, needs))
        return Author(actor, sheet.member), sheet

    async def _worksheet(self, worksheet_id: str, user: User, needs: Role) -> Worksheet:
        sheet = await self.store.worksheet_for(_uuid(worksheet_id, "worksheet"), user.id)
        if sheet is None:
            raise AccountsError("not_found", f"no worksheet {worksheet_id}")
        if not role_allows(sheet.role, needs):
            raise AccountsError("forbidden", too_low(sheet.role, needs))
        return sheet

    async def _announce(self, sheet: Worksheet, user: User, content: m.Content) -> None:
        msg = new_message(content, session=sheet.session, username=user.username)
        await self.bus.publish(keys.feed(sheet.session), codec.encode(msg))

    async def _access_changed(self, sheet: Worksheet) -> None:
        """Tell the web processes to forget the roles they remembered on the sheet's session
        (after the change is committed, so that asking again sees it)."""
        change = a.AccessChanged(session=sheet.session)
        await self.bus.publish(keys.ACCESS_CHANGES, codec.encode_record(change))

    # -- checks on input ----------------------------------------------------------------------
    def _check_title(self, title: str) -> str:
        title = title.strip()
        if not title or len(title) > MAX_TITLE or any(ord(c) < 32 for c in title):
            raise AccountsError("invalid", f"a title has 1 to {MAX_TITLE} printable characters")
        return title

    def _check_source(self, source: str) -> None:
        size = len(source.encode())
        if size > self.settings.max_source_bytes:
            raise AccountsError(
                "too_large",
                f"the cell source has {size:,} bytes; the limit is "
                f"{self.settings.max_source_bytes:,}",
            )

    # -- auth -----------------------------------------------------------------------------
    async def register(self, request: a.Register) -> a.UserView:
        if not USERNAME.match(request.username):
            raise AccountsError(
                "invalid", "a username has 2 to 32 letters, digits, '.', '_' or '-', "
                "and starts with a letter or digit",
            )  # fmt: skip
        if (problem := passwords.check_strength(request.password, request.username)) is not None:
            raise AccountsError("invalid", problem)
        if await self.store.count_users() > 0:
            if not self.settings.open_signup:
                raise AccountsError("forbidden", "sign-up is closed on this server")
            await self._refuse_unsandboxed()
        password_hash = await passwords.hash_password(request.password)
        try:
            user = await self.store.create_user(request.username, password_hash)
        except UniqueViolation:
            raise AccountsError("taken", f"the username {request.username!r} is taken") from None
        return user_view(user)

    async def _refuse_unsandboxed(self) -> None:
        """A second account only where user code is sandboxed (docs/security.md)."""
        if self.settings.allow_unsandboxed:
            return
        weakest = await isolation.weakest(self.bus)
        if weakest is not None and weakest.level is isolation.Level.NONE:
            raise AccountsError(
                "forbidden",
                "this server cannot sandbox user code (its kernel has no Landlock), so it is for "
                "one person only; its administrator may allow more with "
                "CELLBUS_ALLOW_UNSANDBOXED=true",
            )

    async def login(self, request: a.Login) -> a.LoginResult:
        """Counted by the throttle before the password is checked (see store/logins.py); an
        unknown username costs the same check (against a dummy hash) and the same answer."""
        ticket = await self.store.logins.begin(
            request.username, request.address, self.login_limits, time.time()
        )
        if ticket.attempt is None:
            raise AccountsError(
                "rate_limited",
                f"too many login attempts; try again in {ticket.retry_after:g} s",
                {"retry_after": ticket.retry_after},
            )
        found = await self.store.user_by_name(request.username)
        ok = await passwords.verify_password(found[1] if found else None, request.password)
        if not ok or found is None:
            raise AccountsError("unauthenticated", "wrong username or password")
        await self.store.logins.succeeded(ticket.attempt)
        token = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(days=self.settings.token_ttl_days)
        await self.store.create_token(found[0].id, token_hash(token), request.label, expires)
        return a.LoginResult(token=token, user=user_view(found[0]))

    async def authenticate(self, request: a.Authenticate) -> a.UserView:
        found = await self.store.user_by_token(token_hash(request.token))
        if found is None:
            raise AccountsError("unauthenticated", "the token is unknown, expired or revoked")
        return user_view(found[1])

    async def logout(self, request: a.Logout) -> None:
        found = await self.store.user_by_token(token_hash(request.token))
        if found is not None:
            revoked = await self.store.revoke_token(found[1].id, found[0].id)
            if revoked is not None:
                await self._token_revoked(found[1], revoked)

    async def list_tokens(self, request: a.ListTokens) -> list[a.TokenView]:
        user = await self._actor(request)
        return [
            a.TokenView(
                id=str(t.id),
                label=t.label,
                created_at=t.created_at.isoformat(),
                expires_at=t.expires_at.isoformat(),
                revoked=t.revoked_at is not None,
            )
            for t in await self.store.list_tokens(user.id)
        ]

    async def revoke(self, request: a.RevokeToken) -> None:
        user = await self._actor(request)
        revoked = await self.store.revoke_token(user.id, _uuid(request.id, "token"))
        if revoked is None:
            raise AccountsError("not_found", f"no live token {request.id}")
        await self._token_revoked(user, revoked)

    async def _token_revoked(self, user: User, hashed: bytes) -> None:
        """Tell the web processes (after the revocation is committed): they stop trusting the
        token at once and close the WebSockets opened with it."""
        change = a.TokenRevoked(user=str(user.id), token_hash=hashed.hex())
        await self.bus.publish(keys.ACCESS_CHANGES, codec.encode_record(change))

    async def whoami(self, request: a.WhoAmI) -> a.UserView:
        return user_view(await self._actor(request))

    async def list_users(self, request: a.ListUsers) -> list[a.UserView]:
        await self._actor(request)
        return [user_view(u) for u in await self.store.list_users()]

    # -- worksheets -----------------------------------------------------------------------
    async def create_worksheet(self, request: a.CreateWorksheet) -> a.WorksheetView:
        user = await self._actor(request)
        title = self._check_title(request.title)
        document = new_document([], default_metadata())
        sheet = await self.store.create_worksheet(user, title, uuid.uuid4().hex, document, [])
        return worksheet_view(sheet)

    async def import_worksheet(self, request: a.ImportWorksheet) -> a.WorksheetView:
        """A worksheet holding a notebook: its document's first update holds every cell and
        the notebook's metadata; outputs and runs go to the cells' records."""
        user = await self._actor(request)
        title = self._check_title(request.title)
        if len(request.cells) > MAX_IMPORTED_CELLS:
            raise AccountsError(
                "too_large", f"{len(request.cells):,} cells; an import holds at most "
                f"{MAX_IMPORTED_CELLS:,}",
            )  # fmt: skip
        seen: set[str] = set()
        for cell in request.cells:
            self._check_source(cell.source)
            if not CELL_ID.fullmatch(cell.id) or cell.id in seen:
                raise AccountsError(
                    "invalid", f"cell ids are unique, 1 to 64 of [a-zA-Z0-9_-]: {cell.id!r}"
                )
            seen.add(cell.id)
        contents = [
            CellContent(id=c.id, cell_type=c.cell_type, source=c.source, metadata=c.metadata,
                        attachments=c.attachments, execution_count=c.execution_count)
            for c in request.cells
        ]  # fmt: skip
        records = [
            NewCellRecord(c.id, c.outputs, c.execution_count, c.run_by, _time(c.run_at))
            for c in request.cells
        ]  # fmt: skip
        document = new_document(contents, request.metadata, request.nbformat_minor)
        if len(document) > self.settings.max_import_bytes:
            raise AccountsError(
                "too_large", f"the notebook's document has {len(document):,} bytes; the limit "
                f"is {self.settings.max_import_bytes:,}",
            )  # fmt: skip
        sheet = await self.store.create_worksheet(user, title, uuid.uuid4().hex, document, records)
        return worksheet_view(sheet)

    async def list_worksheets(self, request: a.ListWorksheets) -> list[a.WorksheetView]:
        user = await self._actor(request)
        return [worksheet_view(s) for s in await self.store.worksheets_for(user.id)]

    async def get_worksheet(self, request: a.GetWorksheet) -> a.WorksheetWithCells:
        user = await self._actor(request)
        sheet = await self._worksheet(request.id, user, "viewer")
        view = worksheet_view(sheet)
        contents, metadata, minor = await self.documents.read(
            sheet, lambda nb: (nb.read_cells(), nb.metadata(), nb.nbformat_minor())
        )
        cells = await self._views(sheet, contents)
        members = [a.MemberView(username=x.username, role=x.role)
                   for x in await self.store.members(sheet.id)]  # fmt: skip
        return a.WorksheetWithCells(
            **{f: getattr(view, f) for f in view.__struct_fields__}, cells=cells,
            members=members, metadata=metadata, nbformat_minor=minor,
        )  # fmt: skip

    async def worksheet_session(self, request: a.GetWorksheetSession) -> a.WorksheetSession:
        user = await self._actor(request)
        sheet = await self._worksheet(request.id, user, "viewer")
        return a.WorksheetSession(worksheet=str(sheet.id), session=sheet.session, role=sheet.role)

    async def rename_worksheet(self, request: a.RenameWorksheet) -> a.WorksheetView:
        user = await self._actor(request)
        sheet = await self._worksheet(request.id, user, "owner")
        title = self._check_title(request.title)
        await self.store.rename_worksheet(sheet.id, title)
        await self._announce(sheet, user, m.WorksheetRenamed(title=title))
        renamed = await self.store.worksheet_for(sheet.id, user.id)
        if renamed is None:
            raise AccountsError("not_found", f"no worksheet {request.id}")
        return worksheet_view(renamed)

    async def delete_worksheet(self, request: a.DeleteWorksheet) -> None:
        user = await self._actor(request)
        sheet = await self._worksheet(request.id, user, "owner")
        await self.store.delete_worksheet(sheet.id)
        await self._access_changed(sheet)

    async def share_worksheet(self, request: a.ShareWorksheet) -> list[a.MemberView]:
        user = await self._actor(request)
        sheet = await self._worksheet(request.id, user, "owner")
        found = await self.store.user_by_name(request.username)
        if found is None:
            raise AccountsError("not_found", f"no user {request.username!r}")
        other = found[0]
        role = None if request.role == "none" else request.role
        if other.id == user.id and role != "owner":
            raise AccountsError("invalid", "owners cannot lower their own role")
        await self.store.set_role(sheet.id, other.id, role)
        await self._access_changed(sheet)
        await self._announce(
            sheet, user, m.WorksheetShared(username=other.username, role=request.role)
        )
        return [a.MemberView(username=x.username, role=x.role)
                for x in await self.store.members(sheet.id)]  # fmt: skip

    async def files_changed(self, request: a.AnnounceFilesChanged) -> None:
        user = await self._actor(request)
        sheet = await self._worksheet(request.worksheet, user, "editor")
        if len(request.paths) > MAX_ANNOUNCED_PATHS or any(
            len(path) > MAX_ANNOUNCED_PATH for path in request.paths
        ):
            raise AccountsError("invalid", f"at most {MAX_ANNOUNCED_PATHS} paths, each short")
        await self._announce(sheet, user, m.FilesChanged(paths=request.paths))

    async def session_role(self, request: a.SessionRole) -> Role:
        user = await self._actor(request)
        try:
            keys.check_session_id(request.session)
        except ValueError:
            raise AccountsError("not_found", f"no session {request.session!r}") from None
        worksheet_id = await self.store.worksheet_by_session(request.session)
        if worksheet_id is not None:
            role = await self.store.role_of(worksheet_id, user.id)
        else:
            owner = await self.store.bare_session_owner(request.session)
            role = "owner" if owner == user.id else None
        if role is None:
            raise AccountsError("not_found", f"no session {request.session!r}")
        return role

    async def create_session(self, request: a.CreateSession) -> None:
        user = await self._actor(request)
        try:
            keys.check_session_id(request.session)
        except ValueError as exc:
            raise AccountsError("invalid", str(exc)) from None
        try:
            await self.store.create_bare_session(user.id, request.session)
        except UniqueViolation:
            raise AccountsError("taken", f"the session {request.session} exists") from None

    # -- cells: edits of the worksheet's document ---------------------------------------------
    async def _views(self, sheet: Worksheet, contents: list[CellContent]) -> list[a.CellView]:
        records = await self.store.documents.records(sheet.id)
        return [cell_view(sheet, content, records.get(content.id)) for content in contents]

    async def _cell_view(self, sheet: Worksheet, content: CellContent) -> a.CellView:
        return cell_view(sheet, content, await self.store.documents.record(sheet.id, content.id))

    async def create_cell(self, request: a.CreateCell) -> a.CellView:
        user = await self._actor(request)
        sheet = await self._worksheet(request.worksheet, user, "editor")
        self._check_source(request.source)
        content = CellContent(
            id=new_cell_id(), cell_type=request.cell_type, source=request.source,
            metadata=request.metadata,
        )  # fmt: skip

        def create(notebook: NotebookDoc) -> None:
            notebook.insert(_index_after(notebook, request.after), content)

        await self.documents.edit(sheet, author_of(user), create)
        return await self._cell_view(sheet, content)

    async def update_cell(self, request: a.UpdateCell) -> a.CellView:
        user = await self._actor(request)
        sheet = await self._sheet_of_cell(request.id, request.worksheet, user, "editor")
        if request.source is not None:
            self._check_source(request.source)
        if request.version is not None and not 1 <= request.version <= MAX_VERSION:
            raise AccountsError("invalid", f"a cell version is 1 to {MAX_VERSION}")

        async def still_at_version(notebook: NotebookDoc) -> None:
            index = _index_of(notebook, request.id)
            record = await self.store.documents.record(sheet.id, request.id)
            current = record.version if record else 1
            if request.version is not None and current != request.version:
                view = cell_view(sheet, notebook.read_cell(index), record)
                raise AccountsError(
                    "conflict", f"the cell is at version {current}, not {request.version}",
                    msgspec.to_builtins(view),
                )  # fmt: skip

        def update(notebook: NotebookDoc) -> CellContent:
            index = _index_of(notebook, request.id)
            if request.cell_type is not None:
                notebook.set_cell_type(index, request.cell_type)
            if request.source is not None:
                notebook.set_source(index, request.source)
            if request.metadata is not None:
                notebook.set_metadata(index, request.metadata)
            return notebook.read_cell(index)

        content = await self.documents.edit(sheet, author_of(user), update, check=still_at_version)
        return await self._cell_view(sheet, content)

    async def move_cell(self, request: a.MoveCell) -> a.CellView:
        user = await self._actor(request)
        sheet = await self._sheet_of_cell(request.id, request.worksheet, user, "editor")
        if request.after == request.id:
            raise AccountsError("invalid", "a cell cannot move after itself")

        def move(notebook: NotebookDoc) -> CellContent:
            index = _index_of(notebook, request.id)
            content = notebook.read_cell(index)
            to = _index_after(notebook, request.after)
            notebook.move(index, to - 1 if to > index else to)
            return content

        content = await self.documents.edit(sheet, author_of(user), move)
        return await self._cell_view(sheet, content)

    async def delete_cell(self, request: a.DeleteCell) -> None:
        user = await self._actor(request)
        sheet = await self._sheet_of_cell(request.id, request.worksheet, user, "editor")
        await self.documents.edit(
            sheet,
            author_of(user),
            lambda notebook: notebook.delete(_index_of(notebook, request.id)),
        )

    async def start_run(self, request: a.StartRun) -> a.RunStarted:
        user = await self._actor(request)
        sheet = await self._sheet_of_cell(request.id, request.worksheet, user, "editor")
        content = await self.documents.read(
            sheet, lambda notebook: notebook.read_cell(_index_of(notebook, request.id))
        )
        if content.cell_type != "code":
            raise AccountsError("invalid", f"a {content.cell_type} cell does not run")
        record = await self.store.documents.start_run(
            sheet.id, request.id, request.msg_id, user.username
        )
        if self.saver is not None:  # its outputs are saved from the feed, watched or not
            self.saver.follow(sheet.session, await self.bus.last_seq(keys.feed(sheet.session)))
        return a.RunStarted(cell=cell_view(sheet, content, record), session=sheet.session)

    async def clear_outputs(self, request: a.ClearOutputs) -> list[str]:
        """Clear the saved outputs of code cells (all, or those named that are in the
        worksheet): their records and what the saver folded of their runs, as of the feed's
        cursor now (what a saver behind the feed reads later of those runs stays cleared);
        then their execution counts in the document (one edit, after the saver can no longer
        write one back); then every page is told on the feed."""
        user = await self._actor(request)
        sheet = await self._worksheet(request.worksheet, user, "editor")
        wanted = None if request.cells is None else set(request.cells)

        def code_cells(notebook: NotebookDoc) -> list[str]:
            return [
                cell.id
                for cell in notebook.read_cells()
                if cell.cell_type == "code" and (wanted is None or cell.id in wanted)
            ]

        def clear_counts(notebook: NotebookDoc) -> None:
            for cell_id in cleared:
                index = notebook.index_of(cell_id)
                if index is not None:  # deleted meanwhile
                    notebook.set_execution_count(index, None)

        up_to = await self.bus.last_seq(keys.feed(sheet.session))
        cleared = await self.documents.read(sheet, code_cells)
        runs = await self.store.documents.clear_outputs(sheet.id, cleared, up_to)
        if self.saver is not None:
            self.saver.cleared(runs, up_to)
        await self.documents.edit(sheet, author_of(user), clear_counts)
        await self._announce(sheet, user, m.OutputsCleared(cells=cleared, cursor=up_to))
        return cleared

    async def _sheet_of_cell(
        self, cell_id: str, worksheet: str | None, user: User, needs: Role
    ) -> Worksheet:
        """The worksheet of cell `cell_id` (in `worksheet` if given): cell ids are unique
        within a worksheet only (nbformat's rule), so an id in several worksheets the user
        can see needs the worksheet named."""
        if worksheet is not None:
            return await self._worksheet(worksheet, user, needs)
        sheets = []
        for worksheet_id in await self.store.documents.worksheets_with_cell(cell_id):
            sheet = await self.store.worksheet_for(worksheet_id, user.id)
            if sheet is not None:
                sheets.append(sheet)
        if not sheets:
            raise AccountsError("not_found", f"no cell {cell_id}")
        if len(sheets) > 1:
            raise AccountsError(
                "invalid", f"the cell id {cell_id} is in {len(sheets)} of your worksheets: "
                "name the worksheet",
            )  # fmt: skip
        if not role_allows(sheets[0].role, needs):
            raise AccountsError("forbidden", too_low(sheets[0].role, needs))
        return sheets[0]

    async def _count_in_document(self, session: str, cell: CellRecord, count: int) -> None:
        """A run ended with execution count `count`: the cell's ``execution_count`` in the
        document says so too (as the YNotebook schema keeps it), written by cellbus."""

        def set_count(notebook: NotebookDoc) -> None:
            index = notebook.index_of(cell.cell_id)
            if index is not None:  # deleted since
                notebook.set_execution_count(index, count)

        sheet = DocumentOf(cell.worksheet_id, session)
        try:
            await self.documents.edit(sheet, SERVICE, set_count)
        except (StoreUnavailable, BusError) as exc:  # the outputs have it; the document not
            log.warning("the execution count of cell %s stays unwritten: %s", cell.cell_id, exc)

    # -- documents: clients' updates and the sync handshake -----------------------------------
    async def apply_update(self, request: a.ApplyUpdate) -> a.DocAck:
        """Every keystroke of every editor comes here: one query decides who may (the
        actor's role on the worksheet), then one transaction commits it."""
        author, sheet = await self._actor_on(request, request.worksheet, "editor")
        try:
            seq = await self.documents.apply(sheet, author, request.update)
        except DocumentError as exc:
            code = (
                "too_large" if len(request.update) > self.documents.max_update_bytes else "invalid"
            )
            raise AccountsError(code, str(exc)) from None
        return a.DocAck(seq=seq)

    async def sync_document(self, request: a.SyncDocument) -> a.DocState:
        user = await self._actor(request)
        sheet = await self._worksheet(request.worksheet, user, "viewer")
        try:
            return await self.documents.sync(sheet, request.state_vector)
        except DocumentError as exc:
            raise AccountsError("invalid", str(exc)) from None

    # -- named checkpoints of documents -------------------------------------------------------
    def _check_checkpoint_name(self, name: str | None) -> str:
        if name is None:
            return f"Checkpoint {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
        name = name.strip()
        if not name or len(name) > MAX_CHECKPOINT_NAME or any(ord(c) < 32 for c in name):
            raise AccountsError(
                "invalid", f"a checkpoint name has 1 to {MAX_CHECKPOINT_NAME} printable characters"
            )
        return name

    async def save_checkpoint(self, request: a.SaveCheckpoint) -> a.CheckpointView:
        """The document as it is now (every committed update), under a name; the oldest
        checkpoints past `MAX_CHECKPOINTS` go."""
        user = await self._actor(request)
        sheet = await self._worksheet(request.id, user, "editor")
        name = self._check_checkpoint_name(request.name)
        async with self.documents.locked(sheet) as loaded:
            data, seq = state_of(loaded.notebook), loaded.seq
        if len(data) > MAX_CHECKPOINT_BYTES:
            raise AccountsError(
                "too_large", f"the document has {len(data):,} bytes; a checkpoint holds at most "
                f"{MAX_CHECKPOINT_BYTES:,}",
            )  # fmt: skip
        checkpoint, _ = await self.store.checkpoints.save(
            sheet.id, name, data, seq, user.id, keep=MAX_CHECKPOINTS
        )
        return checkpoint_view(checkpoint)

    async def list_checkpoints(self, request: a.ListCheckpoints) -> list[a.CheckpointView]:
        user = await self._actor(request)
        sheet = await self._worksheet(request.id, user, "viewer")
        return [checkpoint_view(c) for c in await self.store.checkpoints.list(sheet.id)]

    async def restore_checkpoint(self, request: a.RestoreCheckpoint) -> a.CheckpointRestored:
        """The cells made the checkpoint's as one edit of the document in the actor's name
        (`checkpoints.restore`), or that edit returned to be made by the caller."""
        user = await self._actor(request)
        sheet = await self._worksheet(request.id, user, "editor")
        found = await self.store.checkpoints.get(sheet.id, _uuid(request.checkpoint, "checkpoint"))
        if found is None:
            raise AccountsError("not_found", f"no checkpoint {request.checkpoint}")
        checkpoint, data = found
        target = cells_of(data)
        view = checkpoint_view(checkpoint)
        if not request.apply:
            state = await self.documents.read(sheet, lambda nb: nb.doc.get_update())
            update = restore_update(state, target)
            if len(update) <= self.documents.max_update_bytes:  # a client may send it
                return a.CheckpointRestored(checkpoint=view, changed=bool(update), update=update)

        def make(notebook: NotebookDoc) -> bool:
            before = notebook.read_cells()
            restore(notebook, target)
            return notebook.read_cells() != before

        changed = await self.documents.edit(sheet, author_of(user), make)
        return a.CheckpointRestored(checkpoint=view, changed=changed)

    async def delete_checkpoint(self, request: a.DeleteCheckpoint) -> None:
        user = await self._actor(request)
        sheet = await self._worksheet(request.id, user, "editor")
        checkpoint_id = _uuid(request.checkpoint, "checkpoint")
        if not await self.store.checkpoints.delete(sheet.id, checkpoint_id):
            raise AccountsError("not_found", f"no checkpoint {request.checkpoint}")
