"""`cellbus files ls|get|put|rm`: a worksheet's files (its workspace, where its session runs).

`ls` and `rm` are JSON-RPC (`files.list`, `files.stat`, `files.delete`); `get` and `put`
stream over HTTP (transfer.py), with a progress line on stderr while a transfer is long (on a
terminal; `--progress` always, `--quiet` never). A `put` whose connection drops goes on from
where the server's copy ends; `put --resume` continues one an earlier command left unfinished.
"""

from __future__ import annotations

import argparse
import posixpath
import sys
import time
from pathlib import Path
from typing import Any

from ..context import Context
from ..errors import EXIT_SERVER, EXIT_USAGE, CliError
from ..parser import Parser, Subparsers
from ..render import format_table, format_time
from ..resolve import resolve_worksheet
from ..terminal import Printer
from ..transfer import FileTransfer

PROGRESS_AFTER = 0.5
"""Seconds a transfer runs before its progress line shows (on a terminal): short ones stay quiet."""
PROGRESS_EVERY = 0.1
"""Seconds between two redraws of the progress line."""
UNITS = ("B", "KB", "MB", "GB", "TB")


def add_parsers(subparsers: Subparsers, common: Parser) -> None:
    files = subparsers.add_parser(
        "files", parents=[common], help="a worksheet's files: ls, get, put, rm"
    )
    commands = files.add_subparsers(metavar="COMMAND", dest="files_command", required=True)

    parser = commands.add_parser("ls", parents=[common], help="list a folder of the workspace")
    add_worksheet(parser)
    parser.add_argument("path", metavar="PATH", nargs="?", default="", help="default: the top")
    parser.add_argument("--all", "-a", action="store_true", help="also names starting with .")
    parser.set_defaults(handler=cmd_ls)

    parser = commands.add_parser("get", parents=[common], help="download a file")
    add_worksheet(parser)
    parser.add_argument("path", metavar="PATH", help="the file in the workspace")
    parser.add_argument(
        "dest", metavar="DEST", nargs="?", help="a file or folder (default: here); - for stdout"
    )
    add_progress_options(parser)
    parser.set_defaults(handler=cmd_get)

    parser = commands.add_parser("put", parents=[common], help="upload a file")
    add_worksheet(parser)
    parser.add_argument("source", metavar="FILE", help="the local file")
    parser.add_argument(
        "path", metavar="PATH", nargs="?", default="", help="where (a trailing / for a folder)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an upload an earlier `put` left unfinished"
    )
    add_progress_options(parser)
    parser.set_defaults(handler=cmd_put)

    parser = commands.add_parser("rm", parents=[common], help="delete files or folders")
    add_worksheet(parser)
    parser.add_argument("paths", metavar="PATH", nargs="+")
    parser.add_argument("--recursive", "-r", action="store_true", help="folders too")
    parser.set_defaults(handler=cmd_rm)


def add_worksheet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("worksheet", metavar="WORKSHEET", help="id, id prefix or title")


def add_progress_options(parser: argparse.ArgumentParser) -> None:
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--progress", action="store_true", help="always show progress on stderr")
    shown.add_argument("--quiet", "-q", action="store_true", help="never show progress")


async def cmd_ls(ctx: Context, args: argparse.Namespace) -> int:
    async with ctx.rpc() as rpc:
        worksheet = await resolve_worksheet(rpc, args.worksheet)
        entries: list[dict[str, Any]] = await rpc.call(
            "files.list", worksheet=worksheet["id"], path=args.path
        )
    shown = [e for e in entries if args.all or not str(e.get("name", "")).startswith(".")]
    if not shown:
        ctx.printer.note(f"{args.path or 'the workspace'} is empty")
        return 0
    shown.sort(key=lambda e: (e.get("type") != "directory", str(e.get("name"))))
    rows = [
        (
            format_size(e["size"]) if e.get("type") == "file" else "",
            format_time(e.get("modified")),
            str(e.get("name")) + ("/" if e.get("type") == "directory" else ""),
        )
        for e in shown
    ]
    ctx.printer.line(format_table(("SIZE", "MODIFIED", "NAME"), rows))
    return 0


