"""A session's execution queue: which executions a failure with ``stop_on_error`` aborts.

`Executions` is driven here with stand-ins for the feed, the process and the checkpoints, so
that a request can be made to arrive at an exact moment: while the queue behind a failed
execution is being answered ``aborted`` (each reply and acknowledgement is a round trip to
the bus, and a client that has seen the first replies may already send its next request).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest

from cellbus_kernel.checkpointing import SessionCheckpoints
from cellbus_kernel.config import KernelSettings
from cellbus_kernel.executions import Executions
from cellbus_kernel.feed import FeedPublisher
from cellbus_kernel.lifecycle import HostingState, Lifecycle
from cellbus_kernel.process import ProcessManager
from cellbus_protocol import messages as m
from cellbus_protocol.bus import QueueItem
from cellbus_protocol.envelope import Header, Message, new_message

pytestmark = pytest.mark.unit

SESSION = "s1"


def execute(code: str) -> tuple[QueueItem, Message]:
    msg = new_message(m.ExecuteRequest(code=code), session=SESSION, username="ada")
    return QueueItem("requests", msg.msg_id, b""), msg


class Feed:
    """What was published, as (message type, status, parent's msg_id). `arrival`, if set,
    is called once just after the first ``aborted`` reply is published: a request that a
    client sends on seeing it arrives then."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str | None, str]] = []
        self.arrival: Callable[[], None] | None = None

    def announce(self, content: Any, parent: Header) -> None:
        self.published.append((type(content).__name__, None, parent.msg_id))

    async def publish(self, content: Any, parent: Header) -> None:
        status = getattr(content, "status", None)
        self.published.append((type(content).__name__, status, parent.msg_id))
        if status == "aborted" and self.arrival is not None:
            arrival, self.arrival = self.arrival, None
            arrival()

    def aborted(self) -> list[str]:
        """The msg_ids of the executions answered ``aborted``, in order."""
        return [parent for (_, status, parent) in self.published if status == "aborted"]


class Process:
    """A process whose executions of ``1/0`` fail and of anything else succeed."""

    execution_count = 1

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def ensure(self, parent: Header, *, announce_idle: bool = True) -> object:
        return self

    async def execute(self, process: object, parent: Header, frame: Any) -> m.ExecuteReply:
        self.ran.append(frame.code)
        if frame.code == "1/0":
            return m.ExecuteReply(status="error", execution_count=1, ename="ZeroDivisionError")
        return m.ExecuteReply(status="ok", execution_count=1)

    async def files_changed(self) -> None:
        return None


class Checkpoints:
    def postpone(self) -> None:
        pass

    def ran(self, parent: Header, delay: float, interval: float) -> None:
        pass


@pytest.fixture
def setting() -> tuple[Executions, Feed, Process, list[str]]:
    lifecycle = Lifecycle(SESSION)
    lifecycle.to(HostingState.SERVING)
    feed, process, acked = Feed(), Process(), []

    async def ack(item: QueueItem) -> None:
        acked.append(item.id)

    executions = Executions(
        SESSION,
        lifecycle=lifecycle,
        feed=cast(FeedPublisher, feed),
        process=cast(ProcessManager, process),
        checkpoints=cast(SessionCheckpoints, Checkpoints()),
        settings=KernelSettings(),
        ack=ack,
    )
    return executions, feed, process, acked


async def test_a_request_sent_while_the_queue_behind_a_failure_is_aborted_runs(
    setting: tuple[Executions, Feed, Process, list[str]],
) -> None:
    executions, feed, process, acked = setting
    failing, behind = execute("1/0"), [execute("print('should not run')") for _ in range(2)]
    for item, msg in [failing, *behind]:
        executions.add(item, msg)
    later = execute("print('ok')")
    feed.arrival = lambda: executions.add(*later)
    await executions.run_next()
    assert feed.aborted() == [msg.msg_id for _, msg in behind]
    assert len(executions) == 1  # the later request waits its turn, not aborted
    assert acked == [msg.msg_id for _, msg in behind] + [failing[1].msg_id]
    await executions.run_next()
    assert process.ran == ["1/0", "print('ok')"]
    replies = [(status, p) for (kind, status, p) in feed.published if kind == "ExecuteReply"]
    assert replies[-1] == ("ok", later[1].msg_id)


async def test_ending_the_session_aborts_what_arrives_while_it_aborts(
    setting: tuple[Executions, Feed, Process, list[str]],
) -> None:
    executions, feed, process, acked = setting
    waiting = [execute(f"print({i})") for i in range(2)]
    for item, msg in waiting:
        executions.add(item, msg)
    later = execute("print('late')")
    feed.arrival = lambda: executions.add(*later)
    await executions.abort_queued()
    assert feed.aborted() == [msg.msg_id for _, msg in [*waiting, later]]
    assert len(executions) == 0 and process.ran == []
    assert acked == [msg.msg_id for _, msg in [*waiting, later]]
