"""Output capture of a session process: buffering, chunking and the per-execution cap.

`OutputCapture`, `CapturedStream` and `OutputBudget` are used directly, never through
`install()` (which would redirect this process's stdout and stderr). The sink records each
call as the stream output a notebook user would see.
"""

from __future__ import annotations

import time

import pytest

from cellbus_kernel.capture import CapturedStream, OutputBudget, OutputCapture

Calls = list[tuple[str, str]]


@pytest.fixture
def calls() -> Calls:
    return []


def make_capture(
    calls: Calls, cap: int = 1_000_000, *, interval: float = 0.05, max_chunk: int = 1 << 20
) -> OutputCapture:
    return OutputCapture(lambda name, text: calls.append((name, text)), cap, interval, max_chunk)


def test_many_small_writes_are_one_output(calls: Calls) -> None:
    capture = make_capture(calls, interval=60)
    for i in range(1000):
        capture.stdout.write(f"line {i}\n")
    assert calls == []  # nothing is published per write

    capture.stdout.flush()

    assert calls == [("stdout", "".join(f"line {i}\n" for i in range(1000)))]
    capture.stdout.flush()  # nothing buffered: nothing published
    assert len(calls) == 1


def test_print_writes_through_the_stream(calls: Calls) -> None:
    capture = make_capture(calls)
    print("hello", "world", file=capture.stdout)
    print("oops", file=capture.stderr)
    capture.flush()
    assert calls == [("stdout", "hello world\n"), ("stderr", "oops\n")]


def test_stdout_and_stderr_are_buffered_separately(calls: Calls) -> None:
    capture = make_capture(calls)
    capture.stdout.write("out 1\n")
    capture.stderr.write("err 1\n")
    capture.stdout.write("out 2\n")
    capture.flush()
    assert calls == [("stdout", "out 1\nout 2\n"), ("stderr", "err 1\n")]


def test_reaching_max_chunk_flushes_at_once(calls: Calls) -> None:
    capture = make_capture(calls, interval=60, max_chunk=10)
    capture.stdout.write("12345")
    capture.stdout.write("6789")
    assert calls == []
    capture.stdout.write("0")  # 10 characters buffered
    assert calls == [("stdout", "1234567890")]

    capture.stdout.write("abc")
    assert calls == [("stdout", "1234567890")]
    capture.stdout.write("x" * 25)  # one write larger than a chunk goes out whole
    assert calls[-1] == ("stdout", "abc" + "x" * 25)


def test_flush_if_due_flushes_only_a_buffer_older_than_the_interval(calls: Calls) -> None:
    capture = make_capture(calls, interval=0.05)
    stream = capture.stdout
    stream.flush_if_due(time.monotonic() + 10)  # nothing buffered
    assert calls == []

    before = time.monotonic()
    stream.write("a")
    stream.write("b")
    after = time.monotonic()

    stream.flush_if_due(before + 0.04)  # younger than the interval, however fast the writes
    assert calls == []
    stream.flush_if_due(after + 0.05)  # the oldest write is at least this old
    assert calls == [("stdout", "ab")]


def test_the_interval_counts_from_the_oldest_buffered_write(calls: Calls) -> None:
    capture = make_capture(calls, interval=0.05)
    stream = capture.stdout
    first = time.monotonic()
    stream.write("first ")
    stream.flush_if_due(first + 1)
    assert calls == [("stdout", "first ")]

    second = time.monotonic()
    stream.write("second")  # the age starts again with a new buffer
    stream.flush_if_due(second + 0.04)
    assert calls == [("stdout", "first ")]
    stream.flush_if_due(time.monotonic() + 0.05)
    assert calls == [("stdout", "first "), ("stdout", "second")]


