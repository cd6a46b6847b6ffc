"""Restoring a checkpoint never opens a file for writing.

dill saved an open file as "reopen this path with this mode", so a viewer's ``session.fork``
truncated the owner's results file, and so did the owner's own hibernation wake-up, failover
and drain. Now a file object is restored closed (named on the feed), and a checkpoint, even a
crafted and signed one, cannot open a file for writing while it loads.
"""

from __future__ import annotations

import _pyio
import io
import os
import pickle
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import dill
import pytest

from cellbus_kernel import checkpoints, namespace
from cellbus_kernel.open_files import ClosedFile
from cellbus_protocol import codec, keys
from cellbus_protocol.bus import Bus, RedisBus
from cellbus_protocol.envelope import Message
from cellbus_protocol.kernel_client import KernelClient
from cellbus_protocol.messages import state_of

from ..support.api import Client, new_user, state_in, stdout_of
from ..support.feeds import collect, first_message, run_code, wait_for_state
from ..support.redis import REDIS_URL
from ..support.stack import ServicesStack
from ..support.workers import TEST_SECRET, WorkerProcess

CONTENT = b"important results\n"
LIMIT = 1 << 24


class Holder:
    def __init__(self, file: Any) -> None:
        self.file = file


# Each way a namespace can hold a file: how to open it on `path`, and where it sits.
OPENERS: dict[str, Callable[[Path], Any]] = {
    "text-w": lambda p: open(p, "w"),
    "text-a": lambda p: open(p, "a"),
    "text-r+": lambda p: open(p, "r+"),
    "text-r": lambda p: open(p),
    "buffered-wb": lambda p: open(p, "wb"),
    "fileio-w": lambda p: io.FileIO(p, "w"),
    "textiowrapper": lambda p: io.TextIOWrapper(io.BufferedWriter(io.FileIO(p, "w"))),
    "pyio-w": lambda p: _pyio.open(p, "w"),
    "in-a-list": lambda p: [open(p, "w")],
    "in-a-dict": lambda p: {"out": open(p, "w")},
    "in-an-object": lambda p: Holder(open(p, "w")),
    "closed-w": lambda p: _closed(open(p, "w")),
}


def _closed(file: Any) -> Any:
    file.close()
    return file


def _files_in(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, Holder):
        return [value.file]
    return [value]


@pytest.fixture
def results(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "results.txt"
    path.write_bytes(CONTENT)
    yield path


def _unchanged(path: Path, before: os.stat_result) -> None:
    assert path.read_bytes() == CONTENT
    assert path.stat().st_mtime_ns == before.st_mtime_ns


@pytest.mark.parametrize("kind", list(OPENERS))
def test_every_kind_of_file_is_restored_closed_and_the_file_is_untouched(
    kind: str, results: Path
) -> None:
    value = OPENERS[kind](results)
    results.write_bytes(CONTENT)  # opening it 'w' emptied it: the owner writes it again
    saved = namespace.save({"value": value, "n": 1}, LIMIT)
    for file in _files_in(value):
        file.close()
    assert saved.skipped == []
    assert saved.open_files == ([] if kind == "closed-w" else ["value"])
    before = results.stat()

    restored = namespace.load(bytes(saved.data))

    _unchanged(results, before)
    assert restored["n"] == 1
    (file,) = _files_in(restored["value"])
    assert isinstance(file, ClosedFile) and file.closed
    assert file.name == str(results)
    with pytest.raises(ValueError, match="restoring a checkpoint never reopens files") as error:
        file.read()
    assert f"open({str(results)!r}" in str(error.value)
    with pytest.raises(ValueError, match="is closed"):
        file.write("x")
    with pytest.raises(ValueError, match="is closed"), file:
        pass


def test_a_file_opened_x_is_not_created_by_a_restore(tmp_path: Path) -> None:
    path = tmp_path / "new.txt"
    with open(path, "x") as file:
        saved = namespace.save({"file": file}, LIMIT)
    path.unlink()
    restored = namespace.load(bytes(saved.data))
    assert not path.exists()
    assert restored["file"].closed and restored["file"].mode == "x"


def test_a_relative_name_is_kept_as_it_was_and_resolved_against_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with open("relative.txt", "w") as file:
        saved = namespace.save({"file": file}, LIMIT)
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)  # a fork's own folder
    restored = namespace.load(bytes(saved.data))
    assert restored["file"].name == "relative.txt"
    assert os.listdir(other) == []
    assert (tmp_path / "relative.txt").read_bytes() == b""


