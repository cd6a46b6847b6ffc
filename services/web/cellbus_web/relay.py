"""Awareness: who is in which cell of a worksheet, their cursor and selection, relayed live.

Clients send y-protocols awareness updates (``awareness`` frames); this process passes each
to its other sockets on the worksheet and broadcasts it on the bus
(`keys.awareness(session)`), so that the sockets of other web processes get it too. Nothing is
stored: awareness is worth nothing a moment later, and a client that joins asks the others
nothing; each client re-announces its state every few seconds (y-protocols does) and on every
change.

A socket that closes, or unsubscribes, cannot say goodbye itself, so this relay remembers the
awareness client ids each socket spoke for and, when it leaves, tells the others those
clients are gone (an update with a null state and the next clock, as y-websocket's server
does).

The update's encoding (lib0): a varuint count, then per client a varuint id, a varuint clock
and a varstring JSON state (``null`` for a client that left).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from cellbus_protocol import keys
from cellbus_protocol.bus import Bus, Listening

log = logging.getLogger(__name__)

MAX_AWARENESS_BYTES = 8 * 1024
"""The largest awareness update a client may send (a cursor, a selection, a name)."""


class AwarenessError(ValueError):
    """A client's awareness update that is not one."""


class Relayed(msgspec.Struct, kw_only=True):
    """An awareness update on the bus: from which socket (so its own process does not send
    it back to it), for which worksheet."""

    origin: str
    worksheet: str
    update: bytes


class Audience(Protocol):
    """A socket as the relay sees it."""

    @property
    def socket_id(self) -> str: ...

    def show_awareness(self, frame: bytes) -> None:
        """Queue the frame for the client (dropped if there is no room)."""


_relayed = msgspec.json.Decoder(Relayed)


def _read_varuint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if at >= len(data) or shift > 63:
            raise AwarenessError("a truncated number")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _varuint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def clients_of(update: bytes) -> dict[int, int]:
    """The awareness client ids in `update` and their clocks; `AwarenessError` if it is not
    an awareness update."""
    count, at = _read_varuint(update, 0)
    clients = {}
    for _ in range(count):
        client, at = _read_varuint(update, at)
        clock, at = _read_varuint(update, at)
        length, at = _read_varuint(update, at)
        if at + length > len(update):
            raise AwarenessError("a truncated state")
        at += length
        clients[client] = clock
    if at != len(update):
        raise AwarenessError("bytes after the last client")
    return clients


def removal(clients: dict[int, int]) -> bytes:
    """An awareness update saying these clients have left (state null, the next clock)."""
    out = bytearray(_varuint(len(clients)))
    for client, clock in clients.items():
        out += _varuint(client) + _varuint(clock + 1) + _varuint(4) + b"null"
    return bytes(out)


@dataclass
class _Room:
    """One session's sockets in this process, and its listening on the bus."""

    sockets: dict[str, Audience] = field(default_factory=dict)
    clients: dict[str, dict[int, int]] = field(default_factory=dict)  # socket -> id -> clock
    listening: Listening | None = None


class AwarenessRelay:
    """This process's relay of awareness, for every session its sockets watch."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._rooms: dict[str, _Room] = {}

    @staticmethod
    def new_socket_id() -> str:
        return uuid.uuid4().hex

    async def join(self, session: str, socket: Audience) -> None:
        room = self._rooms.get(session)
        if room is None:
            room = self._rooms[session] = _Room()
            room.listening = await self.bus.listen(
                keys.awareness(session), lambda data: self._heard(session, data)
            )
        room.sockets[socket.socket_id] = socket

    async def relay(self, session: str, worksheet: str, socket: Audience, update: bytes) -> None:
        """A socket's awareness update: to the session's other sockets, here and elsewhere."""
        if len(update) > MAX_AWARENESS_BYTES:
            raise AwarenessError(f"an awareness update has at most {MAX_AWARENESS_BYTES:,} bytes")
        clients = clients_of(update)
        room = self._rooms.get(session)
        if room is None or socket.socket_id not in room.sockets:
            raise AwarenessError("subscribe to the worksheet first")
        spoke_for = room.clients.setdefault(socket.socket_id, {})
        spoke_for.update(clients)
        message = Relayed(origin=socket.socket_id, worksheet=worksheet, update=update)
        await self.bus.broadcast(keys.awareness(session), msgspec.json.encode(message))

    async def leave(self, session: str, socket: Audience, worksheet: str | None) -> None:
        """The socket stopped watching the session: its clients are gone for the others."""
        room = self._rooms.get(session)
        if room is None or room.sockets.pop(socket.socket_id, None) is None:
            return
        clients = room.clients.pop(socket.socket_id, None)
        if clients and worksheet is not None:
            message = Relayed(origin=socket.socket_id, worksheet=worksheet, update=removal(clients))
            try:
                await self.bus.broadcast(keys.awareness(session), msgspec.json.encode(message))
            except Exception:  # the bus is away: the others' clients time out (30 s)
                log.info("could not tell session %s that a socket left", session)
        if not room.sockets:
            del self._rooms[session]
            if room.listening is not None:
                await room.listening.close()

    def _heard(self, session: str, data: bytes) -> None:
        room = self._rooms.get(session)
        if room is None:
            return
        try:
            relayed = _relayed.decode(data)
        except msgspec.DecodeError:
            log.warning("dropped a malformed awareness broadcast on session %s", session)
            return
        frame = msgspec.json.encode(
            {"type": "awareness", "worksheet": relayed.worksheet, "update": relayed.update}
        )
        for socket_id, socket in room.sockets.items():
            if socket_id != relayed.origin:
                socket.show_awareness(frame)
