"""The fast tier: every test here is marked `unit` and must need no server.

`make test-fast` (`pytest -m unit`) runs this folder in seconds, so a change to pure code is
checked without Redis or PostgreSQL. The marker is given by folder, so a new file here is in
the tier without a decorator; a test that needs a server belongs in tests/contract or
tests/integration, and the fixtures below that would reach one fail at once to say so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test collected from this folder `unit` (the hook sees the whole session)."""
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.unit)


def _needs_a_server(name: str) -> None:
    raise RuntimeError(
        f"the `{name}` fixture reaches Redis; a unit test needs no server: "
        "move this test to tests/contract or tests/integration"
    )


@pytest.fixture
def namespace() -> None:
    """Overrides the suite's Redis namespace fixture, which every Redis fixture builds on."""
    _needs_a_server("namespace")
