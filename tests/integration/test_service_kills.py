"""Killing each kind of service process with SIGKILL while people work: no feed message is
lost for a subscriber and no acknowledged edit is lost. (Kernel workers killed mid-cell are
in test_failover.py; a Redis restart in test_redis_restart.py.)"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator

import aiohttp
import pytest

from ..support.api import ApiError, Client, new_user, stdout_of
from ..support.doc_client import Typists
from ..support.stack import ServicesStack

RECOVERY_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServicesStack]:
    with ServicesStack(tmp_path_factory.mktemp("kills")) as system:
        yield system


async def test_the_accounts_service_killed_mid_edits_loses_no_acknowledged_edit(
    stack: ServicesStack,
) -> None:
    ada = await new_user(stack.urls[0], "ada")
    sheet = await ada.call("worksheet.create", title="Through an accounts crash")
    acknowledged: list[str] = []
    progress = asyncio.Condition()

    async def keep_editing() -> None:
        for i in range(10_000):
            try:
                cell = await ada.call("cell.create", worksheet=sheet["id"], source=f"# {i}")
            except ApiError:  # "unavailable" while no accounts process answers: not acknowledged
                continue
            acknowledged.append(cell["id"])
            async with progress:
                progress.notify_all()

    async def edits_reach(count: int) -> None:
        async with asyncio.timeout(RECOVERY_TIMEOUT), progress:
            await progress.wait_for(lambda: len(acknowledged) >= count)

    editing = asyncio.create_task(keep_editing())
    try:
        await edits_reach(20)
        killed = stack.accounts.process
        killed.kill()  # with requests in flight: queued ones wait for the next process
        killed.wait()
        stack.accounts.restart()
        await edits_reach(len(acknowledged) + 20)  # edits go through again
    finally:
        editing.cancel()
        await asyncio.gather(editing, return_exceptions=True)
    assert killed.returncode == -signal.SIGKILL
    cells = {c["id"] for c in (await ada.call("worksheet.get", id=sheet["id"]))["cells"]}
    assert set(acknowledged) <= cells, "an acknowledged edit was lost"
    await ada.close()


async def test_a_web_process_killed_mid_run_loses_no_feed_message(stack: ServicesStack) -> None:
    ada = await new_user(stack.urls[1], "ada")  # the API on the process that stays up
    sheet = await ada.call("worksheet.create", title="Through a web crash")
    code = "import time\nfor i in range(80):\n    print(i, flush=True)\n    time.sleep(0.02)"
    cell = await ada.call("cell.create", worksheet=sheet["id"], source=code)
    watcher = Client(stack.urls[0], ada.token, ada.username)
    feed = await watcher.socket()
    await feed.subscribe(worksheet=sheet["id"], cursor="now")
    run = await ada.call("cell.evaluate", id=cell["id"])
    await feed.message(lambda m: m["header"]["msg_type"] == "stream")
    stack.webs[0].process.kill()  # no closing frame: the client keeps its own cursor
    with pytest.raises(ConnectionError):
        await feed.frame(lambda f: False)
    cursor = feed.cursors[sheet["session"]]
    resumed = await ada.socket()
    await resumed.subscribe(session=sheet["session"], cursor=cursor)
    await resumed.until_done(run["msg_id"])
    received = feed.received + resumed.received
    cursors = [r.cursor for r in received]
    assert cursors == list(range(cursors[0], cursors[-1] + 1)), "lost or repeated messages"
    assert stdout_of([r.message for r in received]) == "".join(f"{i}\n" for i in range(80))
    stack.restart_web(0)
    await resumed.close()
    await watcher.close()
    await ada.close()


async def test_typing_through_kills_of_accounts_and_of_a_web_process_loses_no_update(
    stack: ServicesStack,
) -> None:
    """Three people type into one worksheet (pycrdt clients over the WebSocket, spread over
    both web processes) while the accounts service and then a web process are killed with
    SIGKILL and restarted: every update acknowledged is in the stored document, and every
    client ends with the same notebook, each cell once."""
    ada = await new_user(stack.urls[0], "ada")
    sheet = await ada.call("worksheet.create", title="Typing through crashes")
    await ada.call("cell.create", worksheet=sheet["id"], source="start")
    people = [ada, *[await new_user(stack.urls[1], f"p{i}") for i in range(2)]]
    for person in people[1:]:
        await ada.call("worksheet.share", id=sheet["id"], username=person.username, role="editor")
    typists = Typists.of([p.token for p in people], sheet["id"], stack.urls, seed=7)
    typists.start()
    try:
        await typists.acked_more(20)
        for victim, restart in (
            (stack.accounts, stack.accounts.restart),
            (stack.webs[0], lambda: stack.restart_web(0)),  # answering before the next test
        ):
            killed = victim.process
            killed.kill()
            killed.wait()
            assert killed.returncode == -signal.SIGKILL
            await asyncio.to_thread(restart)  # the typists go on typing meanwhile
            await typists.acked_more(20)  # typing goes on, through the new process
    finally:
        await typists.stop()
    await typists.check(stack.database_url, sheet["id"])
    await typists.close()
    for person in people:
        await person.close()


async def test_a_socket_opened_while_accounts_is_down_is_told_to_retry_not_to_sign_in(
    stack: ServicesStack,
) -> None:
    """The feed socket's handshake needs the accounts service to check a token it has not
    seen: while no accounts process answers, the handshake ends with 503 (retry), not 401
    (which tells a client its token is bad); once one answers, the same token connects."""
    bea = await new_user(stack.urls[0], "bea")
    elsewhere = bea.on(stack.urls[1])  # a web process that has not cached bea's token
    stack.accounts.process.kill()
    stack.accounts.process.wait()
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await elsewhere.socket()
        assert refused.value.status == 503
    finally:
        stack.accounts.restart()
    async with asyncio.timeout(RECOVERY_TIMEOUT):
        while True:  # as a client does on 503: again, until the restarted service answers
            try:
                feed = await elsewhere.socket()
                break
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 503
    await feed.close()
    await elsewhere.close()
    await bea.close()