def test_temporary_files_are_restored_closed_and_never_deleted(tmp_path: Path) -> None:
    named = tempfile.NamedTemporaryFile(dir=tmp_path)
    named.write(CONTENT)
    named.flush()
    spooled = tempfile.SpooledTemporaryFile(max_size=1)
    spooled.write(CONTENT)  # over max_size: now an unnamed file on disk
    unnamed = tempfile.TemporaryFile()
    saved = namespace.save({"named": named, "spooled": spooled, "unnamed": unnamed}, LIMIT)
    assert saved.open_files == ["named", "spooled", "unnamed"]

    restored = namespace.load(bytes(saved.data))
    assert isinstance(restored["named"], ClosedFile) and restored["named"].name == named.name
    with pytest.raises(ValueError, match="unnamed temporary file"):
        restored["unnamed"].read()
    with pytest.raises(ValueError, match="is closed"):
        restored["spooled"].read()
    del restored  # the restored copy going away deletes nothing
    assert Path(named.name).read_bytes() == CONTENT
    for file in (named, spooled, unnamed):
        file.close()


def test_shared_files_stay_shared_and_standard_streams_stay_the_processs_own(
    results: Path,
) -> None:
    with open(results, "a") as file:
        saved = namespace.save({"a": file, "b": [file], "out": sys.__stdout__}, LIMIT)
    restored = namespace.load(bytes(saved.data))
    assert restored["a"] is restored["b"][0]
    assert restored["out"] is sys.__stdout__
    assert saved.open_files == ["a", "b"]  # the process's own stdout is not a saved file


def test_a_restored_closed_file_is_saved_again_as_closed(results: Path) -> None:
    with open(results, "w") as file:
        saved = namespace.save({"file": file}, LIMIT)
    results.write_bytes(CONTENT)
    again = namespace.save(namespace.load(bytes(saved.data)), LIMIT)
    assert again.open_files == []  # it is closed now: nothing new to report
    before = results.stat()
    assert isinstance(namespace.load(bytes(again.data))["file"], ClosedFile)
    _unchanged(results, before)


# -- crafted checkpoints -------------------------------------------------------------------------


def test_a_plain_dill_checkpoint_with_files_opened_for_writing_touches_no_file(
    results: Path, tmp_path: Path
) -> None:
    """What dill itself writes (older checkpoints, or a forged one): dill's own file record."""
    absent = tmp_path / "absent.txt"
    data, before = _plain_dill_checkpoint(results, absent)
    restored = namespace.load(data)
    _unchanged(results, before)
    assert not absent.exists()
    assert all(isinstance(f, ClosedFile) and f.closed for f in restored["files"])


def _plain_dill_checkpoint(results: Path, absent: Path) -> tuple[bytes, os.stat_result]:
    """dill's pickle of files open on `results` ('w', 'a', 'r+') and on `absent` ('w'), with
    `results` written again and `absent` deleted afterwards; and the stat of `results`."""
    opened = [open(results, mode) for mode in ("w", "a", "r+")]
    opened.append(open(absent, "w"))
    data = dill.dumps({"kept": 7, "files": opened})
    for file in opened:
        file.close()
    absent.unlink()
    results.write_bytes(CONTENT)
    return data, results.stat()


