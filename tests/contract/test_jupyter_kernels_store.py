"""The store's record of the Jupyter API's kernels (``jupyter_kernels``), on PostgreSQL and
on the embedded SQLite alike: written with its worksheet, seen by the worksheet's members
only, one Jupyter session per kernel, gone with its worksheet."""

from __future__ import annotations

import uuid
from typing import Any

from cellbus_accounts.store import Store, User, Worksheet
from cellbus_accounts.store.jupyter import JupyterKernelRows, JupyterSessionFields

from .test_store import database_url, new_user, store  # noqa: F401  # the fixtures

NOTEBOOK = JupyterSessionFields(str(uuid.uuid4()), "a.ipynb", "a.ipynb", "notebook")


async def kernel_of(store: Store, owner: User, jupyter: JupyterSessionFields) -> Worksheet:  # noqa: F811
    session = uuid.uuid4().hex

    async def also(db: Any, worksheet_id: uuid.UUID) -> None:
        await JupyterKernelRows.add(db, session, worksheet_id, "python3", jupyter)

    return await store.create_worksheet(owner, "Jupyter kernel", session, b"first", [], also)


async def test_a_kernel_is_seen_by_its_worksheets_members(store: Store) -> None:  # noqa: F811
    ada, bob = await new_user(store, "ada"), await new_user(store, "bob")
    sheet = await kernel_of(store, ada, NOTEBOOK)
    rows = store.jupyter_kernels
    [kernel] = await rows.visible_to(ada.id)
    assert (kernel.session, kernel.name, kernel.role) == (sheet.session, "python3", "owner")
    assert kernel.jupyter == NOTEBOOK
    assert await rows.visible_to(bob.id) == []
    assert await rows.get(sheet.session, bob.id) is None
    await store.set_role(sheet.id, bob.id, "viewer")
    seen = await rows.get(sheet.session, bob.id)
    assert seen is not None and seen.role == "viewer"


async def test_a_jupyter_session_moves_between_kernels_and_goes_with_its_worksheet(
    store: Store,  # noqa: F811
) -> None:
    ada = await new_user(store, "ada")
    first = await kernel_of(store, ada, NOTEBOOK)
    second = await kernel_of(store, ada, JupyterSessionFields())
    rows = store.jupyter_kernels
    await rows.attach(second.session, NOTEBOOK)  # taken off the first: one kernel each
    by_session = {k.session: k.jupyter for k in await rows.visible_to(ada.id)}
    assert by_session == {first.session: JupyterSessionFields(None, "a.ipynb", "a.ipynb",
                                                              "notebook"),
                          second.session: NOTEBOOK}  # fmt: skip
    await rows.forget(second.session)
    await store.delete_worksheet(first.id)
    assert await rows.visible_to(ada.id) == []
