"""WORKSHEET and SESSION arguments: an id, a unique id prefix (4+), an exact title; ambiguity."""

from __future__ import annotations

from typing import Any

import pytest

from cellbus_cli.errors import EXIT_SERVER, EXIT_USAGE, CliError, NoMatch
from cellbus_cli.resolve import pick_session, pick_worksheet

WORKSHEETS: list[dict[str, Any]] = [
    {"id": "1a2b3c4d0000", "title": "Plots", "session": "sess-plots"},
    {"id": "1a2b9999ffff", "title": "Notes", "session": "sess-notes"},
    {"id": "77aa00000000", "title": "Plots copy", "session": "sess-copy"},
    {"id": "88bb00000000", "title": "Dup", "session": "sess-dup1"},
    {"id": "99cc00000000", "title": "Dup", "session": None},
    {"id": "abcd00000000", "title": "abcdef", "session": "sess-x"},
    {"id": "eeee00000000", "title": "abcd", "session": "sess-y"},
]


def test_full_id() -> None:
    assert pick_worksheet(WORKSHEETS, "1a2b9999ffff")["title"] == "Notes"


def test_unique_prefix() -> None:
    assert pick_worksheet(WORKSHEETS, "1a2b3")["title"] == "Plots"
    assert pick_worksheet(WORKSHEETS, "77aa")["title"] == "Plots copy"


def test_exact_title() -> None:
    assert pick_worksheet(WORKSHEETS, "Plots")["id"] == "1a2b3c4d0000"
    assert pick_worksheet(WORKSHEETS, "Notes")["id"] == "1a2b9999ffff"


def test_ambiguous_prefix_lists_the_matches() -> None:
    with pytest.raises(CliError) as caught:
        pick_worksheet(WORKSHEETS, "1a2b")
    assert caught.value.status == EXIT_USAGE
    assert "1a2b3c4d 'Plots'" in str(caught.value) and "1a2b9999 'Notes'" in str(caught.value)


def test_ambiguous_title() -> None:
    with pytest.raises(CliError, match="matches 2 worksheets"):
        pick_worksheet(WORKSHEETS, "Dup")


def test_a_title_that_is_also_an_id_prefix_is_ambiguous() -> None:
    with pytest.raises(CliError, match="abcd00"):
        pick_worksheet(WORKSHEETS, "abcd")


def test_short_prefixes_and_unknown_names_match_nothing() -> None:
    with pytest.raises(NoMatch, match="4 characters") as caught:
        pick_worksheet(WORKSHEETS, "1a2")
    assert caught.value.status == EXIT_SERVER
    with pytest.raises(NoMatch, match="'nothing'"):
        pick_worksheet(WORKSHEETS, "nothing")
    with pytest.raises(NoMatch):
        pick_worksheet(WORKSHEETS, "plots")  # titles match exactly


def test_session_by_id_by_worksheet_or_as_given() -> None:
    assert pick_session(WORKSHEETS, "sess-notes") == "sess-notes"
    assert pick_session(WORKSHEETS, "Plots") == "sess-plots"
    assert pick_session(WORKSHEETS, "77aa") == "sess-copy"
    assert pick_session(WORKSHEETS, "f" * 32) == "f" * 32  # not a worksheet: a session id
    with pytest.raises(CliError, match="matches 2"):
        pick_session(WORKSHEETS, "Dup")
    with pytest.raises(CliError, match="has no session"):
        pick_session(WORKSHEETS, "99cc")
    with pytest.raises(NoMatch, match=r"^no worksheet or session matches 'Nope'$"):
        pick_session(WORKSHEETS, "Nope")  # what the user typed, named as what it could be
