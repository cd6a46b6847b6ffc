"""WORKSHEET and SESSION arguments, resolved against `worksheet.list`.

WORKSHEET is a worksheet id, a unique id prefix of at least 4 characters, or an exact title.
An exact id wins; otherwise prefix and title matches together must be exactly one worksheet
(none: `NoMatch`, exit 1; several: a `CliError` listing them, exit 2). SESSION is a session id
or anything WORKSHEET accepts, which stands for that worksheet's session; a session id (32
hex digits) that is no worksheet's of the caller's is passed on as it is, and the server judges
it; anything else that matches no worksheet is `NoMatch`, naming what the user typed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .client import RpcClient
from .errors import EXIT_USAGE, CliError, NoMatch
from .render import short_id

MIN_PREFIX = 4
SESSION_ID = re.compile(r"[0-9a-f]{32}")
"""What a session id looks like (a random UUID's hex): anything else is a worksheet reference."""
MAX_LISTED = 10


def pick_worksheet(worksheets: Sequence[dict[str, Any]], ref: str) -> dict[str, Any]:
    """The one worksheet `ref` names among `worksheets`."""
    for worksheet in worksheets:
        if worksheet.get("id") == ref:
            return worksheet
    matches = [
        worksheet
        for worksheet in worksheets
        if worksheet.get("title") == ref
        or (len(ref) >= MIN_PREFIX and str(worksheet.get("id", "")).startswith(ref))
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        hint = f" (an id prefix needs {MIN_PREFIX} characters)" if len(ref) < MIN_PREFIX else ""
        raise NoMatch(f"no worksheet matches {ref!r}{hint}")
    listed = ", ".join(f"{short_id(w.get('id'))} {w.get('title')!r}" for w in matches[:MAX_LISTED])
    more = f" and {len(matches) - MAX_LISTED} more" if len(matches) > MAX_LISTED else ""
    raise CliError(f"{ref!r} matches {len(matches)} worksheets: {listed}{more}", EXIT_USAGE)


def pick_session(worksheets: Sequence[dict[str, Any]], ref: str) -> str:
    """The session `ref` names: a worksheet's session, or `ref` itself as a session id."""
    for worksheet in worksheets:
        if worksheet.get("session") == ref:
            return ref
    try:
        worksheet = pick_worksheet(worksheets, ref)
    except NoMatch as error:
        if SESSION_ID.fullmatch(ref):
            return ref  # not one of the caller's worksheets' sessions: the server judges it
        raise NoMatch(
            str(error).replace("no worksheet matches", "no worksheet or session matches")
        ) from None
    session = worksheet.get("session")
    if not session:
        raise CliError(f"worksheet {short_id(worksheet.get('id'))} has no session", 1)
    return str(session)


async def resolve_worksheet(rpc: RpcClient, ref: str) -> dict[str, Any]:
    return pick_worksheet(await rpc.call("worksheet.list"), ref)


async def resolve_session(rpc: RpcClient, ref: str) -> str:
    return pick_session(await rpc.call("worksheet.list"), ref)
