"""``make run``'s program: a worker and a console on the in-process bus, used from a terminal."""

from __future__ import annotations

import subprocess
import sys


def test_console_runs_cells_and_prints_what_the_feed_says() -> None:
    cells = "x = 6\nprint(x * 7)\nfor i in range(2):\n    print('line', i)\n\n1/0\nx + 1\n"
    result = subprocess.run(
        [sys.executable, "-m", "cellbus_kernel.console"],
        input=cells,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("cellbus console")
    assert lines[1:4] == ["42", "line 0", "line 1"]
    assert "ZeroDivisionError: division by zero" in result.stdout.replace("\x1b[39m", "")
    assert lines[-1] == "Out[5]: 7"
    assert "WARNING" not in result.stderr and "ERROR" not in result.stderr
