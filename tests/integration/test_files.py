"""A worksheet's files through the API, on both stacks: the ``files.*`` methods, streamed
uploads and downloads (``PUT``/``GET /files/...``), resumed uploads, the quota and the upload
limit, roles, ``files_changed`` on the feed, and what a cell then reads.

The 300 MiB upload is last: on the services stack its cell runs on a second kernel worker after
the first was killed (the module's stack then keeps the second)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ..support import files
from ..support.api import Client, stdout_of
from ..support.fixtures import both_stacks, signed_in
from ..support.polling import eventually
from ..support.stack import FEED_RETENTION, ServicesStack, Stack
from ..support.workers import WorkerProcess

MIB = files.MIB
stack = both_stacks()
ada = signed_in("ada")
bob = signed_in("bob")


async def new_sheet(client: Client) -> dict[str, Any]:
    return dict(await client.call("worksheet.create", title="files"))


async def run(client: Client, session: str, code: str) -> list[dict[str, Any]]:
    feed = await client.socket()
    try:
        await feed.subscribe(session=session, cursor="now")
        started = await client.call("session.execute", session=session, code=code)
        return await feed.until_done(started["msg_id"], timeout=120)
    finally:
        await feed.close()


async def printed(client: Client, session: str, code: str) -> str:
    messages = await run(client, session, code)
    errors = [m["content"] for m in messages if m["header"]["msg_type"] == "error"]
    assert not errors, errors
    return stdout_of(messages)


async def test_the_files_methods_make_read_move_and_delete_what_a_cell_sees(ada: Client) -> None:
    sheet = await new_sheet(ada)
    w = sheet["id"]
    assert await ada.call("files.list", worksheet=w) == []  # no session yet: empty
    made = await ada.call("files.write", worksheet=w, path="notes/today.txt", text="héllo\n")
    assert made["type"] == "file" and made["size"] == len("héllo\n".encode())
    assert (await ada.call("files.read", worksheet=w, path="notes/today.txt"))["text"] == "héllo\n"
    assert (await ada.call("files.mkdir", worksheet=w, path="data/raw"))["type"] == "directory"
    listing = await ada.call("files.list", worksheet=w)
    assert [(e["name"], e["path"], e["type"]) for e in listing] == [
        ("data", "data", "directory"), ("notes", "notes", "directory"),
    ]  # fmt: skip
    inner = await ada.call("files.list", worksheet=w, path="notes")
    assert [e["path"] for e in inner] == ["notes/today.txt"]

    # A cell works in the workspace: it reads what the API wrote, and writes what it lists.
    code = "print(open('notes/today.txt').read(), end=''); open('out.csv', 'w').write('a\\n1\\n')"
    assert await printed(ada, sheet["session"], code) == "héllo\n"
    assert (await ada.call("files.stat", worksheet=w, path="out.csv"))["size"] == 4

    taken = await ada.error("files.move", worksheet=w, source="out.csv", destination="notes")
    assert taken.code == -32010 and "notes exists already" in taken.message
    moved = await ada.call("files.move", worksheet=w, source="out.csv", destination="data/a.csv")
    assert moved["path"] == "data/a.csv"
    assert (
        await printed(ada, sheet["session"], "print(open('data/a.csv').read(), end='')") == "a\n1\n"
    )
    await ada.call("files.delete", worksheet=w, path="data")  # a folder, with all it holds
    assert [e["name"] for e in await ada.call("files.list", worksheet=w)] == ["notes"]
    gone = await ada.error("files.stat", worksheet=w, path="data/a.csv")
    assert gone.code == -32004 and "data: no such file or folder" in gone.message
    usage = await ada.call("files.usage", worksheet=w)
    assert usage == {"used": len("héllo\n".encode()), "quota": 4096 * MIB}


async def test_text_files_past_the_limit_or_binary_go_by_http(ada: Client) -> None:
    w = (await new_sheet(ada))["id"]
    big = await ada.error("files.write", worksheet=w, path="big.txt", text="x" * (MIB + 1))
    assert big.code == -32013 and "upload it: PUT /files/" in big.message
    assert (await files.put(ada, w, "bin.dat", b"\xff\xfe\x00")).status == 201
    binary = await ada.error("files.read", worksheet=w, path="bin.dat")
    assert binary.code == -32602 and "bin.dat is not UTF-8 text" in binary.message


async def test_a_download_equals_the_upload_and_serves_ranges_as_an_attachment(
    ada: Client,
) -> None:
    w = (await new_sheet(ada))["id"]
    put = await files.put(ada, w, "folder/données.bin", files.pattern_stream(20))
    assert put.status == 201, put
    assert put.body["size"] == 20 * MIB and put.body["path"] == "folder/données.bin"
    assert await files.sha256_of_download(ada, w, "folder/données.bin") == (
        20 * MIB, files.pattern_sha256(20),
    )  # fmt: skip
    again = await files.put(ada, w, "folder/données.bin", b"short")
    assert again.status == 200 and again.body["size"] == 5  # replaced
    assert (await files.put(ada, w, "empty.txt", b"")).status == 201
    assert (await files.put(ada, w, "empty.txt", b"")).status == 200  # an empty one replaced

    answer, data = await files.get(ada, w, "folder/données.bin", {"Range": "bytes=1-3"})
    assert answer.status == 206 and data == b"hor"
    assert answer.headers["Content-Range"] == "bytes 1-3/5"
    whole, data = await files.get(ada, w, "folder/données.bin")
    assert whole.status == 200 and data == b"short"
    assert whole.headers["Content-Type"] == "application/octet-stream"
    assert whole.headers["X-Content-Type-Options"] == "nosniff"
    assert whole.headers["Content-Security-Policy"].startswith("sandbox")
    assert whole.headers["Content-Disposition"].startswith("attachment;")
    assert "filename*=UTF-8''donn%C3%A9es.bin" in whole.headers["Content-Disposition"]
    missing, _ = await files.get(ada, w, "nothing.txt")
    assert missing.status == 404 and "nothing.txt: no such file" in missing.message


async def dropped_after(mib: int) -> AsyncIterator[bytes]:
    """A body whose sender fails after `mib` MiB: the connection drops mid-upload."""
    async for chunk in files.pattern_stream(mib):
        yield chunk
    raise ConnectionAbortedError("the test drops the connection")


async def pattern_stream_bytes(data: bytes) -> AsyncIterator[bytes]:
    """`data` sent as a stream (no Content-Length)."""
    yield data


def pattern_from(offset: int, total_mib: int) -> AsyncIterator[bytes]:
    """The test file's bytes from `offset` on."""

    async def body() -> AsyncIterator[bytes]:
        first, skip = divmod(offset, MIB)
        for index in range(first, total_mib):
            chunk = files.pattern(index)
            yield chunk[skip:] if index == first else chunk

    return body()


