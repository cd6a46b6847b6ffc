"""Comms and stdin as an attacker uses them: from the API (a viewer, another editor,
oversized values) and from user code in the session (malformed comms, comm messages of
other types, forged feed messages).

Every test runs on the services apart and on the one program (SQLite).
"""

from __future__ import annotations

from typing import Any

from cellbus_protocol import messages as m

from ..support.api import Client, Feed, stdout_of
from ..support.fixtures import both_stacks, signed_in

INVALID_REQUEST, FORBIDDEN, TOO_LARGE = -32600, -32003, -32013


stack = both_stacks()


ada = signed_in("ada")


mallory = signed_in("mallory", web=-1)


def of_type(messages: list[dict[str, Any]], msg_type: str) -> list[dict[str, Any]]:
    return [msg for msg in messages if msg["header"]["msg_type"] == msg_type]


async def waiting_for_input(ada: Client, mallory: Client, role: str) -> tuple[str, Feed, str]:
    """A worksheet of ada's shared with mallory as `role`, whose session waits for ada's
    input: the session, ada's feed, the input_request's msg_id."""
    sheet = await ada.call("worksheet.create", title="Ada's")
    await ada.call("worksheet.share", id=sheet["id"], username=mallory.username, role=role)
    session = sheet["session"]
    feed = await ada.socket()
    await feed.subscribe(session=session, cursor="now")
    await ada.call("session.execute", session=session, code="print('got', input('PIN? '))")
    question = await feed.message(lambda msg: msg["header"]["msg_type"] == "input_request")
    return session, feed, question["header"]["msg_id"]


async def test_a_viewer_can_neither_answer_input_nor_send_comm_messages(
    ada: Client, mallory: Client
) -> None:
    session, feed, asked = await waiting_for_input(ada, mallory, "viewer")
    answer = await mallory.error(
        "session.input", session=session, value="0000", input_request=asked
    )
    assert answer.code == FORBIDDEN
    comm = await mallory.error("session.comm", session=session, comm_id="x", data={"a": 1})
    assert comm.code == FORBIDDEN
    opened = await mallory.error(
        "session.comm", session=session, comm_id="x", data={}, kind="open", target_name="t"
    )
    assert opened.code == FORBIDDEN
    await ada.call("session.input", session=session, value="1234", input_request=asked)
    messages = await feed.message(lambda msg: msg["header"]["msg_type"] == "execute_reply")
    assert messages["content"]["status"] == "ok"
    assert "got 1234\n" in stdout_of(feed.messages())  # ada's answer, not mallory's
    await feed.close()


async def test_another_editor_cannot_answer_someone_elses_input(
    ada: Client, mallory: Client
) -> None:
    session, feed, asked = await waiting_for_input(ada, mallory, "editor")
    refused = await mallory.error(
        "session.input", session=session, value="0000", input_request=asked
    )
    assert (refused.code, refused.message) == (
        INVALID_REQUEST,
        "no input is awaited from you for that request",
    )
    await ada.call("session.input", session=session, value="1234", input_request=asked)
    await feed.message(lambda msg: msg["header"]["msg_type"] == "execute_reply")
    assert stdout_of(feed.messages()) == "got 1234\n"
    await feed.close()


async def test_an_oversized_input_or_comm_message_is_refused_clearly(
    ada: Client, mallory: Client
) -> None:
    session, feed, asked = await waiting_for_input(ada, mallory, "viewer")
    huge = "9" * (m.MAX_INPUT_CHARS + 1)
    refused = await ada.error("session.input", session=session, value=huge, input_request=asked)
    assert (refused.code, refused.message) == (TOO_LARGE, "value: at most 1,048,576 characters")
    data = {"blob": "x" * m.MAX_COMM_BYTES}
    too_big = await ada.error("session.comm", session=session, comm_id="c", data=data)
    assert (too_big.code, too_big.message) == (TOO_LARGE, "data: at most 4,194,304 bytes of JSON")
    await ada.call("session.input", session=session, value="1", input_request=asked)
    await feed.message(lambda msg: msg["header"]["msg_type"] == "execute_reply")
    assert stdout_of(feed.messages()) == "got 1\n"  # the wait survived the refusals
    await feed.close()


