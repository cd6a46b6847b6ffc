"""Files over the bus or from the volume (issue 17's choice, for docs/architecture.md).

Two ways a web process could serve a workspace's file, measured with the same file and
client: **through the bus**, the web holding no volume (the kernel side reads and writes the
file and the bytes go through Redis in 1 MiB chunks: cellbus's `RedisBus` request/reply, a
queue item to the kernel side and a reply published back, `outstanding` chunks in flight at
once so the time is not a sum of round trips), and **from the volume**, the web reading and
writing the file itself in 1 MiB pieces. Each variant is an upload (``PUT``) and a download
(``GET``) of the same file, over loopback HTTP to one aiohttp web process.

The processes: this module run as ``web`` and as ``kernel`` (``python -m
bench.cellbus_bench.bus_files web|kernel ...``), and a Redis server of their own (so its
memory is theirs alone). The peak RSS of each is measured as in `files`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from . import files, measure
from .systems import ROOT, START_TIMEOUT, free_port, http_session, stop_process, wait_for_http

CHUNK = files.MIB
QUEUE = "bench-files"
REQUEST_TIMEOUT = 60.0
VARIANTS = ("bus", "volume")


def _request(op: str, **fields: Any) -> bytes:
    return json.dumps({"op": op, **fields}).encode() + b"\n"


# -- the kernel side: owns the volume, answers over the bus ---------------------------------


async def kernel(redis_url: str, volume: Path) -> None:
    """Answer ``stat``, ``read`` (one chunk) and ``write`` (one chunk at an offset)."""
    from cellbus_protocol.bus import create_bus

    async with create_bus(redis_url, namespace="bench") as bus:
        consumer = bus.consumer("kernel", "kernel-1", batch=32)
        await consumer.add(QUEUE)
        print("ready", flush=True)
        while True:
            item = await consumer.get(timeout=1.0)
            if item is None:
                continue
            header, _, payload = item.data.partition(b"\n")
            ask = json.loads(header)
            path = volume / ask["name"]
            if ask["op"] == "stat":
                answer = str(path.stat().st_size).encode()
            elif ask["op"] == "read":
                with path.open("rb") as f:
                    f.seek(ask["offset"])
                    answer = f.read(CHUNK)
            else:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
                try:
                    os.pwrite(fd, payload, ask["offset"])
                finally:
                    os.close(fd)
                answer = b"ok"
            await bus.reply(item, answer)
            await consumer.ack(item)


# -- the web side ---------------------------------------------------------------------------


class WebSide:
    """The web process: the same handlers' shape for both variants."""

    def __init__(self, redis_url: str, volume: Path) -> None:
        from cellbus_protocol.bus import create_bus

        self.bus = create_bus(redis_url, namespace="bench")
        self.volume = volume

    async def lifetime(self, app: web.Application) -> AsyncIterator[None]:
        await self.bus.start()
        yield
        await self.bus.close()

    async def ask(self, data: bytes) -> bytes:
        return await self.bus.request(QUEUE, data, timeout=REQUEST_TIMEOUT)

    async def bus_get(self, request: web.Request) -> web.StreamResponse:
        name, outstanding = request.match_info["name"], int(request.query["outstanding"])
        size = int(await self.ask(_request("stat", name=name)))
        response = web.StreamResponse()
        response.content_length = size
        await response.prepare(request)
        pending: deque[asyncio.Task[bytes]] = deque()
        for offset in range(0, size, CHUNK):
            asked = self.ask(_request("read", name=name, offset=offset))
            pending.append(asyncio.create_task(asked))
            if len(pending) >= outstanding:
                await response.write(await pending.popleft())
        while pending:
            await response.write(await pending.popleft())
        await response.write_eof()
        return response

    async def bus_put(self, request: web.Request) -> web.Response:
        name, outstanding = request.match_info["name"], int(request.query["outstanding"])
        pending: deque[asyncio.Task[bytes]] = deque()
        offset = 0
        buffer = bytearray()

        async def send(piece: bytes) -> None:
            nonlocal offset
            header = _request("write", name=name, offset=offset)
            pending.append(asyncio.create_task(self.ask(header + piece)))
            offset += len(piece)
            if len(pending) >= outstanding:
                await pending.popleft()

        async for block in request.content.iter_chunked(CHUNK):
            buffer += block
            while len(buffer) >= CHUNK:
                await send(bytes(buffer[:CHUNK]))
                del buffer[:CHUNK]
        if buffer:
            await send(bytes(buffer))
        await asyncio.gather(*pending)
        return web.Response(status=201)

    async def volume_get(self, request: web.Request) -> web.StreamResponse:
        path = self.volume / request.match_info["name"]
        with path.open("rb") as f:
            response = web.StreamResponse()
            response.content_length = os.fstat(f.fileno()).st_size
            await response.prepare(request)
            while block := await asyncio.to_thread(f.read, CHUNK):
                await response.write(block)
        await response.write_eof()
        return response

    async def volume_put(self, request: web.Request) -> web.Response:
        path = self.volume / request.match_info["name"]
        with path.open("wb") as f:
            async for block in request.content.iter_chunked(CHUNK):
                await asyncio.to_thread(f.write, block)
        return web.Response(status=201)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=0)
        app.cleanup_ctx.append(self.lifetime)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/bus/{name}", self.bus_get)
        app.router.add_put("/bus/{name}", self.bus_put)
        app.router.add_get("/volume/{name}", self.volume_get)
        app.router.add_put("/volume/{name}", self.volume_put)
        return app


# -- the harness ----------------------------------------------------------------------------


