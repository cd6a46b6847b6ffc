"""``cellbus serve`` killed with SIGKILL and started again on the same data folder (issue 18):
every session's variables come back from its last checkpoint, every feed keeps its entries
and cursors, a run cut off by the kill ends (``WorkerLost``) instead of staying "running",
and clients resume: the feed WebSocket tells them the new epoch, vouches for cursors the feed
still has and resets those it does not; the CLI's feed picks up where it was.

Nothing sleeps to wait: the test polls the program's bus database (read only) for what it
needs to be written before the kill, as a user's "some time later" would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from cellbus_cli.feed import FeedSocket
from cellbus_protocol import keys

from ..support.api import Client, Feed, new_user, state_in
from ..support.one_program import Program, started_program
from ..support.polling import eventually

RUN_TIMEOUT = 120.0
"""A run on a busy 2-core machine, including a restore after a restart."""


async def written(program: Program, sql: str, *params: object) -> None:
    """Wait until the program has committed what `sql` (a count) finds."""

    async def found() -> bool:
        return await asyncio.to_thread(program.committed, sql, *params)

    await eventually(found, timeout=30)


@pytest.fixture
def program(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Program]:
    with started_program(tmp_path_factory, "restart") as program:
        yield program


@pytest.fixture
async def ada(program: Program) -> AsyncIterator[Client]:
    client = await new_user(program.url, "ada")
    yield client
    await client.close()


async def run(feed: Feed, client: Client, session: str, code: str) -> list[dict[str, Any]]:
    started = await client.call("session.execute", session=session, code=code)
    return await feed.until_done(started["msg_id"], timeout=RUN_TIMEOUT)


def stdout(messages: list[dict[str, Any]]) -> str:
    return "".join(m["content"]["text"] for m in messages if m["header"]["msg_type"] == "stream")


async def test_a_killed_program_brings_back_variables_feeds_and_the_cut_off_run(
    program: Program, ada: Client
) -> None:
    sheet = await ada.call("worksheet.create", title="remembers")
    session = sheet["session"]
    feed_name = keys.feed(session)
    feed = await ada.socket()
    subscribed = await feed.subscribe(worksheet=sheet["id"], cursor=0)
    first_epoch = subscribed["epoch"]
    assert first_epoch
    await run(feed, ada, session, "x = 41\nwords = ['kept', 'across']")
    await feed.message(lambda m: m["header"]["msg_type"] == "checkpoint")
    # a run that is going on when the program is killed
    long = await ada.call("session.execute", session=session, code="import time; time.sleep(600)")
    await feed.message(
        lambda m: state_in(m) == "busy" and m["parent_header"]["msg_id"] == long["msg_id"]
    )
    seen = feed.cursors[session]
    await written(program, "SELECT count(*) FROM blobs WHERE name = ?", keys.checkpoint(session))
    await written(
        program, "SELECT count(*) FROM feed_entries WHERE feed = ? AND seq >= ?", feed_name, seen
    )
    await written(
        program, "SELECT count(*) FROM queue_pending WHERE queue = ?", keys.requests(session)
    )
    # the CLI's feed, following from "now" (as `cellbus tail` does)
    tail = FeedSocket(program.url, ada.token, backoff_max=0.5)
    await tail.connect()
    try:
        await tail.subscribe(session, "now")
        program.kill()
        await feed.close()
        program.start()

        # A page that comes back with its cursor and epoch resumes from it: nothing was lost.
        feed = await ada.socket()
        await feed.ws.send_json(
            {"op": "subscribe", "worksheet": sheet["id"], "cursor": seen, "epoch": first_epoch}
        )
        again = await feed.frame(lambda f: f["type"] in ("subscribed", "error"))
        assert again["type"] == "subscribed", again
        assert again["cursor"] == seen and not again.get("reset")
        assert again["epoch"] != first_epoch

        # The run the kill cut off ends, and says why; the session is restored meanwhile.
        reply = await feed.message(
            lambda m: (
                m["header"]["msg_type"] == "execute_reply"
                and m["parent_header"]["msg_id"] == long["msg_id"]
            ),
            timeout=RUN_TIMEOUT,
        )
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "WorkerLost"

        # The variables are back, and a new run shows on the feed.
        shown = stdout(await run(feed, ada, session, "print(x + 1, *words)"))
        assert shown == "42 kept across\n"
        assert any(state_in(m) == "restoring" for m in feed.messages())

        # The CLI's feed reconnected by itself and went on: the new run is on it too.
        texts: list[str] = []
        async with asyncio.timeout(RUN_TIMEOUT):
            while "42 kept across\n" not in texts:
                event = await tail.next()
                if event.message["header"]["msg_type"] == "stream":
                    texts.append(event.message["content"]["text"])
        assert tail.connections >= 2
        assert tail.epochs[session] == again["epoch"]
    finally:
        await tail.close()
        await feed.close()


async def test_a_cursor_from_an_unknown_epoch_is_reset(program: Program, ada: Client) -> None:
    """The feed cannot vouch for a cursor it did not hand out (an epoch of another server, or
    a bus that lost its data): the subscription starts over and the client is told so."""
    sheet = await ada.call("worksheet.create", title="reset")
    session = sheet["session"]
    feed = await ada.socket()
    try:
        subscribed = await feed.subscribe(worksheet=sheet["id"], cursor=0)
        await run(feed, ada, session, "1")
        seen = feed.cursors[session]
        await feed.ws.send_json(
            {"op": "subscribe", "session": session, "cursor": seen, "epoch": "elsewhere"}
        )
        reset = await feed.frame(lambda f: f["type"] == "subscribed")
        assert reset["reset"] is True and reset["asked"] == seen and reset["cursor"] == 0
        assert reset["epoch"] == subscribed["epoch"]
        # its own epoch: resumed as asked
        await feed.ws.send_json(
            {"op": "subscribe", "session": session, "cursor": seen,
             "epoch": subscribed["epoch"]}
        )  # fmt: skip
        same = await feed.frame(lambda f: f["type"] == "subscribed")
        assert same["cursor"] == seen and "reset" not in same
    finally:
        await feed.close()


async def test_a_stopped_program_loses_nothing(program: Program, ada: Client) -> None:
    """Ctrl-C (SIGTERM here): the writer commits everything before the program exits, so every
    cursor resumes as it was, and the session, handed over when its worker stopped, is
    restored by the next start."""
    sheet = await ada.call("worksheet.create", title="stopped")
    session = sheet["session"]
    feed = await ada.socket()
    subscribed = await feed.subscribe(worksheet=sheet["id"], cursor=0)
    await run(feed, ada, session, "z = 'after a clean stop'")
    seen = feed.cursors[session]
    await feed.close()
    assert program.stack.program.stop() == 0
    program.start()
    feed = await ada.socket()
    try:
        await feed.ws.send_json(
            {"op": "subscribe", "session": session, "cursor": seen,
             "epoch": subscribed["epoch"]}
        )  # fmt: skip
        again = await feed.frame(lambda f: f["type"] == "subscribed")
        assert again["cursor"] == seen and "reset" not in again
        assert again["epoch"] != subscribed["epoch"]
        assert stdout(await run(feed, ada, session, "print(z)")) == "after a clean stop\n"
    finally:
        await feed.close()
