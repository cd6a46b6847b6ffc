"""`cellbus` commands through `main()`: arguments, output, one-line errors and exit statuses.

Against `FakeCellbus` (test_cli_fakeserver.py), a stand-in answering like the contract, served
from a thread because `main()` runs its own event loop. Exit statuses: 0 done, 1 an error the
server reported (or a failed run), 2 usage errors and not logged in, 3 server unreachable.
"""

from __future__ import annotations

import io
import json
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cellbus_cli.main import build_parser, main

from .test_cli_fakeserver import FakeCellbus, ThreadedServer

TOKEN = "a" * 32


@pytest.fixture
def fake() -> Iterator[tuple[FakeCellbus, str]]:
    cellbus = FakeCellbus()
    with ThreadedServer(cellbus.app) as server:
        yield cellbus, server.url


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return tmp_path / "cfg"


def logged_in(cfg: Path, url: str, cellbus: FakeCellbus, user: str = "alice") -> None:
    cellbus.add_user(user, token=TOKEN)
    cfg.mkdir(mode=0o700)
    (cfg / "config.json").write_text(json.dumps({"url": url, "token": TOKEN, "username": user}))
    (cfg / "config.json").chmod(0o600)


def run(cfg: Path, *args: str) -> int:
    return main(["--config-dir", str(cfg), *args])


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cellbus: "), err
    return lines[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- arguments ---------------------------------------------------------------------------------


def test_global_options_before_or_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["--url", "http://a", "--config-dir", "/c", "ls"])
    after = parser.parse_args(["ls", "--url", "http://a", "--config-dir", "/c"])
    for args in (before, after):
        assert (args.url, args.config_dir, args.command) == ("http://a", "/c", "ls")
    assert parser.parse_args(["ls"]).url is None
    tail = parser.parse_args(["tail", "S", "--from-start"])
    assert (tail.session, tail.from_start, tail.interrupted_status) == ("S", True, 0)
    login = parser.parse_args(["login", "http://h", "-u", "bob", "--password-stdin"])
    assert (login.server, login.username, login.password_stdin) == ("http://h", "bob", True)


@pytest.mark.parametrize(
    "argv",
    [[], ["frobnicate"], ["share", "w", "bob", "king"], ["new"], ["ls", "--bogus"]],
)
def test_usage_errors_are_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    one_error_line(capsys.readouterr().err)