async def cmd_get(ctx: Context, args: argparse.Namespace) -> int:
    url = ctx.server_url()
    async with ctx.rpc(url) as rpc:
        worksheet = await resolve_worksheet(rpc, args.worksheet)
    name = posixpath.basename(args.path)
    progress = ProgressLine(ctx.printer, args.path, forced=args.progress, quiet=args.quiet)
    async with FileTransfer(url, ctx.token(url)) as transfer:
        if args.dest == "-":
            size = await transfer.download(
                worksheet["id"], args.path, sys.stdout.buffer, progress.update
            )
            progress.done(size, "downloaded")
            return 0
        dest = destination(args.dest, name)
        size = await transfer.download_to(worksheet["id"], args.path, dest, progress.update)
    progress.done(size, f"downloaded to {dest}")
    return 0


async def cmd_put(ctx: Context, args: argparse.Namespace) -> int:
    source = local_file(args.source)
    path = args.path
    if not path or path.endswith("/"):
        path += source.name
    url = ctx.server_url()
    async with ctx.rpc(url) as rpc:
        worksheet = await resolve_worksheet(rpc, args.worksheet)
    progress = ProgressLine(ctx.printer, path, forced=args.progress, quiet=args.quiet)
    async with FileTransfer(url, ctx.token(url)) as transfer:
        size = await transfer.upload(
            worksheet["id"], path, source, progress.update, resume=args.resume
        )
    progress.done(size, f"uploaded to {path}")
    return 0


async def cmd_rm(ctx: Context, args: argparse.Namespace) -> int:
    async with ctx.rpc() as rpc:
        worksheet = await resolve_worksheet(rpc, args.worksheet)
        if not args.recursive:  # as rm: a folder goes only with -r
            for path in args.paths:
                found = await rpc.call("files.stat", worksheet=worksheet["id"], path=path)
                if found.get("type") == "directory":
                    raise CliError(f"{path} is a folder: use `rm -r` to delete it", EXIT_SERVER)
        for path in args.paths:
            await rpc.call("files.delete", worksheet=worksheet["id"], path=path)
    return 0


def destination(dest: str | None, name: str) -> Path:
    """Where `get` writes file `name`: DEST, a file in DEST if it is a folder, else here."""
    path = Path(dest or name)
    return path / name if path.is_dir() else path


def local_file(source: str) -> Path:
    path = Path(source)
    if not path.is_file():
        raise CliError(f"{source}: not a file", EXIT_USAGE)
    return path


class ProgressLine:
    """One line on stderr, redrawn in place, saying how far a transfer is.

    Shown on a terminal once a transfer has run PROGRESS_AFTER seconds (short ones print
    nothing), or from the start with --progress; never with --quiet."""

    def __init__(self, printer: Printer, name: str, *, forced: bool, quiet: bool) -> None:
        self.printer = printer
        self.name = name
        self.shown = forced
        self.allowed = not quiet and (forced or printer.err.isatty())
        self.started = time.monotonic()
        self.drawn = 0.0

    def update(self, done: int, total: int) -> None:
        if not self.allowed:
            return
        now = time.monotonic()
        if not self.shown and now - self.started < PROGRESS_AFTER:
            return
        if now - self.drawn < PROGRESS_EVERY and done < total:
            return
        self.shown = True
        self.drawn = now
        percent = 100 * done // total if total else 100
        text = f"{self.name}: {percent:3d}%  {format_size(done)} of {format_size(total)}"
        self.printer.write(f"\r{text}  {self.rate(done, now)}\x1b[K", stderr=True)

    def done(self, size: int, what: str) -> None:
        """End the line: how much went, how fast (only where progress was shown)."""
        if not (self.allowed and self.shown):
            return
        now = time.monotonic()
        took = now - self.started
        summary = (
            f"{self.name}: {format_size(size)} {what} in {took:.1f} s ({self.rate(size, now)})"
        )
        self.printer.write(f"\r{summary}\x1b[K\n", stderr=True)

    def rate(self, done: int, now: float) -> str:
        seconds = now - self.started
        return f"{format_size(int(done / seconds))}/s" if seconds > 0 else ""


def format_size(n: int) -> str:
    """812 B, 1.4 MB, 12 GB: powers of 1024, as `ls -h` and the browser's files panel show."""
    size = float(n)
    for unit in UNITS:
        if size < 1024 or unit == UNITS[-1]:
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")  # pragma: no cover
