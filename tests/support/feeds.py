"""Waiting for what a user would see on a feed: the messages of one request, until its end."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypedDict, Unpack

from cellbus_protocol import codec, keys
from cellbus_protocol.bus import Bus
from cellbus_protocol.envelope import Message
from cellbus_protocol.kernel_client import KernelClient
from cellbus_protocol.messages import FeedState, state_of

FEED_TIMEOUT = 30.0


class ExecuteOptions(TypedDict, total=False):
    """`KernelClient.execute`'s options, as `run_code` passes them on."""

    silent: bool
    store_history: bool
    stop_on_error: bool
    cell_id: str | None
    user_expressions: dict[str, str] | None
    allow_stdin: bool


@dataclass
class Run:
    """Everything the feed said about one execute_request."""

    request: Message
    messages: list[Message] = field(default_factory=list)

    def of_type(self, *msg_types: str) -> list[Message]:
        return [msg for msg in self.messages if msg.msg_type in msg_types]

    @property
    def reply(self) -> Message:
        (reply,) = self.of_type("execute_reply")
        return reply

    @property
    def stdout(self) -> str:
        return "".join(m.content.text for m in self.of_type("stream") if m.content.name == "stdout")

    @property
    def stderr(self) -> str:
        return "".join(m.content.text for m in self.of_type("stream") if m.content.name == "stderr")

    @property
    def types(self) -> list[str]:
        return [msg.msg_type for msg in self.messages]


def is_end_of(msg: Message, request: Message) -> bool:
    """The message that ends a request: ``idle`` after its reply, or ``dead``."""
    ends = state_of(msg.content) in ("idle", "dead")
    return ends and msg.parent_header.msg_id == request.msg_id


async def collect(
    bus: Bus,
    request: Message,
    after: int = 0,
    *,
    until_reply: bool = False,
    timeout: float = FEED_TIMEOUT,
) -> Run:
    """The feed messages caused by `request`, up to the status that ends it (or up to its
    execute_reply with `until_reply`, for executions that end without a status: aborted ones,
    or one cut short by a restart)."""
    run = Run(request)
    seen_reply = False
    async with await bus.subscribe(keys.feed(request.session), after) as subscription:
        async with asyncio.timeout(timeout):
            async for entry in subscription:
                msg = codec.decode(entry.data)
                if msg.parent_header.msg_id != request.msg_id:
                    continue
                run.messages.append(msg)
                seen_reply = seen_reply or msg.msg_type == "execute_reply"
                if until_reply and seen_reply:
                    return run
                ended = is_end_of(msg, request)
                if ended and (seen_reply or state_of(msg.content) == "dead"):
                    return run
    raise AssertionError("unreachable")


async def run_code(
    client: KernelClient, session: str, code: str, **options: Unpack[ExecuteOptions]
) -> Run:
    """Execute `code` and return what the feed said about it."""
    after = await client.bus.last_seq(keys.feed(session))
    request = await client.execute(session, code, **options)
    return await collect(client.bus, request, after)


async def first_message(
    bus: Bus, session: str, after: int, matches: Callable[[Message], bool]
) -> tuple[int, Message]:
    """The first message on the session's feed after `after` for which `matches` is true."""
    async with await bus.subscribe(keys.feed(session), after) as subscription:
        async with asyncio.timeout(FEED_TIMEOUT):
            async for entry in subscription:
                msg = codec.decode(entry.data)
                if matches(msg):
                    return entry.seq, msg
    raise AssertionError("unreachable")


async def wait_for_state(bus: Bus, session: str, state: FeedState, after: int = 0) -> int:
    """The seq of the first ``status`` or ``session_state`` `state` on the feed after `after`."""

    def is_state(msg: Message) -> bool:
        return state_of(msg.content) == state

    seq, _ = await first_message(bus, session, after, is_state)
    return seq


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def strip_ansi(text: str) -> str:
    """`text` without the terminal colours of IPython's tracebacks."""
    return _ANSI.sub("", text)
