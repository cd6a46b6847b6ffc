"""A hosted session's life on its worker: one state, changed only along the table below.

Every question the worker and the session ask about where a session is in its life (does it
take requests? may it start a process? has it left, and why?) is answered here, from one
`HostingState`, so that no flag on one object can disagree with a flag on another.

::

    STARTING ──> SERVING ──> DRAINING ──> ENDING ──> LEFT
        │           │  └──────────────────> │          ^
        │           └───────────────────────┤          │
        └───────────────────────────────────┘          │
      (every state but LEFT) ─── the lease is lost ────┘

`docs/architecture.md` has the same table with what makes each transition happen. A
transition that is not in the table raises `IllegalTransition`: a bug, never a user's doing.
"""

from __future__ import annotations

import asyncio
import enum


class HostingState(enum.Enum):
    """Where a hosted session is in its life on this worker: the worker's own bookkeeping,
    never published (watchers learn of a session's life from the feed's ``status`` and
    ``session_state``)."""

    STARTING = "starting"
    """The worker took the session: it reads the checkpoint, settles the requests a previous
    worker left, and starts the process. Requests are taken (executions wait their turn)."""
    SERVING = "serving"
    """It takes requests and runs executions, one at a time."""
    DRAINING = "draining"
    """Its worker stops: the running execution gets time to end, the namespace is saved;
    queued executions stay on the queue for the next host."""
    ENDING = "ending"
    """Its process ends for good (hibernation, a handover, a shutdown): no new process, no
    new request. It leaves next."""
    LEFT = "left"
    """Not hosted here any more; `Lifecycle.departure` says why."""


class Departure(enum.Enum):
    """Why a session left its worker; the worker lets go of it accordingly."""

    HIBERNATED = "hibernated"
    """Idle long enough, saved: its next request has a worker host it again."""
    MOVED = "moved"
    """Its worker stopped and handed it over, saved: another worker hosts it now."""
    STOPPED = "stopped"
    """Its worker stopped and had no checkpoints: it ended, and starts afresh if used again."""
    SHUT_DOWN = "shut down"
    """A ``shutdown_request``: it ended, its checkpoint deleted."""
    LOST = "lost"
    """Its lease is gone or may have expired: another worker may host it. It touched nothing
    on the bus on its way out; its requests stay on the queue for the new host."""

    @property
    def lets_go(self) -> bool:
        """The worker releases the lease (a lost one is not the worker's to release)."""
        return self is not Departure.LOST

    @property
    def stays_registered(self) -> bool:
        """The registry keeps naming this worker until the next host takes the session (a
        handover), or someone else's entry is not this worker's to remove (lost)."""
        return self in (Departure.MOVED, Departure.LOST)

    @property
    def hands_over(self) -> bool:
        """Another worker is asked to host the session at once."""
        return self is Departure.MOVED

    @property
    def wakes_for_queued(self) -> bool:
        """Requests that came while it was leaving have it hosted again at once (they would
        otherwise wait for a next request that may never come)."""
        return self is Departure.HIBERNATED


class IllegalTransition(RuntimeError):
    """A state change that the table does not allow: a bug in the kernel."""


TRANSITIONS: dict[HostingState, frozenset[HostingState]] = {
    HostingState.STARTING: frozenset(
        {HostingState.SERVING, HostingState.DRAINING, HostingState.ENDING, HostingState.LEFT}
    ),
    HostingState.SERVING: frozenset(
        {HostingState.DRAINING, HostingState.ENDING, HostingState.LEFT}
    ),
    HostingState.DRAINING: frozenset({HostingState.ENDING, HostingState.LEFT}),
    HostingState.ENDING: frozenset({HostingState.LEFT}),
    HostingState.LEFT: frozenset(),
}
"""Each state and the states it may change to."""

_TAKES_REQUESTS = frozenset({HostingState.STARTING, HostingState.SERVING})
_MAY_START_PROCESS = frozenset({HostingState.STARTING, HostingState.SERVING, HostingState.DRAINING})
_HOLDS_LEASE = _MAY_START_PROCESS


class Lifecycle:
    """One session's state on its worker, and why it left once it has."""

    def __init__(self, session: str) -> None:
        self.session = session
        self.state = HostingState.STARTING
        self.departure: Departure | None = None
        self.left = asyncio.Event()

    def to(self, state: HostingState) -> None:
        """Change state; `IllegalTransition` if the table does not allow it."""
        if state not in TRANSITIONS[self.state]:
            raise IllegalTransition(
                f"session {self.session}: {self.state.value} -> {state.value} is not allowed"
            )
        self.state = state

    def leave(self, departure: Departure) -> None:
        """Change to LEFT, for `departure`."""
        self.to(HostingState.LEFT)
        self.departure = departure
        self.left.set()

    @property
    def takes_requests(self) -> bool:
        """The worker hands it requests (otherwise they wait on the queue for its next host)."""
        return self.state in _TAKES_REQUESTS

    @property
    def serving(self) -> bool:
        """Its executions run (the runner takes the next one)."""
        return self.state is HostingState.SERVING

    @property
    def may_start_process(self) -> bool:
        return self.state in _MAY_START_PROCESS

    @property
    def holds_lease(self) -> bool:
        """It needs its lease (ENDING gives it back, LEFT has): a renewal that fails or
        lapses means another worker may host it."""
        return self.state in _HOLDS_LEASE

    @property
    def lost(self) -> bool:
        """It left because its lease is gone: it must not touch the bus any more."""
        return self.departure is Departure.LOST
