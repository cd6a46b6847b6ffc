"""The frames of the channels WebSocket, both ways, in Jupyter's two formats.

- Legacy JSON (what jupyter_server's gateway mode forces, and any client that offers no
  subprotocol): one text frame per message, ``{"channel", "header", "parent_header",
  "metadata", "content", "buffers", "msg_id", "msg_type"}``. A client message with binary
  buffers comes as a binary frame: a count of parts, their offsets (big-endian 32-bit) and the
  parts, the first being the JSON.
- ``v1.kernel.websocket.jupyter.org`` (offered by JupyterLab): one binary frame per message,
  a count of offsets and the offsets (little-endian 64-bit), then the channel name and the
  JSON of header, parent_header, metadata and content, then any buffers.

See jupyter_server's services/kernels/connection/base.py for the same formats. Everything a
client sends is checked here (`parse`); a frame that is not a message raises `WireError`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import msgspec

V1 = "v1.kernel.websocket.jupyter.org"
REQUEST_CHANNELS = ("shell", "control", "stdin")
MAX_ID = 256
"""The longest msg_id taken (Jupyter's are UUIDs, at most some 50 characters)."""


class WireError(ValueError):
    """A client frame that is not a Jupyter message."""


@dataclass(frozen=True)
class ClientMessage:
    """A message from the client, checked for shape (its content is checked per type by the
    socket, against cellbus's content structs)."""

    channel: str
    header: dict[str, Any]
    parent_header: dict[str, Any]
    metadata: dict[str, Any]
    content: dict[str, Any]
    buffers: list[bytes] = field(default_factory=list)

    @property
    def msg_id(self) -> str:
        return str(self.header["msg_id"])

    @property
    def msg_type(self) -> str:
        return str(self.header["msg_type"])

    @property
    def header_json(self) -> bytes:
        """The client's own header, to be the parent of what answers it."""
        return msgspec.json.encode(self.header)


def parse(data: str | bytes, v1: bool) -> ClientMessage:
    """The message in a client's frame; `WireError` saying what is wrong otherwise."""
    if isinstance(data, str):
        return _checked(_object(data.encode()), [])
    if v1:
        return _parse_v1(data)
    return _parse_legacy_binary(data)


def _object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise WireError("not JSON") from None
    if not isinstance(value, dict):
        raise WireError("not a JSON object")
    return value


def _checked(msg: dict[str, Any], buffers: list[bytes]) -> ClientMessage:
    channel = msg.get("channel", "shell")  # as jupyter_server assumes (GatewayKernelClient
    if channel not in REQUEST_CHANNELS:  # names no channel)
        raise WireError(f"channel: one of {', '.join(REQUEST_CHANNELS)}")
    parts = {name: msg.get(name, {}) for name in ("header", "parent_header", "metadata", "content")}
    for name, value in parts.items():
        if not isinstance(value, dict):
            raise WireError(f"{name}: a JSON object")
    header = parts["header"]
    for name in ("msg_id", "msg_type"):
        value = header.get(name)
        if not isinstance(value, str) or not value or len(value) > MAX_ID:
            raise WireError(f"header.{name}: a string of 1 to {MAX_ID} characters")
    return ClientMessage(
        channel, header, parts["parent_header"], parts["metadata"], parts["content"], buffers
    )


def _parse_v1(data: bytes) -> ClientMessage:
    try:
        count = int.from_bytes(data[:8], "little")
        if not 6 <= count <= 1 + 8 + 64 or len(data) < 8 * (count + 1):
            raise WireError("v1 frame: bad offsets")
        offsets = [int.from_bytes(data[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(count)]
        if offsets != sorted(offsets) or offsets[-1] > len(data) or offsets[0] != 8 * (count + 1):
            raise WireError("v1 frame: bad offsets")
        parts = [data[offsets[i] : offsets[i + 1]] for i in range(count - 1)]
        channel = parts[0].decode()
        names = ("header", "parent_header", "metadata", "content")
        msg: dict[str, Any] = {"channel": channel}
        msg.update({name: _object(part) for name, part in zip(names, parts[1:5], strict=True)})
    except UnicodeDecodeError:
        raise WireError("v1 frame: the channel is not UTF-8") from None
    return _checked(msg, [bytes(p) for p in parts[5:]])


def _parse_legacy_binary(data: bytes) -> ClientMessage:
    if len(data) < 4:
        raise WireError("binary frame: too short")
    count = struct.unpack("!I", data[:4])[0]
    if not 1 <= count <= 64 or len(data) < 4 * (count + 1):
        raise WireError("binary frame: bad offsets")
    offsets = list(struct.unpack(f"!{count}I", data[4 : 4 * (count + 1)]))
    if offsets != sorted(offsets) or offsets[-1] > len(data):
        raise WireError("binary frame: bad offsets")
    ends = [*offsets[1:], len(data)]
    parts = [data[start:end] for start, end in zip(offsets, ends, strict=True)]
    return _checked(_object(parts[0]), [bytes(p) for p in parts[1:]])


def frame(
    channel: str, header: bytes, parent: bytes, metadata: bytes, content: bytes, v1: bool
) -> bytes:
    """A message to the client, its parts already JSON, as one frame's bytes."""
    if v1:
        parts = [channel.encode(), header, parent, metadata, content]
        offsets = [8 * (len(parts) + 2)]
        for part in parts:
            offsets.append(offsets[-1] + len(part))
        head = len(offsets).to_bytes(8, "little") + b"".join(
            o.to_bytes(8, "little") for o in offsets
        )
        return head + b"".join(parts)
    ids = msgspec.json.decode(header, type=_Ids)
    return b'{"channel":"%s","header":%s,"msg_id":%s,"msg_type":%s,"parent_header":%s,' \
        b'"metadata":%s,"content":%s,"buffers":[]}' % (
            channel.encode(), header, msgspec.json.encode(ids.msg_id),
            msgspec.json.encode(ids.msg_type), parent, metadata, content,
        )  # fmt: skip


class _Ids(msgspec.Struct):
    msg_id: str = ""
    msg_type: str = ""
