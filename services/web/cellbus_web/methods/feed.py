"""``feed.*``: reading a session's feed without a WebSocket (long-poll)."""

from __future__ import annotations

from typing import Any

import msgspec

from cellbus_protocol import keys
from cellbus_protocol.bus.catch_up import PAGE

from ..backend import backend_of, require_role
from ..rpc import INVALID_PARAMS, Api, Call, RpcError


class FeedPage(msgspec.Struct, kw_only=True):
    messages: list[dict[str, Any]]  # Jupyter messages, oldest first
    cursor: int  # the cursor of the last message returned (`since` when none); pass it back


class FeedCursor(msgspec.Struct, kw_only=True):
    cursor: int


def register(api: Api) -> None:
    api.method("feed.poll")(feed_poll)
    api.method("feed.cursor")(feed_cursor)


async def feed_poll(
    call: Call, session: str, since: int | None = None, timeout: float = 0.0
) -> FeedPage:
    """Messages of the session's feed after cursor `since` (null: from the oldest retained),
    at most 1000. Returns at once when there are some; else waits up to `timeout` seconds
    (at most the server's limit, 60 by default) for the next one."""
    await require_role(call, session, "viewer")
    backend = backend_of(call)
    if (since is not None and since < 0) or timeout < 0:
        raise RpcError(INVALID_PARAMS, "since and timeout cannot be negative")
    after = since or 0
    entries = await backend.bus.read_feed(keys.feed(session), after, PAGE)
    if not entries and timeout > 0:
        wait = min(timeout, backend.settings.poll_timeout_max)
        entries = await backend.hub.wait(session, after, wait)
    messages = [msgspec.json.decode(entry.data) for entry in entries]
    return FeedPage(messages=messages, cursor=entries[-1].seq if entries else after)


async def feed_cursor(call: Call, session: str) -> FeedCursor:
    """The cursor of the newest message of the session's feed (0 if it has none): pass it
    as `since` or as a WebSocket subscription's cursor to see only what comes next."""
    await require_role(call, session, "viewer")
    return FeedCursor(cursor=await backend_of(call).bus.last_seq(keys.feed(session)))
