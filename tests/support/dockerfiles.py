"""The project's Dockerfiles read as instructions, for the tests that check the images."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[2]


class Instruction(NamedTuple):
    keyword: str  # upper case: FROM, RUN, ENV, ...
    arguments: str  # white space folded


def instructions(path: Path) -> list[Instruction]:
    """A Dockerfile's instructions, continuation lines joined and comments dropped."""
    found: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            keyword, _, arguments = pending.partition(" ")
            found.append(Instruction(keyword.upper(), " ".join(arguments.split())))
            pending = ""
    return found


def final_stage(service: str) -> list[Instruction]:
    """The instructions of the last stage of `service`'s Dockerfile (the image that runs)."""
    every = instructions(ROOT / "services" / service / "Dockerfile")
    last_from = max(n for n, (keyword, _) in enumerate(every) if keyword == "FROM")
    return every[last_from:]
