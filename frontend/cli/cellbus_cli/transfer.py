"""`FileTransfer`: a worksheet's files streamed over HTTP, `GET`/`PUT /files/{worksheet}/{path}`.

Neither way holds a file in memory: a download is written to disk as it comes (into
`<dest>.part`, renamed into place once complete, so an interrupted `get` never leaves a cut
file under the real name), an upload is read from disk block by block as it goes.

An upload is one `PUT` carrying `Content-Range: bytes <start>-<total-1>/<total>`, so that the
server keeps what arrived in a partial file beside the target. When the connection drops, the
upload asks how much the server has (`Content-Range: bytes */<total>`, an empty body: 308 with
`Range: bytes=0-<n-1>`, or no Range for nothing, as after an upload that completed but whose
answer was lost: then it is sent again) and sends the rest, up to `RETRIES` times in a
row. `resume=True` asks before the first byte too: it continues an upload that an earlier
command left unfinished (Ctrl-C, a laptop that slept), when its total size was the same.

Authentication is the bearer token, as for JSON-RPC (client.py); errors are those of the
client: `RpcError` for the server's refusals (its JSON error, or the HTTP status),
`ServerUnreachable` when it cannot be reached even after retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Self
from urllib.parse import quote

import aiohttp

from .codes import CONFLICT, FORBIDDEN, INTERNAL_ERROR, NOT_FOUND, TOO_LARGE, UNAUTHENTICATED
from .errors import RpcError, ServerUnreachable

log = logging.getLogger(__name__)

BLOCK = 1024 * 1024
"""Bytes read from disk (or the socket) at a time."""
RETRIES = 5
"""Connections lost in a row before a transfer gives up."""
RETRY_WAITS = (0.25, 0.5, 1.0, 2.0, 4.0)
CONNECT_TIMEOUT = 30.0
READ_TIMEOUT = 300.0
"""No byte from the server for this long (seconds) counts as a lost connection."""
STATUS_CODES = {401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND, 413: TOO_LARGE}
RANGE = re.compile(r"^bytes=0-(\d+)$")

Progress = Callable[[int, int], None]
"""Called with (bytes done, total bytes) as a transfer goes."""


def file_url(base: str, worksheet: str, path: str) -> str:
    """The URL of `path` (workspace-relative, "/"-separated) in `worksheet`'s workspace."""
    return f"{base.rstrip('/')}/files/{quote(worksheet, safe='')}/{quote(path, safe='/')}"