class _Calls:
    """A pickle that calls `function(*args)` when loaded."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.call = (function, args)

    def __reduce__(self) -> Any:
        return self.call


@pytest.mark.parametrize(
    "crafted",
    [
        lambda p: _Calls(open, str(p), "w"),
        lambda p: _Calls(io.open, str(p), "a"),
        lambda p: _Calls(io.FileIO, str(p), "w"),
        lambda p: _Calls(os.open, str(p), os.O_WRONLY | os.O_TRUNC),
        lambda p: _Calls(os.truncate, str(p), 0),
        lambda p: _Calls(os.remove, str(p)),
        lambda p: _Calls(os.system, f": > {p}"),
        lambda p: _Calls(Path.write_text, p, ""),
    ],
    ids=["open", "io.open", "FileIO", "os.open", "truncate", "remove", "system", "write_text"],
)
def test_a_pickle_that_writes_a_file_while_loading_is_refused(
    crafted: Callable[[Path], Any], results: Path
) -> None:
    before = results.stat()
    with pytest.raises(PermissionError, match="restoring a checkpoint never"):
        namespace.load(pickle.dumps({"x": crafted(results)}))
    _unchanged(results, before)
    # Only while loading: the session's own code writes files as usual afterwards.
    results.write_bytes(CONTENT)


# -- in sessions ---------------------------------------------------------------------------------

FAST = {"checkpoint_delay": 0.1, "heartbeat_interval": 0.3, "lease_ttl": 1.5}
OPEN_RESULTS = (
    "import os\npath = os.path.abspath('results.txt')\n"
    "f = open(path, 'w')\nf.write('important')\nf.flush()"
)


@pytest.fixture
def worker(namespace: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(namespace, "worker-1", tmp_path, hibernate_after=1, **FAST)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture
async def client(namespace: str) -> AsyncIterator[KernelClient]:
    bus = RedisBus(REDIS_URL, namespace=namespace)
    await bus.start()
    yield KernelClient(bus, "alice")
    await bus.close()


def _is_saved(msg: Message) -> bool:
    return msg.msg_type == "checkpoint" and msg.content.event == "saved"


async def _feed(bus: Bus, session: str, after: int) -> list[Message]:
    return [codec.decode(e.data) for e in await bus.read_feed(keys.feed(session), after)]


async def test_a_hibernated_session_wakes_up_with_its_file_closed_and_intact(
    worker: WorkerProcess, client: KernelClient
) -> None:
    bus = client.bus
    session = await client.create_session()
    await wait_for_state(bus, session, "idle")
    after = await bus.last_seq(keys.feed(session))
    assert (await run_code(client, session, OPEN_RESULTS)).reply.content.status == "ok"
    _, saved = await first_message(bus, session, after, _is_saved)
    assert saved.content.open_files == ["f"]  # named on the feed, with the cell that opened it
    assert "restoring a checkpoint never opens a file): f." in saved.content.reason
    hibernated = await wait_for_state(bus, session, "hibernated", after)

    request = await client.execute(session, "print(open(path).read(), f.closed)\nf.write('x')")
    await client.ensure_session(session)
    run = await collect(bus, request, hibernated)
    assert run.stdout == "important True\n"  # the file was not truncated; f is closed
    assert run.reply.content.ename == "ValueError"
    assert "restoring a checkpoint never reopens files" in run.reply.content.evalue
    assert "Open it again" in run.reply.content.evalue
    restored = next(
        m for m in await _feed(bus, session, hibernated)
        if state_of(m.content) == "idle"
    )  # fmt: skip
    assert restored.content.reason.startswith("Restored the namespace")
    assert "a restore gives them back closed" in restored.content.reason

    after = await bus.last_seq(keys.feed(session))
    await run_code(client, session, "g = 1")  # f is not named again in this session
    _, again = await first_message(bus, session, after, _is_saved)
    assert again.content.open_files == []


async def test_a_crafted_signed_checkpoint_cannot_write_files_in_a_session(
    worker: WorkerProcess, client: KernelClient, results: Path, tmp_path: Path
) -> None:
    """Even with the secret (the signature is the first defence), a checkpoint whose pickle
    opens files for writing neither truncates nor creates them."""
    absent = tmp_path / "absent.txt"
    payload, before = _plain_dill_checkpoint(results, absent)
    bus, key = client.bus, checkpoints.signing_key(TEST_SECRET)

    async def restore(payload: bytes, code: str) -> tuple[list[Message], Any]:
        session = os.urandom(16).hex()
        header = checkpoints.Header(
            session=session, execution_count=1, msg_id="", created="", feed_seq=0
        )
        await bus.put_blob(keys.checkpoint(session), checkpoints.seal(key, header, payload))
        await client.create_session(session)
        await wait_for_state(bus, session, "idle")
        return await _feed(bus, session, 0), await run_code(client, session, code)

    feed, run = await restore(payload, "print(kept, [f.closed for f in files])")
    assert run.stdout == "7 [True, True, True, True]\n"
    _unchanged(results, before)
    assert not absent.exists()

    calls_open = pickle.dumps({"x": _Calls(open, str(results), "w")})
    feed, run = await restore(calls_open, "x")
    (failed,) = [m for m in feed if m.msg_type == "checkpoint"]
    assert failed.content.event == "restore_failed"
    assert "restoring a checkpoint never opens a file for writing" in failed.content.reason
    assert run.reply.content.ename == "NameError"  # the namespace is fresh
    _unchanged(results, before)


# -- a viewer's fork, through the API ------------------------------------------------------------


async def test_a_viewers_fork_does_not_touch_the_owners_file(stack: ServicesStack) -> None:
    ada: Client = await new_user(stack.urls[0], "ada")
    bob: Client = await new_user(stack.urls[-1], "bob")
    sheet = await ada.call("worksheet.create", title="Results")
    cell = await ada.call("cell.create", worksheet=sheet["id"], source=OPEN_RESULTS, after=None)
    await ada.call("worksheet.share", id=sheet["id"], username=bob.username, role="viewer")
    feed = await ada.socket()
    await feed.subscribe(session=sheet["session"], cursor="now")
    run = await ada.call("cell.evaluate", id=cell["id"])
    await feed.until_done(run["msg_id"])
    saved = await feed.message(lambda m: m["header"]["msg_type"] == "checkpoint")
    assert saved["content"]["event"] == "saved" and saved["content"]["open_files"] == ["f"]

    fork = (await bob.call("session.fork", session=sheet["session"]))["session"]
    bob_feed = await bob.socket()
    await bob_feed.subscribe(session=fork, cursor=0)
    check = await bob.call("session.execute", session=fork, code="print(f.closed, f.name == path)")
    assert stdout_of(await bob_feed.until_done(check["msg_id"])) == "True True\n"
    states = [m for m in bob_feed.messages() if state_in(m)]
    assert [(s["header"]["msg_type"], state_in(s)) for s in states[:2]] == [
        ("session_state", "restoring"),
        ("status", "idle"),
    ]
    assert "a restore gives them back closed" in states[1]["content"]["reason"]

    same = await ada.call(
        "session.execute", session=sheet["session"], code="print(open(path).read())"
    )
    assert stdout_of(await feed.until_done(same["msg_id"])) == "important\n"
    for closing in (feed, bob_feed, ada, bob):
        await closing.close()
