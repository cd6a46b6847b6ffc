"""register, login, logout, whoami."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import socket
import sys

from ..client import RpcClient
from ..codes import FORBIDDEN, UNAUTHENTICATED
from ..config import Config
from ..context import Context, normalize_url
from ..errors import EXIT_USAGE, CliError, RpcError, ServerUnreachable
from ..parser import Parser, Subparsers


def add_parsers(subparsers: Subparsers, common: Parser) -> None:
    for name, handler, what in (
        ("register", cmd_register, "create an account on a server"),
        ("login", cmd_login, "log in and store the token in the config dir"),
    ):
        parser = subparsers.add_parser(name, parents=[common], help=what, description=what)
        parser.add_argument(
            "server", nargs="?", metavar="URL", help="the server, e.g. http://host:8000"
        )
        parser.add_argument("--username", "-u", help="asked for when not given")
        parser.add_argument(
            "--password-stdin", action="store_true", help="read the password from stdin"
        )
        parser.set_defaults(handler=handler, uses_token=False)
    parser = subparsers.add_parser("logout", parents=[common], help="log out, forget the token")
    parser.set_defaults(handler=cmd_logout)
    parser = subparsers.add_parser("whoami", parents=[common], help="who the token belongs to")
    parser.set_defaults(handler=cmd_whoami)


def ask_credentials(args: argparse.Namespace, *, confirm: bool) -> tuple[str, str]:
    """The user name and password from the options, stdin or prompts."""
    if args.password_stdin and not args.username:
        raise CliError("--password-stdin needs --username", EXIT_USAGE)
    try:
        username = args.username or input("Username: ").strip()
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass("Password: ")
            if confirm and getpass.getpass("Password (again): ") != password:
                raise CliError("the passwords do not match", EXIT_USAGE)
    except EOFError as error:
        raise CliError("no credentials given", EXIT_USAGE) from error
    if not username:
        raise CliError("no username given", EXIT_USAGE)
    if not password:
        raise CliError("no password given", EXIT_USAGE)
    return username, password


async def cmd_register(ctx: Context, args: argparse.Namespace) -> int:
    url = ctx.server_url(args.server)
    username, password = ask_credentials(args, confirm=True)
    try:
        async with ctx.rpc(url, anonymous=True) as rpc:
            user = await rpc.call("auth.register", username=username, password=password)
    except RpcError as error:
        # Where only an admin may add accounts, register as the logged-in user.
        token = ctx.token_if_any(url)
        if error.code not in (UNAUTHENTICATED, FORBIDDEN) or token is None:
            raise
        async with RpcClient(url, token, timeout=ctx.rpc_timeout) as rpc:
            user = await rpc.call("auth.register", username=username, password=password)
    ctx.printer.line(f"registered {user.get('username', username)} on {url}")
    return 0


async def cmd_login(ctx: Context, args: argparse.Namespace) -> int:
    url = ctx.server_url(args.server)
    username, password = ask_credentials(args, confirm=False)
    label = f"cellbus CLI on {socket.gethostname()}"
    async with ctx.rpc(url, anonymous=True) as rpc:
        reply = await rpc.call("auth.login", username=username, password=password, label=label)
    old = ctx.config
    user = reply.get("user") or {}
    ctx.save(Config(url=url, token=reply["token"], username=user.get("username", username)))
    ctx.printer.line(f"logged in to {url} as {user.get('username', username)}")
    if old.token and old.url and normalize_url(old.url) == url and old.token != reply["token"]:
        # The token this one replaces is forgotten; end it on the server too, if it still works.
        with contextlib.suppress(RpcError, ServerUnreachable):
            async with RpcClient(url, old.token, timeout=5.0) as rpc:
                await rpc.call("auth.logout")
    return 0


async def cmd_logout(ctx: Context, args: argparse.Namespace) -> int:
    url = ctx.server_url()
    try:
        async with ctx.rpc(url) as rpc:
            await rpc.call("auth.logout")
    except RpcError as error:
        if error.code != UNAUTHENTICATED:
            raise
        # the token had already expired or been revoked: forgetting it is all that is left
    ctx.save(ctx.config.logged_out())
    ctx.printer.line(f"logged out of {url}")
    return 0


async def cmd_whoami(ctx: Context, args: argparse.Namespace) -> int:
    async with ctx.rpc() as rpc:
        user = await rpc.call("auth.whoami")
    ctx.printer.line(f"{user.get('username')}" + (" (admin)" if user.get("is_admin") else ""))
    return 0
