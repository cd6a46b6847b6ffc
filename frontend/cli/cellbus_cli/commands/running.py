"""run, exec, tail, repl: commands that follow a session's feed."""

from __future__ import annotations

import argparse
import functools
import sys

from ..context import Context
from ..errors import EXIT_SERVER, CliError
from ..follow import follow_all, follow_request
from ..parser import Parser, Subparsers
from ..render import short_id
from ..resolve import resolve_session, resolve_worksheet
from ..stdin import answer_input


def add_parsers(subparsers: Subparsers, common: Parser) -> None:
    parser = subparsers.add_parser("run", parents=[common], help="evaluate a worksheet's cells")
    parser.add_argument("worksheet", metavar="WORKSHEET", help="id, id prefix or title")
    parser.set_defaults(handler=cmd_run)

    parser = subparsers.add_parser("exec", parents=[common], help="run code in a session")
    parser.add_argument("session", metavar="SESSION", help="session id, or a WORKSHEET")
    parser.add_argument("code", metavar="CODE", help="- to read it from stdin")
    parser.set_defaults(handler=cmd_exec)

    parser = subparsers.add_parser("tail", parents=[common], help="follow a live session")
    parser.add_argument("session", metavar="SESSION", help="session id, or a WORKSHEET")
    parser.add_argument(
        "--from-start", action="store_true", help="from the oldest message the server keeps"
    )
    parser.set_defaults(handler=cmd_tail, interrupted_status=0)

    parser = subparsers.add_parser("repl", parents=[common], help="an interactive prompt")
    parser.add_argument("session", metavar="SESSION", nargs="?", help="default: a new session")
    parser.set_defaults(handler=cmd_repl, interrupted_status=0)


async def cmd_run(ctx: Context, args: argparse.Namespace) -> int:
    url = ctx.server_url()
    printer = ctx.printer
    async with ctx.rpc(url) as rpc:
        found = await resolve_worksheet(rpc, args.worksheet)
        worksheet = await rpc.call("worksheet.get", id=found["id"])
        cells = worksheet.get("cells") or []
        if not cells:
            printer.note("the worksheet has no cells")
            return 0
        async with ctx.feed(url) as feed:
            session = worksheet.get("session")
            if session:
                await feed.subscribe(session, "now")
            for number, cell in enumerate(cells, 1):
                kind = cell.get("cell_type", "code")
                if kind != "code":  # Markdown and raw cells are not run
                    printer.note(f"[{number}/{len(cells)}] {kind} cell {short_id(cell['id'])}")
                    continue
                printer.note(f"[{number}/{len(cells)}] cell {short_id(cell['id'])}")
                started = await rpc.call("cell.evaluate", id=cell["id"], worksheet=found["id"])
                if started["session"] != session:
                    # Not known before (a worksheet's session made on first run): read its feed
                    # from the oldest kept message; follow_request keeps only this request's.
                    session = started["session"]
                    await feed.subscribe(session, 0)
                answer = functools.partial(answer_input, rpc, session, printer=printer)
                outcome = await follow_request(feed, started["msg_id"], printer, answer)
                if outcome.failed:
                    raise CliError(f"cell {short_id(cell['id'])} failed: {outcome.error}", 1)
    return 0


async def cmd_exec(ctx: Context, args: argparse.Namespace) -> int:
    url = ctx.server_url()
    code = sys.stdin.read() if args.code == "-" else args.code
    async with ctx.rpc(url) as rpc:
        session = await resolve_session(rpc, args.session)
        async with ctx.feed(url) as feed:
            await feed.subscribe(session, "now")
            started = await rpc.call("session.execute", session=session, code=code)
            answer = functools.partial(answer_input, rpc, session, printer=ctx.printer)
            outcome = await follow_request(feed, started["msg_id"], ctx.printer, answer)
    if outcome.failed:
        raise CliError(f"{outcome.error}", EXIT_SERVER)
    return 0


async def cmd_tail(ctx: Context, args: argparse.Namespace) -> int:
    url = ctx.server_url()
    async with ctx.rpc(url) as rpc:
        session = await resolve_session(rpc, args.session)
    async with ctx.feed(url) as feed:
        await feed.subscribe(session, 0 if args.from_start else "now")
        ctx.printer.note(f"following session {session} (Ctrl-C to stop)")
        await follow_all(feed, ctx.printer)
    return 0


async def cmd_repl(ctx: Context, args: argparse.Namespace) -> int:
    from ..repl import run_repl  # prompt_toolkit loads only for the repl

    return await run_repl(ctx, args.session)
