"""What people do on a worksheet that the others should see at once: relayed, never stored.

Two kinds, both passed to a worksheet's other sockets in this process and broadcast on the
bus (`keys.live(session)`) for the sockets of other web processes:

- **awareness**: y-protocols awareness updates (who is in which cell, cursors, selections).
  Worth nothing a moment later; each client re-announces its state every few seconds and on
  every change. A socket that closes or unsubscribes cannot say goodbye itself, so the relay
  remembers the awareness client ids each socket spoke for and, when it leaves, tells the
  others those clients are gone (a null state at the next clock, as y-websocket's server
  does).
- **doc_update**: an editor's document update, as it arrives, before the accounts service has
  committed it. The others see a keystroke after one hop instead of the commit's round trip
  (the committed update follows on the feed, and applying it twice is harmless). Only what
  the accounts service commits is acknowledged to the sender and kept; an update relayed
  that then fails to commit stays in the others' copies, which send it back at their next
  sync (Yjs merges it then). The sender's role (editor) and the bytes (a Yjs update) are
  checked before anything is relayed.

An awareness update's encoding (lib0): a varuint count, then per client a varuint id, a
varuint clock and a varstring JSON state (``null`` for a client that left).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Literal, Protocol

import msgspec
from pycrdt import Doc

from cellbus_protocol import keys
from cellbus_protocol.bus import Bus, Listening

log = logging.getLogger(__name__)

MAX_AWARENESS_BYTES = 8 * 1024
"""The largest awareness update a client may send (a cursor, a selection, a name)."""
MAX_RELAYED_UPDATE_BYTES = 1024 * 1024
"""The largest document update relayed before its commit (the accounts service's default
limit, CELLBUS_MAX_UPDATE_BYTES; a larger one reaches the others once committed)."""

Kind = Literal["awareness", "doc_update"]


class AwarenessError(ValueError):
    """A client's awareness update that is not one."""


class Relayed(msgspec.Struct, kw_only=True):
    """What goes on the bus: from which process (which gave it to its own sockets at once,
    so skips it when the bus brings it back) and socket (which is not sent its own), for
    which worksheet, of which kind."""

    process: str
    origin: str
    worksheet: str
    kind: Kind
    update: bytes


class Audience(Protocol):
    """A socket as the relay sees it."""

    @property
    def socket_id(self) -> str: ...

    def show_live(self, frame: bytes) -> None:
        """Queue the frame for the client (dropped if there is no room)."""


_relayed = msgspec.json.Decoder(Relayed)


def is_update(update: bytes) -> bool:
    """Whether `update` decodes as a Yjs update (applied to an empty scratch document), and
    is small enough to relay: the others' clients are never sent bytes their yjs rejects."""
    if len(update) > MAX_RELAYED_UPDATE_BYTES:
        return False
    try:
        Doc(skip_gc=True).apply_update(update)
    except ValueError:
        return False
    except BaseException as exc:  # a panic in yrs (pyo3's PanicException is a BaseException)
        if type(exc).__name__ != "PanicException":
            raise
        return False
    return True


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


class WorksheetRelay:
    """This process's relay, for every session its sockets watch."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.process = uuid.uuid4().hex
        self._rooms: dict[str, _Room] = {}

    @staticmethod
    def new_socket_id() -> str:
        return uuid.uuid4().hex

    async def join(self, session: str, socket: Audience) -> None:
        room = self._rooms.get(session)
        if room is None:
            room = self._rooms[session] = _Room()
            room.listening = await self.bus.listen(
                keys.live(session), lambda data: self._heard(session, data)
            )
        room.sockets[socket.socket_id] = socket

    def joined(self, session: str, socket: Audience) -> bool:
        room = self._rooms.get(session)
        return room is not None and socket.socket_id in room.sockets

    async def awareness(
        self, session: str, worksheet: str, socket: Audience, update: bytes
    ) -> None:
        """A socket's awareness update: to the session's other sockets, here and elsewhere."""
        if len(update) > MAX_AWARENESS_BYTES:
            raise AwarenessError(f"an awareness update has at most {MAX_AWARENESS_BYTES:,} bytes")
        clients = clients_of(update)
        room = self._rooms.get(session)
        if room is None or socket.socket_id not in room.sockets:
            raise AwarenessError("subscribe to the worksheet first")
        room.clients.setdefault(socket.socket_id, {}).update(clients)
        await self._send(session, self._relayed(socket, worksheet, "awareness", update))

    async def document_update(
        self, session: str, worksheet: str, socket: Audience, update: bytes
    ) -> None:
        """An editor's document update (checked by the caller), to the others at once."""
        await self._send(session, self._relayed(socket, worksheet, "doc_update", update))

    def _relayed(self, socket: Audience, worksheet: str, kind: Kind, update: bytes) -> Relayed:
        return Relayed(process=self.process, origin=socket.socket_id, worksheet=worksheet,
                       kind=kind, update=update)  # fmt: skip

    async def _send(self, session: str, relayed: Relayed) -> None:
        self._show(session, relayed)  # this process's sockets at once
        await self.bus.broadcast(keys.live(session), msgspec.json.encode(relayed))

    async def leave(self, session: str, socket: Audience, worksheet: str | None) -> None:
        """The socket stopped watching the session: its clients are gone for the others."""
        room = self._rooms.get(session)
        if room is None or room.sockets.pop(socket.socket_id, None) is None:
            return
        clients = room.clients.pop(socket.socket_id, None)
        if clients and worksheet is not None:
            gone = self._relayed(socket, worksheet, "awareness", removal(clients))
            try:
                await self._send(session, gone)
            except Exception:  # the bus is away: the others' clients time out (30 s)
                log.info("could not tell session %s that a socket left", session)
        if not room.sockets:
            del self._rooms[session]
            if room.listening is not None:
                await room.listening.close()

    def _heard(self, session: str, data: bytes) -> None:
        """A relayed message from the bus (another process's; this process's own are
        skipped: its sockets had them at once)."""
        try:
            relayed = _relayed.decode(data)
        except msgspec.DecodeError:
            log.warning("dropped a malformed relayed message on session %s", session)
            return
        if relayed.process != self.process:
            self._show(session, relayed)

    def _show(self, session: str, relayed: Relayed) -> None:
        """To this process's sockets on the session, but the one it came from."""
        room = self._rooms.get(session)
        if room is None:
            return
        frame = msgspec.json.encode(
            {"type": relayed.kind, "worksheet": relayed.worksheet, "update": relayed.update}
        )
        for socket_id, socket in room.sockets.items():
            if socket_id != relayed.origin:
                socket.show_live(frame)
