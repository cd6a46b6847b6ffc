"""Rendering for the terminal: every feed message type, MIME bundles, saved outputs, Printer.

Covers stream (stdout/stderr, inline), display_data/update_display_data/execute_result (text,
markdown, images as sized placeholders, HTML only without text/plain, JSON), error tracebacks
with ANSI kept or stripped, clear_output and execute_reply (nothing, unless aborted), status
(nothing) and session_state (dead, restarting), execute_input and the worksheet events in the
follow view, saved nbformat outputs (including list-of-lines strings), cell headings, tables,
and the Printer's newlines.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest

from cellbus_cli.render import (
    Rendered,
    bundle_text,
    cell_heading,
    format_size,
    format_table,
    render_message,
    render_output,
)
from cellbus_cli.terminal import Printer, strip_ansi


def msg(
    msg_type: str, content: dict[str, Any], *, user: str = "alice", parent: str = "p1"
) -> dict[str, Any]:
    return {
        "header": {"msg_id": "m", "msg_type": msg_type, "username": user, "session": "s"},
        "parent_header": {"msg_id": parent},
        "metadata": {},
        "content": content,
    }


def plain(rendered: Rendered | None) -> str | None:
    return None if rendered is None else strip_ansi(rendered.text)


def test_stream_is_inline_and_keeps_its_stream() -> None:
    out = render_message(msg("stream", {"name": "stdout", "text": "partial"}))
    err = render_message(msg("stream", {"name": "stderr", "text": "oops\n"}))
    assert out == Rendered("partial", stderr=False, inline=True)
    assert err == Rendered("oops\n", stderr=True, inline=True)


@pytest.mark.parametrize("kind", ["display_data", "update_display_data"])
def test_display_data_shows_text_plain(kind: str) -> None:
    content = {"data": {"text/plain": "<b>hi</b>", "text/html": "<b>hi</b>"}, "metadata": {}}
    rendered = render_message(msg(kind, {**content, "transient": {"display_id": "d"}}))
    assert rendered == Rendered("<b>hi</b>")


def test_execute_result_with_and_without_out_prompt() -> None:
    message = msg("execute_result", {"data": {"text/plain": "2"}, "execution_count": 3})
    assert plain(render_message(message)) == "2"
    assert plain(render_message(message, out_prompt=True)) == "Out[3]: 2"
    multi = msg("execute_result", {"data": {"text/plain": "a\nb"}, "execution_count": 4})
    assert plain(render_message(multi, out_prompt=True)) == "Out[4]: \na\nb"


def test_mime_bundle_choices() -> None:
    png = base64.b64encode(b"x" * 12_345).decode()
    assert bundle_text({"image/png": png, "text/plain": "<Figure>"}) == "[image/png 12.3 kB]"
    assert bundle_text({"text/markdown": "# Title", "text/plain": "<Markdown>"}) == "# Title"
    assert bundle_text({"text/html": "<table/>"}) == "[text/html]"
    assert bundle_text({"text/html": "<table/>", "text/plain": "df"}) == "df"
    assert bundle_text({"image/svg+xml": "<svg/>"}) == "[image/svg+xml 6 B]"
    assert bundle_text({"application/json": {"a": 1}}) == '{\n  "a": 1\n}'
    assert bundle_text({"application/vnd.custom": "x"}) == "[application/vnd.custom]"
    assert bundle_text({"text/plain": ["line 1\n", "line 2"]}) == "line 1\nline 2"


def test_sizes() -> None:
    assert format_size(999) == "999 B"
    assert format_size(12_300) == "12.3 kB"
    assert format_size(2_500_000) == "2.5 MB"


def test_error_traceback_keeps_ansi_in_the_rendering() -> None:
    tb = ["\x1b[31mTraceback\x1b[0m", "\x1b[31mZeroDivisionError\x1b[0m: division by zero"]
    content = {"ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": tb}
    rendered = render_message(msg("error", content))
    assert rendered is not None and "\x1b[31m" in rendered.text
    assert plain(rendered) == "Traceback\nZeroDivisionError: division by zero"
    bare = render_message(msg("error", {"ename": "E", "evalue": "v", "traceback": []}))
    assert plain(bare) == "E: v"


def test_messages_that_show_nothing() -> None:
    assert render_message(msg("clear_output", {"wait": False})) is None
    assert render_message(msg("execute_reply", {"status": "ok", "execution_count": 1})) is None
    assert render_message(msg("status", {"execution_state": "busy"})) is None
    assert render_message(msg("status", {"execution_state": "idle"}), follow=True) is None
    assert render_message(msg("execute_input", {"code": "x", "execution_count": 1})) is None
    assert render_message(msg("comm_open", {})) is None


def test_aborted_and_dead_are_told_on_stderr() -> None:
    aborted = render_message(msg("execute_reply", {"status": "aborted"}))
    assert aborted is not None and aborted.stderr and "aborted" in aborted.text
    dead = render_message(msg("session_state", {"state": "dead", "reason": "out of memory"}))
    assert dead is not None and dead.stderr
    assert plain(dead) == "── the session died: out of memory"
    restarting = msg("session_state", {"state": "restarting"})
    assert render_message(restarting) is None
    assert "restarting" in (plain(render_message(restarting, follow=True)) or "")


def test_execute_input_in_the_follow_view() -> None:
    message = msg("execute_input", {"code": "x = 1\nx\n", "execution_count": 3})
    assert plain(render_message(message, follow=True)) == "── alice runs [3]:\nx = 1\nx"


@pytest.mark.parametrize(
    ("kind", "content", "expected"),
    [
        ("worksheet_renamed", {"title": "Plots"}, "alice renamed the worksheet to 'Plots'"),
        (
            "worksheet_shared",
            {"username": "bob", "role": "editor"},
            "alice shared the worksheet with bob as editor",
        ),
        (
            "worksheet_shared",
            {"username": "bob", "role": "none"},
            "alice removed bob from the worksheet",
        ),
        ("outputs_cleared", {"cells": ["c1", "c2"]}, "alice cleared the outputs of 2 cells"),
        ("outputs_cleared", {"cells": ["c1"]}, "alice cleared the outputs of 1 cell"),
    ],
)
def test_worksheet_events(kind: str, content: dict[str, Any], expected: str) -> None:
    message = msg(kind, content, parent="")
    assert plain(render_message(message, follow=True)) == f"── {expected}"
    assert render_message(message) is None  # not part of one's own request's outputs


def test_saved_outputs() -> None:
    assert render_output({"output_type": "stream", "name": "stdout", "text": ["a\n", "b"]}) == (
        Rendered("a\nb", inline=True)
    )
    result = {
        "output_type": "execute_result",
        "data": {"text/plain": "3"},
        "metadata": {},
        "execution_count": 1,
    }
    assert plain(render_output(result)) == "3"
    error = {"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["tb"]}
    assert plain(render_output(error)) == "tb"


def test_cell_heading() -> None:
    assert strip_ansi(cell_heading({"execution_count": 3, "source": "x = 1\nx"})) == (
        "[3] x = 1\n    x"
    )
    assert strip_ansi(cell_heading({"execution_count": None, "source": "y"})) == "[ ] y"


def test_table() -> None:
    table = format_table(("ID", "TITLE"), [("1a2b", "Plots"), ("9f", None)])
    assert table.splitlines() == ["ID    TITLE", "1a2b  Plots", "9f"]


def test_printer_writes_streams_as_they_come_and_blocks_on_fresh_lines() -> None:
    out, err = io.StringIO(), io.StringIO()
    printer = Printer(color=False, stdout=out, stderr=err)
    printer.show(Rendered("loading", inline=True))
    printer.show(Rendered("...", inline=True))
    printer.show(Rendered("done\n", inline=True))
    printer.show(Rendered("partial", inline=True))
    printer.show(Rendered("\x1b[1m42\x1b[0m"))
    printer.show(Rendered("warn\n", stderr=True, inline=True))
    printer.note("[1/2] cell 1a2b3c4d")
    assert out.getvalue() == "loading...done\npartial\n42\n"
    assert err.getvalue() == "warn\n[1/2] cell 1a2b3c4d\n"


def test_printer_keeps_colours_on_a_tty() -> None:
    out = io.StringIO()
    Printer(color=True, stdout=out, stderr=io.StringIO()).show(Rendered("\x1b[31mred\x1b[0m"))
    assert out.getvalue() == "\x1b[31mred\x1b[0m\n"


def test_printer_strips_colours_when_not_a_tty() -> None:
    out = io.StringIO()  # StringIO.isatty() is False
    Printer(stdout=out, stderr=io.StringIO()).show(Rendered("\x1b[31mred\x1b[0m\x1b]0;t\x07"))
    assert out.getvalue() == "red\n"
