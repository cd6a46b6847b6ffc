"""Saving the outputs of cell runs, whether or not anyone is watching.

When a cell is run (`handlers.Handlers.start_run`), the saver follows its worksheet's session
feed (one `SessionFollower` per session) and folds the messages of that run into the cell's
outputs (`outputs.CellOutputs`).

**When it saves.** Folding a message in costs time linear in the message; writing a cell's
outputs costs time linear in all of them. So, as the kernel's ``capture.py`` flushes output,
a run's outputs are written at a bounded rate: at most once every `SAVE_INTERVAL` while they
change (`SAVE_INTERVAL` after the first change not yet saved), and at once when the run's
``execute_reply`` is read. A long run costs a save per interval, not one per message (a cell
printing 20,000 lines over three seconds: 51 writes of its growing outputs before, 6 now).

**Exactly once, across restarts.** The cursor of what has been saved is the cell's
``outputs_seq``, and every save is guarded by it (`Store.save_outputs`), so:

- a message is applied once, even if two accounts processes follow the same feed or one
  reads it again after a restart;
- a saver that was away resumes from the feed, which keeps the last 10,000 messages of each
  session: at start it follows again the sessions of runs started in the last day, from the
  oldest cursor among their cells. What was folded in but not yet saved when the service
  stopped is read again from the feed; `OutputSaver.close` also saves it before it returns,
  for the in-process bus, whose feeds do not outlive the program.

A database that is away delays saves (they are retried) but loses nothing.

**When a follower stops.** A session's follower ends when the session is done for the saver:
nothing of its runs is left to save (every run it has seen has ended, with its
``execute_reply`` or the ``idle`` after it, and is saved) and for `QUIET_AFTER` seconds its
feed has said nothing and no run was started on it (`OutputSaver.follow`). A session that was
shut down, hibernated or is simply not used is quiet; a run that prints nothing for an hour is
in flight, so its follower stays (as does one whose session no worker takes over any more,
until the service restarts). The next run on the session starts a new follower from the
feed's end (`follow`). The feed's ``cell_run`` needs nothing of its own here: it is the first
message of a run, so a run is in flight from the moment its session takes it.

**Outputs an Output widget captures are the widget's.** Inside ``with out:`` (and so under
``interact``) ipywidgets' Output widget tells every page, in a ``comm_msg`` update of its
``msg_id``, to show the outputs of that request in the widget rather than under the cell; as
in JupyterLab, they are not the cell's outputs and are not saved with it (the widget keeps
them in its own state). A follower tracks which requests' outputs are being captured.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from cellbus_protocol import codec, keys
from cellbus_protocol import messages as m
from cellbus_protocol.bus import Bus, FeedEntry, Subscription
from cellbus_protocol.envelope import Message
from cellbus_protocol.errors import BusUnavailable, ValidationError

from .outputs import CellOutputs
from .store import CellRecord, Store, StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

RESUME_WINDOW_HOURS = 24
KNOWN_REQUESTS = 1_000
"""How many request ids a follower remembers (as cell runs or not) before forgetting."""
SAVE_INTERVAL = 0.5
"""Seconds: a run's outputs are written at most this often while they change."""
QUIET_AFTER = 60.0
"""Seconds of silence (no feed message, no run started) after which a follower with nothing
left to save stops."""
CLOSE_DEADLINE = 5.0
"""Seconds `OutputSaver.close` spends saving what its followers had not saved yet."""


@dataclass
class _Run:
    """One cell run, as far as its feed messages have been read."""

    msg_id: str
    outputs: CellOutputs
    saved_seq: int  # the feed cursor saved last (the cell's outputs_seq)
    seq: int  # the feed cursor of the last message that changed the outputs
    cell: CellRecord  # the cell it runs (as it was when the run was first read)
    finished: bool = False  # its execute_reply has been read

    @property
    def unsaved(self) -> bool:
        return self.seq > self.saved_seq

    def start_over(self, cleared_at: int) -> None:
        """Its outputs were cleared at feed cursor `cleared_at`: nothing folded so far is
        kept, and nothing up to that cursor is folded in again."""
        self.outputs = CellOutputs()
        self.saved_seq = max(self.saved_seq, cleared_at)


def _ends_run(msg: Message) -> bool:
    """Whether `msg` ends its run: its ``execute_reply``, or the ``idle`` (a ``status``) or
    ``dead`` (a ``session_state``) after it, which a saver resuming between the two reads
    alone."""
    return msg.msg_type == "execute_reply" or m.state_of(msg.content) in ("idle", "dead")


