"""The clients' copies of the server's facts (error codes, role ranks) are the server's own.

``frontend/web/src/generated.js`` and ``frontend/cli/cellbus_cli/codes.py`` are written from the
Python by ``python -m cellbus_web.client_facts`` and checked in; this fails while either
differs, naming the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cellbus_cli import codes
from cellbus_protocol.roles import ROLE_RANK
from cellbus_web import client_facts, rpc

FIX = "run `python -m cellbus_web.client_facts`"


@pytest.mark.parametrize(
    ("path", "render"),
    [
        (client_facts.GENERATED_JS, client_facts.render_js),
        (client_facts.GENERATED_CLI, client_facts.render_cli),
    ],
    ids=["browser", "cli"],
)
def test_the_checked_in_file_is_what_the_python_makes(
    path: Path, render: Callable[[], str]
) -> None:
    assert path.read_text() == render(), f"{path.name} is stale: {FIX}"


def test_the_browser_gets_every_error_code_and_every_role() -> None:
    text = client_facts.render_js()
    for code in rpc.ErrorCode:
        assert f"  {code.name}: {code.value},\n" in text
    for role, rank in ROLE_RANK.items():
        assert f"  {role}: {rank},\n" in text


def test_the_cli_gets_every_error_code() -> None:
    assert {name: getattr(codes, name) for name in rpc.ErrorCode.__members__} == {
        code.name: code.value for code in rpc.ErrorCode
    }
