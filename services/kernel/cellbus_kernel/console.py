"""``make run`` for now: a kernel worker and a terminal console in one program, no servers.

Everything runs on the in-process bus: the console creates a session, sends each cell as an
execute_request and prints the session's feed as it arrives, exactly as a remote client would
see it. (The web service issue replaces this with the browser app on the same bus.)

A cell is one line, or several: a line ending in ``:`` or ``\\`` continues until an empty
line. End with Ctrl-D. Ctrl-C interrupts the running cell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

from cellbus_protocol import codec, keys
from cellbus_protocol.bus import InMemoryBus
from cellbus_protocol.envelope import Message
from cellbus_protocol.kernel_client import KernelClient
from cellbus_protocol.settings import settings_from_env

from .config import KernelSettings
from .isolation import forbid_inspection
from .worker import KernelWorker


def render(msg: Message) -> str | None:
    """What a terminal shows for one feed message."""
    content = msg.content
    if msg.msg_type == "stream":
        return content.text
    if msg.msg_type in ("execute_result", "display_data", "update_display_data"):
        data = content.data
        if "text/plain" in data:
            prefix = f"Out[{content.execution_count}]: " if msg.msg_type == "execute_result" else ""
            return f"{prefix}{data['text/plain']}\n"
        return f"[{', '.join(sorted(data))}]\n"
    if msg.msg_type == "error":
        return "\n".join(content.traceback) + "\n"
    if msg.msg_type == "status" and content.execution_state == "dead":
        return f"[{content.reason}]\n"
    return None


async def read_cells(queue: asyncio.Queue[str | None]) -> None:
    """Read cells from standard input in a thread; None marks the end."""
    interactive = sys.stdin.isatty()

    def read() -> None:
        lines: list[str] = []
        while True:
            if interactive:
                print("... " if lines else ">>> ", end="", flush=True)
            line = sys.stdin.readline()
            if not line:
                break
            line = line.rstrip("\n")
            if lines and not line:
                queue_put("\n".join(lines))
                lines = []
            elif line.endswith((":", "\\")) or lines:
                lines.append(line)
            elif line.strip():
                queue_put(line)
        if lines:
            queue_put("\n".join(lines))
        queue_put(None)

    loop = asyncio.get_running_loop()

    def queue_put(item: str | None) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    await asyncio.to_thread(read)


async def console(settings: KernelSettings) -> None:
    bus = InMemoryBus(feed_retention=settings.feed_retention)
    worker = KernelWorker(settings, bus)
    worker_task = asyncio.create_task(worker.run())
    await worker.ready.wait()
    client = KernelClient(bus, os.environ.get("USER", "you"))
    session = await client.create_session()
    cells: asyncio.Queue[str | None] = asyncio.Queue()
    reader = asyncio.create_task(read_cells(cells))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, lambda: asyncio.ensure_future(client.interrupt(session)))
    subscription = await bus.subscribe(keys.feed(session), 0)
    try:
        while (code := await cells.get()) is not None:
            request = await client.execute(session, code)
            while True:
                entry = await subscription.next()
                if entry is None:
                    continue
                msg = codec.decode(entry.data)
                if msg.parent_header.msg_id != request.msg_id:
                    continue
                if (text := render(msg)) is not None:
                    sys.stdout.write(text)
                    sys.stdout.flush()
                if msg.msg_type == "status" and msg.content.execution_state in ("idle", "dead"):
                    break
    finally:
        await subscription.close()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        worker.stop()
        await worker_task
        await bus.close()


def main() -> None:
    settings = settings_from_env(KernelSettings, os.environ)
    forbid_inspection()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    print("cellbus console: one session on the in-process bus. Ctrl-D ends, Ctrl-C interrupts.")
    asyncio.run(console(settings))


if __name__ == "__main__":
    main()
