"""Named checkpoints of a worksheet's document through the API (``worksheet.checkpoint``,
``worksheet.checkpoints``, ``worksheet.restore_checkpoint``, ``worksheet.delete_checkpoint``):
saved, listed, restored as one new edit that another person's open document receives live,
with saved outputs kept by cell id; roles; the cap and the size limit.

Every test runs on the services apart (Redis, PostgreSQL, two web processes) and on the one
program (in-process bus, SQLite).
"""

from __future__ import annotations

import base64
import random
from typing import Any

from ..support.api import Client, new_user
from ..support.doc_client import DocClient
from ..support.fixtures import both_stacks, signed_in
from ..support.polling import eventually
from ..support.stack import Stack

FORBIDDEN, NOT_FOUND, TOO_LARGE = -32003, -32004, -32013
CAP = 100  # checkpoints kept per worksheet (handlers.MAX_CHECKPOINTS)


stack = both_stacks()


ada = signed_in("ada")


bob = signed_in("bob", web=-1)


async def sheet_of(owner: Client, *sources: str) -> tuple[str, list[dict[str, Any]]]:
    sheet = await owner.call("worksheet.create", title="Checkpoints")
    cells: list[dict[str, Any]] = []
    for source in sources:
        after = cells[-1]["id"] if cells else None
        cells.append(
            await owner.call("cell.create", worksheet=sheet["id"], source=source, after=after)
        )
    return sheet["id"], cells


async def cells_of(client: Client, worksheet: str) -> list[tuple[str, str, str]]:
    cells = (await client.call("worksheet.get", id=worksheet))["cells"]
    return [(c["id"], c["cell_type"], c["source"]) for c in cells]


def seen_by(doc: DocClient) -> list[tuple[str, str, str]]:
    return [(c.id, c.cell_type, c.source) for c in doc.notebook.read_cells()]


async def doc_updates_since(client: Client, session: str, cursor: int) -> list[dict[str, Any]]:
    page = await client.call("feed.poll", session=session, since=cursor, timeout=0)
    return [m for m in page["messages"] if m["header"]["msg_type"] == "doc_update"]


async def test_a_restore_is_one_new_edit_that_an_open_document_shows_live(
    stack: Stack, ada: Client, bob: Client
) -> None:
    worksheet, (first, second) = await sheet_of(ada, "a = 1", "b = 2")
    await ada.call("worksheet.share", id=worksheet, username=bob.username, role="editor")
    saved = await ada.call("worksheet.checkpoint", id=worksheet, name="Both cells")
    assert (saved["name"], saved["username"]) == ("Both cells", ada.username)
    assert saved["size"] > 0
    at_start = await cells_of(ada, worksheet)
    # then everything changes: a cell edited, one deleted, one added, a type changed
    await ada.call("cell.update", id=first["id"], source="a = 100")
    await ada.call("cell.delete", id=second["id"])
    added = await ada.call("cell.create", worksheet=worksheet, source="# notes", after=None)
    await ada.call("cell.update", id=added["id"], cell_type="markdown")
    later = await bob.call("worksheet.checkpoint", id=worksheet)  # named after the time
    assert later["name"].startswith("Checkpoint ") and later["username"] == bob.username
    listed = await bob.call("worksheet.checkpoints", id=worksheet)
    assert [c["id"] for c in listed] == [later["id"], saved["id"]]  # newest first
    assert listed[1] == saved

    doc = DocClient(bob.token or "", worksheet, [bob.url], random.Random(1))
    await doc.connect()
    await doc.until_acked()  # (the handshake may send what it has: nothing new)
    assert seen_by(doc) == await cells_of(ada, worksheet) != at_start
    session = (await ada.call("worksheet.get", id=worksheet))["session"]
    cursor = (await ada.call("feed.cursor", session=session))["cursor"]
    restored = await ada.call("worksheet.restore_checkpoint", id=worksheet, checkpoint=saved["id"])
    assert restored == {"checkpoint": saved, "changed": True, "update": None}
    assert await cells_of(ada, worksheet) == at_start  # the same ids, types and sources
    await eventually(lambda: shows(doc, at_start))  # bob's open copy, live
    edits = await doc_updates_since(ada, session, cursor)
    assert [m["header"]["username"] for m in edits] == [ada.username]  # one update, hers
    again = await ada.call("worksheet.restore_checkpoint", id=worksheet, checkpoint=saved["id"])
    assert again["changed"] is False
    assert await doc_updates_since(ada, session, cursor) == edits  # nothing written
    # the newer checkpoint still holds the state in between: history was not rewritten
    await bob.call("worksheet.restore_checkpoint", id=worksheet, checkpoint=later["id"])
    now = await cells_of(ada, worksheet)
    assert [(c[1], c[2]) for c in now] == [("markdown", "# notes"), ("code", "a = 100")]
    await eventually(lambda: shows(doc, now))
    assert doc.errors == []
    await doc.close()


