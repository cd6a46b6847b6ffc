"""``GET`` and ``PUT /files/{worksheet}/{path}``: large files, streamed between the socket and
the workspace's volume, never held whole in memory (at most `CHUNK` per transfer).

Download: the file (or one byte range of it, ``Range: bytes=a-b``, answered 206) as
``application/octet-stream``, ``Content-Disposition: attachment``, ``X-Content-Type-Options:
nosniff`` and ``Content-Security-Policy: sandbox``: a file user code wrote never runs as a page
of the app's origin, whatever it holds.

Upload: the body goes into a partial file beside the target (`partial_name`), renamed into
place once complete, so the target is never seen half written. It is resumable:

- ``Content-Range: bytes <start>-<end>/<total>`` sends bytes start..end of a file of `total`
  bytes; `start` must be what the partial file holds already (0 starts over). Before the last
  part the answer is 308 with ``Range: bytes=0-<end>``; after it, the entry (201, or 200 if it
  replaced a file).
- ``Content-Range: bytes */<total>`` with an empty body asks how much arrived: 308 with
  ``Range: bytes=0-<n-1>``, or no ``Range`` if nothing did, or if the upload completed (its
  partial file is gone: a file already at the path says nothing of this upload, so the client
  sends it again rather than keep a file it never sent).
- A plain PUT is one part of the whole; if its connection drops, what arrived is kept in the
  partial file, and the client goes on with a ``Content-Range`` from there.

The size is checked before a byte is read: over ``CELLBUS_MAX_UPLOAD_MB`` or past the quota it
is refused with 413; a body of no declared size is cut off with 413 where it passes either.
What an upload has still to receive is held in the quota while it goes on (`room`), so
uploads at once never pass the quota together.

Authentication is the API's (`auth.Authenticator.principal`, with ``link`` for a
download): a bearer token, or the session cookie with the CSRF
defence: a PUT needs an ``Origin`` of this site; a download by cookie is also taken without an
``Origin`` (a link the app's page opens sends none) unless the browser says it comes from
another site (``Sec-Fetch-Site``). The SameSite=Lax cookie is not sent with another site's
subresource or script requests anyway, and such a page could not read the answer.
Errors are ``{"error": {"code", "message", "data"}}`` with the API's codes and an HTTP status.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

import msgspec
from aiohttp import web

from cellbus_protocol.workspaces import MIB

from ..auth import Principal
from ..backend import BACKEND
from ..rpc import (
    CONFLICT,
    FORBIDDEN,
    INVALID_PARAMS,
    INVALID_REQUEST,
    NOT_FOUND,
    RATE_LIMITED,
    TAKEN,
    TOO_LARGE,
    UNAUTHENTICATED,
    RpcError,
    api_error,
)
from . import ops
from .access import Opened, announce, blocking, open_workspace
from .confine import Workspace, open_file, parse, refused
from .room import STEP, Reservation

log = logging.getLogger(__name__)

ROUTE = "/files/{worksheet}/{path:(?s:.*)}"  # any name: a line break too
CHUNK = 1024 * 1024
"""Bytes read from the disk or gathered from the socket before each write: large enough that
a thread hop per chunk costs nothing, small enough to keep a transfer's memory bounded."""
PARTIAL_PREFIX = ".cellbus-upload-"
LOCK_WAIT = 5.0
"""Seconds an upload or a probe waits for another request on the same partial file."""

STATUS_OF: dict[int, int] = {
    UNAUTHENTICATED: 401, FORBIDDEN: 403, NOT_FOUND: 404, INVALID_PARAMS: 400,
    INVALID_REQUEST: 400, CONFLICT: 409, TAKEN: 409, TOO_LARGE: 413, RATE_LIMITED: 429,
}  # fmt: skip
"""The HTTP status of an API error code; any other (a service away) is a 503."""

