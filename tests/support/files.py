"""A test's client of a worksheet's files over HTTP: ``GET`` and ``PUT /files/...``, as any
program would use them (the bearer token of an `api.Client`)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from cellbus_web.files.http import partial_name

from .api import Client

__all__ = ["partial_name"]  # the partial file an upload fills, as the server names it

MIB = 1024 * 1024


@dataclass(frozen=True)
class Answer:
    """An HTTP answer of the files endpoints: status, headers and the JSON body if any."""

    status: int
    headers: dict[str, str]
    body: Any

    @property
    def message(self) -> str:
        return str(self.body["error"]["message"]) if isinstance(self.body, dict) else ""


def file_url(client: Client, worksheet: str, path: str) -> str:
    return f"{client.url}/files/{worksheet}/{quote(path)}"


async def _answer(response: aiohttp.ClientResponse) -> Answer:
    body: Any = None
    if response.content_type == "application/json":
        body = await response.json()
    else:
        await response.read()
    return Answer(response.status, dict(response.headers), body)


async def put(
    client: Client,
    worksheet: str,
    path: str,
    data: bytes | AsyncIterator[bytes],
    headers: dict[str, str] | None = None,
) -> Answer:
    """PUT `data` (bytes, or a generator streamed with no Content-Length)."""
    async with client.http.put(
        file_url(client, worksheet, path),
        data=data,
        headers={**client.headers(), **(headers or {})},
        allow_redirects=False,
    ) as response:
        return await _answer(response)


async def probe(client: Client, worksheet: str, path: str, total: int) -> Answer:
    """Ask how much of an upload of `total` bytes arrived."""
    return await put(client, worksheet, path, b"", {"Content-Range": f"bytes */{total}"})


async def received(client: Client, worksheet: str, path: str, total: int) -> int:
    """How many bytes of an upload the server holds (from the probe's Range header)."""
    answer = await probe(client, worksheet, path, total)
    assert answer.status == 308, answer
    span = answer.headers.get("Range")
    return 0 if span is None else int(span.rsplit("-", 1)[1]) + 1


async def get(
    client: Client, worksheet: str, path: str, headers: dict[str, str] | None = None
) -> tuple[Answer, bytes]:
    async with client.http.get(
        file_url(client, worksheet, path), headers={**client.headers(), **(headers or {})}
    ) as response:
        data = await response.read()
        body = None
        if response.content_type == "application/json":
            body = await response.json()
        return Answer(response.status, dict(response.headers), body), data


async def sha256_of_download(client: Client, worksheet: str, path: str) -> tuple[int, str]:
    """Download a file chunk by chunk (never whole in memory); its size and sha256."""
    digest, size = hashlib.sha256(), 0
    async with client.http.get(
        file_url(client, worksheet, path), headers=client.headers()
    ) as response:
        assert response.status == 200, await response.text()
        async for chunk in response.content.iter_chunked(MIB):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def pattern(index: int) -> bytes:
    """Chunk `index` (1 MiB) of a test file: different in every chunk, cheap to make."""
    return hashlib.sha256(str(index).encode()).digest() * (MIB // 32)


def pattern_sha256(mib: int) -> str:
    digest = hashlib.sha256()
    for index in range(mib):
        digest.update(pattern(index))
    return digest.hexdigest()


async def pattern_stream(mib: int, first: int = 0) -> AsyncIterator[bytes]:
    """A body of `mib` MiB made as it is sent: the test holds one MiB at a time."""
    for index in range(first, mib):
        yield pattern(index)
