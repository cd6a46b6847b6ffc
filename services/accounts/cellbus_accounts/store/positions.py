"""Fractional position keys: the order of cells that survives concurrent inserts and moves.

A cell's position is a string; cells sort by byte order of their positions. A key between
two neighbours always exists (`between`), so inserting or moving a cell writes one row and
never renumbers the others. Two writers that pick the same key for the same worksheet are
kept apart by the worksheet's row lock and the unique (worksheet, position) constraint.
"""

from __future__ import annotations

DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BASE = len(DIGITS)
_VALUE = {digit: value for value, digit in enumerate(DIGITS)}


def between(before: str | None, after: str | None) -> str:
    """A key that sorts strictly after `before` and strictly before `after` (None: no bound)."""
    if before is not None and after is not None and not before < after:
        raise ValueError(f"{before!r} does not sort before {after!r}")
    low = before or ""
    high = after
    key = []
    i = 0
    while True:
        lo = _VALUE[low[i]] if i < len(low) else 0
        hi = _VALUE[high[i]] if high is not None and i < len(high) else BASE
        if high is None and before is not None and lo + 1 < BASE:
            # Appending, the commonest insert: step up by one, keeping keys short.
            key.append(DIGITS[lo + 1])
            return "".join(key)
        if hi - lo > 1:
            key.append(DIGITS[(lo + hi) // 2])
            return "".join(key)
        # No room at this digit: keep the lower digit and look further right.
        key.append(DIGITS[lo])
        if hi - lo == 1:
            high = None  # any continuation of `key` now sorts below `after`
        i += 1