async def shows(doc: DocClient, cells: list[tuple[str, str, str]]) -> bool:
    return seen_by(doc) == cells


async def test_cells_brought_back_have_their_saved_outputs(ada: Client) -> None:
    worksheet, (cell,) = await sheet_of(ada, "print('kept')")
    run = await ada.call("cell.evaluate", id=cell["id"])

    async def saved() -> bool:
        [got] = (await ada.call("worksheet.get", id=worksheet))["cells"]
        return bool(got["run_msg_id"] == run["msg_id"] and got["outputs"])

    await eventually(saved, timeout=60)
    [before] = (await ada.call("worksheet.get", id=worksheet))["cells"]
    checkpoint = await ada.call("worksheet.checkpoint", id=worksheet, name="With output")
    await ada.call("cell.delete", id=cell["id"])
    assert (await ada.call("worksheet.get", id=worksheet))["cells"] == []
    await ada.call("worksheet.restore_checkpoint", id=worksheet, checkpoint=checkpoint["id"])
    [after] = (await ada.call("worksheet.get", id=worksheet))["cells"]
    assert after["id"] == cell["id"]
    assert after["outputs"] == before["outputs"]
    assert after["outputs"][0]["text"] == "kept\n"


async def test_without_apply_the_edit_comes_back_for_the_client_to_make(
    ada: Client, bob: Client
) -> None:
    """What the browser does: it asks for the edit, applies it to its own copy and sends it as
    its own update, so that its undo can take it back."""
    worksheet, (cell,) = await sheet_of(ada, "x = 1")
    await ada.call("worksheet.share", id=worksheet, username=bob.username, role="editor")
    checkpoint = await ada.call("worksheet.checkpoint", id=worksheet)
    await ada.call("cell.update", id=cell["id"], source="x = 2")
    doc = DocClient(bob.token or "", worksheet, [bob.url], random.Random(2))
    await doc.connect()
    answer = await ada.call(
        "worksheet.restore_checkpoint", id=worksheet, checkpoint=checkpoint["id"], apply=False
    )
    assert answer["changed"] is True and answer["update"]
    assert [c[2] for c in await cells_of(ada, worksheet)] == ["x = 2"]  # not made
    feed = await ada.socket()
    await feed.subscribe(worksheet=worksheet, cursor="now")
    acked = await feed.doc_update(worksheet, base64.b64decode(answer["update"]), ref=1)
    assert (acked["type"], acked["ref"]) == ("doc_ack", 1)
    assert await cells_of(ada, worksheet) == [(cell["id"], "code", "x = 1")]
    await eventually(lambda: shows(doc, [(cell["id"], "code", "x = 1")]))
    again = await ada.call(
        "worksheet.restore_checkpoint", id=worksheet, checkpoint=checkpoint["id"], apply=False
    )
    assert (again["changed"], again["update"]) == (False, "")
    await feed.close()
    await doc.close()


