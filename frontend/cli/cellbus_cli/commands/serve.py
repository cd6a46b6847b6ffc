"""`cellbus serve`: run a whole cellbus server in this one program (what `make run` does).

The only command that is not a client: it needs the server packages (cellbus-allinone),
which a checkout's `make install` provides; the client commands never import them.
"""

from __future__ import annotations

import argparse
import os

from ..context import Context
from ..errors import EXIT_USAGE, CliError
from ..parser import Parser, Subparsers


def add_parsers(subparsers: Subparsers, common: Parser) -> None:
    parser = subparsers.add_parser(
        "serve",
        parents=[common],
        help="run a cellbus server in this program (no other servers needed)",
        description="Accounts, web service and a kernel worker in one program, on the "
        "in-process bus and SQLite; with CELLBUS_REDIS_URL and CELLBUS_DATABASE_URL set, on "
        "Redis and PostgreSQL instead.",
    )
    parser.add_argument("--port", type=int, help="the port to listen on (CELLBUS_PORT, 8888)")
    parser.add_argument("--host", help="the address to listen on (CELLBUS_HOST, 127.0.0.1)")
    parser.add_argument("--data-dir", help="where SQLite keeps the data (CELLBUS_DATA_DIR)")
    parser.set_defaults(handler=serve, uses_token=False, interrupted_status=0)


async def serve(ctx: Context, args: argparse.Namespace) -> int:
    try:
        from cellbus_allinone.serve import start
    except ImportError:
        raise CliError(
            "`cellbus serve` needs the cellbus server packages (run `make install` in a "
            "checkout, or install cellbus-allinone)",
            EXIT_USAGE,
        ) from None
    environ = dict(os.environ)
    for option, name in (("port", "CELLBUS_PORT"), ("host", "CELLBUS_HOST"),
                         ("data_dir", "CELLBUS_DATA_DIR")):  # fmt: skip
        if getattr(args, option) is not None:
            environ[name] = str(getattr(args, option))
    await start(environ)
    return 0
