"""The subcommands, one module per group; each module's `add_parsers` declares its own.

Every command is `async def (ctx: Context, args: Namespace) -> int`, set on its parser as
`handler`. `uses_token` says whether a -32001 from the server means "not logged in" (exit 2);
`interrupted_status` is the exit status after Ctrl-C (0 where Ctrl-C is the normal way out).
"""

from __future__ import annotations

from ..parser import Parser, Subparsers
from . import account, files, running, serve, worksheets


def add_all(subparsers: Subparsers, common: Parser) -> None:
    for module in (account, worksheets, files, running, serve):
        module.add_parsers(subparsers, common)