async def test_viewers_list_checkpoints_only_and_strangers_see_none(
    stack: Stack, ada: Client, bob: Client
) -> None:
    worksheet, _ = await sheet_of(ada, "secret = 1")
    checkpoint = await ada.call("worksheet.checkpoint", id=worksheet, name="Mine")
    stranger = await new_user(stack.urls[0], "eve")
    await ada.call("worksheet.share", id=worksheet, username=bob.username, role="viewer")
    assert [c["id"] for c in await bob.call("worksheet.checkpoints", id=worksheet)] == [
        checkpoint["id"]
    ]
    calls: list[tuple[str, dict[str, Any]]] = [
        ("worksheet.checkpoint", {"id": worksheet}),
        ("worksheet.restore_checkpoint", {"id": worksheet, "checkpoint": checkpoint["id"]}),
        ("worksheet.restore_checkpoint",
         {"id": worksheet, "checkpoint": checkpoint["id"], "apply": False}),
        ("worksheet.delete_checkpoint", {"id": worksheet, "checkpoint": checkpoint["id"]}),
    ]  # fmt: skip
    for method, params in calls:
        assert (await bob.error(method, **params)).code == FORBIDDEN, method
    for method, params in [*calls, ("worksheet.checkpoints", {"id": worksheet})]:
        assert (await stranger.error(method, **params)).code == NOT_FOUND, method
    assert [c["id"] for c in await ada.call("worksheet.checkpoints", id=worksheet)] == [
        checkpoint["id"]
    ]
    await ada.call("worksheet.delete_checkpoint", id=worksheet, checkpoint=checkpoint["id"])
    assert await ada.call("worksheet.checkpoints", id=worksheet) == []
    gone = await ada.error(
        "worksheet.restore_checkpoint", id=worksheet, checkpoint=checkpoint["id"]
    )
    assert gone.code == NOT_FOUND
    await stranger.close()


async def test_a_worksheet_keeps_its_newest_hundred_checkpoints(ada: Client) -> None:
    worksheet, _ = await sheet_of(ada, "n = 0")
    saved = [
        (await ada.call("worksheet.checkpoint", id=worksheet, name=f"c{i}"))["id"]
        for i in range(CAP + 2)
    ]
    listed = await ada.call("worksheet.checkpoints", id=worksheet)
    assert [c["id"] for c in listed] == saved[::-1][:CAP]  # the two oldest went
    assert listed[-1]["name"] == "c2"


async def test_a_document_over_the_size_limit_is_not_checkpointed(ada: Client) -> None:
    worksheet, _ = await sheet_of(ada)
    after = None
    for _ in range(9):  # 9 cells of 0.95 MB: over the 8 MiB a checkpoint holds
        cell = await ada.call("cell.create", worksheet=worksheet, source="x" * 950_000,
                              after=after)  # fmt: skip
        after = cell["id"]
    refused = await ada.error("worksheet.checkpoint", id=worksheet)
    assert refused.code == TOO_LARGE
    assert "a checkpoint holds at most 8,388,608" in refused.message
    assert await ada.call("worksheet.checkpoints", id=worksheet) == []


async def test_an_edit_too_large_for_a_client_to_send_is_made_by_the_service(ada: Client) -> None:
    """Bringing back two cells of 0.6 MB is over the 1 MiB a client's update may have: asked
    for the edit (``apply`` false), the service makes it itself and says so (no update)."""
    worksheet, cells = await sheet_of(ada, "a" * 600_000, "b" * 600_000)
    checkpoint = await ada.call("worksheet.checkpoint", id=worksheet)
    for cell in cells:
        await ada.call("cell.delete", id=cell["id"])
    answer = await ada.call(
        "worksheet.restore_checkpoint", id=worksheet, checkpoint=checkpoint["id"], apply=False
    )
    assert (answer["changed"], answer["update"]) == (True, None)
    assert [c[0] for c in await cells_of(ada, worksheet)] == [c["id"] for c in cells]
