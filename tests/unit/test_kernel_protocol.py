"""The kernel protocol's pieces that need no server: the session process's stdin, its
questions (is_complete, history kept and restored), its comms, and the CLI's answer to an
input_request."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.error import StdinNotImplementedError

from cellbus_cli.errors import RpcError
from cellbus_cli.stdin import EOT, answer_input
from cellbus_cli.terminal import Printer
from cellbus_kernel import child, comms, frames, questions
from cellbus_kernel.stdin import InputCancelled, Stdin

# -- the session process's stdin --------------------------------------------------------------


class Asking:
    """A `Stdin` whose ``input()`` runs in a thread, as user code in a cell would."""

    def __init__(self, execution: str | None = "e1") -> None:
        self.stdin = Stdin()
        self.sent: list[frames.FromSession] = []
        self.wanted = threading.Event()
        self.stdin.send = self._send
        self.stdin.allow(execution)
        self.result: Any = None

    def _send(self, frame: frames.FromSession) -> None:
        self.sent.append(frame)
        self.wanted.set()

    def ask(self, prompt: str = "? ", password: bool = False) -> threading.Thread:
        def run() -> None:
            try:
                self.result = self.stdin.ask(prompt, password=password)
            except BaseException as exc:
                self.result = exc

        thread = threading.Thread(target=run)
        thread.start()
        assert self.wanted.wait(10)
        return thread


def test_input_asks_and_takes_only_the_answer_to_that_wait() -> None:
    asking = Asking()
    thread = asking.ask("Name? ", password=True)
    (wanted,) = asking.sent
    assert wanted == frames.InputWanted(id="e1", seq=1, prompt="Name? ", password=True)
    asking.stdin.deliver(frames.InputValue(id="e1", seq=7, value="stale"))  # an older wait's
    asking.stdin.deliver(frames.InputValue(id="e1", seq=1, value="Ada"))
    thread.join(10)
    assert asking.result == "Ada"


@pytest.mark.parametrize(
    ("answer", "raised", "text"),
    [
        (frames.InputValue(id="e1", seq=1, cancelled="ada left."), InputCancelled, "ada left."),
        (frames.InputValue(id="e1", seq=1, value=EOT), EOFError, "EOF when reading a line"),
    ],
)
def test_a_wait_ends_in_an_error_when_cancelled_or_at_end_of_file(
    answer: frames.InputValue, raised: type[Exception], text: str
) -> None:
    asking = Asking()
    thread = asking.ask()
    asking.stdin.deliver(answer)
    thread.join(10)
    assert isinstance(asking.result, raised) and str(asking.result) == text


def test_without_stdin_input_raises_as_in_ipykernel() -> None:
    stdin = Stdin()
    stdin.send = lambda frame: None
    stdin.allow(None)
    with pytest.raises(StdinNotImplementedError):
        stdin.input("?")


# -- questions and history --------------------------------------------------------------------


@pytest.fixture(scope="module")
def shell() -> Iterator[child.CellbusShell]:
    yield child.prepare_shell()


def test_is_complete(shell: child.CellbusShell) -> None:
    def ask(code: str) -> dict[str, Any]:
        return questions.answer(shell, frames.IsComplete(id="q", code=code))

    assert ask("x = 1") == {"status": "complete", "indent": ""}
    assert ask("def f():") == {"status": "incomplete", "indent": "    "}
    assert ask("x = )")["status"] == "invalid"


def test_history_is_kept_and_restored_at_its_execution_counts(
    shell: child.CellbusShell,
) -> None:
    manager = shell.history_manager
    assert manager is not None
    saved: list[frames.HistoryEntry] = [(1, "a = 1", "a = 1"), (3, "b = 2", "b = 2")]
    questions.restore_history(shell, saved)
    assert shell.user_ns["In"][:4] == ["", "a = 1", "", "b = 2"]  # `In` is the same list
    assert questions.kept_history(shell) == [
        (1, "a = 1", "a = 1"), (2, "", ""), (3, "b = 2", "b = 2"),
    ]  # fmt: skip
    tail = questions.answer(shell, frames.History(id="q", n=2))
    assert [entry[1:] for entry in tail["history"]] == [[1, "a = 1"], [3, "b = 2"]]


def test_a_failing_question_is_an_error_reply(
    shell: child.CellbusShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(code: str) -> None:
        raise RuntimeError("tokenizer trouble")

    monkeypatch.setattr(shell.input_transformer_manager, "check_complete", broken)
    reply = questions.answer(shell, frames.IsComplete(id="q", code="x"))
    assert reply == {"status": "error", "ename": "RuntimeError", "evalue": "tokenizer trouble"}


# -- comms ------------------------------------------------------------------------------------


class Channel:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.metadata: list[dict[str, Any] | None] = []

    def send(
        self, msg_type: str, content: dict[str, Any], metadata: dict[str, Any] | None = None
    ) -> None:
        self.sent.append((msg_type, content))
        self.metadata.append(metadata)


def test_a_client_opens_messages_and_closes_a_comm() -> None:
    channel = Channel()
    comms.install(channel)
    import comm

    received: list[Any] = []

    def opened(c: Any, msg: dict[str, Any]) -> None:
        def on_msg(m: dict[str, Any]) -> None:
            received.append(m["content"]["data"])
            c.send({"ok": True})

        c.on_msg(on_msg)

    comm.get_comm_manager().register_target("unit", opened)
    open_frame = frames.CommIn(
        id="m1", msg_type="comm_open", content={"comm_id": "c9", "target_name": "unit", "data": {}}
    )
    comms.handle(open_frame)
    assert comms.info("unit") == {"status": "ok", "comms": {"c9": {"target_name": "unit"}}}
    message = {"comm_id": "c9", "data": {"n": 1}}
    comms.handle(frames.CommIn(id="m2", msg_type="comm_msg", content=message))
    assert received == [{"n": 1}]
    assert channel.sent == [("comm_msg", {"comm_id": "c9", "data": {"ok": True}})]
    comms.handle(frames.CommIn(id="m3", msg_type="comm_close", content={"comm_id": "c9"}))
    assert comms.info(None)["comms"].get("c9") is None


def test_a_comm_from_the_kernel_publishes_open_message_and_close() -> None:
    channel = Channel()
    comms.install(channel)
    import comm

    c = comm.create_comm(target_name="t", data={"v": 1}, metadata={"version": "2.1.0"})
    c.send({"v": 2})
    c.close()
    assert [(kind, content["data"]) for kind, content in channel.sent] == [
        ("comm_open", {"v": 1}), ("comm_msg", {"v": 2}), ("comm_close", {}),
    ]  # fmt: skip
    assert channel.sent[0][1]["target_name"] == "t"
    assert "target_module" not in channel.sent[0][1]
    assert channel.metadata[0] == {"version": "2.1.0"}  # the message's, not the content's


# -- the CLI answering ------------------------------------------------------------------------


class StubRpc:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.error = error

    async def call(self, method: str, /, **params: Any) -> Any:
        self.calls.append({"method": method, **params})
        if self.error is not None:
            raise self.error
        return None


REQUEST = {
    "header": {"msg_id": "ir1", "msg_type": "input_request", "username": "ada"},
    "content": {"prompt": "PIN: ", "password": True},
}


async def test_the_cli_prompts_and_answers() -> None:
    rpc, asked = StubRpc(), []

    async def read_line(prompt: str, password: bool) -> str:
        asked.append((prompt, password))
        return "1234"

    await answer_input(rpc, "s1", REQUEST, Printer(color=False), read_line)
    assert asked == [("PIN: ", True)]
    assert rpc.calls == [
        {"method": "session.input", "session": "s1", "value": "1234", "input_request": "ir1"}
    ]


async def test_the_cli_answers_end_of_file_and_nothing_when_interrupted() -> None:
    async def eof(prompt: str, password: bool) -> str:
        raise EOFError

    async def interrupted(prompt: str, password: bool) -> str:
        raise KeyboardInterrupt

    rpc = StubRpc()
    await answer_input(rpc, "s1", REQUEST, Printer(color=False), eof)
    await answer_input(rpc, "s1", REQUEST, Printer(color=False), interrupted)
    assert [call["value"] for call in rpc.calls] == [EOT]


async def test_the_cli_says_why_an_answer_was_refused() -> None:
    refused = RpcError(-32600, "no input is awaited from you for that request")
    err = io.StringIO()

    async def line(prompt: str, password: bool) -> str:
        return "late"

    await answer_input(StubRpc(refused), "s1", REQUEST, Printer(color=False, stderr=err), line)
    assert "no input is awaited from you for that request" in err.getvalue()
