"""The one exception a handler raises to refuse a request (the service turns it into the
error reply)."""

from __future__ import annotations

from typing import Any


class AccountsError(Exception):
    """An error for the caller: one of `accounts.ERROR_CODES`, a message, and data."""

    def __init__(self, code: str, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data
