"""`CellOutputs`: the feed messages of one cell run folded into nbformat v4 outputs.

The accounts service saves these outputs on the cell, so they must be what JupyterLab's
output area ends up showing for the same messages. Covers each rule (stream merging,
display ids and their updates, execute_result and error, clear_output now and at the next
output, the execution count from execute_input, execute_result and execute_reply, ignored
messages), resuming from saved state, that outputs are plain JSON without ``transient``, a
realistic run compared with its exact nbformat outputs, and that a cell printing 100,000 lines
is folded in linear time. Contents are the real structs of `cellbus_protocol.messages`.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from cellbus_accounts.outputs import CellOutputs, text_of
from cellbus_protocol.messages import (
    ClearOutput,
    Content,
    DisplayData,
    Error,
    ExecuteInput,
    ExecuteReply,
    ExecuteResult,
    Status,
    Stream,
    UpdateDisplayData,
)


def feed(cell: CellOutputs, *contents: Content) -> list[bool]:
    """Apply each content under its own msg_type; what each `apply` returned."""
    return [cell.apply(content.msg_type, content) for content in contents]


def out(text: str) -> Stream:
    return Stream(name="stdout", text=text)


def err(text: str) -> Stream:
    return Stream(name="stderr", text=text)


def plain(text: str, display_id: str | None = None) -> DisplayData:
    transient = {"display_id": display_id} if display_id else {}
    return DisplayData(data={"text/plain": text}, transient=transient)


def update(text: str, display_id: str) -> UpdateDisplayData:
    return UpdateDisplayData(data={"text/plain": text}, transient={"display_id": display_id})


def shown(text: str) -> dict[str, Any]:
    return {"output_type": "display_data", "data": {"text/plain": text}, "metadata": {}}


def stream(name: str, text: str) -> dict[str, Any]:
    return {"output_type": "stream", "name": name, "text": text}


# --- streams ------------------------------------------------------------------------------


def test_consecutive_streams_of_one_name_are_one_output() -> None:
    cell = CellOutputs()
    assert feed(cell, out("a\n"), out("b\n"), out("c")) == [True, True, True]
    assert cell.outputs == [stream("stdout", "a\nb\nc")]


def test_a_stream_of_the_other_name_starts_a_new_output() -> None:
    cell = CellOutputs()
    feed(cell, out("1\n"), err("oops\n"), err("again\n"), out("2\n"))
    assert cell.outputs == [
        stream("stdout", "1\n"),
        stream("stderr", "oops\nagain\n"),
        stream("stdout", "2\n"),
    ]
    assert text_of(cell.outputs) == "1\noops\nagain\n2\n"


def test_a_stream_after_another_output_starts_a_new_output() -> None:
    cell = CellOutputs()
    feed(cell, out("before\n"), plain("x"), out("after\n"))
    assert cell.outputs == [stream("stdout", "before\n"), shown("x"), stream("stdout", "after\n")]


def test_stream_text_is_kept_raw() -> None:
    cell = CellOutputs()
    feed(cell, out("10%\r"), out("20%\r"), out("ab\bc\n"))
    assert cell.outputs == [stream("stdout", "10%\r20%\rab\bc\n")]


def test_an_empty_stream_text_changes_nothing_when_merged() -> None:
    cell = CellOutputs()
    assert feed(cell, out("a"), out("")) == [True, False]
    assert cell.outputs == [stream("stdout", "a")]


def test_reading_outputs_between_messages_does_not_break_merging() -> None:
    cell = CellOutputs()
    feed(cell, out("a"))
    assert text_of(cell.outputs) == "a"
    feed(cell, out("b"))
    assert text_of(cell.outputs) == "ab"
    feed(cell, out("c"), out("d"))
    assert cell.outputs == [stream("stdout", "abcd")]


# --- display data -------------------------------------------------------------------------


def test_display_data_appends_without_transient() -> None:
    cell = CellOutputs()
    content = DisplayData(
        data={"text/plain": "<Figure>", "image/png": "iVBORw0KGgo="},
        metadata={"image/png": {"width": 640, "height": 480}},
        transient={"display_id": "fig-1"},
    )
    assert feed(cell, content, content) == [True, True]
    expected = {
        "output_type": "display_data",
        "data": {"text/plain": "<Figure>", "image/png": "iVBORw0KGgo="},
        "metadata": {"image/png": {"width": 640, "height": 480}},
    }
    assert cell.outputs == [expected, expected]
    assert all("transient" not in output for output in cell.outputs)


def test_update_display_data_replaces_every_output_of_its_display_id() -> None:
    cell = CellOutputs()
    feed(cell, plain("p 0%", "progress"), plain("other", "other"), out("x\n"))
    feed(cell, plain("p again", "progress"))  # the same display shown twice

    changed = cell.apply(
        "update_display_data",
        UpdateDisplayData(
            data={"text/plain": "p 100%"},
            metadata={"done": True},
            transient={"display_id": "progress"},
        ),
    )

    assert changed is True
    updated = {
        "output_type": "display_data",
        "data": {"text/plain": "p 100%"},
        "metadata": {"done": True},
    }
    assert cell.outputs == [updated, shown("other"), stream("stdout", "x\n"), updated]


def test_update_display_data_never_appends() -> None:
    cell = CellOutputs()
    feed(cell, out("a\n"))
    # An unknown display id, no display id at all: ignored.
    assert cell.apply("update_display_data", update("x", "never-shown")) is False
    assert cell.apply("update_display_data", UpdateDisplayData(data={"text/plain": "y"})) is False
    assert cell.outputs == [stream("stdout", "a\n")]


def test_update_display_data_with_the_same_data_changes_nothing() -> None:
    cell = CellOutputs()
    feed(cell, plain("same", "d"))
    assert cell.apply("update_display_data", update("same", "d")) is False
    assert cell.outputs == [shown("same")]


def test_a_stream_after_an_update_still_merges_with_the_last_stream() -> None:
    cell = CellOutputs()
    feed(cell, plain("0", "d"), out("a"), update("1", "d"), out("b"))
    assert cell.outputs == [shown("1"), stream("stdout", "ab")]


def test_display_data_without_display_id_cannot_be_updated() -> None:
    cell = CellOutputs()
    feed(cell, plain("static"))
    assert cell.apply("update_display_data", update("changed", "")) is False
    assert cell.outputs == [shown("static")]


# --- execute_result and error -------------------------------------------------------------


def test_execute_result_appends_and_sets_execution_count() -> None:
    cell = CellOutputs()
    result = ExecuteResult(execution_count=7, data={"text/plain": "42"}, metadata={})
    assert cell.apply("execute_result", result) is True
    assert cell.outputs == [
        {
            "output_type": "execute_result",
            "data": {"text/plain": "42"},
            "metadata": {},
            "execution_count": 7,
        }
    ]
    assert cell.execution_count == 7


def test_error_appends() -> None:
    cell = CellOutputs()
    feed(cell, out("start\n"))
    error = Error(
        ename="ZeroDivisionError",
        evalue="division by zero",
        traceback=["Traceback (most recent call last):", "ZeroDivisionError: division by zero"],
    )
    assert cell.apply("error", error) is True
    assert cell.outputs == [
        stream("stdout", "start\n"),
        {
            "output_type": "error",
            "ename": "ZeroDivisionError",
            "evalue": "division by zero",
            "traceback": [
                "Traceback (most recent call last):",
                "ZeroDivisionError: division by zero",
            ],
        },
    ]


# --- clear_output -------------------------------------------------------------------------


def test_clear_output_clears_at_once() -> None:
    cell = CellOutputs()
    feed(cell, out("a\n"), plain("x"))
    assert cell.apply("clear_output", ClearOutput(wait=False)) is True
    assert cell.outputs == []
    assert cell.apply("clear_output", ClearOutput()) is False  # nothing left to clear
    feed(cell, out("b\n"))
    assert cell.outputs == [stream("stdout", "b\n")]


def test_clear_output_wait_clears_at_the_next_output_not_before() -> None:
    cell = CellOutputs()
    feed(cell, out("frame 1\n"), plain("x"))
    assert cell.apply("clear_output", ClearOutput(wait=True)) is False
    assert cell.outputs == [stream("stdout", "frame 1\n"), shown("x")]  # still shown

    assert cell.apply("display_data", plain("frame 2")) is True
    assert cell.outputs == [shown("frame 2")]
    feed(cell, out("more\n"))  # cleared once only
    assert cell.outputs == [shown("frame 2"), stream("stdout", "more\n")]


@pytest.mark.parametrize(
    "content",
    [
        out("new\n"),
        plain("new"),
        ExecuteResult(execution_count=1, data={"text/plain": "new"}),
        Error(ename="E", evalue="new"),
    ],
    ids=lambda c: c.msg_type,
)
def test_clear_output_wait_clears_at_any_kind_of_output(content: Content) -> None:
    cell = CellOutputs()
    feed(cell, out("old\n"), ClearOutput(wait=True), content)
    assert len(cell.outputs) == 1
    assert "old" not in json.dumps(cell.outputs)


def test_a_stream_after_clear_output_wait_does_not_merge_with_the_cleared_one() -> None:
    cell = CellOutputs()
    feed(cell, out("old\n"), ClearOutput(wait=True), out("new\n"), out("er\n"))
    assert cell.outputs == [stream("stdout", "new\ner\n")]


def test_clear_output_wait_then_update_display_data_updates_what_is_still_shown() -> None:
    cell = CellOutputs()
    feed(cell, plain("0", "d"), ClearOutput(wait=True))
    assert cell.apply("update_display_data", update("1", "d")) is True
    assert cell.outputs == [shown("1")]  # updated, and not cleared yet
    feed(cell, out("next\n"))
    assert cell.outputs == [stream("stdout", "next\n")]


def test_clear_output_forgets_display_ids() -> None:
    cell = CellOutputs()
    feed(cell, plain("0", "d"), ClearOutput(), out("a\n"))
    assert cell.apply("update_display_data", update("1", "d")) is False
    assert cell.outputs == [stream("stdout", "a\n")]


def test_display_data_that_does_a_pending_clear_keeps_its_display_id() -> None:
    cell = CellOutputs()
    feed(cell, out("a\n"), plain("old", "d"), ClearOutput(wait=True), plain("0", "d"))
    assert cell.apply("update_display_data", update("1", "d")) is True
    assert cell.outputs == [shown("1")]


# --- execution count ----------------------------------------------------------------------


def test_execute_input_and_execute_reply_set_execution_count() -> None:
    assert CellOutputs().execution_count is None
    cell = CellOutputs()
    assert cell.apply("execute_input", ExecuteInput(code="1", execution_count=3)) is True
    assert cell.execution_count == 3
    assert cell.apply("execute_reply", ExecuteReply(execution_count=4)) is True
    assert cell.execution_count == 4
    assert cell.apply("execute_reply", ExecuteReply(execution_count=4)) is False  # the same
    assert cell.outputs == []


def test_a_missing_execution_count_keeps_the_known_one() -> None:
    cell = CellOutputs(execution_count=5)
    assert cell.apply("execute_input", ExecuteInput(code="1")) is False
    assert cell.apply("execute_reply", ExecuteReply(status="aborted")) is False
    assert cell.execution_count == 5


def test_a_page_payload_is_not_saved_as_an_output() -> None:
    cell = CellOutputs()
    reply = ExecuteReply(
        execution_count=2,
        payload=[{"source": "page", "data": {"text/plain": "Docstring: ..."}, "start": 0}],
    )
    assert cell.apply("execute_reply", reply) is True  # the execution count changed
    assert cell.outputs == []
    assert cell.execution_count == 2


# --- ignored messages ---------------------------------------------------------------------


@pytest.mark.parametrize("msg_type", ["status", "comm_msg", "execute_request", "input_request"])
def test_other_messages_are_ignored(msg_type: str) -> None:
    cell = CellOutputs()
    feed(cell, out("a\n"))
    assert cell.apply(msg_type, Status(execution_state="busy")) is False
    assert cell.outputs == [stream("stdout", "a\n")]


def test_a_content_of_the_wrong_type_is_an_error() -> None:
    with pytest.raises(TypeError, match="stream needs a Stream content"):
        CellOutputs().apply("stream", plain("x"))


# --- state: copies, JSON, resuming --------------------------------------------------------


def test_outputs_are_plain_json_copies() -> None:
    data = {"application/json": {"a": [1, 2]}}
    content = DisplayData(data=data, transient={"display_id": "d"})
    cell = CellOutputs()
    feed(cell, content, out("x"))
    data["application/json"]["a"].append(3)  # the content changing later changes nothing

    outputs = cell.outputs
    assert json.loads(json.dumps(outputs)) == outputs
    outputs[0]["data"]["application/json"]["a"].clear()  # nor does changing the copy
    outputs.clear()
    assert cell.outputs[0]["data"] == {"application/json": {"a": [1, 2]}}
    assert len(cell.outputs) == 2


def test_resuming_from_saved_state_goes_on_as_before() -> None:
    first = CellOutputs()
    feed(first, ExecuteInput(code="...", execution_count=9), plain("0", "d"), out("a\n"))
    saved = json.loads(json.dumps(first.outputs)), first.execution_count

    cell = CellOutputs(*saved)
    assert cell.outputs == saved[0]
    assert cell.execution_count == 9
    feed(cell, out("b\n"))  # the saved trailing stream goes on growing
    assert cell.outputs == [shown("0"), stream("stdout", "a\nb\n")]
    # Display ids are not saved: a display shown before the restart is not updated.
    assert cell.apply("update_display_data", update("1", "d")) is False
    assert cell.outputs[0] == shown("0")
    # One shown after the restart is.
    feed(cell, plain("x", "e"), update("y", "e"))
    assert cell.outputs[-1] == shown("y")


def test_saved_state_is_copied_and_normalized_like_jupyterlab_loads_it() -> None:
    saved: list[dict[str, Any]] = [
        {"output_type": "stream", "name": "stdout", "text": ["a\n", "b\n"]},  # .ipynb lines
        {"output_type": "stream", "name": "stdout", "text": "c\n"},
    ]
    cell = CellOutputs(saved)
    saved[1]["text"] = "changed"
    assert cell.outputs == [stream("stdout", "a\nb\nc\n")]


def test_current_is_the_outputs_as_they_stand_not_a_copy() -> None:
    cell = CellOutputs()
    feed(cell, out("a\n"), out("b\n"))
    current = cell.current()  # what the saver writes, at a bounded rate
    assert current == cell.outputs == [stream("stdout", "a\nb\n")]
    feed(cell, out("c\n"))
    assert cell.current() is current
    assert current == [stream("stdout", "a\nb\nc\n")]


# --- a realistic run ----------------------------------------------------------------------


def test_a_realistic_run_gives_exactly_these_nbformat_outputs() -> None:
    cell = CellOutputs()
    changed = feed(
        cell,
        Status(execution_state="busy"),
        ExecuteInput(code="run()", execution_count=12),
        out("loading...\n"),
        out("loaded 3 rows\n"),
        DisplayData(
            data={"text/html": "<progress value=0>", "text/plain": "0%"},
            metadata={"isolated": False},
            transient={"display_id": "bar"},
        ),
        err("warning: slow\n"),
        UpdateDisplayData(
            data={"text/html": "<progress value=1>", "text/plain": "100%"},
            metadata={},
            transient={"display_id": "bar"},
        ),
        ExecuteResult(execution_count=12, data={"text/plain": "3"}, metadata={}),
        ExecuteReply(status="ok", execution_count=12),
        Status(execution_state="idle"),
    )

    assert changed == [False, True, True, True, True, True, True, True, False, False]
    assert cell.execution_count == 12
    assert cell.outputs == [
        {"output_type": "stream", "name": "stdout", "text": "loading...\nloaded 3 rows\n"},
        {
            "output_type": "display_data",
            "data": {"text/html": "<progress value=1>", "text/plain": "100%"},
            "metadata": {},
        },
        {"output_type": "stream", "name": "stderr", "text": "warning: slow\n"},
        {
            "output_type": "execute_result",
            "data": {"text/plain": "3"},
            "metadata": {},
            "execution_count": 12,
        },
    ]


# --- size ---------------------------------------------------------------------------------


def test_a_hundred_thousand_lines_are_merged_in_linear_time() -> None:
    # 2,000 messages of 50 lines: merging by string concatenation would copy about a
    # gigabyte; chunks keep it linear. Not timed: a quadratic merge would show as a slow
    # test, not as a flaky one.
    cell = CellOutputs()
    for m in range(2000):
        cell.apply("stream", out("".join(f"line {m * 50 + i}\n" for i in range(50))))

    outputs = cell.outputs
    assert len(outputs) == 1
    text = outputs[0]["text"]
    assert text.count("\n") == 100_000
    assert text.startswith("line 0\nline 1\n")
    assert text.endswith("line 99999\n")
