"""ls, new, show, share, export, import: worksheets over JSON-RPC, no feed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..context import Context
from ..errors import EXIT_SERVER, CliError
from ..parser import Parser, Subparsers
from ..render import (
    BOLD,
    RESET,
    cell_heading,
    format_table,
    format_time,
    owner_name,
    render_output,
    short_id,
)
from ..resolve import resolve_worksheet

ROLES = ("viewer", "editor", "owner", "none")


def add_parsers(subparsers: Subparsers, common: Parser) -> None:
    parser = subparsers.add_parser("ls", parents=[common], help="list your worksheets")
    parser.set_defaults(handler=cmd_ls)

    parser = subparsers.add_parser("new", parents=[common], help="create a worksheet")
    parser.add_argument("title", metavar="TITLE")
    parser.set_defaults(handler=cmd_new)

    parser = subparsers.add_parser("show", parents=[common], help="a worksheet's cells, outputs")
    parser.add_argument("worksheet", metavar="WORKSHEET", help="id, id prefix or title")
    parser.set_defaults(handler=cmd_show)

    parser = subparsers.add_parser("share", parents=[common], help="give someone a role")
    parser.add_argument("worksheet", metavar="WORKSHEET", help="id, id prefix or title")
    parser.add_argument("username", metavar="USERNAME")
    parser.add_argument("role", metavar="ROLE", choices=ROLES, help=" | ".join(ROLES))
    parser.set_defaults(handler=cmd_share)

    parser = subparsers.add_parser("export", parents=[common], help="save as a .ipynb file")
    parser.add_argument("worksheet", metavar="WORKSHEET", help="id, id prefix or title")
    parser.add_argument("file", metavar="FILE.ipynb", help="- for stdout")
    parser.set_defaults(handler=cmd_export)

    parser = subparsers.add_parser("import", parents=[common], help="a .ipynb file as worksheet")
    parser.add_argument("file", metavar="FILE.ipynb", help="- for stdin")
    parser.add_argument("--title", "-t", help="default: the file name without .ipynb")
    parser.set_defaults(handler=cmd_import)


async def cmd_ls(ctx: Context, args: argparse.Namespace) -> int:
    async with ctx.rpc() as rpc:
        worksheets: list[dict[str, Any]] = await rpc.call("worksheet.list")
    if not worksheets:
        ctx.printer.note("no worksheets yet: `cellbus new TITLE` makes one")
        return 0
    rows = [
        (
            short_id(w.get("id")),
            w.get("title"),
            owner_name(w.get("owner")),
            w.get("role"),
            format_time(w.get("updated_at")),
        )
        for w in worksheets
    ]
    ctx.printer.line(format_table(("ID", "TITLE", "OWNER", "ROLE", "UPDATED"), rows))
    return 0


async def cmd_new(ctx: Context, args: argparse.Namespace) -> int:
    async with ctx.rpc() as rpc:
        worksheet = await rpc.call("worksheet.create", title=args.title)
    ctx.printer.line(str(worksheet["id"]))
    return 0


async def cmd_show(ctx: Context, args: argparse.Namespace) -> int:
    async with ctx.rpc() as rpc:
        found = await resolve_worksheet(rpc, args.worksheet)
        worksheet = await rpc.call("worksheet.get", id=found["id"])
    printer = ctx.printer
    cells = worksheet.get("cells") or []
    printer.line(
        f"{BOLD}{worksheet.get('title')}{RESET} ({short_id(worksheet.get('id'))}, "
        f"{len(cells)} cell{'' if len(cells) == 1 else 's'})"
    )
    for cell in cells:
        printer.line("")
        printer.line(cell_heading(cell))
        for output in cell.get("outputs") or []:
            printer.show(render_output(output))
    return 0


async def cmd_share(ctx: Context, args: argparse.Namespace) -> int:
    async with ctx.rpc() as rpc:
        worksheet = await resolve_worksheet(rpc, args.worksheet)
        members = await rpc.call(
            "worksheet.share", id=worksheet["id"], username=args.username, role=args.role
        )
    rows = [(m.get("username"), m.get("role")) for m in members or []]
    ctx.printer.line(format_table(("USERNAME", "ROLE"), rows))
    return 0


async def cmd_export(ctx: Context, args: argparse.Namespace) -> int:
    async with ctx.rpc() as rpc:
        worksheet = await resolve_worksheet(rpc, args.worksheet)
        notebook = await rpc.call("worksheet.export", id=worksheet["id"])
    write_notebook(args.file, notebook)
    if args.file != "-":
        ctx.printer.line(f"exported {worksheet.get('title')!r} to {args.file}")
    return 0


async def cmd_import(ctx: Context, args: argparse.Namespace) -> int:
    notebook = read_notebook(args.file)
    title = args.title or (Path(args.file).stem if args.file != "-" else "Imported")
    async with ctx.rpc() as rpc:
        worksheet = await rpc.call("worksheet.import", notebook=notebook, title=title)
    ctx.printer.line(str(worksheet["id"]))
    return 0


def write_notebook(file: str, notebook: dict[str, Any]) -> None:
    text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    if file == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(file).write_text(text, encoding="utf-8")
    except OSError as error:
        raise CliError(f"cannot write {file}: {error.strerror}", EXIT_SERVER) from error


def read_notebook(file: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except OSError as error:
        raise CliError(f"cannot read {file}: {error.strerror}", EXIT_SERVER) from error
    except UnicodeDecodeError as error:
        raise CliError(f"{file} is not a notebook: not UTF-8 text", EXIT_SERVER) from error
    try:
        notebook = json.loads(text)
    except ValueError as error:
        raise CliError(f"{file} is not a notebook: {error}", EXIT_SERVER) from error
    if not isinstance(notebook, dict) or "cells" not in notebook:
        raise CliError(f"{file} is not a notebook: no cells", EXIT_SERVER)
    return notebook
