"""Upload and download of a large file (issue 17), cellbus against Jupyter, as browsers do it.

cellbus: one streamed ``PUT /files/{worksheet}/{path}`` (the body read from disk as it is
sent, with its Content-Length), and ``GET /files/{worksheet}/{path}`` (docs/api.md), with
the bearer token. Jupyter: JupyterLab's upload of a file over 15 MiB (its file browser's
``uploadLargeFile``): 1 MiB slices, each read as base64 and sent in turn as the JSON model
``{type: file, format: base64, name, chunk, content}`` to ``PUT /api/contents/<path>``, the
chunks numbered 1, 2, ... and the last one -1, each awaited before the next; and its
``GET /files/<path>`` download, with the token.

The peak resident memory of every process of each system (its root process and all its
descendants) is measured during each transfer: each process's high-water mark (VmHWM) is
reset before the transfer (``/proc/PID/clear_refs``, 5) and read after it, and a sampler
reads VmRSS every few milliseconds as well (for processes that start meanwhile, and where
the reset is refused).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from . import measure
from .systems import http_session

MIB = 1024 * 1024
JUPYTERLAB_CHUNK = MIB  # JupyterLab's CHUNK_SIZE (@jupyterlab/filebrowser, model.ts)
CLIENT_READ = MIB  # what the client reads of a download, or of the file to upload, at once
SAMPLE_EVERY = 0.01  # seconds between two readings of VmRSS
TRANSFER_TIMEOUT = 600.0


# -- the file ----------------------------------------------------------------------------


def make_file(path: Path, size: int) -> str:
    """`size` random bytes (nothing compresses them on the way) at `path`; its sha256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 4 * MIB))
            digest.update(block)
            out.write(block)
            left -= len(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 * MIB):
            digest.update(block)
    return digest.hexdigest()


async def size_of(path: Path) -> int:
    return (await asyncio.to_thread(path.stat)).st_size


async def file_body(path: Path) -> AsyncIterator[bytes]:
    """The file as it is read, one piece at a time: never whole in the client's memory."""
    with path.open("rb") as f:
        while block := f.read(CLIENT_READ):
            yield block


# -- peak memory of a process tree ---------------------------------------------------------


def tree_of(root: int) -> list[int]:
    """`root` and all its live descendants."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in parents:
            out.append(pid)
            todo.extend(p for p, parent in parents.items() if parent == pid)
    return sorted(out)


def status_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of `pid` in KiB ({} if it has gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {k: int(v) for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.MULTILINE)}


def reset_peak(pid: int) -> bool:
    """Reset the process's peak RSS (VmHWM) to its RSS now (Linux 4.0+; root or the owner)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def short_name(pid: int) -> str:
    """What the process is, for the table: its program and module, not its whole command."""
    words = measure.cmdline_of(pid).split()
    return " ".join(Path(w).name if w.startswith("/") else w for w in words[:4])[:80]


@dataclass
class _Seen:
    name: str
    before_kib: int
    peak_kib: int = 0
    reset: bool = False


@dataclass
class PeakMemory:
    """The peak RSS of every process of the trees under `roots` while a ``with`` runs."""

    roots: list[int]
    seen: dict[int, _Seen] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    def _look(self) -> None:
        for root in self.roots:
            for pid in tree_of(root):
                kib = status_kib(pid)
                if not kib:
                    continue
                entry = self.seen.get(pid)
                if entry is None:
                    entry = self.seen[pid] = _Seen(short_name(pid), kib["VmRSS"])
                entry.peak_kib = max(entry.peak_kib, kib["VmRSS"])

    async def _sample(self) -> None:
        while True:
            await asyncio.to_thread(self._look)
            await asyncio.sleep(SAMPLE_EVERY)

    async def __aenter__(self) -> PeakMemory:
        self._look()
        for pid, entry in self.seen.items():
            entry.reset = reset_peak(pid)
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._look()
        for pid, entry in self.seen.items():
            if entry.reset:
                entry.peak_kib = max(entry.peak_kib, status_kib(pid).get("VmHWM", 0))

    def record(self) -> dict[str, Any]:
        """Per process: its name, its RSS before, its peak (MiB); the largest peak and the
        largest growth of any one process, and the peaks added up."""
        each: list[dict[str, Any]] = [
            {
                "pid": pid,
                "process": e.name,
                "rss_before_mib": round(e.before_kib / 1024, 1),
                "peak_rss_mib": round(e.peak_kib / 1024, 1),
                "peak_is_vmhwm": e.reset,
            }
            for pid, e in self.seen.items()
        ]
        return {
            "processes": each,
            "max_peak_rss_mib": round(
                max((e.peak_kib for e in self.seen.values()), default=0) / 1024, 1
            ),
            "max_growth_mib": round(
                max(((e.peak_kib - e.before_kib) / 1024 for e in self.seen.values()), default=0),
                1,
            ),
            "sum_peak_rss_mib": round(sum(e.peak_kib for e in self.seen.values()) / 1024, 1),
        }


