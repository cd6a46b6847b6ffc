"""`OutputSaver` on the in-process bus, with a store of one cell: it saves a run's outputs at
the reply at once and while they change at most once an interval, and a session's follower
waits as long as a run is in flight, however quiet, and stops once nothing is left to save and
the session is quiet (then the next run starts a new one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import pytest

from cellbus_accounts.outputs import text_of
from cellbus_accounts.saver import OutputSaver
from cellbus_accounts.store import Store
from cellbus_protocol import codec, keys
from cellbus_protocol import messages as m
from cellbus_protocol.bus import InMemoryBus
from cellbus_protocol.envelope import Message, new_message, reply_to

SESSION = "s1"
CELL = "c1"


class OneCellStore:
    """The two calls the saver makes (on the store's cell records), for one cell; the saves
    it got, as (cursor, text)."""

    def __init__(self, run: str) -> None:
        self.run = run
        self.saves: list[tuple[int, str]] = []
        self.saved = asyncio.Condition()
        self.documents = self

    async def by_run(self, msg_id: str) -> Any:
        if msg_id != self.run:
            return None
        return SimpleNamespace(outputs=[], execution_count=None, outputs_seq=0)

    async def save_outputs(
        self, msg_id: str, seq: int, outputs: list[dict[str, Any]], execution_count: int | None
    ) -> bool:
        async with self.saved:
            self.saves.append((seq, text_of(outputs)))
            self.saved.notify_all()
        return True

    async def until_saved(self, text: str) -> None:
        async with self.saved, asyncio.timeout(5):
            await self.saved.wait_for(lambda: bool(self.saves) and self.saves[-1][1] == text)


@pytest.fixture
async def bus() -> AsyncIterator[InMemoryBus]:
    bus = InMemoryBus()
    yield bus
    await bus.close()


def execute_request() -> Message:
    return new_message(
        m.ExecuteRequest(code="print('hi')"), session=SESSION, username="ada",
        metadata={"cellbus": {"cell_id": CELL}},
    )  # fmt: skip


async def publish(bus: InMemoryBus, request: Message, *contents: Any) -> None:
    for content in contents:
        await bus.publish(keys.feed(SESSION), codec.encode(reply_to(request, content)))


def started(request: Message) -> list[Any]:
    return [
        m.CellRun(cell_id=CELL, msg_id=request.msg_id, username="ada"),
        m.Status(execution_state="busy"),
        m.ExecuteInput(code="print('hi')", execution_count=1),
    ]


def saver_on(bus: InMemoryBus, store: OneCellStore, **timing: float) -> OutputSaver:
    return OutputSaver(cast(Store, store), bus, **timing)


async def test_the_reply_is_saved_at_once_and_output_before_it_at_most_once_an_interval(
    bus: InMemoryBus,
) -> None:
    request = execute_request()
    store = OneCellStore(request.msg_id)
    saver = saver_on(bus, store, save_interval=3600.0)  # no save comes from the timer here
    saver.follow(SESSION, 0)
    lines = [m.Stream(name="stdout", text=f"{i}\n") for i in range(100)]
    await publish(bus, request, *started(request), *lines, m.ExecuteReply(execution_count=1))
    await store.until_saved("".join(f"{i}\n" for i in range(100)))
    assert len(store.saves) == 1  # 100 outputs and a reply: one save, at the reply
    await saver.close()


async def test_output_is_saved_on_the_timer_while_the_run_goes_on(bus: InMemoryBus) -> None:
    request = execute_request()
    store = OneCellStore(request.msg_id)
    saver = saver_on(bus, store, save_interval=0.05)
    saver.follow(SESSION, 0)
    await publish(bus, request, *started(request), m.Stream(name="stdout", text="working\n"))
    await store.until_saved("working\n")  # no reply yet: the timer saved it
    await saver.close()


async def test_a_follower_waits_while_a_run_is_in_flight_and_stops_when_it_is_done(
    bus: InMemoryBus,
) -> None:
    request = execute_request()
    store = OneCellStore(request.msg_id)
    saver = saver_on(bus, store, quiet_after=0.05)
    saver.follow(SESSION, 0)
    follower = saver.follower(SESSION)
    assert follower is not None and follower.task is not None
    await publish(bus, request, *started(request), m.Stream(name="stdout", text="a\n"))
    await store.until_saved("a\n")
    # A run that prints nothing for a long time is in flight: its follower waits for the feed
    # (no timer to stop on, and no turning round in a loop).
    assert follower.in_flight() and follower.wait_time() is None and not follower.done()
    await publish(bus, request, m.ExecuteReply(execution_count=1), m.Status(execution_state="idle"))
    async with asyncio.timeout(5):
        await follower.task  # the run ended and the session went quiet: it stops
    assert saver.follower(SESSION) is None
    saver.follow(SESSION, await bus.last_seq(keys.feed(SESSION)))  # the next run: a new one
    assert saver.follower(SESSION) not in (None, follower)
    await saver.close()


@pytest.mark.parametrize(
    "end",
    [m.Status(execution_state="idle"), m.SessionState(state="dead", reason="It was killed.")],
    ids=["idle", "dead"],
)
async def test_a_follower_resuming_between_a_reply_and_its_end_stops(
    bus: InMemoryBus, end: m.Content
) -> None:
    request = execute_request()
    store = OneCellStore(request.msg_id)
    await publish(bus, request, *started(request), m.ExecuteReply(execution_count=1))
    reply = await bus.last_seq(keys.feed(SESSION))
    await publish(bus, request, end)
    saver = saver_on(bus, store, quiet_after=0.05)
    saver.follow(SESSION, reply)  # as after a restart, its reply saved last
    follower = saver.follower(SESSION)
    assert follower is not None and follower.task is not None
    async with asyncio.timeout(5):
        await follower.task  # the idle (or dead) ends the run too: nothing in flight
    await saver.close()


async def test_outputs_an_output_widget_captures_are_not_the_cells(bus: InMemoryBus) -> None:
    """``with out: print('inside')``: ipywidgets' Output widget shows the request's outputs
    while its ``msg_id`` names it; they are the widget's, not saved under the cell."""
    request = execute_request()
    store = OneCellStore(request.msg_id)
    saver = saver_on(bus, store, save_interval=3600.0)
    saver.follow(SESSION, 0)

    def capture(msg_id: str) -> m.CommMsg:
        state = {"msg_id": msg_id}
        return m.CommMsg(comm_id="out-1", data={"method": "update", "state": state})

    await publish(
        bus, request, *started(request),
        m.Stream(name="stdout", text="before\n"),
        capture(request.msg_id), m.Stream(name="stdout", text="inside\n"), capture(""),
        m.Stream(name="stdout", text="after\n"),
        m.ExecuteReply(execution_count=1),
    )  # fmt: skip
    await store.until_saved("before\nafter\n")
    await saver.close()
