"""Checkpoints without processes: the signed format (`checkpoints`) and what the session
process saves of a namespace (`namespace`)."""

from __future__ import annotations

import socket
import threading

import dill
import pytest

from cellbus_kernel import checkpoints, namespace
from cellbus_kernel.checkpoints import Header, Loaded, Refused

KEY = checkpoints.signing_key("the deployment's secret")
HEADER = Header(
    session="sess-1", execution_count=3, msg_id="m3", created="2026-11-24T10:00:00Z",
    feed_seq=42, reported=["sock"],
)  # fmt: skip
PAYLOAD = b"\x80\x04not really a pickle" * 100


def test_a_sealed_checkpoint_opens_with_its_header_and_payload() -> None:
    blob = checkpoints.seal(KEY, HEADER, PAYLOAD)
    opened = checkpoints.unseal(KEY, blob, "sess-1")
    assert isinstance(opened, Loaded)
    assert opened.header == HEADER
    assert bytes(opened.payload) == PAYLOAD
    assert opened.size == len(blob)


def test_changing_any_byte_is_refused() -> None:
    blob = checkpoints.seal(KEY, HEADER, PAYLOAD)
    for position in range(len(blob)):
        tampered = bytearray(blob)
        tampered[position] ^= 0x01
        assert isinstance(checkpoints.unseal(KEY, bytes(tampered), "sess-1"), Refused), position


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"", "not a cellbus checkpoint"),
        (b"PK\x03\x04" + b"\0" * 60, "not a cellbus checkpoint"),
        (checkpoints.seal(KEY, HEADER, PAYLOAD)[:30], "truncated"),
        (checkpoints.seal(KEY, HEADER, PAYLOAD)[:-1], "signature does not match"),
        (checkpoints.seal(KEY, HEADER, PAYLOAD) + b"x", "signature does not match"),
        (checkpoints.seal(checkpoints.signing_key("another"), HEADER, PAYLOAD), "CELLBUS_SECRET"),
        (b"CBCK\x02" + checkpoints.seal(KEY, HEADER, PAYLOAD)[5:], "format version 2"),
    ],
    ids=["empty", "other-format", "truncated", "short", "long", "other-secret", "version"],
)
def test_what_is_refused_and_why(blob: bytes, reason: str) -> None:
    refused = checkpoints.unseal(KEY, blob, "sess-1")
    assert isinstance(refused, Refused)
    assert reason in refused.reason
    assert refused.reason.endswith(".")


def test_a_checkpoint_of_another_session_is_refused_unless_forked_from_it() -> None:
    blob = checkpoints.seal(KEY, HEADER, PAYLOAD)
    refused = checkpoints.unseal(KEY, blob, "sess-2")
    assert isinstance(refused, Refused) and "another session (sess-1)" in refused.reason
    assert isinstance(checkpoints.unseal(KEY, blob, "sess-2", fork_of="sess-1"), Loaded)
    assert isinstance(checkpoints.unseal(KEY, blob, "sess-2", fork_of="sess-3"), Refused)


def test_the_signing_key_is_derived_not_the_secret_itself() -> None:
    assert KEY != b"the deployment's secret"
    assert len(KEY) == 32
    assert checkpoints.signing_key("a") != checkpoints.signing_key("b")


# -- what the session process saves ------------------------------------------------------------


def test_ipythons_own_names_are_not_saved() -> None:
    shared_builtin = object()
    names = {
        "x": 1, "_private": 2, "df2": 3,
        "_": 4, "__": 5, "___": 6, "_i": "", "_ii": "", "_iii": "", "_i7": "", "_7": 8,
        "_ih": [], "_oh": {}, "_dh": [], "In": [], "Out": {}, "get_ipython": print,
        "exit": None, "quit": None, "__builtins__": {}, "__name__": "__main__",
        "open": shared_builtin, "mine": shared_builtin,
    }  # fmt: skip
    hidden = {"open": shared_builtin, "mine": "something else"}
    assert set(namespace.user_names(names, hidden)) == {"x", "_private", "df2", "mine"}


def test_everything_savable_is_saved_together_so_shared_objects_stay_shared() -> None:
    shared = [1, 2]

    def twice(v: int) -> int:
        return v * 2

    names = {"a": shared, "b": shared, "f": twice, "n": 41}
    data, skipped, _ = namespace.save(names, limit=1 << 20)
    assert skipped == []
    loaded = namespace.load(bytes(data))
    assert loaded["a"] is loaded["b"] == [1, 2]
    assert loaded["f"](21) == 42
    assert loaded["n"] == 41


def test_names_that_cannot_be_saved_are_left_out_by_name() -> None:
    sock = socket.socket()
    try:
        names = {
            "gen": (i for i in range(3)),
            "sock": sock,
            "ok": {"k": "v"},
            "lock": threading.Lock(),
        }
        data, skipped, _ = namespace.save(names, limit=1 << 20)
    finally:
        sock.close()
    assert skipped == ["gen", "sock"]
    loaded = namespace.load(bytes(data))
    assert set(loaded) == {"ok", "lock"}
    assert loaded["ok"] == {"k": "v"}


def test_a_namespace_over_the_limit_is_not_saved() -> None:
    with pytest.raises(namespace.TooLarge):
        namespace.save({"big": b"x" * 10_000}, limit=5_000)
    with pytest.raises(namespace.TooLarge):  # also when some names cannot be saved at all
        namespace.save({"big": b"x" * 10_000, "gen": (i for i in range(3))}, limit=5_000)


def test_loading_something_that_is_not_a_namespace_fails() -> None:
    data = namespace.save({"x": 1}, limit=1 << 20).data
    with pytest.raises(TypeError):
        namespace.load(dill.dumps([1, 2, 3]))
    assert namespace.load(bytes(data)) == {"x": 1}