def test_not_logged_in_exits_2(cfg: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(cfg, "--url", "http://127.0.0.1:1", "ls") == 2
    assert "not logged in" in one_error_line(capsys.readouterr().err)


def test_unreachable_server_exits_3(
    cfg: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("secret\n"))
    url = f"http://127.0.0.1:{closed_port()}"
    assert run(cfg, "login", url, "-u", "alice", "--password-stdin") == 3
    assert f"cannot reach {url}" in one_error_line(capsys.readouterr().err)
    assert not (cfg / "config.json").exists()


# -- accounts ----------------------------------------------------------------------------------


def test_register_login_whoami_logout(
    fake: tuple[FakeCellbus, str],
    cfg: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cellbus, url = fake
    monkeypatch.setattr("sys.stdin", io.StringIO("pw1\n"))
    assert run(cfg, "register", url, "--username", "alice", "--password-stdin") == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("pw1\n"))
    assert run(cfg, "login", url + "/", "--username", "alice", "--password-stdin") == 0
    path = cfg / "config.json"
    stored = json.loads(path.read_text())
    assert stored["url"] == url and stored["username"] == "alice"
    assert cellbus.tokens[stored["token"]] == "alice"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o700
    login_call = next(c for c in cellbus.calls if c[0] == "auth.login")
    assert login_call[1]["label"].startswith("cellbus CLI") and login_call[2] is None

    assert run(cfg, "whoami") == 0
    assert run(cfg, "logout") == 0
    assert json.loads(path.read_text())["token"] is None
    assert run(cfg, "whoami") == 2
    out, err = capsys.readouterr()
    assert "registered alice" in out and "logged in to" in out
    assert "alice\n" in out and "logged out" in out
    assert "not logged in" in one_error_line(err)


def test_server_errors_exit_1_with_the_servers_message(
    fake: tuple[FakeCellbus, str],
    cfg: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cellbus, url = fake
    cellbus.add_user("alice", "right")
    monkeypatch.setattr("sys.stdin", io.StringIO("wrong\n"))
    assert run(cfg, "login", url, "-u", "alice", "--password-stdin") == 1
    assert one_error_line(capsys.readouterr().err) == "cellbus: wrong username or password"
    monkeypatch.setattr("sys.stdin", io.StringIO("pw\n"))
    assert run(cfg, "register", url, "-u", "alice", "--password-stdin") == 1
    assert "taken" in one_error_line(capsys.readouterr().err)


def test_internal_error_shows_its_error_id(
    fake: tuple[FakeCellbus, str], cfg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cellbus, url = fake
    logged_in(cfg, url, cellbus)
    cellbus.fail("worksheet.list", -32603, "internal error", {"error_id": "e-7"})
    assert run(cfg, "ls") == 1
    assert one_error_line(capsys.readouterr().err) == "cellbus: internal error (error id e-7)"


def test_a_revoked_token_is_not_logged_in(
    fake: tuple[FakeCellbus, str], cfg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cellbus, url = fake
    logged_in(cfg, url, cellbus)
    cellbus.tokens.clear()
    assert run(cfg, "ls") == 2
    assert "log in again" in one_error_line(capsys.readouterr().err)


def test_the_token_goes_only_to_its_server(
    fake: tuple[FakeCellbus, str], cfg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cellbus, url = fake
    logged_in(cfg, url, cellbus)
    other = f"http://127.0.0.1:{closed_port()}"
    assert run(cfg, "--url", other, "ls") == 2
    assert f"not logged in to {other}" in one_error_line(capsys.readouterr().err)
    assert run(cfg, "--url", url + "/", "ls") == 0  # the same server, spelt with a slash


# -- worksheets --------------------------------------------------------------------------------


def test_new_ls_show_share(
    fake: tuple[FakeCellbus, str], cfg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cellbus, url = fake
    logged_in(cfg, url, cellbus)
    assert run(cfg, "new", "Plots") == 0
    wid = capsys.readouterr().out.strip()
    cell = {"output_type": "execute_result", "data": {"text/plain": "2"}, "execution_count": 1}
    cellbus.worksheets[wid]["cells"] = [
        {"id": "c" * 32, "source": "1 + 1", "execution_count": 1, "outputs": [cell]}
    ]
    assert run(cfg, "ls") == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["ID", "TITLE", "OWNER", "ROLE", "UPDATED"]
    assert row.split()[:4] == [wid[:8], "Plots", "alice", "owner"]
    assert run(cfg, "show", "Plots") == 0
    out = capsys.readouterr().out
    assert "[1] 1 + 1\n2\n" in out and out.startswith("Plots (")
    assert run(cfg, "share", wid[:6], "bob", "editor") == 0
    assert "bob       editor" in capsys.readouterr().out


def test_an_ambiguous_worksheet_is_a_one_line_error(
    fake: tuple[FakeCellbus, str], cfg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cellbus, url = fake
    logged_in(cfg, url, cellbus)
    cellbus.add_worksheet("Dup", "alice", wid="1111" + "0" * 28)
    cellbus.add_worksheet("Dup", "alice", wid="2222" + "0" * 28)
    assert run(cfg, "show", "Dup") == 2
    assert "11110000 'Dup', 22220000 'Dup'" in one_error_line(capsys.readouterr().err)
    assert run(cfg, "show", "nothing") == 1
    assert "no worksheet matches 'nothing'" in one_error_line(capsys.readouterr().err)


def test_export_then_import(
    fake: tuple[FakeCellbus, str], cfg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cellbus, url = fake
    logged_in(cfg, url, cellbus)
    cellbus.add_worksheet("Source", "alice", cells=["x = 1", "x"])
    file = tmp_path / "nb.ipynb"
    assert run(cfg, "export", "Source", str(file)) == 0
    assert json.loads(file.read_text())["nbformat"] == 4
    assert run(cfg, "import", str(file)) == 0
    new_id = capsys.readouterr().out.splitlines()[-1]
    assert cellbus.worksheets[new_id]["title"] == "nb"
    assert [c["source"] for c in cellbus.worksheets[new_id]["cells"]] == ["x = 1", "x"]
    (tmp_path / "bad.ipynb").write_text("{not json")
    assert run(cfg, "import", str(tmp_path / "bad.ipynb")) == 1
    assert "not a notebook" in one_error_line(capsys.readouterr().err)


# -- running -----------------------------------------------------------------------------------


def test_exec_streams_until_idle(
    fake: tuple[FakeCellbus, str], cfg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cellbus, url = fake
    logged_in(cfg, url, cellbus)
    ws = cellbus.add_worksheet("Plots", "alice")
    assert run(cfg, "exec", "Plots", "print(1)") == 0
    assert capsys.readouterr().out == "ran: print(1)\n42\n"
    assert cellbus.calls[-1][:2] == (
        "session.execute",
        {"session": ws["session"], "code": "print(1)"},
    )


def test_exec_error_exits_1_and_strips_colours_off_a_tty(
    fake: tuple[FakeCellbus, str], cfg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cellbus, url = fake
    logged_in(cfg, url, cellbus)
    assert run(cfg, "exec", "f" * 32, "1/0") == 1
    out, err = capsys.readouterr()
    assert out == "ZeroDivisionError: division by zero\n"
    assert one_error_line(err) == "cellbus: ZeroDivisionError: division by zero"


def test_exec_of_code_that_kills_its_process_says_the_session_died_and_exits_1(
    fake: tuple[FakeCellbus, str], cfg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dead process ends the run with a ``session_state`` ``dead``, never an ``idle``:
    exec stops there rather than waiting for one."""
    cellbus, url = fake
    logged_in(cfg, url, cellbus)
    assert run(cfg, "exec", "f" * 32, "import os; os._exit(1)") == 1
    out, err = capsys.readouterr()
    assert out == "The session process exited with code 1.\n"  # the error's traceback
    assert "the session died: The session process exited with code 1." in err
    assert one_error_line(err.splitlines()[-1]) == (
        "cellbus: SessionDied: The session process exited with code 1."
    )


def test_run_shows_progress_and_stops_at_the_first_error(
    fake: tuple[FakeCellbus, str], cfg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cellbus, url = fake
    logged_in(cfg, url, cellbus)
    ws = cellbus.add_worksheet("Calc", "alice", cells=["a = 1", "1/0", "never"])
    ids = [c["id"] for c in ws["cells"]]
    assert run(cfg, "run", "Calc") == 1
    out, err = capsys.readouterr()
    assert out == "ran: a = 1\n42\nZeroDivisionError: division by zero\n"
    lines = err.splitlines()
    assert lines[:2] == [f"[1/3] cell {ids[0][:8]}", f"[2/3] cell {ids[1][:8]}"]
    assert lines[2:] == [f"cellbus: cell {ids[1][:8]} failed: ZeroDivisionError: division by zero"]
    assert [c[1]["id"] for c in cellbus.calls if c[0] == "cell.evaluate"] == ids[:2]


def test_repl_reads_a_script_from_a_pipe(
    fake: tuple[FakeCellbus, str],
    cfg: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cellbus, url = fake
    logged_in(cfg, url, cellbus)
    monkeypatch.setattr("sys.stdin", io.StringIO("x = 1\n\nfor i in range(2):\n    x += i\n\nx\n"))
    assert run(cfg, "repl") == 0
    out, err = capsys.readouterr()
    codes = [c[1]["code"] for c in cellbus.calls if c[0] == "session.execute"]
    assert codes == ["x = 1\n", "for i in range(2):\n    x += i\n", "x\n"]
    assert out.count("Out[") == 3 and "Out[3]: 42" in out
    assert "new session" in err
    assert "session.shutdown" in [c[0] for c in cellbus.calls]
