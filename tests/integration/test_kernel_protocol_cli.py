"""``input()`` and ``getpass()`` answered at the terminal: `cellbus run` and `cellbus exec`
prompt the person who ran the code and send what they type (here, piped in)."""

from __future__ import annotations

from pathlib import Path

from .test_cli import User, server, write_notebook

__all__ = ["server"]  # the module's server fixture, shared with test_cli's tests' kind


def test_run_and_exec_ask_the_terminal_for_input(server: str, tmp_path: Path) -> None:
    ada = User(server, tmp_path, "ada-input").sign_up()
    write_notebook(
        tmp_path / "ask.ipynb",
        "name = input('Your name? ')",
        "import getpass\nsecret = getpass.getpass('PIN: ')\nprint('Hello', name, len(secret))",
    )
    ada.run("import", str(tmp_path / "ask.ipynb"), "--title", "Ask")
    ran = ada.run("run", "Ask", stdin="Ada\n1234\n")
    assert "Hello Ada 4" in ran.stdout
    assert "1234" not in ran.stdout  # the PIN is read, not shown
    execed = ada.run("exec", "Ask", "print(input('again? ').upper())", stdin="yes\n")
    assert execed.stdout.endswith("YES\n")
    ended = ada.run("exec", "Ask", "input('more? ')", stdin="", ok=False)
    assert "EOFError" in ended.stderr  # Ctrl-D (end of input) is end of file in the cell


def test_a_piped_repl_answers_end_of_file(server: str, tmp_path: Path) -> None:
    """A script piped into `cellbus repl` is its whole stdin: input() in it gets end of file
    at once (as in `python < script`), and the repl goes on."""
    ada = User(server, tmp_path, "ada-repl").sign_up()
    ran = ada.run(
        "repl", stdin="try:\n    input('?')\nexcept EOFError:\n    print('eof')\n\n1 + 1\n"
    )
    assert "eof" in ran.stdout and "2" in ran.stdout
