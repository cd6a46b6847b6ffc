"""Every accounts request names its result type, and its handler returns that type.

The web service decodes each reply into the type its request names (`accounts.result_type`),
so a handler that returned something else would fail there, at run time; this finds it first.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import get_args

import pytest

from cellbus_accounts.config import AccountsSettings
from cellbus_accounts.handlers import Handlers
from cellbus_accounts.store import Sqlite, Store
from cellbus_protocol import accounts as a
from cellbus_protocol.bus import InMemoryBus

REQUEST_TYPES = get_args(a.AnyRequest)


@pytest.fixture
def handlers(tmp_path: Path) -> Handlers:
    """Handlers over a store that is never opened: only which method answers what is read."""
    return Handlers(Store(Sqlite(tmp_path / "unused.db")), InMemoryBus(), AccountsSettings())


@pytest.mark.parametrize("request_type", REQUEST_TYPES, ids=lambda t: t.__name__)
def test_the_handler_of_a_request_returns_its_result_type(
    handlers: Handlers, request_type: type[a.Request[object]]
) -> None:
    returns = typing.get_type_hints(handlers.handler_for(request_type))["return"]
    assert returns == a.result_type(request_type)


def test_a_request_type_without_a_result_type_is_refused() -> None:
    class Untyped(a.Request, tag="test.untyped"):  # type: ignore[type-arg]  # the point: no R
        pass

    with pytest.raises(TypeError, match="names no result type"):
        a.result_type(Untyped)