def test_the_cap_cuts_output_and_end_cell_says_how_much(calls: Calls) -> None:
    capture = make_capture(calls, cap=10)
    capture.begin_cell()
    capture.stdout.write("hello\n")
    capture.flush()
    capture.stdout.write("world\nmore\nlines\n")
    capture.flush()
    capture.stdout.write("and even more\n")  # past the cap: nothing at all is published
    capture.end_cell()

    assert calls[:2] == [("stdout", "hello\n"), ("stdout", "worl")]
    name, note = calls[2]
    assert name == "stderr"
    assert "output truncated" in note
    assert "27 more characters (4 lines) were not shown" in note
    assert "the limit is 10 characters per execution" in note
    assert len(calls) == 3


def test_the_cap_is_shared_by_stdout_and_stderr(calls: Calls) -> None:
    capture = make_capture(calls, cap=8)
    capture.stdout.write("12345")
    capture.stdout.flush()
    capture.stderr.write("67890")
    capture.stderr.flush()
    assert calls == [("stdout", "12345"), ("stderr", "678")]
    assert capture.budget.dropped_chars == 2


def test_large_counts_are_easy_to_read(calls: Calls) -> None:
    capture = make_capture(calls, cap=5_000)
    capture.stdout.write("x" * 5_000 + "\n" * 1_234_567)
    capture.end_cell()
    note = calls[-1][1]
    assert "1,234,567 more characters (1,234,567 lines)" in note
    assert "the limit is 5,000 characters" in note


def test_begin_cell_resets_the_budget(calls: Calls) -> None:
    capture = make_capture(calls, cap=5)
    capture.begin_cell()
    capture.stdout.write("too long\n")
    capture.end_cell()
    assert calls[0] == ("stdout", "too l")
    assert calls[1][0] == "stderr"

    calls.clear()
    capture.begin_cell()
    capture.stdout.write("ok\n")
    capture.end_cell()
    assert calls == [("stdout", "ok\n")]  # shown in full, and no truncation note


def test_begin_cell_publishes_what_the_previous_cell_left_buffered(calls: Calls) -> None:
    capture = make_capture(calls, cap=100)
    capture.stdout.write("late output")
    capture.begin_cell()
    assert calls == [("stdout", "late output")]


def test_budget_take_report_and_reset() -> None:
    budget = OutputBudget(cap=4)
    assert budget.report() is None
    assert budget.take("ab") == "ab"
    assert budget.take("cd\nef\ng") == "cd"
    assert budget.take("more") == ""
    assert (budget.used, budget.dropped_chars, budget.dropped_lines) == (4, 9, 2)
    report = budget.report()
    assert report is not None and "9 more characters (2 lines)" in report

    budget.reset()
    assert (budget.used, budget.dropped_chars, budget.dropped_lines) == (0, 0, 0)
    assert budget.report() is None
    assert budget.take("abcd") == "abcd"


def test_captured_stream_behaves_like_a_text_file() -> None:
    stream = CapturedStream("stderr", lambda n, t: None, OutputBudget(100), 0.05, 1 << 20)
    assert stream.writable()
    assert not stream.isatty()
    assert stream.encoding == "utf-8"
    assert stream.fileno() == 2
    assert stream.write("héllo") == 5
    assert stream.write("") == 0
    with pytest.raises(TypeError, match="must be str, not bytes"):
        stream.write(b"bytes")  # type: ignore[arg-type]  # the wrong type is the point


def test_the_flusher_publishes_a_lone_write_and_sleeps_while_nothing_is_buffered(
    calls: Calls,
) -> None:
    capture = make_capture(calls, interval=0.02)
    checks = []
    flush_if_due = capture.stdout.flush_if_due

    def counted(now: float) -> None:
        checks.append(now)
        flush_if_due(now)

    capture.stdout.flush_if_due = counted  # type: ignore[method-assign]  # a spy on the flusher
    capture.start_flusher()
    for round in range(2):
        capture.stdout.write(f"line {round}\n")
        deadline = time.monotonic() + 5
        while len(calls) <= round and time.monotonic() < deadline:
            time.sleep(0.005)
        assert calls[round] == ("stdout", f"line {round}\n")
        time.sleep(0.05)  # let the flusher go back to sleep
        idle_checks = len(checks)
        time.sleep(0.2)  # ten intervals with nothing written
        assert len(checks) == idle_checks, "the flusher woke with nothing buffered"