async def test_an_upload_resumes_after_a_dropped_connection(ada: Client) -> None:
    w = (await new_sheet(ada))["id"]
    total = 12 * MIB
    span = {"Content-Range": f"bytes 0-{total - 1}/{total}"}
    with pytest.raises(aiohttp.ClientError):
        await files.put(ada, w, "resumed.bin", dropped_after(5), span)
    have = await files.received(ada, w, "resumed.bin", total)
    assert 0 < have <= 5 * MIB
    assert [e["name"] for e in await ada.call("files.list", worksheet=w)] == [
        files.partial_name("resumed.bin")  # only the partial file (a dot entry) so far
    ]
    rest = {"Content-Range": f"bytes {have}-{total - 1}/{total}"}
    done = await files.put(ada, w, "resumed.bin", pattern_from(have, 12), rest)
    assert done.status == 201 and done.body["size"] == total
    assert await files.sha256_of_download(ada, w, "resumed.bin") == (
        total,
        files.pattern_sha256(12),
    )
    # Once complete, nothing of an upload is left: a probe asks for all of a new one (the
    # file at the path, even of the same size, is not what this client would send).
    asked_after = await files.probe(ada, w, "resumed.bin", total)
    assert asked_after.status == 308 and "Range" not in asked_after.headers

    # A body that ends before what its Content-Range declares: a JSON error, kept for a resume.
    short = await files.put(
        ada, w, "short.bin", pattern_stream_bytes(b"x" * 50), {"Content-Range": "bytes 0-99/100"}
    )
    assert short.status == 400 and "ended before all it declared arrived" in short.message
    assert short.body["error"]["data"] == {"path": "short.bin", "have": 50}
    assert await files.received(ada, w, "short.bin", 100) == 50

    # In parts, as the browser sends large files: 308 until the last.
    first = {"Content-Range": f"bytes 0-{MIB - 1}/{2 * MIB}"}
    part = await files.put(ada, w, "parts.bin", files.pattern(0), first)
    assert part.status == 308 and part.headers["Range"] == f"bytes=0-{MIB - 1}"
    wrong = {"Content-Range": f"bytes 0-{MIB - 1}/{2 * MIB}"}
    last = {"Content-Range": f"bytes {MIB}-{2 * MIB - 1}/{2 * MIB}"}
    assert (await files.put(ada, w, "parts.bin", files.pattern(1), last)).status == 201
    skipped = await files.put(ada, w, "gap.bin", files.pattern(1), last)
    assert skipped.status == 409 and "holds 0 bytes, not 1048576" in skipped.message
    assert (await files.put(ada, w, "gap.bin", files.pattern(0), wrong)).status == 308


