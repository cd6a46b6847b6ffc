"""The command-line client against a live server started with `cellbus serve`: every
subcommand as a user types it, in a process of its own, with its own config folder."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from ..support.api import PASSWORD
from ..support.stack import OneProgramStack, free_port

CELLBUS = str(Path(sys.executable).with_name("cellbus"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    logs = tmp_path_factory.mktemp("cli-server")
    stack = OneProgramStack(logs, logs / "data", argv=[CELLBUS, "serve"])
    try:
        yield stack.urls[0]
    finally:
        stack.close()


class User:
    """Someone at a terminal: `cellbus` with their own config folder."""

    def __init__(self, server: str, home: Path, name: str) -> None:
        self.server, self.name = server, name
        self.config = home / name
        self.env = {**os.environ, "CELLBUS_CONFIG_DIR": str(self.config)}

    def run(self, *args: str, stdin: str = "", ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [CELLBUS, *args], input=stdin, env=self.env, capture_output=True, text=True, timeout=60
        )
        if ok and done.returncode != 0:
            raise AssertionError(f"cellbus {' '.join(args)}: {done.returncode}\n{done.stderr}")
        return done

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([CELLBUS, *args], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip

    def sign_up(self) -> User:
        self.run("register", self.server, "--username", self.name, "--password-stdin",
                 stdin=PASSWORD + "\n")  # fmt: skip
        self.run("login", self.server, "--username", self.name, "--password-stdin",
                 stdin=PASSWORD + "\n")  # fmt: skip
        return self


def write_notebook(path: Path, *sources: str) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# Orbits")] + [
        nbformat.v4.new_code_cell(source) for source in sources
    ]
    nbformat.write(notebook, path)


def test_log_in_import_run_show_export(server: str, tmp_path: Path) -> None:
    ada = User(server, tmp_path, "ada-cli").sign_up()
    config = next(ada.config.iterdir())
    assert stat.S_IMODE(ada.config.stat().st_mode) == 0o700
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert ada.run("whoami").stdout.strip().startswith("ada-cli")
    write_notebook(tmp_path / "orbits.ipynb", "g = 9.81\nprint('g is', g)", "g * 2")
    ada.run("import", str(tmp_path / "orbits.ipynb"), "--title", "Orbits")
    assert "Orbits" in ada.run("ls").stdout
    ran = ada.run("run", "Orbits")
    assert "g is 9.81" in ran.stdout and "19.62" in ran.stdout
    assert "[3/3]" in ran.stderr  # progress, cell by cell
    shown = ada.run("show", "Orbits").stdout
    assert "g is 9.81" in shown and "19.62" in shown
    ada.run("export", "Orbits", str(tmp_path / "back.ipynb"))
    back = nbformat.read(tmp_path / "back.ipynb", as_version=4)
    nbformat.validate(back)
    assert back.cells[1].outputs[0]["text"] == "g is 9.81\n"
    new = ada.run("new", "Scratch").stdout.strip()
    assert new and "Scratch" in ada.run("ls").stdout


def test_exec_repl_tail_and_share_between_two_people(server: str, tmp_path: Path) -> None:
    ada = User(server, tmp_path, "ada-two").sign_up()
    bob = User(server, tmp_path, "bob-two").sign_up()
    ada.run("new", "Shared")
    ada.run("share", "Shared", "bob-two", "editor")
    assert "Shared" in bob.run("ls").stdout
    assert ada.run("exec", "Shared", "x = 20").returncode == 0
    assert bob.run("exec", "Shared", "print(x * 2 + 2)").stdout == "42\n"
    tail = ada.popen("tail", "Shared", "--from-start")  # sees what bob ran, then follows
    watchdog = threading.Timer(30, tail.kill)
    watchdog.start()
    seen = []
    assert tail.stdout is not None
    for line in tail.stdout:  # until bob's output shows
        seen.append(line)
        if line.strip() == "42":
            break
    watchdog.cancel()
    tail.send_signal(signal.SIGINT)
    tail.communicate(timeout=20)
    out = "".join(seen)
    assert "bob-two" in out and "print(x * 2 + 2)" in out and "42" in out
    failed = bob.run("exec", "Shared", "1 / 0", ok=False)
    assert failed.returncode == 1
    assert "ZeroDivisionError" in failed.stderr.splitlines()[-1]
    repl = bob.run("repl", "Shared", stdin="y = x + 1\nprint(y)\n")
    assert "21" in repl.stdout


def test_errors_are_one_line_with_an_exit_status(server: str, tmp_path: Path) -> None:
    nobody = User(server, tmp_path, "nobody")
    not_logged_in = nobody.run("ls", ok=False)
    assert not_logged_in.returncode == 2 and len(not_logged_in.stderr.splitlines()) == 1
    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = nobody.run("register", closed, "--username", "nobody", "--password-stdin",
                             stdin=PASSWORD + "\n", ok=False)  # fmt: skip
    assert unreachable.returncode == 3 and len(unreachable.stderr.splitlines()) == 1
    carol = User(server, tmp_path, "carol-err").sign_up()
    missing = carol.run("show", "No such worksheet", ok=False)
    assert missing.returncode == 1 and missing.stderr.startswith("cellbus: ")
    nope = carol.run("exec", "Nope", "1", ok=False)  # named as what the user typed
    assert (
        nope.returncode == 1 and nope.stderr == "cellbus: no worksheet or session matches 'Nope'\n"
    )
    write_notebook(tmp_path / "long.ipynb", "pass\n" * 40_000)  # more than a pipe holds
    carol.run("import", str(tmp_path / "long.ipynb"), "--title", "Long")
    with subprocess.Popen([CELLBUS, "show", "Long"], env=carol.env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as shown:  # fmt: skip
        assert shown.stdout is not None and shown.stderr is not None
        assert shown.stdout.readline()  # `| head -1`: the reader goes away
        shown.stdout.close()
        assert shown.wait(timeout=60) == 141 and shown.stderr.read() == b""  # quietly
    wrong = User(server, tmp_path, "carol-err2")
    bad_login = wrong.run("login", server, "--username", "carol-err", "--password-stdin",
                          stdin="wrong password\n", ok=False)  # fmt: skip
    assert bad_login.returncode == 1 and "wrong username or password" in bad_login.stderr
    carol.run("logout")
    assert carol.run("whoami", ok=False).returncode == 2