class SessionFollower:
    """One session's feed, read for the outputs of the cell runs on it (see the module's
    docstring for when it saves and when it stops)."""

    def __init__(self, saver: OutputSaver, session: str, after: int) -> None:
        self.saver = saver
        self.session = session
        self.cursor = after  # the last feed cursor read
        self.runs: OrderedDict[str, _Run | None] = OrderedDict()  # None: not a cell run
        self.heard_at = time.monotonic()  # the last feed message or run started
        self.save_due: float | None = None  # when the unsaved outputs are to be written
        self.stopping = False  # decided to stop: `follow` starts a new follower
        self.task: asyncio.Task[None] | None = None  # set by OutputSaver.follow
        self.captured: dict[str, str] = {}  # Output widget comm id -> the request it captures

    def heard(self) -> None:
        """Something happened on the session: it is not quiet."""
        self.heard_at = time.monotonic()

    async def run(self) -> None:
        """Follow the feed until the session is done for the saver."""
        while not self.stopping:
            try:
                async with await self.saver.bus.subscribe(
                    keys.feed(self.session), self.cursor
                ) as feed:
                    await self._read(feed)
            except BusUnavailable as exc:
                log.warning("session %s: feed unavailable (%s); resuming", self.session, exc)
                await asyncio.sleep(1.0)

    async def _read(self, feed: Subscription) -> None:
        while True:
            wait = self.wait_time()
            asked_at = time.monotonic()
            entry = await feed.next(timeout=wait)
            if entry is None and (wait is None or time.monotonic() - asked_at < wait - 0.01):
                return  # the subscription was closed under us: subscribe again
            if entry is not None:
                self.heard()
                await self._take(entry)
                self.cursor = self.saver.cursors[self.session] = entry.seq
            if self.save_due is not None and time.monotonic() >= self.save_due:
                await self.save_unsaved()
            if self.done():
                self.stopping = True  # at once, with no await before: see OutputSaver.follow
                return

    def in_flight(self) -> bool:
        """Whether a run seen on the feed has not ended yet."""
        return any(run is not None and not run.finished for run in self.runs.values())

    def wait_time(self) -> float | None:
        """Seconds to wait for the feed before a save is due or, with no run in flight, the
        session may be quiet enough to stop; None: until the feed says something."""
        deadlines = [] if self.save_due is None else [self.save_due]
        if not self.in_flight():
            deadlines.append(self.heard_at + self.saver.quiet_after)
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def done(self) -> bool:
        """Whether the session is done for the saver (see the module's docstring)."""
        quiet = time.monotonic() - self.heard_at >= self.saver.quiet_after
        return quiet and self.save_due is None and not self.in_flight()

    async def _take(self, entry: FeedEntry) -> None:
        try:
            msg = codec.decode(entry.data)
        except ValidationError as exc:
            log.warning("session %s: dropped invalid feed message %d: %s", self.session,
                        entry.seq, exc)  # fmt: skip
            return
        if isinstance(msg.content, m.OutputsCleared):
            await self._cleared(msg.content, entry.seq)
            return
        parent = msg.parent_header.msg_id
        if not parent:
            return
        if isinstance(msg.content, m.CommMsg):
            self._capture(msg.content)
        run = await self._run(parent)
        if run is None:
            return
        captured = parent in self.captured.values()
        if (
            not captured
            and entry.seq > run.saved_seq
            and run.outputs.apply(msg.msg_type, msg.content)
        ):
            run.seq = entry.seq
            if self.save_due is None:
                self.save_due = time.monotonic() + self.saver.save_interval
        if _ends_run(msg):
            first_end, run.finished = not run.finished, True
            await self.save_unsaved()  # the run's end is saved at once
            count = run.outputs.execution_count
            if first_end and count is not None and self.saver.on_counted is not None:
                await self.saver.on_counted(self.session, run.cell, count)

    async def _cleared(self, cleared: m.OutputsCleared, seq: int) -> None:
        """The outputs of cells `cleared.cells` were cleared at feed cursor `cleared.cursor`,
        by whichever accounts process took the request (only that one's `OutputSaver.cleared`
        was told). Each run of those cells that this follower knows starts over from that
        cursor: what it printed after it is read again from the feed, and the result is saved
        as of this message (`seq`), past anything saved meanwhile of what had been folded in
        before the clear."""
        cells = set(cleared.cells)
        runs = {
            msg_id: run
            for msg_id, run in self.runs.items()
            if run is not None and run.cell.cell_id in cells
        }
        if not runs or cleared.cursor is None:
            return
        for run in runs.values():
            run.start_over(cleared.cursor)
            run.seq = seq  # saved as of this message, whatever was saved in between
        after = cleared.cursor
        while after < seq:
            entries = await self.saver.bus.read_feed(keys.feed(self.session), after)
            for entry in entries:
                if entry.seq >= seq:
                    break
                try:
                    msg = codec.decode(entry.data)
                except ValidationError:
                    continue  # dropped, and logged, when it was first read
                parent = msg.parent_header.msg_id
                if parent in runs and parent not in self.captured.values():
                    runs[parent].outputs.apply(msg.msg_type, msg.content)
            after = entries[-1].seq if entries else seq
        await self.save_unsaved()

    def _capture(self, content: m.CommMsg) -> None:
        """An Output widget's ``msg_id`` update: the request whose outputs it now captures
        (ipywidgets' ``with out:``), or none (empty)."""
        data = content.data
        state = data.get("state")
        if data.get("method") not in ("update", "echo_update") or not isinstance(state, dict):
            return
        msg_id = state.get("msg_id")
        if isinstance(msg_id, str) and msg_id:
            self.captured[content.comm_id] = msg_id
        elif msg_id is not None:
            self.captured.pop(content.comm_id, None)

    async def _run(self, msg_id: str) -> _Run | None:
        if msg_id in self.runs:
            self.runs.move_to_end(msg_id)
            return self.runs[msg_id]
        cell = await self.saver.retrying(lambda: self.saver.store.documents.by_run(msg_id))
        run = None
        if cell is not None:
            outputs = CellOutputs(cell.outputs, cell.execution_count)
            run = _Run(msg_id, outputs, cell.outputs_seq, cell.outputs_seq, cell)
        self.runs[msg_id] = run
        while len(self.runs) > KNOWN_REQUESTS:
            self.runs.popitem(last=False)
        return run

    async def save_unsaved(self) -> None:
        """Write the outputs of every run changed since its last save."""
        for run in list(self.runs.values()):
            if run is not None and run.unsaved:
                await self.saver.save(run)
        self.save_due = None


