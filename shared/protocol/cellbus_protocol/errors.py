"""The exception tree of cellbus.

Every error that one part of cellbus reports to another is one of these, so callers can catch
a family instead of guessing at strings::

    CellbusError
    ├── ProtocolError            a message broke the protocol
    │   └── ValidationError      bytes that do not decode to a valid message or record
    ├── BusError                 the bus could not do what was asked
    │   ├── BusUnavailable       the transport (Redis) cannot be reached
    │   └── RequestTimeout       a request got no reply within its deadline
    └── RemoteError              the other side answered with an error (code, message, data)

Errors in *user code* are never exceptions here: they are `error` messages on the feed.
"""

from __future__ import annotations

from typing import Any


class CellbusError(Exception):
    """Base of every cellbus error."""


class ProtocolError(CellbusError):
    """A message broke the protocol."""


class ValidationError(ProtocolError):
    """Bytes that do not decode to a valid message or record; the message says why."""


class BusError(CellbusError):
    """The bus could not do what was asked."""


class BusUnavailable(BusError):
    """The transport cannot be reached (Redis down, connection refused)."""


class RequestTimeout(BusError):
    """A request got no reply within its deadline."""


class RemoteError(CellbusError):
    """The service that handled a request answered with an error.

    `code` is a stable machine-readable name (for example ``"no_such_session"``), `message` is
    for people, and `data` carries structured details.
    """

    def __init__(self, code: str, message: str, data: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data
