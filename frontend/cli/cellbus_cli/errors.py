"""The client's exceptions and exit statuses.

```
Exception
 ├── RpcError            the server answered with a JSON-RPC error (code, message, data);
 │                       also raised for a feed WebSocket `error` frame or refused handshake
 ├── ServerUnreachable   no answer: connection refused, reset, timed out, or a gateway error
 └── CliError            a local failure with its own exit status (usage, not logged in,
      │                  a worksheet reference that matches nothing, ...)
      └── NoMatch        a WORKSHEET reference that matches no worksheet
```

`main` turns each into one line on stderr, "cellbus: <message>", and an exit status:
`EXIT_SERVER` (1) for an error reported by the server, `EXIT_USAGE` (2) for usage errors and
"not logged in" (also a server's UNAUTHENTICATED on a command that used the stored token),
`EXIT_UNREACHABLE` (3) when the server cannot be reached.
"""

from __future__ import annotations

from typing import Any

from .codes import CONFLICT, INTERNAL_ERROR, RATE_LIMITED

EXIT_OK = 0
EXIT_SERVER = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
"""Stdout was closed by its reader (``cellbus files get f - | head``): quietly, as a shell's
own tools end on SIGPIPE (128 + 13)."""


class RpcError(Exception):
    """A JSON-RPC error object: `code`, `message` and `data` as the server sent them."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
        self.data = data

    def describe(self) -> str:
        """The message for a person, on one line, with what `data` adds to it."""
        text = self.message or f"server error {self.code}"
        data = self.data if isinstance(self.data, dict) else {}
        if self.code == INTERNAL_ERROR and data.get("error_id"):
            text += f" (error id {data['error_id']})"
        elif self.code == RATE_LIMITED and data.get("retry_after") is not None:
            text += f" (retry after {data['retry_after']} s)"
        elif self.code == CONFLICT and data.get("version") is not None:
            text += f" (the cell is now at version {data['version']})"
        return one_line(text)


class ServerUnreachable(Exception):
    """The server at `url` could not be reached or did not answer in time."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


class CliError(Exception):
    """A failure found by the client itself, with the exit status it ends the command with."""

    def __init__(self, message: str, status: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.status = status


class NoMatch(CliError):
    """A WORKSHEET reference that matches no worksheet."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_SERVER)


def describe(error: BaseException) -> str:
    """An exception as the one line a person is shown."""
    if isinstance(error, RpcError):
        return error.describe()
    return one_line(str(error) or type(error).__name__)


def one_line(text: str) -> str:
    """`text` with its line breaks folded, so that an error is always one line."""
    return " ".join(text.split())