class FileTransfer:
    """Downloads and uploads for one server as one user; open with `async with`."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT
        )
        self._http = aiohttp.ClientSession(
            timeout=timeout, headers={"Authorization": f"Bearer {self.token}"}
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise RuntimeError("FileTransfer used outside `async with`")
        return self._http

    # -- downloads ----------------------------------------------------------------------------

    async def download(self, worksheet: str, path: str, out: IO[bytes], progress: Progress) -> int:
        """Write the file at `path` to `out` as it comes; its size."""
        url = file_url(self.url, worksheet, path)
        try:
            async with self.http.get(url) as response:
                if response.status != 200:
                    raise await refusal(response, path)
                total = response.content_length or 0
                done = 0
                async for block in response.content.iter_chunked(BLOCK):
                    out.write(block)
                    done += len(block)
                    progress(done, max(total, done))
        except (aiohttp.ClientError, TimeoutError) as error:
            raise ServerUnreachable(self.url, reason(error)) from error
        out.flush()
        return done

    async def download_to(self, worksheet: str, path: str, dest: Path, progress: Progress) -> int:
        """Download into `dest`, through `<dest>.part`; its size."""
        partial = dest.with_name(dest.name + ".part")
        try:
            with partial.open("wb") as out:
                size = await self.download(worksheet, path, out, progress)
            os.replace(partial, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        return size

    # -- uploads ------------------------------------------------------------------------------

    async def upload(
        self, worksheet: str, path: str, source: Path, progress: Progress, *, resume: bool
    ) -> int:
        """Put `source` at `path`, replacing what is there; its size."""
        url = file_url(self.url, worksheet, path)
        total = size_of(source)
        start = await self._received(url, total) if resume and total else 0
        if start:
            log.info("%s: the server has %d bytes of it already; sending the rest", path, start)
        lost = 0
        while True:
            try:
                await self._put_from(url, source, start, total, progress)
                return total
            except (ServerUnreachable, RpcError) as error:
                if not retryable(error) or lost >= RETRIES:
                    raise
                await asyncio.sleep(RETRY_WAITS[lost])
                lost += 1
                start = await self._received(url, total)
                log.info("%s: the connection was lost; going on from byte %d", path, start)

    async def _put_from(
        self, url: str, source: Path, start: int, total: int, progress: Progress
    ) -> None:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(total - start)}
        if total:
            headers["Content-Range"] = f"bytes {start}-{total - 1}/{total}"
        progress(start, total)
        body = read_blocks(source, start, total, progress)
        answer = await self._request(url, headers, body)
        if not 200 <= answer.status < 300:
            raise RpcError(INTERNAL_ERROR, f"the upload ended with HTTP {answer.status}")

    async def _received(self, url: str, total: int) -> int:
        """How many bytes of an upload of `total` bytes the server has kept (0: none)."""
        for lost in range(RETRIES + 1):
            try:
                answer = await self._request(url, {"Content-Range": f"bytes */{total}"}, b"")
            except (ServerUnreachable, RpcError) as error:
                if not retryable(error) or lost >= RETRIES:
                    raise
                await asyncio.sleep(RETRY_WAITS[lost])
                continue
            match = RANGE.match(answer.range)
            return int(match.group(1)) + 1 if match else 0
        raise AssertionError("unreachable")  # pragma: no cover

    async def _request(
        self, url: str, headers: dict[str, str], body: bytes | AsyncIterator[bytes]
    ) -> Answer:
        try:
            async with self.http.put(url, data=body, headers=headers) as response:
                if response.status == 308 or 200 <= response.status < 300:
                    await response.read()
                    return Answer(response.status, response.headers.get("Range", ""))
                raise await refusal(response, url)
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as error:
            raise ServerUnreachable(self.url, reason(error)) from error


@dataclass(frozen=True)
class Answer:
    """What a PUT was answered: its status, and the Range the server says it holds."""

    status: int
    range: str


def retryable(error: Exception) -> bool:
    """Whether to ask again how much arrived and go on: the connection was lost, or the
    server's copy is not where this client thought (409: the request the connection dropped
    under still holds the partial file, or it kept more or less than was sent)."""
    return isinstance(error, ServerUnreachable) or (
        isinstance(error, RpcError) and error.code == CONFLICT
    )


def size_of(source: Path) -> int:
    return source.stat().st_size


async def read_blocks(
    source: Path, start: int, total: int, progress: Progress
) -> AsyncIterator[bytes]:
    """`source` from byte `start`, a block at a time, reporting what was handed over."""
    done = start
    with source.open("rb") as file:
        file.seek(start)
        while block := file.read(BLOCK):
            done += len(block)
            yield block
            progress(min(done, total), total)


async def refusal(response: aiohttp.ClientResponse, path: str) -> RpcError:
    """The server's refusal as an `RpcError`: its JSON error, else the HTTP status."""
    text = await response.text(errors="replace")
    code = STATUS_CODES.get(response.status, INTERNAL_ERROR)
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    error = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        given = error.get("code")
        return RpcError(given if isinstance(given, int) else code, str(error["message"]))
    plain = text.strip()
    message = plain if plain and len(plain) < 300 else f"HTTP {response.status}"
    return RpcError(code, message)


def reason(error: BaseException) -> str:
    if isinstance(error, aiohttp.ClientConnectorError) and error.os_error:
        return str(error.os_error.strerror or error.os_error)
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(error, TimeoutError):
        return f"no answer within {READ_TIMEOUT:g} s"
    return str(error) or type(error).__name__