async def test_an_upload_past_the_quota_or_the_upload_limit_is_refused_up_front(
    ada: Client,
) -> None:
    sheet = await new_sheet(ada)
    w = sheet["id"]
    over = {"Content-Range": f"bytes 0-0/{1025 * MIB}"}
    limit = await files.put(ada, w, "huge.bin", b"x", over)
    assert limit.status == 413 and "(CELLBUS_MAX_UPLOAD_MB)" in limit.message

    # A cell fills the workspace to 4000 of its 4096 MiB (a sparse file counts its size).
    await printed(ada, sheet["session"], "open('filler', 'wb').truncate(4000 * 2**20)")
    declared = {"Content-Range": f"bytes 0-0/{200 * MIB}"}
    full = await files.put(ada, w, "data.bin", b"x", declared)
    assert full.status == 413, full
    assert "the workspace is full: 4000.0 MiB used of 4096.0 MiB" in full.message
    assert "(CELLBUS_WORKSPACE_QUOTA_MB)" in full.message
    assert [e["name"] for e in await ada.call("files.list", worksheet=w)] == ["filler"]
    await ada.call("files.delete", worksheet=w, path="filler")
    assert (await files.put(ada, w, "data.bin", files.pattern_stream(200))).status == 201


async def test_uploads_at_once_never_pass_the_quota_together(ada: Client) -> None:
    """Each upload holds what it has still to receive: a second one that fits what the
    workspace holds, but not with what the first will add, is refused while the first goes
    on, and the first completes."""
    sheet = await new_sheet(ada)
    w = sheet["id"]
    await printed(ada, sheet["session"], "open('filler', 'wb').truncate(4000 * 2**20)")
    first_sent, go_on = asyncio.Event(), asyncio.Event()

    async def held_body() -> AsyncIterator[bytes]:
        yield files.pattern(0)
        first_sent.set()
        await go_on.wait()
        for index in range(1, 60):
            yield files.pattern(index)

    span = {"Content-Range": f"bytes 0-{60 * MIB - 1}/{60 * MIB}"}
    first = asyncio.ensure_future(files.put(ada, w, "first.bin", held_body(), span))
    await first_sent.wait()

    async def first_holds_its_room() -> bool:  # the filler and all of the first upload
        return bool((await ada.call("files.usage", worksheet=w))["used"] == 4060 * MIB)

    await eventually(first_holds_its_room)

    second = await files.put(ada, w, "second.bin", files.pattern_stream(60), span)
    assert second.status == 413, second
    assert "the workspace is full: 4060.0 MiB used of 4096.0 MiB" in second.message
    go_on.set()
    done = await first
    assert done.status == 201 and done.body["size"] == 60 * MIB
    names = [e["name"] for e in await ada.call("files.list", worksheet=w)]
    assert names == ["filler", "first.bin"]  # no partial file, no hold left
    assert (await ada.call("files.usage", worksheet=w))["used"] == 4060 * MIB


