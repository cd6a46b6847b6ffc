"""Errors of the store, independent of the database behind it::

StoreError
├── StoreUnavailable   the database cannot be reached (callers say "unavailable", retry)
├── UniqueViolation    a unique name or key is taken (a username, say)
└── NotFound           the record is gone (deleted since the caller looked it up)
"""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's errors."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or went away mid-call; nothing was written."""


class UniqueViolation(StoreError):
    """A unique constraint refused the write."""


class NotFound(StoreError, LookupError):
    """The record named does not exist (any more): another request deleted it between the
    handler's check and this write (two calls of one JSON-RPC batch run concurrently). The
    service answers it as the ordinary ``not_found``; the message names the record."""
