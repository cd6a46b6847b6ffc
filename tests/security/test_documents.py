"""A worksheet's document as an attacker meets it: over the WebSocket, with the roles it has
or has not, with bytes that are not what they claim, and as an editor who writes a document
that breaks the schema on purpose.

Every test runs on the services apart and on the one program (SQLite).
"""

from __future__ import annotations

import contextlib
from typing import Any

import nbformat
from pycrdt import Array, Map, Text

from ..support.api import Client, Feed
from ..support.doc_client import b64
from ..support.documents import Replica
from ..support.fixtures import both_stacks, signed_in

INVALID_REQUEST, INVALID_PARAMS, FORBIDDEN, NOT_FOUND = -32600, -32602, -32003, -32004
TOO_LARGE = -32013


stack = both_stacks()


ada = signed_in("ada")


eve = signed_in("eve", web=-1)


async def sheet_with_cell(ada: Client) -> tuple[str, dict[str, Any]]:
    sheet = await ada.call("worksheet.create", title="Guarded")
    cell = await ada.call("cell.create", worksheet=sheet["id"], source="secret = 1")
    return sheet["id"], cell


async def edit_of(feed: Feed, worksheet: str, change: Any) -> bytes:
    """An update made on a copy of the worksheet's document (as a client makes one)."""
    replica = Replica()
    replica.apply((await feed.doc_sync(worksheet))["update"])
    before = replica.notebook.doc.get_state()
    with replica.notebook.doc.transaction():
        change(replica.notebook)
    return replica.notebook.doc.get_update(before)


async def test_a_stranger_can_neither_read_nor_write_a_document(ada: Client, eve: Client) -> None:
    worksheet, _ = await sheet_with_cell(ada)
    feed = await eve.socket()
    refused = await feed.doc_sync(worksheet)
    assert (refused["type"], refused["code"]) == ("error", NOT_FOUND)
    refused = await feed.doc_update(worksheet, b"\x00\x00", ref=1)
    assert (refused["type"], refused["code"], refused["ref"]) == ("error", NOT_FOUND, 1)
    await feed.close()


async def test_a_viewer_reads_but_cannot_write_the_document(ada: Client, eve: Client) -> None:
    worksheet, _ = await sheet_with_cell(ada)
    await ada.call("worksheet.share", id=worksheet, username=eve.username, role="viewer")
    feed = await eve.socket()
    state = await feed.doc_sync(worksheet)
    replica = Replica()
    replica.apply(state["update"])
    assert replica.sources == ["secret = 1"]
    update = await edit_of(feed, worksheet, lambda nb: nb.set_source(0, "secret = 2"))
    refused = await feed.doc_update(worksheet, update, ref=7)
    assert (refused["type"], refused["code"], refused["ref"]) == ("error", FORBIDDEN, 7)
    shown = await ada.call("worksheet.get", id=worksheet)
    assert [c["source"] for c in shown["cells"]] == ["secret = 1"]
    await feed.close()


async def test_bytes_that_are_not_an_update_are_refused_and_change_nothing(ada: Client) -> None:
    worksheet, _ = await sheet_with_cell(ada)
    feed = await ada.socket()
    for ref, junk in enumerate((b"\xff\xff\xff", b"garbage that is not yjs", b""), start=1):
        refused = await feed.doc_update(worksheet, junk, ref=ref)
        assert (refused["type"], refused["code"]) == ("error", INVALID_PARAMS), junk
    refused = await feed.doc_sync(worksheet, state_vector=b"\xff\xff")
    assert (refused["type"], refused["code"]) == ("error", INVALID_PARAMS)
    await feed.ws.send_json({"op": "doc_update", "worksheet": worksheet, "update": "%%%", "ref": 9})
    bad = await feed.frame(lambda f: f["type"] == "error")
    assert bad["code"] == INVALID_REQUEST and "base64" in bad["message"]
    shown = await ada.call("worksheet.get", id=worksheet)
    assert [c["source"] for c in shown["cells"]] == ["secret = 1"]
    # the socket is still good
    assert (await feed.doc_update(worksheet, b"\x00\x00", ref=10))["type"] == "doc_ack"
    await feed.close()


