"""The codec: messages to bytes and back, and the errors a person sees for bad bytes.

Covers the round trip of every msg_type in `messages.CONTENT_TYPES`, the envelope
(``parent_header`` of a new message and of a reply, the Jupyter ``{}`` for "no parent"),
the wire form of contents (defaults written out), `ValidationError` messages for each kind of
bad input, bus records (`SessionOpen`) and `DropCounter`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from cellbus_protocol import codec, messages
from cellbus_protocol.envelope import EMPTY_HEADER, PROTOCOL_VERSION, new_message, reply_to
from cellbus_protocol.errors import ProtocolError, ValidationError

SAMPLES: dict[str, messages.Content] = {
    # requests
    "execute_request": messages.ExecuteRequest(
        code="x = 1\nprint(x)", silent=True, user_expressions={"y": "x + 1"}
    ),
    "complete_request": messages.CompleteRequest(code="import o", cursor_pos=8),
    "inspect_request": messages.InspectRequest(code="len", cursor_pos=3, detail_level=1),
    "interrupt_request": messages.InterruptRequest(),
    "restart_request": messages.RestartRequest(),
    "shutdown_request": messages.ShutdownRequest(restart=True),
    "kernel_info_request": messages.KernelInfoRequest(),
    "session_info_request": messages.SessionInfoRequest(),
    # replies
    "execute_reply": messages.ExecuteReply(
        status="error",
        ename="ZeroDivisionError",
        evalue="division by zero",
        traceback=["Traceback (most recent call last):", "ZeroDivisionError: division by zero"],
        execution_count=3,
    ),
    "complete_reply": messages.CompleteReply(
        matches=["os", "operator"], cursor_start=7, cursor_end=8
    ),
    "inspect_reply": messages.InspectReply(found=True, data={"text/plain": "len(obj, /)"}),
    "interrupt_reply": messages.InterruptReply(),
    "restart_reply": messages.RestartReply(status="aborted"),
    "shutdown_reply": messages.ShutdownReply(restart=True),
    "kernel_info_reply": messages.KernelInfoReply(implementation_version="0.1.0", banner="hi"),
    "session_info_reply": messages.SessionInfoReply(
        state="busy",
        execution_count=3,
        running=messages.QueuedRequest(msg_id="m1", username="ada", date="2026-11-24T10:00:00Z"),
        queued=[messages.QueuedRequest(msg_id="m2", username="bo", date="2026-11-24T10:00:01Z")],
    ),
    "is_complete_request": messages.IsCompleteRequest(code="for i in range(3):"),
    "is_complete_reply": messages.IsCompleteReply(status="incomplete", indent="    "),
    "history_request": messages.HistoryRequest(hist_access_type="tail", n=10, output=True),
    "history_reply": messages.HistoryReply(history=[[0, 1, ["1 + 1", "2"]]]),
    "comm_info_request": messages.CommInfoRequest(target_name="jupyter.widget"),
    "widget_state_request": messages.WidgetStateRequest(),
    "widget_state_reply": messages.WidgetStateReply(
        state={"version_major": 2, "version_minor": 0, "state": {}}
    ),
    "comm_info_reply": messages.CommInfoReply(comms={"c1": {"target_name": "jupyter.widget"}}),
    "input_reply": messages.InputReply(value="Ada Lovelace"),
    "input_ack": messages.InputAck(status="error", ename="NoInputAwaited", evalue="nothing"),
    # comm messages go both ways: requests from clients, feed messages from the kernel
    "comm_open": messages.CommOpen(
        comm_id="c1", target_name="jupyter.widget", data={"state": {"value": 5}}
    ),
    "comm_msg": messages.CommMsg(comm_id="c1", data={"method": "update", "state": {"value": 7}}),
    "comm_close": messages.CommClose(comm_id="c1"),
    # feed messages
    "input_request": messages.InputRequest(prompt="Password: ", password=True),
    "status": messages.Status(execution_state="idle", reason="Restored the namespace saved ..."),
    "session_state": messages.SessionState(
        state="dead", reason="The session process was killed by signal 9 (SIGKILL)."
    ),
    "execute_input": messages.ExecuteInput(code="1 + 1", execution_count=4),
    "stream": messages.Stream(name="stderr", text="naïve ☃ output\n"),
    "display_data": messages.DisplayData(
        data={"text/plain": "<Figure>", "image/png": "iVBORw0KGgo="},
        metadata={"image/png": {"width": 640, "height": 480}},
        transient={"display_id": "fig-1"},
    ),
    "update_display_data": messages.UpdateDisplayData(
        data={"text/plain": "50%"}, transient={"display_id": "progress"}
    ),
    "execute_result": messages.ExecuteResult(execution_count=5, data={"text/plain": "2"}),
    "error": messages.Error(
        ename="NameError", evalue="name 'x' is not defined", traceback=["NameError: ..."]
    ),
    "clear_output": messages.ClearOutput(wait=True),
    "checkpoint": messages.Checkpoint(
        event="saved",
        execution_count=3,
        skipped=["sock"],
        size=4096,
        reason="These names could not be saved: sock.",
    ),
    "cell_run": messages.CellRun(cell_id="c2", msg_id="m1", username="ada"),
    "doc_update": messages.DocUpdate(update=b"\x01\x01\xa4\x9b\xe7\x8c\x07\x00\x00"),
    "worksheet_renamed": messages.WorksheetRenamed(title="Orbits"),
    "worksheet_shared": messages.WorksheetShared(username="brian", role="viewer"),
    "files_changed": messages.FilesChanged(paths=["data/iris.csv"]),
    "outputs_cleared": messages.OutputsCleared(cells=["1db017a4-5380-4e67-89c3-49d2e9b8fb9a"]),
}


def test_there_is_a_sample_of_every_content_type() -> None:
    assert sorted(SAMPLES) == sorted(messages.CONTENT_TYPES)
    for msg_type, content in SAMPLES.items():
        assert type(content) is messages.CONTENT_TYPES[msg_type]


@pytest.mark.parametrize("msg_type", sorted(messages.CONTENT_TYPES))
def test_every_message_type_round_trips(msg_type: str) -> None:
    msg = new_message(
        SAMPLES[msg_type], session="sess-1", username="ada", metadata={"cell_id": "c1"}
    )
    assert msg.msg_type == msg_type

    decoded = codec.decode(codec.encode(msg))

    assert decoded == msg
    assert type(decoded.content) is messages.CONTENT_TYPES[msg_type]
    assert decoded.header.version == PROTOCOL_VERSION
    assert decoded.parent_header.is_empty
    assert decoded.metadata == {"cell_id": "c1"}


def test_decode_accepts_str_and_bytearray() -> None:
    msg = new_message(messages.Stream(name="stdout", text="hi"), session="s", username="u")
    data = codec.encode(msg)
    assert codec.decode(data.decode()) == msg
    assert codec.decode(bytearray(data)) == msg


def test_a_reply_carries_the_request_header_as_parent_header() -> None:
    request = new_message(messages.ExecuteRequest(code="1"), session="sess-1", username="ada")
    output = reply_to(request, messages.Stream(name="stdout", text="1\n"))

    decoded = codec.decode(codec.encode(output))

    assert decoded.parent_header == request.header
    assert decoded.parent_header.msg_id == request.msg_id
    assert decoded.session == "sess-1"
    assert decoded.header.username == "ada"  # whose request the output belongs to
    assert decoded.msg_id != request.msg_id


def test_empty_parent_header_is_jupyters_empty_object_both_ways() -> None:
    msg = new_message(messages.Status(execution_state="idle"), session="s", username="u")
    wire = json.loads(codec.encode(msg))
    assert wire["parent_header"] == {}

    decoded = codec.decode(json.dumps(wire))
    assert decoded.parent_header.is_empty
    assert decoded.parent_header == EMPTY_HEADER

    del wire["parent_header"]  # absent altogether: also no parent
    assert codec.decode(json.dumps(wire)).parent_header == EMPTY_HEADER


def test_contents_are_written_with_their_defaults_as_jupyter_clients_expect() -> None:
    reply = new_message(messages.InterruptReply(), session="s", username="u")
    assert json.loads(codec.encode(reply))["content"] == {
        "status": "ok",
        "ename": "",
        "evalue": "",
        "traceback": [],
    }
    status = new_message(messages.Status(execution_state="busy"), session="s", username="u")
    assert json.loads(codec.encode(status))["content"] == {"execution_state": "busy"}


# -- invalid input -----------------------------------------------------------------------------


def valid_wire() -> dict[str, Any]:
    """A valid stream message as parsed JSON, to break in one place per test."""
    msg = new_message(messages.Stream(name="stdout", text="hello"), session="s", username="u")
    wire: dict[str, Any] = json.loads(codec.encode(msg))
    return wire


def decode_error(data: bytes | str | dict[str, Any]) -> str:
    """The message of the ValidationError that decoding `data` raises."""
    if isinstance(data, dict):
        data = json.dumps(data)
    with pytest.raises(ValidationError) as raised:
        codec.decode(data)
    return str(raised.value)


def test_not_json_is_refused() -> None:
    message = decode_error(b"this is not json")
    assert message.startswith("bad envelope:")
    assert "JSON" in message


def test_not_an_object_is_refused() -> None:
    assert "bad envelope" in decode_error(b"[1, 2, 3]")


def test_missing_header_is_refused() -> None:
    wire = valid_wire()
    del wire["header"]
    assert "header" in decode_error(wire)


@pytest.mark.parametrize("field", ["msg_id", "msg_type", "session"])
def test_missing_or_empty_header_field_is_refused(field: str) -> None:
    wire = valid_wire()
    del wire["header"][field]
    assert decode_error(wire) == f"bad envelope: header.{field} is missing or empty"
    wire["header"][field] = ""
    assert decode_error(wire) == f"bad envelope: header.{field} is missing or empty"


def test_unknown_msg_type_is_refused() -> None:
    wire = valid_wire()
    wire["header"]["msg_type"] = "frobnicate_request"
    assert decode_error(wire) == "unknown msg_type 'frobnicate_request'"


def test_content_with_a_field_of_the_wrong_type_is_refused() -> None:
    wire = valid_wire()
    wire["content"]["text"] = 42
    message = decode_error(wire)
    assert message.startswith("bad stream content:")
    assert "str" in message and "$.text" in message  # which field, and what was expected


def test_content_with_a_value_outside_its_choices_is_refused() -> None:
    wire = valid_wire()
    wire["content"]["name"] = "stdlog"
    message = decode_error(wire)
    assert message.startswith("bad stream content:")
    assert "$.name" in message


@pytest.mark.parametrize("state", ["hibernated", "restoring", "restarting", "dead"])
def test_a_status_carries_only_jupyters_states(state: str) -> None:
    """cellbus's own states go in a ``session_state``: a ``status`` with one is refused, so
    that no Jupyter client is shown a state its spec does not have."""
    msg = new_message(messages.Status(execution_state="busy"), session="s", username="u")
    wire = json.loads(codec.encode(msg))
    wire["content"]["execution_state"] = state
    assert decode_error(wire).startswith("bad status content:")
    wire["header"]["msg_type"], wire["content"] = "session_state", {"state": state}
    assert messages.state_of(codec.decode(json.dumps(wire)).content) == state


def test_content_missing_a_required_field_is_refused() -> None:
    wire = valid_wire()
    del wire["content"]["text"]
    message = decode_error(wire)
    assert message.startswith("bad stream content:")
    assert "text" in message


def test_oversize_data_is_refused_before_parsing() -> None:
    data = b" " * (codec.MAX_MESSAGE_BYTES + 1)
    message = decode_error(data)
    assert message == (
        f"message of {codec.MAX_MESSAGE_BYTES + 1} bytes exceeds {codec.MAX_MESSAGE_BYTES}"
    )


def test_the_size_limit_applies_to_otherwise_valid_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    msg = new_message(messages.Stream(name="stdout", text="x" * 500), session="s", username="u")
    data = codec.encode(msg)
    monkeypatch.setattr(codec, "MAX_MESSAGE_BYTES", len(data))
    assert codec.decode(data) == msg  # exactly at the limit: fine
    monkeypatch.setattr(codec, "MAX_MESSAGE_BYTES", len(data) - 1)
    assert "exceeds" in decode_error(data)


def test_validation_error_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        codec.decode(b"{}")


# -- bus records -------------------------------------------------------------------------------


def test_records_round_trip() -> None:
    record = messages.SessionOpen(session="sess-1", username="ada", date="2026-01-02T03:04:05Z")
    data = codec.encode_record(record)
    assert json.loads(data) == {
        "session": "sess-1",
        "username": "ada",
        "date": "2026-01-02T03:04:05Z",
    }
    assert codec.decode_record(data, messages.SessionOpen) == record
    assert codec.decode_record(data.decode(), messages.SessionOpen) == record
    takeover = messages.SessionOpen(
        session="sess-1", username="kernel", date="2026-01-02T03:04:05Z", previous_host="w-1"
    )
    data = codec.encode_record(takeover)
    assert json.loads(data)["previous_host"] == "w-1" and "fork_of" not in json.loads(data)
    assert codec.decode_record(data, messages.SessionOpen) == takeover


def test_invalid_records_are_refused_naming_the_record_type() -> None:
    with pytest.raises(ValidationError, match=r"^bad SessionOpen: .*username"):
        codec.decode_record(b'{"session": "s", "date": "d"}', messages.SessionOpen)
    with pytest.raises(ValidationError, match=r"^bad SessionOpen: .*\$\.session"):
        codec.decode_record(b'{"session": 1, "username": "u", "date": "d"}', messages.SessionOpen)
    with pytest.raises(ValidationError, match=r"^bad SessionOpen: "):
        codec.decode_record(b"not json", messages.SessionOpen)


# -- DropCounter -------------------------------------------------------------------------------


def test_drop_counter_counts_per_place_and_logs_each_drop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counter = codec.DropCounter()
    assert counter.total == 0
    assert counter.counts["requests"] == 0

    with caplog.at_level(logging.WARNING, logger=codec.log.name):
        for data in (b"garbage", b"{}"):
            try:
                codec.decode(data)
            except ValidationError as exc:
                counter.drop("requests", exc, ref="1700000000000-0")
        counter.drop("new-sessions", ValidationError("bad SessionOpen: ..."))

    assert counter.counts == {"requests": 2, "new-sessions": 1}
    assert counter.total == 3
    assert len(caplog.records) == 3
    first = caplog.records[0].getMessage()
    assert "requests" in first and "1700000000000-0" in first and "bad envelope" in first
    assert all(record.levelno == logging.WARNING for record in caplog.records)


def test_header_dates_are_utc_iso_8601_with_microseconds_and_move_on() -> None:
    from datetime import UTC, datetime

    from cellbus_protocol.envelope import now_iso

    before = datetime.now(UTC)
    stamps = [now_iso() for _ in range(3)]
    after = datetime.now(UTC)
    for stamp in stamps:
        assert len(stamp) == len("2026-11-24T03:21:07.123456Z") and stamp.endswith("Z")
        parsed = datetime.fromisoformat(stamp)
        assert before.replace(microsecond=0) <= parsed <= after, stamp
    assert stamps == sorted(stamps)
