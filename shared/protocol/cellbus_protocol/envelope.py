"""The message envelope of the Jupyter messaging spec, as cellbus uses it.

Every message has a ``header`` (who sent what, when), a ``parent_header`` (the header of the
request that caused it: the routing key from every output back to its request), ``metadata``
and ``content``. ``content`` is typed per ``msg_type`` (see `messages`); this module only
knows the envelope.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec

PROTOCOL_VERSION = "5.3"


class Header(msgspec.Struct, omit_defaults=True, frozen=True):
    """Who sent a message, of what type, for which session, and when.

    Every field defaults to empty, and empty fields are left out when encoding: the empty
    ``parent_header`` of the Jupyter spec is exactly ``{}`` both ways, while a real header,
    whose fields `new_message` always fills, carries all of them. `codec` checks that a
    message's own header is complete.
    """

    msg_id: str = ""
    msg_type: str = ""
    session: str = ""
    username: str = ""
    date: str = ""
    version: str = ""

    @property
    def is_empty(self) -> bool:
        return not self.msg_id


EMPTY_HEADER = Header()


class Message(msgspec.Struct, kw_only=True):
    """One message: the envelope around a typed content struct."""

    header: Header
    parent_header: Header = EMPTY_HEADER
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    content: Any

    @property
    def msg_type(self) -> str:
        return self.header.msg_type

    @property
    def msg_id(self) -> str:
        return self.header.msg_id

    @property
    def session(self) -> str:
        return self.header.session


def new_msg_id() -> str:
    return uuid.uuid4().hex


_second: list[Any] = [None, ""]  # the last whole second formatted, and its text


def now_iso() -> str:
    """The time now in UTC, ISO 8601 with microseconds (``2026-11-24T03:21:07.123456Z``).
    Every message header has one: the date and time of day are formatted once per second."""
    now = time.time()
    second = int(now)
    if _second[0] != second:
        _second[:] = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_second[1]}.{int((now - second) * 1_000_000):06d}Z"


def new_message(
    content: Any,
    *,
    session: str,
    username: str,
    parent: Header = EMPTY_HEADER,
    metadata: dict[str, Any] | None = None,
    msg_id: str | None = None,
) -> Message:
    """A new message whose msg_type is the content struct's `msg_type` (and whose id is
    `msg_id` when the caller had to name it before sending, say to record it first)."""
    header = Header(
        msg_id=msg_id or new_msg_id(),
        msg_type=msg_type_of(content),
        session=session,
        username=username,
        date=now_iso(),
        version=PROTOCOL_VERSION,
    )
    return Message(header=header, parent_header=parent, metadata=metadata or {}, content=content)


def reply_to(parent: Message | Header, content: Any, *, username: str | None = None) -> Message:
    """A message caused by `parent`: same session, `parent_header` set to the parent's header.

    The username stays the requester's unless given, so every watcher of the feed can tell
    whose request an output belongs to.
    """
    header = parent.header if isinstance(parent, Message) else parent
    return new_message(
        content,
        session=header.session,
        username=header.username if username is None else username,
        parent=header,
    )


def msg_type_of(content: Any) -> str:
    msg_type = getattr(type(content), "msg_type", None)
    if not isinstance(msg_type, str):
        raise TypeError(f"{type(content).__name__} is not a message content type")
    return msg_type
