"""Every `# type: ignore` in the tree names its error code and says why, on the same line.

mypy runs in strict mode (`make typecheck`, `[tool.mypy]` in pyproject.toml): it already
refuses an ignore that no longer silences anything, and one without an error code
(`ignore-without-code`). What it cannot check is the reason, so this test does: the ignore
is followed by a comment, as in ``x = f()  # type: ignore[arg-type]  # f's stub is too narrow``.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED = ["shared", "services", "frontend/cli", "tests", "bench"]
SKIPPED = {".jupyter-venv", ".jupyterlab-venv", "node_modules", "__pycache__"}

IGNORE = re.compile(r"#\s*type:\s*ignore\b(?P<rest>.*)$")
WITH_CODE_AND_REASON = re.compile(r"^\[[a-z0-9-]+(,\s*[a-z0-9-]+)*\]\s*#\s*\S")


def python_files() -> list[Path]:
    files = []
    for folder in CHECKED:
        for path in (ROOT / folder).rglob("*.py"):
            if not SKIPPED & set(path.relative_to(ROOT).parts):
                files.append(path)
    return files


def unexplained_ignores(source: str) -> list[int]:
    """The numbers of the lines whose `# type: ignore` comment lacks a code or a reason
    (comments only: the words in a string, as in this module, are not an ignore)."""
    lines = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.COMMENT:
            continue
        found = IGNORE.match(token.string)
        if found and not WITH_CODE_AND_REASON.match(found["rest"].strip()):
            lines.append(token.start[0])
    return lines


def test_the_rule_tells_a_reasoned_ignore_from_a_bare_one() -> None:
    assert unexplained_ignores("x = f()  # type: ignore[arg-type]  # the stub is too narrow") == []
    assert unexplained_ignores("x = f()  # type: ignore[arg-type, misc]  # why") == []
    assert unexplained_ignores("x = f()  # type: ignore") == [1]
    assert unexplained_ignores("x = f()  # type: ignore  # no code") == [1]
    assert unexplained_ignores("ok = 1\nx = f()  # type: ignore[arg-type]") == [2]


def test_every_type_ignore_names_its_code_and_says_why() -> None:
    files = python_files()
    assert len(files) > 100, "the walk found too few files: is ROOT right?"
    bare = sorted(
        f"{path.relative_to(ROOT)}:{number}"
        for path in files
        for number in unexplained_ignores(path.read_text())
    )
    assert bare == [], "a `# type: ignore[code]` needs `  # why` after it:\n" + "\n".join(bare)