async def test_an_update_over_the_limit_is_refused_as_too_large(ada: Client) -> None:
    worksheet, _ = await sheet_with_cell(ada)
    feed = await ada.socket()
    huge = await edit_of(feed, worksheet, lambda nb: nb.set_source(0, "x" * (1024 * 1024 + 10)))
    refused = await feed.doc_update(worksheet, huge, ref=1)
    assert (refused["type"], refused["code"]) == ("error", TOO_LARGE)
    await feed.close()
    # more than a frame may hold (2 MiB): the socket is closed (1009), nothing else breaks
    closing = await ada.socket()
    with contextlib.suppress(ConnectionError):  # the server may close while it is sent
        await closing.ws.send_str("x" * (3 * 1024 * 1024))
    message = await closing.ws.receive()
    # Closed as too big (1009), or, if the server closed it while the client was still
    # writing, lost (1006); either way the document is as it was (below).
    assert closing.ws.close_code in (1009, 1006), message
    assert (await ada.call("worksheet.get", id=worksheet))["cells"][0]["source"] == "secret = 1"


async def test_awareness_needs_a_subscription_and_a_real_update(ada: Client) -> None:
    worksheet, _ = await sheet_with_cell(ada)
    feed = await ada.socket()
    state = b'{"user":{"name":"ada"}}'
    good = bytes([1, 5, 1, len(state)]) + state
    await feed.ws.send_json({"op": "awareness", "worksheet": worksheet, "update": b64(good)})
    refused = await feed.frame(lambda f: f["type"] == "error")
    assert "subscribe to the worksheet first" in refused["message"]
    await feed.subscribe(worksheet=worksheet, cursor="now")
    for junk in (b"\x05\x01", good + b"trailing", bytes([1, 5, 1, 200]) + state, good * 400):
        await feed.ws.send_json({"op": "awareness", "worksheet": worksheet, "update": b64(junk)})
        refused = await feed.frame(lambda f: f["type"] == "error")
        assert refused["code"] == INVALID_REQUEST and refused["message"].startswith("awareness")
    await feed.close()


async def test_an_editor_who_breaks_the_schema_breaks_nothing_for_the_others(
    ada: Client, eve: Client
) -> None:
    """Clients write the document directly, so an editor may write anything Yjs can hold:
    cells without ids, numbers for text, keys of their own, a cell that is not a map. The
    worksheet still opens, exports to a valid notebook and runs."""
    worksheet, cell = await sheet_with_cell(ada)
    await ada.call("worksheet.share", id=worksheet, username=eve.username, role="editor")
    feed = await eve.socket()

    def vandalise(notebook: Any) -> None:
        cells: Array[Any] = notebook.cells
        cells.append(Map({"cell_type": "code", "source": Text("no id")}))
        cells.append(Map({"id": 42, "cell_type": "sql", "source": 7, "metadata": "tags"}))
        cells.append("not a cell at all")
        cells.append(Map({"id": "x" * 200, "cell_type": "markdown", "source": Text("long id"),
                          "attachments": ["not", "a", "dict"], "evil": Text("extra")}))  # fmt: skip
        notebook.meta["metadata"] = "not a map"
        notebook.meta["nbformat"] = "four"

    update = await edit_of(feed, worksheet, vandalise)
    assert (await feed.doc_update(worksheet, update, ref=1))["type"] == "doc_ack"
    shown = await ada.call("worksheet.get", id=worksheet)
    assert [(c["id"], c["cell_type"], c["source"]) for c in shown["cells"]] == [
        (cell["id"], "code", "secret = 1"), ("x" * 200, "markdown", "long id"),
    ]  # fmt: skip
    exported = await ada.call("worksheet.export", id=worksheet)
    nbformat.validate(nbformat.from_dict(exported))
    run = await ada.call("cell.evaluate", id=cell["id"], worksheet=worksheet)
    assert run["msg_id"]
    await feed.close()


async def test_the_api_never_reaches_another_users_cell_through_a_shared_id(
    ada: Client, eve: Client
) -> None:
    """Imported notebooks keep their cell ids, so two worksheets may hold the same id: a
    cell method finds only the caller's."""
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"id": "same-id", "cell_type": "code", "source": "mine = 1", "metadata": {},
         "outputs": [], "execution_count": None}]}  # fmt: skip
    ours = await ada.call("worksheet.import", notebook=notebook, title="Ada's")
    await eve.call("worksheet.import", notebook=notebook, title="Eve's")
    await eve.call("cell.update", id="same-id", source="eve was here")
    assert (await ada.call("worksheet.get", id=ours["id"]))["cells"][0]["source"] == "mine = 1"
    mine_too = await ada.call("worksheet.import", notebook=notebook, title="Ada's copy")
    ambiguous = await ada.error("cell.update", id="same-id", source="which?")
    assert ambiguous.code == INVALID_PARAMS and "name the worksheet" in ambiguous.message
    await ada.call("cell.update", id="same-id", source="this one", worksheet=mine_too["id"])
    assert (await ada.call("worksheet.get", id=ours["id"]))["cells"][0]["source"] == "mine = 1"