DOWNLOAD_HEADERS = {
    "Content-Type": "application/octet-stream",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "private, no-cache",
    "Accept-Ranges": "bytes",
}
"""Set on the download itself: a streamed response is sent before the app's middleware could
add its headers."""

_SPAN = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_PROBE = re.compile(r"bytes \*/(\d+)")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def add_routes(app: web.Application) -> None:
    app.router.add_get(ROUTE, download, allow_head=False)
    app.router.add_put(ROUTE, upload)


def partial_name(name: str) -> str:
    """The partial file an upload to `name` fills, beside it: a dot entry of a fixed length
    whatever the name's, the same for every attempt (so an upload resumes on any web
    process)."""
    return PARTIAL_PREFIX + hashlib.sha256(name.encode(errors="surrogateescape")).hexdigest()[:32]


def error_response(error: RpcError, status: int | None = None) -> web.Response:
    """``{"error": {"code", "message", "data"}}`` with the HTTP status of its code (or
    `status`)."""
    body = {"code": error.code, "message": error.message}
    if error.data is not None:
        body["data"] = error.data
    return web.Response(
        status=status or STATUS_OF.get(error.code, 503),
        body=msgspec.json.encode({"error": body}),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def answering_errors(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception as exc:
            error = api_error(exc)
            if error is None:
                raise  # a bug: the app's middleware logs it and answers 500
            return error_response(error)

    return answer


async def _opened(request: web.Request, download: bool) -> tuple[Principal, Opened]:
    backend = request.app[BACKEND]
    principal = await backend.authenticator.principal(request, link=download)
    worksheet = request.match_info["worksheet"]
    opened = await open_workspace(backend, principal, worksheet, "viewer" if download else "editor")
    return principal, opened


# -- download -------------------------------------------------------------------------------


def _open_for_download(ws: Workspace, path: str) -> int:
    with ws.parent(path) as (parent, name):
        return open_file(parent, name, path)


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The range `header` asks for as [start, end) within `size`, None for the whole file
    (no header, or several ranges); 416 if it is out of the file."""
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:
        start, end = max(size - int(last), 0), size
    else:
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    if start >= size or start >= end:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return start, end


def _disposition(name: str) -> str:
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in name
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@answering_errors
async def download(request: web.Request) -> web.StreamResponse:
    _, opened = await _opened(request, download=True)
    path = request.match_info["path"]
    fd = await blocking(_open_for_download, opened.workspace, path)
    try:
        size = os.fstat(fd).st_size
        span = _byte_range(request.headers.get("Range", ""), size)
        start, end = span or (0, size)
        response = web.StreamResponse(status=206 if span else 200, headers=DOWNLOAD_HEADERS)
        response.headers["Content-Disposition"] = _disposition(path.rsplit("/", 1)[-1])
        if span:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        response.content_length = end - start
        await response.prepare(request)
        offset = start
        while offset < end:
            chunk = await blocking(os.pread, fd, min(CHUNK, end - offset), offset)
            if not chunk:
                break  # the file was cut short meanwhile: the client sees a short body
            await response.write(chunk)
            offset += len(chunk)
        await response.write_eof()
        return response
    finally:
        os.close(fd)


# -- upload ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    start: int
    end: int | None  # inclusive; None: to the end of the body
    total: int | None  # None: as long as the body is


def _span(request: web.Request) -> Span | int:
    """What the PUT sends (a `Span`), or the total size of a probe (``bytes */<total>``)."""
    header = request.headers.get("Content-Range")
    if header is None:
        return Span(0, None, request.content_length)
    if probe := _PROBE.fullmatch(header.strip()):
        return int(probe.group(1))
    match = _SPAN.fullmatch(header.strip())
    if match is None:
        message = "Content-Range must be 'bytes <start>-<end>/<total>' or 'bytes */<total>'"
        raise RpcError(INVALID_PARAMS, message)
    start, end, total = (int(x) for x in match.groups())
    length = request.content_length
    if end < start or end >= total or (length is not None and length != end - start + 1):
        raise RpcError(INVALID_PARAMS, f"Content-Range {header!r} does not fit the body")
    return Span(start, end, total)


class Upload:
    """One PUT's partial file, locked for it (two PUTs to one file at once: one is refused),
    and the folder it is in."""

    def __init__(self, ws: Workspace, path: str) -> None:
        self.ws = ws
        self.path = path
        self.dir_fd = -1
        self.fd = -1
        self.name = ""
        self.partial = ""
        self.replaces = False  # a file is at the path already

    def open(self, create: bool) -> bool:
        """Open the folder and the partial file (made if `create`); False if there is none."""
        with self.ws.parent(self.path, create=create) as (parent, name):
            self.dir_fd = os.dup(parent)
        self.name = name
        self.partial = partial_name(name)
        self.replaces = ops.existing_file_size(self.dir_fd, name, self.path) is not None
        flags = os.O_WRONLY | (os.O_CREAT if create else 0)
        try:
            self.fd = open_file(self.dir_fd, self.partial, self.path, flags)
        except RpcError as exc:
            if exc.code == NOT_FOUND and not create:
                return False
            raise
        if create:
            self.ws.adopt(self.fd)
        return True

    async def lock(self) -> None:
        """Have the partial file to this request alone. A request whose connection just
        dropped may still be writing its last bytes: it is waited for, up to `LOCK_WAIT`."""
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    message = f"another upload of {self.path} is under way"
                    raise refused(CONFLICT, message, self.path) from None
            await asyncio.sleep(0.02)

    @property
    def have(self) -> int:
        return os.fstat(self.fd).st_size

    def write(self, data: bytes, offset: int, room: Reservation) -> None:
        """Write `data` at `offset`, and hold that much less room for what is still to come."""
        view = memoryview(data)
        while view:
            done = os.pwrite(self.fd, view, offset)
            view, offset = view[done:], offset + done
        room.grown(offset)

    def finish(self) -> tuple[ops.Entry, bool]:
        """Put the complete file in place of the target: the entry, and whether it is new."""
        try:
            os.rename(self.partial, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except OSError as exc:
            raise refused(
                CONFLICT, f"cannot put {self.path} in place: {exc.strerror}", self.path
            ) from None
        return ops.stat_path(self.ws, self.path), not self.replaces

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.partial, dir_fd=self.dir_fd)

    def close(self) -> None:
        for fd in (self.fd, self.dir_fd):
            if fd >= 0:
                os.close(fd)
        self.fd = self.dir_fd = -1


def _received(end: int) -> dict[str, str]:
    return {"Range": f"bytes=0-{end - 1}"} if end > 0 else {}


def _too_large(opened: Opened, path: str, size: int) -> RpcError:
    message = f"{path}: {size} bytes is {_too_large_message(opened.max_upload)}"
    return refused(TOO_LARGE, message, path)


def _too_large_message(max_upload: int) -> str:
    return f"more than one upload may hold, {max_upload // MIB} MiB (CELLBUS_MAX_UPLOAD_MB)"


@answering_errors
async def upload(request: web.Request) -> web.StreamResponse:
    principal, opened = await _opened(request, download=False)
    path = request.match_info["path"]
    parse(path)
    span = _span(request)
    if isinstance(span, int):
        return await _probe(opened, path, span)
    if span.total is not None and span.total > opened.max_upload:
        raise _too_large(opened, path, span.total)
    job = Upload(opened.workspace, path)
    room = Reservation(opened.workspace, path, opened.quota)
    try:
        await blocking(job.open, True)
        await job.lock()
        await blocking(_take_room, job, room, opened, span)
        written = await _receive(request, job, span, room, opened.max_upload)
        if written is None:
            message = f"{path}: the body ended before all it declared arrived; resume the upload"
            raise RpcError(INVALID_REQUEST, message, {"path": path, "have": job.have})
        if span.end is not None and span.total is not None and written < span.total:
            return web.Response(status=308, headers=_received(written))
        entry, new = await blocking(job.finish)
    finally:
        await blocking(room.release)
        await blocking(job.close)
    await announce(request.app[BACKEND], principal, opened, [path])
    return web.Response(
        status=201 if new else 200,
        body=msgspec.json.encode(entry),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _take_room(job: Upload, room: Reservation, opened: Opened, span: Span) -> None:
    """Hold the room the upload needs in the quota: all it declared, or `STEP` if it
    declared no size (413 before anything is read if that does not fit)."""
    have = job.have
    if span.start == 0 and have:
        os.ftruncate(job.fd, 0)  # a fresh upload starts over
        have = 0
    if span.start != have:
        message = f"{job.path}: the partial upload holds {have} bytes, not {span.start}"
        raise RpcError(CONFLICT, message, {"path": job.path, "have": have})
    limit = span.total if span.total is not None else min(have + STEP, opened.max_upload)
    try:
        room.take(have, limit)
    except RpcError:
        if have == 0:
            job.discard()
        raise


async def _receive(
    request: web.Request, job: Upload, span: Span, room: Reservation, max_upload: int
) -> int | None:
    """Write the body into the partial file from `span.start`; the size it then has, or
    None if the body ended short of what was declared or the connection dropped (what
    arrived is kept, for a resume)."""
    offset, buffer = span.start, bytearray()
    bound = None if span.end is None else span.end + 1
    dropped = False
    try:
        async for chunk in request.content.iter_any():
            buffer += chunk
            if bound is not None and offset + len(buffer) > bound:
                message = f"{job.path}: the body is longer than Content-Range says"
                raise refused(INVALID_PARAMS, message, job.path)
            if offset + len(buffer) > room.limit:
                await _more_room(job, room, offset + len(buffer), max_upload)
            if len(buffer) >= CHUNK:
                await _write(job, buffer, offset, room)
                offset, buffer = offset + len(buffer), bytearray()
    except RpcError:
        raise
    except Exception as exc:  # the connection dropped, or the body was malformed
        log.info("upload of %s cut at %d bytes: %s", job.path, offset + len(buffer), exc)
        dropped = True
    if buffer:
        await _write(job, buffer, offset, room)
        offset += len(buffer)
    expected = bound if bound is not None else span.total
    if dropped or (expected is not None and offset != expected):
        return None
    return offset


async def _more_room(job: Upload, room: Reservation, size: int, max_upload: int) -> None:
    """A body of no declared size reached what it holds: hold `STEP` more, up to the upload
    limit; past either, the partial file is removed and the upload refused (413)."""
    try:
        if size > max_upload or room.limit >= max_upload:
            message = f"{job.path}: the body is {_too_large_message(max_upload)}"
            raise refused(TOO_LARGE, message, job.path)
        await blocking(room.take, job.have, min(size + STEP, max_upload))
    except RpcError:
        await blocking(job.discard)
        raise


async def _write(job: Upload, data: bytearray, offset: int, room: Reservation) -> None:
    try:
        await blocking(job.write, bytes(data), offset, room)
    except OSError as exc:  # the volume is full, or a file size limit
        raise refused(TOO_LARGE, f"cannot write {job.path}: {exc.strerror}", job.path) from None


async def _probe(opened: Opened, path: str, total: int) -> web.Response:
    """``Content-Range: bytes */<total>``: how much of the upload arrived (308, with no
    ``Range`` when nothing did or no partial file is left)."""
    job = Upload(opened.workspace, path)
    try:
        found = await blocking(job.open, False)
        if found:
            await job.lock()
        have = job.have if found else 0
    except RpcError as exc:
        if exc.code != NOT_FOUND:
            raise
        have = 0
    finally:
        await blocking(job.close)
    return web.Response(status=308, headers=_received(have if have <= total else 0))