HOSTILE_COMMS = """\
import comm
from cellbus_kernel import child
failures = []
try:
    comm.create_comm(target_name="evil", data={"bad": object()})  # not serialisable
except Exception as exc:
    failures.append(type(exc).__name__)
c = comm.create_comm(target_name="ok", data={"n": 1})
for forged in ("status", "execute_reply", "input_request", "doc_update", "cell_run",
               "checkpoint", "execute_input", "worksheet_shared"):
    c.publish_msg(forged, data={"forged": True})  # through the comm channel
    child.CHANNEL.send(forged, {"execution_state": "idle", "forged": True})  # by hand
child.CHANNEL.send("comm_msg", {"comm_id": 5, "data": "not a dict"})  # malformed
child.CHANNEL.send("comm_msg", {"comm_id": "c", "data": {1: 2}})  # keys that are not text
print(failures)
"""


async def test_user_code_cannot_forge_feed_messages_or_break_the_worker_with_comms(
    ada: Client,
) -> None:
    session = (await ada.call("session.create"))["session"]
    feed = await ada.socket()
    await feed.subscribe(session=session, cursor="now")
    run = await ada.call("session.execute", session=session, code=HOSTILE_COMMS)
    messages = await feed.until_done(run["msg_id"])
    types = [msg["header"]["msg_type"] for msg in messages]
    assert types == ["status", "execute_input", "comm_open", "stream", "execute_reply", "status"]
    assert stdout_of(messages) == "['TypeError']\n"
    echoed = of_type(messages, "execute_input")  # the code itself names them
    assert not [m for m in feed.messages() if "forged" in str(m["content"]) and m not in echoed]
    after = await ada.call("session.execute", session=session, code="print('still here')")
    assert stdout_of(await feed.until_done(after["msg_id"])) == "still here\n"
    await feed.close()


async def forged_after_adas_run(
    ada: Client, mallory: Client, adas_code: str, frame: str
) -> tuple[Feed, str]:
    """A worksheet of ada's shared with mallory as editor: ada runs `adas_code`, then
    mallory's code writes `frame` (a frames.* expression, ``{id}`` standing for the msg_id of
    ada's run) on the session's pipe. Ada's feed, and her run's msg_id."""
    sheet = await ada.call("worksheet.create", title="Shared")
    await ada.call("worksheet.share", id=sheet["id"], username=mallory.username, role="editor")
    session = sheet["session"]
    feed = await ada.socket()
    await feed.subscribe(session=session, cursor="now")
    adas = (await ada.call("session.execute", session=session, code=adas_code))["msg_id"]
    await feed.until_done(adas)
    forge = (
        "from cellbus_kernel import child, frames\n"
        f"child.CHANNEL.pipe.send({frame.format(id=repr(adas))})\n"
        "print('sent')\n"
    )
    mallorys = await mallory.call("session.execute", session=session, code=forge)
    assert stdout_of(await feed.until_done(mallorys["msg_id"])) == "sent\n"
    return feed, adas


async def test_user_code_cannot_ask_someone_else_for_input(ada: Client, mallory: Client) -> None:
    """mallory's code names ada's earlier execution in a forged input request: ada would be
    asked (for a password, under her own cell) and mallory's code would read her answer."""
    frame = "frames.InputWanted(id={id}, seq=99, prompt='Password: ', password=True)"
    feed, _ = await forged_after_adas_run(ada, mallory, "x = 1", frame)
    asked = [m for m in feed.messages() if m["header"]["msg_type"] == "input_request"]
    assert asked == []  # nobody was asked anything
    await feed.close()


async def test_user_code_cannot_put_output_under_someone_elses_earlier_execution(
    ada: Client, mallory: Client
) -> None:
    """mallory's code writes an output frame naming ada's finished execution: it would show
    under ada's cell, as if her code had printed it. Only the request the process runs (or
    ran last) may have outputs."""
    frame = (
        "frames.Output(id={id}, msg_type='stream',"
        " content={{'name': 'stdout', 'text': 'forged\\n'}})"
    )
    feed, adas = await forged_after_adas_run(ada, mallory, "print('mine')", frame)
    under_adas = [msg for msg in feed.messages() if msg["parent_header"].get("msg_id") == adas]
    assert stdout_of(under_adas) == "mine\n"
    await feed.close()
