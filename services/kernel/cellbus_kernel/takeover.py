"""Taking a session over from a worker that died: what became of the requests it had read.

The dead worker's consumer had taken some of the session's requests off its queue without
acknowledging them. The new host claims them, in order, and reads the session's feed to learn
what each one had become: an execution whose ``execute_reply`` is on the feed had ended (it
is only acknowledged); one whose ``busy`` or ``execute_input`` is there but not its reply was
running when the worker died (it gets a ``WorkerLost`` error, and is not run again: it may
have done half of what it does); the rest had not started and run as usual.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cellbus_protocol import codec, keys
from cellbus_protocol.bus import Bus
from cellbus_protocol.errors import ValidationError

from .checkpointing import after_cell
from .checkpoints import Header

PAGE = 1000


@dataclass
class FeedHistory:
    """Which executions the feed shows as started, and which as ended."""

    started: set[str] = field(default_factory=set)
    replied: set[str] = field(default_factory=set)


async def feed_history(bus: Bus, session: str, msg_ids: set[str], after: int) -> FeedHistory:
    """What the session's feed says, after cursor `after`, of the executions `msg_ids`."""
    history = FeedHistory()
    feed = keys.feed(session)
    while entries := await bus.read_feed(feed, after, PAGE):
        for entry in entries:
            try:
                msg = codec.decode(entry.data)
            except ValidationError:
                continue
            parent = msg.parent_header.msg_id
            if parent not in msg_ids:
                continue
            if msg.msg_type == "execute_reply":
                history.replied.add(parent)
            elif msg.msg_type == "execute_input" or (
                msg.msg_type == "status" and msg.content.execution_state == "busy"
            ):
                history.started.add(parent)
        after = entries[-1].seq
    return history


def worker_lost_message(restored_from: Header | None, fresh_because: str) -> str:
    """The evalue of the ``WorkerLost`` error: what was lost and where the session is now."""
    lost = "The kernel worker running this execution was lost."
    if restored_from is not None:
        return after_cell(
            restored_from, f"{lost} The session continues on another worker, with the namespace"
        )
    return f"{lost} The session continues on another worker with a fresh namespace: {fresh_because}"