class BusRig:
    """A Redis server, the kernel side and the web side, started in `workdir`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir / "bus-files"
        self.volume = self.workdir / "volume"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.url = ""
        self.redis_url = ""
        self._logs: list[Any] = []

    def _spawn(
        self, name: str, command: list[str], *, answers: bool = False
    ) -> subprocess.Popen[bytes]:
        """Start `command`, its output to its log (with `answers`, its stdout to us)."""
        log = open(self.workdir / f"{name}.log", "wb")  # closed in stop()
        self._logs.append(log)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}  # -P: the checkout only through this
        stdout = subprocess.PIPE if answers else log
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stdout, stderr=log)
        self.processes[name] = process
        return process

    def start(self) -> None:
        self.volume.mkdir(parents=True, exist_ok=True)
        redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{redis_port}/0"
        redis = self._spawn(
            "redis",
            ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while (
            subprocess.run(
                ["redis-cli", "-p", str(redis_port), "ping"], capture_output=True, check=False
            ).stdout.strip()
            != b"PONG"
        ):
            if redis.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the bench's Redis did not start")
            time.sleep(0.05)
        module = [sys.executable, "-P", "-m", "bench.cellbus_bench.bus_files"]
        kernel_side = self._spawn(
            "kernel", [*module, "kernel", self.redis_url, str(self.volume)], answers=True
        )
        assert kernel_side.stdout is not None
        if kernel_side.stdout.readline().strip() != b"ready":
            raise RuntimeError((self.workdir / "kernel.log").read_text(errors="replace"))
        port = free_port()
        web_side = self._spawn("web", [*module, "web", self.redis_url, str(self.volume), str(port)])
        self.url = f"http://127.0.0.1:{port}"
        wait_for_http(self.url + "/healthz", web_side, self.workdir / "web.log", START_TIMEOUT)

    def stop(self) -> None:
        for process in self.processes.values():
            stop_process(process)
        for log in self._logs:
            log.close()

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes.values()]


class RigSide:
    """One variant's transfers through the rig's web process (the `files.FileSide` shape)."""

    def __init__(self, rig: BusRig, variant: str, outstanding: int) -> None:
        self.name = variant
        self.rig = rig
        self.outstanding = outstanding
        self.http = http_session()

    def _url(self, name: str) -> str:
        return f"{self.rig.url}/{self.name}/{name}?outstanding={self.outstanding}"

    async def upload(self, source: Path, name: str) -> None:
        headers = {"Content-Length": str(await files.size_of(source))}
        body = files.file_body(source)
        async with self.http.put(self._url(name), data=body, headers=headers) as response:
            await files.check(response, f"PUT {self._url(name)}")

    async def download(self, name: str, digest: Any = None) -> int:
        async with self.http.get(self._url(name)) as response:
            await files.check(response, f"GET {self._url(name)}")
            return await files.read_body(response, digest)

    def stored(self, name: str) -> Path:
        return self.rig.volume / name

    def roots(self) -> list[int]:
        return self.rig.pids()

    async def close(self) -> None:
        await self.http.close()


async def transfers(
    workdir: Path, mb: int, trials: int, outstanding: int, in_turns: Any
) -> dict[str, Any]:
    """The `mb` MB file up and down through each variant, in turns, `trials` times."""
    rig = BusRig(workdir)
    await asyncio.to_thread(rig.start)
    size = mb * 1_000_000
    source = rig.workdir / "upload.bin"
    digest = await asyncio.to_thread(files.make_file, source, size)
    sides = [RigSide(rig, variant, outstanding) for variant in VARIANTS]
    count = 0
    try:
        for side in sides:  # warm: connections made, code paths run
            await side.upload(source, "warmup.bin")
            await side.download("warmup.bin")

        async def turn(side: RigSide) -> dict[str, Any]:
            nonlocal count
            name = f"bench-{count}.bin"
            count += 1
            out: dict[str, Any] = {}
            for phase in ("upload", "download"):
                transfer = side.upload(source, name) if phase == "upload" else side.download(name)
                out[phase] = await files.timed(side, phase, transfer, size)
                if phase == "upload":
                    stored = side.stored(name)
                    if await asyncio.to_thread(files.sha256_of, stored) != digest:
                        raise RuntimeError(f"{side.name}: the uploaded file differs")
            side.stored(name).unlink()
            return out

        trials_of = await in_turns(sides, trials, turn)
    finally:
        for side in sides:
            await side.close()
        await asyncio.to_thread(rig.stop)
        source.unlink(missing_ok=True)
    names = {pid: name for name, pid in zip(rig.processes, rig.pids(), strict=True)}
    results: dict[str, Any] = {}
    for variant, v in trials_of.items():
        results[variant] = {}
        for phase in ("upload", "download"):
            worst = max((t[phase] for t in v), key=lambda t: t["memory"]["sum_peak_rss_mib"])
            memory = worst["memory"]
            by_role = {
                names.get(p["pid"], p["process"]): p["peak_rss_mib"] for p in memory["processes"]
            }
            results[variant][phase] = {
                **measure.summarize([t[phase]["seconds"] for t in v], keep=True),
                "mb_per_s": round(mb / measure.median(t[phase]["seconds"] for t in v), 1),
                "peak_rss_mib": by_role,
                "memory": memory,
            }
    return results


def main(argv: list[str]) -> None:
    role, redis_url, volume = argv[0], argv[1], Path(argv[2])
    if role == "kernel":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(kernel(redis_url, volume))
    else:
        web.run_app(WebSide(redis_url, volume).app(), host="127.0.0.1", port=int(argv[3]),
                    print=None)  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
