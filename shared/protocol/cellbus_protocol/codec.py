"""Bytes to messages and back: the one place where wire data is validated.

Everything that reads a message from the bus goes through `decode`, which checks the envelope
and decodes ``content`` into the struct of its ``msg_type``. Invalid data raises
`ValidationError` with a reason a person can act on; the caller logs it, counts it and drops
the message (see `DropCounter`), and carries on.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, TypeVar

import msgspec

from .envelope import EMPTY_HEADER, Header, Message
from .errors import ValidationError
from .messages import CONTENT_TYPES

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""Largest encoded message the codec accepts; the kernel caps outputs far below this."""

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()


class _RawEnvelope(msgspec.Struct):
    header: Header
    parent_header: Header = EMPTY_HEADER
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    content: msgspec.Raw = msgspec.Raw(b"{}")


_envelope_decoder = msgspec.json.Decoder(_RawEnvelope)
_content_decoders = {msg_type: msgspec.json.Decoder(cls) for msg_type, cls in CONTENT_TYPES.items()}

T = TypeVar("T")


def encode(msg: Message) -> bytes:
    """The JSON bytes of a message."""
    return _encoder.encode(msg)


def decode(data: bytes | bytearray | memoryview | str) -> Message:
    """Validate and decode one message; raises `ValidationError` saying what is wrong."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValidationError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        raw = _envelope_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValidationError(f"bad envelope: {exc}") from None
    header = raw.header
    for name in ("msg_id", "msg_type", "session"):
        if not getattr(header, name):
            raise ValidationError(f"bad envelope: header.{name} is missing or empty")
    decoder = _content_decoders.get(header.msg_type)
    if decoder is None:
        raise ValidationError(f"unknown msg_type {header.msg_type!r}")
    try:
        content = decoder.decode(raw.content)
    except msgspec.DecodeError as exc:
        raise ValidationError(f"bad {header.msg_type} content: {exc}") from None
    return Message(
        header=header, parent_header=raw.parent_header, metadata=raw.metadata, content=content
    )


def encode_record(record: msgspec.Struct) -> bytes:
    """The JSON bytes of a bus record that is not a Jupyter message: `messages.SessionOpen`
    and the other kernel records, the accounts service's requests and replies, and its
    access-change announcements. The one encoder of them all, as `encode` is of messages."""
    return _encoder.encode(record)


def decode_record(data: bytes | str, record_type: type[T]) -> T:
    """Validate and decode a bus record of a known type."""
    try:
        return msgspec.json.decode(data, type=record_type)
    except msgspec.DecodeError as exc:
        raise ValidationError(f"bad {record_type.__name__}: {exc}") from None


class DropCounter:
    """Counts and logs messages dropped because they failed validation.

    Each service keeps one; every drop is a WARNING line naming where it happened and the
    message id, and `counts` keeps the tally by place.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def drop(self, where: str, error: Exception, ref: str = "") -> None:
        self.counts[where] += 1
        log.warning("dropped invalid message on %s %s: %s", where, ref, error)

    @property
    def total(self) -> int:
        return sum(self.counts.values())