async def test_a_viewer_lists_and_downloads_but_cannot_write(ada: Client, bob: Client) -> None:
    w = (await new_sheet(ada))["id"]
    await ada.call("files.write", worksheet=w, path="a.txt", text="shared")
    await ada.call("worksheet.share", id=w, username=bob.username, role="viewer")
    assert [e["name"] for e in await bob.call("files.list", worksheet=w)] == ["a.txt"]
    assert (await bob.call("files.read", worksheet=w, path="a.txt"))["text"] == "shared"
    assert (await files.get(bob, w, "a.txt"))[1] == b"shared"
    for method, params in (
        ("files.write", {"path": "b.txt", "text": "no"}), ("files.mkdir", {"path": "d"}),
        ("files.move", {"source": "a.txt", "destination": "c.txt"}),
        ("files.delete", {"path": "a.txt"}),
    ):  # fmt: skip
        error = await bob.error(method, worksheet=w, **params)
        assert (
            error.code == -32003 and "this needs the editor role; you are a viewer" in error.message
        )
    refused = await files.put(bob, w, "b.txt", b"no")
    assert refused.status == 403 and "editor role" in refused.message
    assert [e["name"] for e in await ada.call("files.list", worksheet=w)] == ["a.txt"]
    stranger = await bob.error("files.list", worksheet=(await new_sheet(ada))["id"])
    assert stranger.code == -32004  # not a member: as if there were no such worksheet


async def test_files_changed_is_on_the_feed_after_an_upload(ada: Client, bob: Client) -> None:
    sheet = await new_sheet(ada)
    await ada.call("worksheet.share", id=sheet["id"], username=bob.username, role="viewer")
    await ada.call("files.mkdir", worksheet=sheet["id"], path="in")  # the session's feed exists
    feed = await bob.socket()
    try:
        await feed.subscribe(session=sheet["session"], cursor="now")
        assert (await files.put(ada, sheet["id"], "in/data.csv", b"a,b\n")).status == 201
        changed = await feed.message(lambda m: m["header"]["msg_type"] == "files_changed")
    finally:
        await feed.close()
    assert changed["content"] == {"paths": ["in/data.csv"]}
    assert changed["header"]["username"] == ada.username


async def test_a_300_mib_upload_is_read_by_a_cell_after_its_first_worker_was_killed(
    stack: Stack, ada: Client
) -> None:
    """Streamed from a generator (the test holds 1 MiB at a time), hashed by a cell; on the
    services stack the cell's session moves to a second worker after the first is killed."""
    sheet = await new_sheet(ada)
    session = sheet["session"]
    pid = await printed(ada, session, "import os; print(os.getpid())")
    put = await files.put(ada, sheet["id"], "big/upload.bin", files.pattern_stream(300))
    assert put.status == 201 and put.body["size"] == 300 * MIB
    if isinstance(stack, ServicesStack):
        second = WorkerProcess(
            stack.namespace, "kernel-2", stack.kernel.log_path.parent, memory_limit_mb=1000,
            output_cap=2_000_000, feed_retention=FEED_RETENTION, workspaces_dir=stack.workspaces,
        )  # fmt: skip
        second.wait_ready()
        first, stack.kernel = stack.kernel, second  # the stack stops the second at its end
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        first.stop()
    code = (
        "import hashlib, os\nh = hashlib.sha256()\nwith open('big/upload.bin', 'rb') as f:\n"
        "    for chunk in iter(lambda: f.read(1 << 20), b''):\n        h.update(chunk)\n"
        "print(h.hexdigest()); print(os.getpid())"
    )
    digest, new_pid = (await printed(ada, session, code)).split()
    assert digest == files.pattern_sha256(300)
    if isinstance(stack, ServicesStack):
        assert new_pid != pid.strip()  # another process, on the second worker
    assert (await files.sha256_of_download(ada, sheet["id"], "big/upload.bin"))[1] == (
        files.pattern_sha256(300)
    )