class OutputSaver:
    """The followers of the sessions whose cell runs are being saved."""

    def __init__(
        self,
        store: Store,
        bus: Bus,
        *,
        save_interval: float = SAVE_INTERVAL,
        quiet_after: float = QUIET_AFTER,
    ) -> None:
        self.store = store
        self.bus = bus
        self.save_interval = save_interval
        self.quiet_after = quiet_after
        self._followers: dict[str, SessionFollower] = {}  # the one reading each session
        self._tasks: dict[asyncio.Task[None], SessionFollower] = {}  # all not ended yet
        self.saved = 0  # saves that changed a cell, for tests and logs
        # Told each run's execution count once it ends (the accounts handlers put it in the
        # cell's document, where the YNotebook schema keeps it): (session, cell, count).
        self.on_counted: Callable[[str, CellRecord, int], Awaitable[None]] | None = None
        self.cursors: dict[str, int] = {}  # session -> the last feed cursor read

    async def start(self) -> None:
        """Follow again the sessions of recent runs, from where their saves stopped."""
        for session, after in await self.store.documents.recent_run_sessions(RESUME_WINDOW_HOURS):
            self.follow(session, after)

    def follow(self, session: str, after: int) -> None:
        """Save the outputs of cell runs on `session` from feed cursor `after` on.

        A follower already reading the session takes the new run too (and is not quiet); one
        that has decided to stop is left to end and a new one starts.
        """
        follower = self._followers.get(session)
        if follower is not None and not follower.stopping:
            follower.heard()
            return
        follower = self._followers[session] = SessionFollower(self, session, after)
        task = follower.task = asyncio.create_task(follower.run(), name=f"save-outputs-{session}")
        self._tasks[task] = follower
        task.add_done_callback(self._ended)

    def follower(self, session: str) -> SessionFollower | None:
        """The follower reading `session`, if one is and has not decided to stop."""
        follower = self._followers.get(session)
        return None if follower is None or follower.stopping else follower

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A follower's task ended: read its result, and forget it unless it was replaced."""
        follower = self._tasks.pop(task)
        if self._followers.get(follower.session) is follower:
            del self._followers[follower.session]
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("session %s: saving outputs failed", follower.session, exc_info=exc)

    def cleared(self, msg_ids: list[str], up_to: int) -> None:
        """The outputs of runs `msg_ids` were cleared at feed cursor `up_to`
        (`Store.clear_outputs`): what the followers folded of them starts over and what they
        read later from up to that cursor is skipped, so a run still going on saves only what
        it makes after the clear (as a notebook's cleared output area shows it), however far
        behind the feed its follower is."""
        wanted = set(msg_ids)
        for follower in self._followers.values():
            for msg_id, run in follower.runs.items():
                if run is not None and msg_id in wanted:
                    run.start_over(up_to)
                    run.seq = run.saved_seq

    async def close(self) -> None:
        """Stop following, then save what the followers had read but not saved yet."""
        followers = list(self._tasks.values())
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # results read by _ended
        try:
            async with asyncio.timeout(CLOSE_DEADLINE):
                for follower in followers:
                    await follower.save_unsaved()
        except TimeoutError:
            log.warning("closing: some outputs were not saved (they stay on the feeds)")

    async def save(self, run: _Run) -> None:
        """Write `run`'s outputs as of its last change (nothing if already saved past it)."""
        seq, outputs, count = run.seq, run.outputs.current(), run.outputs.execution_count
        if await self.retrying(
            lambda: self.store.documents.save_outputs(run.msg_id, seq, outputs, count)
        ):
            self.saved += 1
        run.saved_seq = max(run.saved_seq, seq)  # a clear meanwhile may have moved it on

    async def retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, again and again while the database is away."""
        delay = 0.1
        while True:
            try:
                return await call()
            except StoreUnavailable as exc:
                log.warning("saving outputs: %s; retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
