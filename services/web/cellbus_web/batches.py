"""The ``messages`` frame: a batch of one session's feed messages, built once for every socket.

Entries of a feed that reach the web process together (an execution's ``busy``, input,
output and reply often do) go to a socket as one frame, so a socket costs one write per
batch, not one per message. The frame is built once per batch in the shared subscription
(`feeds.SharedFeed`) and every socket of the session is sent the same bytes object; the
kernel's published bytes are spliced in as they are, never decoded and encoded again:

    {"type":"messages","session":S,"cursor":N,"messages":[{"cursor":c,"message":M},...]}

``cursor`` is the last message's (where to resume), each message has its own. A batch is
split where its frame would pass `MAX_BATCH_BYTES`, so a client never needs to take frames
much larger than the largest single message (aiohttp's client refuses messages over 4 MiB
unless told otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cellbus_protocol import codec
from cellbus_protocol.bus import FeedEntry
from cellbus_protocol.errors import ValidationError

MAX_BATCH_BYTES = 1 << 20
"""A batch's frame is split before it would pass this (a larger message goes alone)."""


@dataclass(frozen=True, slots=True, eq=False)
class Batch:
    """Some entries of one session's feed, in cursor order, and their ``messages`` frame."""

    session: str
    entries: list[FeedEntry]
    frame: bytes
    removes: frozenset[str]
    """The users whose access to the session one of the entries takes away."""
    inputs: tuple[tuple[str, str], ...]
    """(username, msg_id) of each ``input_request`` among the entries: who is asked."""
    _joined: dict[Batch, Batch] = field(default_factory=dict, repr=False)
    """`joined` answers, so that every socket that joins the same two gets the same bytes."""

    @property
    def cursor(self) -> int:
        return self.entries[-1].seq

    def joined(self, after: Batch) -> Batch | None:
        """This batch and the next one of the session (`after`) as one, or None if its frame
        would pass `MAX_BATCH_BYTES`. Built once for all the sockets that have both queued
        (a socket whose writer was behind when `after` came)."""
        if len(self.frame) + len(after.frame) > MAX_BATCH_BYTES:
            return None
        both = self._joined.get(after)
        if both is None:
            both = self._joined[after] = _batch(self.session, self.entries + after.entries)
        return both

    def before_removal_of(self, username: str) -> Batch | None:
        """The batch of the entries before the first that takes `username`'s access away
        (the rest is not for them), or None if there are none."""
        for i, entry in enumerate(self.entries):
            if _access_removed(entry.data) == username:
                return _batch(self.session, self.entries[:i]) if i else None
        return self


def batches(session: str, entries: list[FeedEntry]) -> list[Batch]:
    """`entries` (in cursor order) as batches, each frame at most about `MAX_BATCH_BYTES`."""
    out: list[Batch] = []
    start, size = 0, 0
    for i, entry in enumerate(entries):
        if size and size + len(entry.data) > MAX_BATCH_BYTES:
            out.append(_batch(session, entries[start:i]))
            start, size = i, 0
        size += len(entry.data) + 32
    if start < len(entries):
        out.append(_batch(session, entries if start == 0 else entries[start:]))
    return out


def _batch(session: str, entries: list[FeedEntry]) -> Batch:
    items = b",".join(b'{"cursor":%d,"message":%s}' % (e.seq, e.data) for e in entries)
    frame = b'{"type":"messages","session":"%s","cursor":%d,"messages":[%s]}' % (
        session.encode(),
        entries[-1].seq,
        items,
    )
    removes = frozenset(user for e in entries if (user := _access_removed(e.data)) is not None)
    inputs = tuple(asked for e in entries if (asked := _input_requested(e.data)) is not None)
    return Batch(session, entries, frame, removes, inputs)


def _input_requested(data: bytes) -> tuple[str, str] | None:
    """Who an ``input_request`` asks, and its msg_id, if the entry is one (see
    `ws.FeedSocket`: one who leaves ends the wait)."""
    if b'"input_request"' not in data:
        return None
    try:
        msg = codec.decode(data)
    except ValidationError:
        return None
    if msg.header.msg_type != "input_request":
        return None
    return msg.header.username, msg.msg_id


def _access_removed(data: bytes) -> str | None:
    """The user whose access to the session a feed entry takes away (a ``worksheet_shared``
    with role ``none``), if it is one."""
    if b'"worksheet_shared"' not in data:
        return None
    try:
        msg = codec.decode(data)
    except ValidationError:
        return None
    if msg.header.msg_type != "worksheet_shared" or msg.content.role != "none":
        return None
    return str(msg.content.username)
