"""`cellbus`: the command line. Parses the arguments, runs one command, maps errors to exits.

Every failure is one line on stderr, "cellbus: <message>", and an exit status (errors.py):
1 for an error the server reported, 2 for usage errors and "not logged in", 3 when the server
cannot be reached, 130 after Ctrl-C (0 for `tail` and `repl`, which Ctrl-C/Ctrl-D end).
Global options (--url, --config-dir, --verbose) go before or after the subcommand.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from importlib import metadata
from typing import Any

from .codes import UNAUTHENTICATED
from .commands import add_all
from .config import ENV_CONFIG_DIR, config_dir
from .context import Context
from .errors import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    EXIT_SERVER,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliError,
    RpcError,
    ServerUnreachable,
    one_line,
)
from .parser import PROG, Parser

Handler = Callable[[Context, argparse.Namespace], Coroutine[Any, Any, int]]
"""A command, as each subcommand's parser sets it (`handler`) for `main` to run."""


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description="A client for a cellbus server: worksheets, sessions and their live feeds.",
    )
    add_global_options(parser, suppress=False)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    common = Parser(add_help=False)
    add_global_options(common, suppress=True)
    subparsers = parser.add_subparsers(metavar="COMMAND", dest="command", required=True)
    add_all(subparsers, common)
    parser.set_defaults(uses_token=True, interrupted_status=EXIT_INTERRUPTED)
    return parser


def add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """--url, --config-dir, --verbose; in subcommands their defaults must not hide the main's."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--url", default=default(None), help="the server (default: the one you logged in to)"
    )
    parser.add_argument(
        "--config-dir",
        default=default(None),
        help=f"where the token is kept (default: ${ENV_CONFIG_DIR}, else the user config dir)",
    )
    parser.add_argument(
        "--verbose", "-v", action="count", default=default(0), help="log to stderr (-vv: more)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if args.verbose:
        level = logging.DEBUG if args.verbose > 1 else logging.INFO
        logging.basicConfig(level=level, format="%(name)s: %(message)s")
    ctx = Context(config_dir(args.config_dir), url_option=args.url)
    handler: Handler = args.handler
    try:
        return asyncio.run(handler(ctx, args)) or 0
    except KeyboardInterrupt:
        interrupted_status: int = args.interrupted_status
        return interrupted_status
    except CliError as error:
        return fail(str(error), error.status)
    except RpcError as error:
        if error.code == UNAUTHENTICATED and args.uses_token:
            return fail(f"{error.describe()}: log in again with `cellbus login URL`", EXIT_USAGE)
        return fail(error.describe(), EXIT_SERVER)
    except ServerUnreachable as error:
        return fail(str(error), EXIT_UNREACHABLE)
    except BrokenPipeError:
        # Whatever is left in stdout's buffer has nowhere to go: point stdout at nothing so
        # that the interpreter's own flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def fail(message: str, status: int) -> int:
    sys.stdout.flush()
    print(f"{PROG}: {one_line(message)}", file=sys.stderr, flush=True)
    return status


def _version() -> str:
    try:
        return metadata.version("cellbus-cli")
    except metadata.PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