# -- the two systems' file transfers -------------------------------------------------------


class FileSide(Protocol):
    name: str

    async def upload(self, source: Path, name: str) -> None: ...
    async def download(self, name: str, digest: Any = None) -> int: ...
    def stored(self, name: str) -> Path:
        """Where the uploaded file is on the server's disk."""

    def roots(self) -> list[int]:
        """The root processes of the system (all their descendants are measured too)."""


async def read_body(response: aiohttp.ClientResponse, digest: Any) -> int:
    """Read the whole body as it comes (hashed into `digest` if given); its length."""
    size = 0
    async for block in response.content.iter_chunked(CLIENT_READ):
        size += len(block)
        if digest is not None:
            digest.update(block)
    return size


async def check(response: aiohttp.ClientResponse, what: str) -> None:
    if response.status >= 300:
        text = (await response.read())[:500].decode(errors="replace")
        raise RuntimeError(f"{what}: HTTP {response.status}: {text}")


class CellbusFiles:
    """cellbus's files endpoints, as its browser app and CLI use them, on one worksheet."""

    name = "cellbus"

    def __init__(self, url: str, token: str, worksheet: str, workspace: Path, pid: int) -> None:
        self.url = url
        self.worksheet = worksheet
        self.workspace = workspace
        self.pid = pid
        self.http = http_session(Authorization=f"Bearer {token}")

    def _url(self, name: str) -> str:
        return f"{self.url}/files/{self.worksheet}/{name}"

    async def upload(self, source: Path, name: str) -> None:
        headers = {
            "Content-Length": str(await size_of(source)),
            "Content-Type": "application/octet-stream",
        }
        async with self.http.put(self._url(name), data=file_body(source), headers=headers) as r:
            await check(r, f"PUT {self._url(name)}")
            await r.read()

    async def download(self, name: str, digest: Any = None) -> int:
        async with self.http.get(self._url(name)) as response:
            await check(response, f"GET {self._url(name)}")
            return await read_body(response, digest)

    def stored(self, name: str) -> Path:
        return self.workspace / name

    def roots(self) -> list[int]:
        return [self.pid]

    async def close(self) -> None:
        await self.http.close()


class JupyterFiles:
    """jupyter_server's contents API and ``/files/``, as JupyterLab uses them."""

    name = "jupyter"

    def __init__(self, url: str, token: str, root: Path, pid: int) -> None:
        self.url = url
        self.root = root
        self.pid = pid
        self.http = http_session(Authorization=f"token {token}")

    async def upload(self, source: Path, name: str) -> None:
        """JupyterLab's ``uploadLargeFile``: 1 MiB slices, base64 in a JSON model, one PUT
        each, in sequence; ``chunk`` is 1, 2, ... and -1 for the last."""
        size = await size_of(source)
        url = f"{self.url}/api/contents/{name}"
        with source.open("rb") as f:
            start = 0
            while True:
                end = start + JUPYTERLAB_CHUNK
                last = end >= size
                piece = f.read(JUPYTERLAB_CHUNK)
                model = {
                    "type": "file",
                    "format": "base64",
                    "name": name,
                    "chunk": -1 if last else end // JUPYTERLAB_CHUNK,
                    "content": base64.b64encode(piece).decode("ascii"),
                }
                body = json.dumps(model).encode()
                headers = {"Content-Type": "application/json"}
                async with self.http.put(url, data=body, headers=headers) as response:
                    await check(response, f"PUT {url} chunk {model['chunk']}")
                    await response.read()
                if last:
                    return
                start = end

    async def download(self, name: str, digest: Any = None) -> int:
        url = f"{self.url}/files/{name}?download=1"
        async with self.http.get(url) as response:
            await check(response, f"GET {url}")
            return await read_body(response, digest)

    def stored(self, name: str) -> Path:
        return self.root / name

    def roots(self) -> list[int]:
        return [self.pid]

    async def close(self) -> None:
        await self.http.close()


async def timed(
    side: FileSide, phase: str, transfer: Any, expected: int | None = None
) -> dict[str, Any]:
    """One transfer, its time and the peak memory of the side's processes meanwhile."""
    async with PeakMemory(side.roots()) as memory:
        started = time.perf_counter()
        async with asyncio.timeout(TRANSFER_TIMEOUT):
            result = await transfer
        seconds = time.perf_counter() - started
    if phase == "download" and expected is not None and result != expected:
        raise RuntimeError(f"{side.name}: downloaded {result} bytes of {expected}")
    return {"seconds": seconds, "memory": memory.record()}
