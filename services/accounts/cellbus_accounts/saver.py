"""Saving the outputs of cell runs, whether or not anyone is watching.

When a cell is run (`handlers.Handlers.start_run`), the saver follows its worksheet's session
feed and folds the messages of that run into the cell's outputs (`outputs.CellOutputs`),
saving them as they change. The cursor of what has been saved is the cell's ``outputs_seq``,
and every save is guarded by it (`Store.save_outputs`), so:

- a message is applied once, even if two accounts processes follow the same feed or one
  reads it again after a restart;
- a saver that was away resumes from the feed, which keeps the last 10,000 messages of each
  session: at start it follows again the sessions of runs started in the last day, from the
  oldest cursor among their cells.

A database that is away delays saves (they are retried) but loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from cellbus_protocol import codec, keys
from cellbus_protocol.bus import Bus, FeedEntry
from cellbus_protocol.errors import BusUnavailable, ValidationError

from .outputs import CellOutputs
from .store import Store, StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

RESUME_WINDOW_HOURS = 24
KNOWN_REQUESTS = 10_000
"""How many request ids the saver remembers (as cell runs or not) before forgetting."""


@dataclass
class _Run:
    msg_id: str
    outputs: CellOutputs
    seq: int  # the feed cursor saved last


class OutputSaver:
    def __init__(self, store: Store, bus: Bus) -> None:
        self.store = store
        self.bus = bus
        self._runs: OrderedDict[str, _Run | None] = OrderedDict()
        self._followers: dict[str, asyncio.Task[None]] = {}
        self.saved = 0  # saves made, for tests and logs
        self.cursors: dict[str, int] = {}  # session -> the last feed cursor read

    async def start(self) -> None:
        """Follow again the sessions of recent runs, from where their saves stopped."""
        for session, after in await self.store.recent_run_sessions(RESUME_WINDOW_HOURS):
            self.follow(session, after)

    def follow(self, session: str, after: int) -> None:
        """Save the outputs of cell runs on `session` from feed cursor `after` on."""
        if session not in self._followers or self._followers[session].done():
            self._followers[session] = asyncio.create_task(
                self._follow(session, after), name=f"save-outputs-{session}"
            )

    async def close(self) -> None:
        for task in self._followers.values():
            task.cancel()
        for task in self._followers.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _follow(self, session: str, after: int) -> None:
        while True:
            try:
                async with await self.bus.subscribe(keys.feed(session), after) as feed:
                    async for entry in feed:
                        await self._take(session, entry)
                        after = self.cursors[session] = entry.seq
            except BusUnavailable as exc:
                log.warning("session %s: feed unavailable (%s); resuming", session, exc)
                await asyncio.sleep(1.0)

    async def _take(self, session: str, entry: FeedEntry) -> None:
        try:
            msg = codec.decode(entry.data)
        except ValidationError as exc:
            log.warning("session %s: dropped invalid feed message %d: %s", session, entry.seq, exc)
            return
        parent = msg.parent_header.msg_id
        if not parent:
            return
        run = await self._run(parent)
        if run is None or entry.seq <= run.seq:
            return
        if run.outputs.apply(msg.msg_type, msg.content):
            await self._save(run, entry.seq)

    async def _run(self, msg_id: str) -> _Run | None:
        if msg_id in self._runs:
            self._runs.move_to_end(msg_id)
            return self._runs[msg_id]
        cell = await self._retrying(lambda: self.store.cell_by_run(msg_id))
        run = None
        if cell is not None:
            run = _Run(msg_id, CellOutputs(cell.outputs, cell.execution_count), cell.outputs_seq)
        self._runs[msg_id] = run
        while len(self._runs) > KNOWN_REQUESTS:
            self._runs.popitem(last=False)
        return run

    async def _save(self, run: _Run, seq: int) -> None:
        outputs, count = run.outputs.outputs, run.outputs.execution_count
        await self._retrying(lambda: self.store.save_outputs(run.msg_id, seq, outputs, count))
        run.seq = seq
        self.saved += 1

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        delay = 0.1
        while True:
            try:
                return await call()
            except StoreUnavailable as exc:
                log.warning("saving outputs: %s; retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
