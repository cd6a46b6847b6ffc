"""Checkpoints: a session's namespace, signed by a worker and kept on the bus.

A checkpoint is code: loading it (unpickling, in the session process) runs whatever it says.
So only a kernel worker writes one, it signs it with the deployment's secret
(``CELLBUS_SECRET``), and a worker verifies the signature before any session process sees
the bytes. The secret never reaches a session process: its environment is an allow-list
(`isolation`), and it is started from the template by ``exec``, not forked from the worker.

Layout of the blob under ``keys.checkpoint(session)``::

    b"CBCK"  version (1 byte)  header length (4 bytes, big-endian)  header (JSON)
    signature (32 bytes)  payload (the dill pickle made by the session process)

The signature is HMAC-SHA256 over everything before it and the payload, with a key derived
from the secret for this one purpose. The header says which session the checkpoint is of,
after which execution (its count and ``msg_id``), when it was made, the feed cursor at that
moment, which unsavable names the session has already been told about, and the session's
input history.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import struct
from dataclasses import dataclass

import msgspec

from cellbus_protocol import keys
from cellbus_protocol.bus import Bus

log = logging.getLogger(__name__)

MAGIC = b"CBCK"
VERSION = 1
_PREFIX = struct.Struct(">4sBI")  # magic, version, header length
_SIGNATURE_SIZE = hashlib.sha256().digest_size
_KEY_LABEL = b"cellbus checkpoint signing key v1"
IN_THREAD = 1 << 20
"""Checkpoints at least this large are signed and verified in a thread (hashing 256 MiB takes
about a second, which the worker's event loop must not spend)."""
CONCURRENT_SAVES = 4
"""Checkpoints one worker saves at once: each holds up to CELLBUS_CHECKPOINT_MAX_MB in its
memory while it is written (all sessions of a draining worker save together)."""


class Header(msgspec.Struct, kw_only=True):
    session: str
    """The session whose namespace this is (a fork starts from another session's)."""
    execution_count: int
    """The count of the last execution whose effects it holds (0: none counted)."""
    msg_id: str
    """The ``msg_id`` of the last execution it includes ("" if none)."""
    created: str
    """When it was made, ISO 8601 UTC."""
    feed_seq: int
    """The session's feed cursor when it was made."""
    reported: list[str] = []
    """Names that could not be saved and that the feed has already reported."""
    open_files: list[str] = []
    """Names whose values held open files when it was saved: they are restored closed."""
    history: list[tuple[int, str, str]] = []
    """IPython's input history (the latest inputs: execution count, source as run, as
    typed), restored with the namespace so ``In``, ``%history`` and history requests go on."""


@dataclass(frozen=True)
class Loaded:
    """A verified checkpoint."""

    header: Header
    payload: bytes | memoryview
    size: int


@dataclass(frozen=True)
class Refused:
    """A checkpoint that failed verification; `reason` is a whole sentence."""

    reason: str


def signing_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest()


def _signature(key: bytes, head: bytes | memoryview, payload: bytes | memoryview) -> bytes:
    mac = hmac.new(key, head, hashlib.sha256)
    mac.update(payload)
    return mac.digest()


def seal(key: bytes, header: Header, payload: bytes | memoryview) -> bytes:
    """The signed blob of `payload` under `header`."""
    encoded = msgspec.json.encode(header)
    head = _PREFIX.pack(MAGIC, VERSION, len(encoded)) + encoded
    return b"".join((head, _signature(key, head, payload), payload))


def unseal(key: bytes, blob: bytes, session: str, fork_of: str = "") -> Loaded | Refused:
    """Verify `blob` as a checkpoint of `session` (or of `fork_of`, which it was forked from)."""
    view = memoryview(blob)
    if len(view) < _PREFIX.size:
        return Refused("It is not a cellbus checkpoint.")
    magic, version, length = _PREFIX.unpack_from(view)
    if magic != MAGIC:
        return Refused("It is not a cellbus checkpoint.")
    if version != VERSION:
        return Refused(f"It has format version {version}; this worker reads version {VERSION}.")
    end = _PREFIX.size + length
    if len(view) < end + _SIGNATURE_SIZE:
        return Refused("It is truncated.")
    head, signature = view[:end], view[end : end + _SIGNATURE_SIZE]
    payload = view[end + _SIGNATURE_SIZE :]
    if not hmac.compare_digest(_signature(key, head, payload), signature):
        return Refused(
            "Its signature does not match: it was changed, or signed with another CELLBUS_SECRET."
        )
    try:
        header = msgspec.json.decode(head[_PREFIX.size :], type=Header)
    except msgspec.DecodeError as exc:  # signed by us, so only a bug gets here
        return Refused(f"Its header does not decode ({exc}).")
    if header.session not in (session, fork_of or session):
        return Refused(f"It is the checkpoint of another session ({header.session}).")
    return Loaded(header, payload, len(blob))


class CheckpointStore:
    """The worker's access to checkpoints on the bus: sign and write, read and verify."""

    def __init__(self, bus: Bus, secret: str, max_bytes: int) -> None:
        if not secret:
            raise ValueError("checkpoints need a secret (CELLBUS_SECRET)")
        self._bus = bus
        self._key = signing_key(secret)
        self.max_bytes = max_bytes
        self.saving = asyncio.Semaphore(CONCURRENT_SAVES)
        """Held by a session from asking its process for a checkpoint until it is written."""

    async def save(self, session: str, header: Header, payload: bytes | memoryview) -> int:
        """Write the checkpoint; returns its size in bytes."""
        if len(payload) >= IN_THREAD:
            blob = await asyncio.to_thread(seal, self._key, header, payload)
        else:
            blob = seal(self._key, header, payload)
        await self._bus.put_blob(keys.checkpoint(session), blob)
        return len(blob)

    async def load(self, session: str, fork_of: str = "") -> Loaded | Refused | None:
        """The session's checkpoint, verified; None if it has none."""
        blob = await self._bus.get_blob(keys.checkpoint(session))
        if blob is None:
            return None
        if len(blob) >= IN_THREAD:
            checkpoint = await asyncio.to_thread(unseal, self._key, blob, session, fork_of)
        else:
            checkpoint = unseal(self._key, blob, session, fork_of)
        if isinstance(checkpoint, Refused):
            log.warning("session %s: checkpoint refused: %s", session, checkpoint.reason)
        return checkpoint

    async def copy(self, source: str, target: str) -> bool:
        """Copy `source`'s checkpoint to `target` (a fork); False if `source` has none."""
        return await self._bus.copy_blob(keys.checkpoint(source), keys.checkpoint(target))

    async def delete(self, session: str) -> None:
        await self._bus.delete_blob(keys.checkpoint(session))
