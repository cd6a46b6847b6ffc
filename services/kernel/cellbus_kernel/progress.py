"""The live progress display of a parallel map (`cellbus.parallel.map`).

One ``display_data`` with a display id when the map starts, then ``update_display_data`` as
tasks finish (at most every `INTERVAL` seconds, and once at the end): everyone watching the
session sees the same bar move. The bundle has three forms: `MIME_TYPE` (JSON, which the
cellbus app draws itself, with the dashboard link), HTML (a ``<progress>`` bar, for Jupyter's
front ends) and plain text.
"""

from __future__ import annotations

import enum
import html
import time
from typing import Any

from IPython.display import DisplayHandle, display

MIME_TYPE = "application/vnd.cellbus.parallel+json"
INTERVAL = 0.2
"""Seconds between two updates of the display."""


class MapState(enum.Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Progress:
    """A map's progress, shown and updated in place."""

    def __init__(self, label: str, total: int, dashboard: str) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.workers = 0
        self.state = MapState.RUNNING
        self.note = ""
        self.dashboard = dashboard
        self._shown_at = 0.0
        self._handle: DisplayHandle | None = None

    def show(self) -> None:
        self._handle = display(_Bundle(self), display_id=True)
        self._shown_at = time.monotonic()

    def update(self, done: int, workers: int, *, force: bool = False) -> None:
        changed = (done, workers) != (self.done, self.workers)
        self.done, self.workers = done, workers
        if self._handle is None or not (changed or force):
            return
        if force or time.monotonic() - self._shown_at >= INTERVAL:
            self._handle.update(_Bundle(self))
            self._shown_at = time.monotonic()

    def finish(self, state: MapState, done: int, workers: int) -> None:
        self.state = state
        self.update(done, workers, force=True)

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "done": self.done,
            "total": self.total,
            "workers": self.workers,
            "state": self.state.value,
            "note": self.note,
            "dashboard": self.dashboard,
        }

    def as_text(self) -> str:
        workers = f"{self.workers} worker{'s' if self.workers != 1 else ''}"
        text = f"{self.label}: {self.done}/{self.total} tasks on {workers} ({self.state.value})"
        return f"{text}. {self.note}" if self.note else text


class _Bundle:
    """What `display` shows: the progress in each of its forms."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress

    def _repr_mimebundle_(self, **_: Any) -> dict[str, Any]:
        p = self._progress
        text = p.as_text()
        link = f' <a href="{html.escape(p.dashboard)}">dashboard</a>' if p.dashboard else ""
        page = (
            f'<div><progress max="{max(p.total, 1)}" value="{p.done}"></progress> '
            f"{html.escape(text)}{link}</div>"
        )
        return {MIME_TYPE: p.as_json(), "text/html": page, "text/plain": text}
