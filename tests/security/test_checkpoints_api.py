"""Named checkpoints of a worksheet's document as an attacker tries them: a viewer changes
nothing (save, restore, with or without ``apply``, delete), a stranger learns nothing (every
method is not-found, even with a real checkpoint id), a checkpoint id of another worksheet is
none of this one's, and names and params that are not what they should be are refused.

Every test runs on the services apart and on the one program (SQLite).
"""

from __future__ import annotations

import uuid
from typing import Any

from ..support.api import Client
from ..support.fixtures import both_stacks, signed_in

INVALID_PARAMS, FORBIDDEN, NOT_FOUND = -32602, -32003, -32004


stack = both_stacks()


ada = signed_in("ada")


eve = signed_in("eve", web=-1)


async def guarded(ada: Client) -> tuple[str, str]:
    """Ada's worksheet with a secret cell and a checkpoint of it."""
    sheet = await ada.call("worksheet.create", title="Guarded")
    await ada.call("cell.create", worksheet=sheet["id"], source="secret = 1")
    checkpoint = await ada.call("worksheet.checkpoint", id=sheet["id"], name="Secret")
    return sheet["id"], checkpoint["id"]


def every_call(worksheet: str, checkpoint: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("worksheet.checkpoint", {"id": worksheet, "name": "Mine now"}),
        ("worksheet.checkpoints", {"id": worksheet}),
        ("worksheet.restore_checkpoint", {"id": worksheet, "checkpoint": checkpoint}),
        ("worksheet.restore_checkpoint",
         {"id": worksheet, "checkpoint": checkpoint, "apply": False}),
        ("worksheet.delete_checkpoint", {"id": worksheet, "checkpoint": checkpoint}),
    ]  # fmt: skip


async def test_a_stranger_learns_nothing_of_another_persons_checkpoints(
    ada: Client, eve: Client
) -> None:
    worksheet, checkpoint = await guarded(ada)
    for method, params in every_call(worksheet, checkpoint):
        refused = await eve.error(method, **params)
        assert refused.code == NOT_FOUND, method
        assert "Secret" not in refused.message and "secret" not in str(refused.data)
    # her own worksheet with ada's checkpoint id: not one of hers
    own = (await eve.call("worksheet.create", title="Eve's"))["id"]
    for method, params in every_call(own, checkpoint)[2:]:
        assert (await eve.error(method, **params)).code == NOT_FOUND, method
    [kept] = await ada.call("worksheet.checkpoints", id=worksheet)
    assert (kept["id"], kept["name"]) == (checkpoint, "Secret")


async def test_a_viewer_lists_checkpoints_but_changes_nothing(ada: Client, eve: Client) -> None:
    worksheet, checkpoint = await guarded(ada)
    await ada.call("worksheet.share", id=worksheet, username=eve.username, role="viewer")
    before = (await ada.call("worksheet.get", id=worksheet))["cells"]
    await ada.call("cell.update", id=before[0]["id"], source="secret = 2")
    for method, params in every_call(worksheet, checkpoint):
        if method == "worksheet.checkpoints":
            assert len(await eve.call(method, **params)) == 1
            continue
        refused = await eve.error(method, **params)
        assert refused.code == FORBIDDEN, method
        assert "update" not in str(refused.data)  # no edit handed out to make by hand
    assert [c["id"] for c in await ada.call("worksheet.checkpoints", id=worksheet)] == [checkpoint]
    [cell] = (await ada.call("worksheet.get", id=worksheet))["cells"]
    assert cell["source"] == "secret = 2"


async def test_names_that_are_not_names_are_refused(ada: Client) -> None:
    worksheet, _ = await guarded(ada)
    for name in ("", "   ", "x" * 201, "a\nb", "tab\there", "\x00", "bell\x07"):
        refused = await ada.error("worksheet.checkpoint", id=worksheet, name=name)
        assert refused.code == INVALID_PARAMS, repr(name)
        assert "1 to 200 printable characters" in refused.message
    kept = await ada.call("worksheet.checkpoint", id=worksheet, name="  " + "y" * 200 + "  ")
    assert kept["name"] == "y" * 200  # trimmed, then 200: allowed
    assert len(await ada.call("worksheet.checkpoints", id=worksheet)) == 2


async def test_junk_params_are_refused_before_anything_happens(ada: Client) -> None:
    worksheet, checkpoint = await guarded(ada)
    junk: list[tuple[str, dict[str, Any], int]] = [
        ("worksheet.checkpoint", {"id": worksheet, "name": 7}, INVALID_PARAMS),
        ("worksheet.checkpoint", {"id": worksheet, "name": ["a"]}, INVALID_PARAMS),
        ("worksheet.checkpoint", {"id": 5}, INVALID_PARAMS),
        ("worksheet.checkpoint", {}, INVALID_PARAMS),
        ("worksheet.checkpoint", {"id": worksheet, "data": "AAA="}, INVALID_PARAMS),
        ("worksheet.checkpoint", {"id": "not-a-uuid"}, NOT_FOUND),
        ("worksheet.checkpoints", {"id": "../../etc/passwd"}, NOT_FOUND),
        ("worksheet.checkpoints", {"id": str(uuid.uuid4())}, NOT_FOUND),
        ("worksheet.restore_checkpoint", {"id": worksheet}, INVALID_PARAMS),
        ("worksheet.restore_checkpoint", {"id": worksheet, "checkpoint": checkpoint,
                                          "apply": "yes"}, INVALID_PARAMS),
        ("worksheet.restore_checkpoint", {"id": worksheet, "checkpoint": "' OR 1=1 --"},
         NOT_FOUND),
        ("worksheet.restore_checkpoint", {"id": worksheet, "checkpoint": str(uuid.uuid4())},
         NOT_FOUND),
        ("worksheet.delete_checkpoint", {"id": worksheet, "checkpoint": None}, INVALID_PARAMS),
        ("worksheet.delete_checkpoint", {"id": worksheet, "checkpoint": "%"}, NOT_FOUND),
    ]  # fmt: skip
    for method, params, code in junk:
        assert (await ada.error(method, **params)).code == code, (method, params)
    [kept] = await ada.call("worksheet.checkpoints", id=worksheet)
    assert kept["id"] == checkpoint
