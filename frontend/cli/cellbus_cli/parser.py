"""`Parser`: the ArgumentParser of `cellbus` and of each subcommand.

A module of its own so that `main` (which builds the top parser) and each module of
`commands` (which adds its subcommands' parsers) name the same class without importing each
other: argparse gives every subcommand's parser the class of the parser it hangs from.
"""

from __future__ import annotations

import argparse
from typing import NoReturn, TypeAlias

from .errors import EXIT_USAGE, one_line

PROG = "cellbus"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: {one_line(message)} (see `{self.prog} --help`)\n")


# A string: argparse's classes are generic only to type checkers, not at run time.
Subparsers: TypeAlias = "argparse._SubParsersAction[Parser]"
"""What `add_subparsers` gives a `Parser`: the commands add their parsers to it."""
