"""The accounts operations behind the Jupyter Server API's kernels and sessions.

A kernel started through ``POST /api/kernels`` (or ``/api/sessions``) is the session of a new
worksheet of the caller's, so it is shared, watched and checkpointed like any other; this
module keeps the list the Jupyter API shows (``jupyter_kernels``). Who may do what is the
worksheet's role: viewers see a kernel, editors take it off the list or attach a Jupyter
session to it. Someone with no role gets ``not_found``.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from cellbus_protocol import accounts as a
from cellbus_protocol.roles import Role, role_allows, too_low

from .documents import default_metadata, new_document
from .errors import AccountsError
from .store import Store
from .store.jupyter import JupyterKernel, JupyterKernelRows, JupyterSessionFields

if TYPE_CHECKING:
    from .handlers import Handlers

MAX_FIELD = 1000
"""The longest kernelspec name, path, session name or type kept."""


def kernel_view(kernel: JupyterKernel) -> a.JupyterKernelView:
    return a.JupyterKernelView(
        session=kernel.session, worksheet=str(kernel.worksheet_id), name=kernel.name,
        created_at=kernel.created_at.isoformat(), jupyter_session=kernel.jupyter.id,
        path=kernel.jupyter.path, session_name=kernel.jupyter.name,
        session_type=kernel.jupyter.type,
    )  # fmt: skip


class JupyterKernelHandlers:
    """The ``jupyter.*`` requests, over the handlers' store and their checks of the actor."""

    def __init__(self, handlers: Handlers, store: Store) -> None:
        self.handlers = handlers
        self.rows: JupyterKernelRows = store.jupyter_kernels
        self.store = store

    def table(self) -> dict[type, Callable[[Any], Awaitable[Any]]]:
        return {
            a.StartJupyterKernel: self.start, a.ListJupyterKernels: self.list,
            a.GetJupyterKernel: self.get, a.ForgetJupyterKernel: self.forget,
            a.SetJupyterSession: self.set_session,
        }  # fmt: skip

    async def start(self, request: a.StartJupyterKernel) -> a.JupyterKernelView:
        user = await self.handlers._actor(request)
        title = self.handlers._check_title(request.title)
        jupyter = _fields(
            request.jupyter_session, request.path, request.session_name, request.session_type
        )
        name = _field(request.name, "name")
        session = uuid.uuid4().hex
        also = functools.partial(_add_row, session=session, name=name, jupyter=jupyter)
        document = new_document([], default_metadata())
        await self.store.create_worksheet(user, title, session, document, [], also)
        return await self._visible(session, user.id, "viewer")

    async def list(self, request: a.ListJupyterKernels) -> list[a.JupyterKernelView]:
        user = await self.handlers._actor(request)
        return [kernel_view(k) for k in await self.rows.visible_to(user.id)]

    async def get(self, request: a.GetJupyterKernel) -> a.JupyterKernelView:
        user = await self.handlers._actor(request)
        return await self._visible(request.session, user.id, "viewer")

    async def forget(self, request: a.ForgetJupyterKernel) -> None:
        user = await self.handlers._actor(request)
        await self._visible(request.session, user.id, "editor")
        await self.rows.forget(request.session)

    async def set_session(self, request: a.SetJupyterSession) -> a.JupyterKernelView:
        user = await self.handlers._actor(request)
        await self._visible(request.session, user.id, "editor")
        jupyter = _fields(
            request.jupyter_session, request.path, request.session_name, request.session_type
        )
        await self.rows.attach(request.session, jupyter)
        return await self._visible(request.session, user.id, "viewer")

    async def _visible(self, session: str, user_id: uuid.UUID, needs: Role) -> a.JupyterKernelView:
        kernel = await self.rows.get(session, user_id)
        if kernel is None:
            raise AccountsError("not_found", f"no kernel {session}")
        if not role_allows(kernel.role, needs):
            raise AccountsError("forbidden", too_low(kernel.role, needs))
        return kernel_view(kernel)


async def _add_row(
    db: Any, worksheet_id: uuid.UUID, *, session: str, name: str, jupyter: JupyterSessionFields
) -> None:
    await JupyterKernelRows.add(db, session, worksheet_id, name, jupyter)


def _field(value: str, what: str) -> str:
    if len(value) > MAX_FIELD:
        raise AccountsError("invalid", f"{what}: at most {MAX_FIELD} characters")
    return value


def _fields(jupyter_session: str | None, path: str, name: str, kind: str) -> JupyterSessionFields:
    if jupyter_session is not None:
        try:
            jupyter_session = str(uuid.UUID(jupyter_session))
        except ValueError:
            raise AccountsError("invalid", "jupyter_session: a UUID") from None
    return JupyterSessionFields(
        jupyter_session, _field(path, "path"), _field(name, "session_name"), _field(kind, "type")
    )
