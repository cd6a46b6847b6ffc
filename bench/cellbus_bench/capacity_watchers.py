"""Many feed WebSockets watching one session, in a process of their own (the capacity
workload's watchers: several of these share 10,000 sockets).

    python -m bench.cellbus_bench.capacity_watchers URL TOKEN SESSION COUNT

Opens COUNT sockets to ``URL/ws`` (`watching.RawWebSocket`, as the fan-out workload's), each
subscribed to SESSION from now, and prints one JSON line: ``{"opened", "refused",
"open_s"}``. Then, for each line it reads on stdin: ``arm`` prints ``{"armed": true}`` and,
once every socket has the stream text ``x`` (or after `WAIT` seconds), ``{"first", "last",
"arrived"}``: the `time.perf_counter` of the first and the last arrival (CLOCK_MONOTONIC,
the same clock in every process of the machine); ``close`` closes the sockets and ends.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

import msgspec

from .systems import START_TIMEOUT, open_many
from .watching import RawWebSocket, Watchers

WAIT = 120.0
_decode = msgspec.json.Decoder()


def is_x(data: bytes) -> bool:
    return b'"msg_type":"stream"' in data and b'"text":"x\\n"' in data


def say(value: dict[str, object]) -> None:
    print(json.dumps(value), flush=True)


async def watch(url: str, token: str, session: str, count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    watchers = Watchers()
    frame = json.dumps({"op": "subscribe", "session": session, "cursor": "now"})

    async def open_one() -> None:
        ws = await RawWebSocket.connect(url + "/ws", {"Authorization": f"Bearer {token}"})
        try:
            await ws.send_str(frame)
            async with asyncio.timeout(START_TIMEOUT):
                while _decode.decode(await ws.receive_str())["type"] != "subscribed":
                    pass
        except BaseException:
            await ws.close()
            raise
        watchers.add(ws, is_x)

    clock = time.perf_counter()
    refused = await open_many(open_one, count, clock + 600.0, batch=50)
    say({"opened": len(watchers), "refused": refused, "open_s": time.perf_counter() - clock})
    while True:
        line = (await asyncio.to_thread(sys.stdin.readline)).strip()
        if line == "arm":
            watchers.arm()
            say({"armed": True})
            try:
                async with asyncio.timeout(WAIT):
                    await watchers.all_arrived.wait()
            except TimeoutError:
                pass
            arrived = [t for t in watchers.arrivals if t is not None]
            say(
                {
                    "first": min(arrived, default=None),
                    "last": max(arrived, default=None),
                    "arrived": len(arrived),
                }
            )
        else:  # "close", or the end of stdin
            await watchers.close()
            return


def main() -> None:
    url, token, session, count = sys.argv[1:5]
    asyncio.run(watch(url, token, session, int(count)))


if __name__ == "__main__":
    main()
