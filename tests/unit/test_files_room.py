"""The room uploads hold in a workspace's quota (`cellbus_web.files.room`), on a real folder:
two uploads that each fit but not together cannot both hold it; what one holds shrinks as it
writes; a hold nobody keeps (its web process died) is removed by the next upload."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cellbus_web.files import ops
from cellbus_web.files.confine import Workspace
from cellbus_web.files.room import PREFIX, Reservation
from cellbus_web.rpc import TOO_LARGE, RpcError

MIB = 1024 * 1024
QUOTA = 100 * MIB


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = Workspace(tmp_path, "abc123")
    workspace.path.mkdir(mode=0o700)
    (workspace.path / "data.bin").write_bytes(b"x" * (30 * MIB))
    return workspace


def test_two_uploads_that_fit_apart_but_not_together_cannot_both_hold_room(ws: Workspace) -> None:
    first, second = Reservation(ws, "a.bin", QUOTA), Reservation(ws, "b.bin", QUOTA)
    first.take(have=0, limit=60 * MIB)
    assert ops.usage(ws) == 90 * MIB  # the file and all the first will write
    with pytest.raises(RpcError) as refused:
        second.take(have=0, limit=60 * MIB)
    assert refused.value.code == TOO_LARGE
    assert "the workspace is full: 90.0 MiB used of 100.0 MiB" in refused.value.message
    first.release()
    second.take(have=0, limit=60 * MIB)  # room given back
    second.release()
    assert ops.usage(ws) == 30 * MIB
    assert not [name for name in os.listdir(ws.path) if name.startswith(PREFIX)]


def test_what_an_upload_holds_shrinks_as_its_file_grows(ws: Workspace) -> None:
    hold = Reservation(ws, "a.bin", QUOTA)
    hold.take(have=0, limit=40 * MIB)
    partial = ws.path / ".cellbus-upload-a"
    for written in (10 * MIB, 25 * MIB, 40 * MIB):
        with partial.open("ab") as out:
            out.truncate(written)
        hold.grown(written)
        assert ops.usage(ws) == 70 * MIB  # the measure stays put while it writes
    hold.release()
    assert ops.usage(ws) == 70 * MIB


def test_a_hold_nobody_keeps_is_removed_by_the_next_upload(ws: Workspace) -> None:
    abandoned = ws.path / f"{PREFIX}left-by-a-dead-process"
    with abandoned.open("wb") as out:
        out.truncate(60 * MIB)  # no lock on it: its request is gone
    hold = Reservation(ws, "a.bin", QUOTA)
    hold.take(have=0, limit=60 * MIB)  # would not fit beside the abandoned one
    assert not abandoned.exists()
    hold.release()


def test_a_quota_of_zero_is_none(ws: Workspace) -> None:
    hold = Reservation(ws, "a.bin", 0)
    hold.take(have=0, limit=10_000 * MIB)
    hold.release()
    ops.check_quota(ws, 0, 10_000 * MIB, "a.bin")  # no error
