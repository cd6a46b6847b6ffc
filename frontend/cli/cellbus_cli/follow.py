"""Following a session's feed: one request's outputs until its `idle`, or everything (tail).

`follow_request` reads the feed after a request was sent and shows the messages whose
`parent_header.msg_id` is the request's, until that request's `status: idle` (or `dead`);
other people's messages on the same session are skipped. The feed was subscribed before the
request was sent (at the cursor `feed.cursor` gave, or "now"), so nothing is missed, and the
`FeedSocket` buffers whatever arrived meanwhile. `follow_all` shows every message, with who ran
what, for `cellbus tail`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .feed import FeedSocket
from .render import render_message
from .terminal import Printer


@dataclass
class Outcome:
    """How a request ended: whether it failed, and the first error's name."""

    failed: bool = False
    error: str | None = None
    execution_count: int | None = None

    def fail(self, error: str) -> None:
        if not self.failed:
            self.failed, self.error = True, error


def msg_type(message: dict[str, Any]) -> str:
    return str((message.get("header") or {}).get("msg_type") or "")


def state_of(message: dict[str, Any]) -> str | None:
    """The session state `message` announces: a ``status``'s ``execution_state`` (busy,
    idle, starting) or a cellbus ``session_state``'s ``state`` (dead, restarting,
    hibernated, restoring); None for any other message."""
    content = message.get("content") or {}
    field = {"status": "execution_state", "session_state": "state"}.get(msg_type(message))
    if field is None or not content.get(field):
        return None
    return str(content[field])


def parent_id(message: dict[str, Any]) -> str | None:
    parent = message.get("parent_header") or {}
    return parent.get("msg_id") or None


def note_outcome(outcome: Outcome, message: dict[str, Any]) -> bool:
    """Record what `message` says about its request; True when it is the request's last one."""
    kind = msg_type(message)
    content = message.get("content") or {}
    if kind == "error":
        outcome.fail(f"{content.get('ename', 'Error')}: {content.get('evalue', '')}".strip())
    elif kind in ("execute_reply", "execute_result", "execute_input"):
        if content.get("execution_count") is not None:
            outcome.execution_count = content["execution_count"]
        if kind == "execute_reply" and content.get("status") == "error":
            outcome.fail(f"{content.get('ename', 'Error')}: {content.get('evalue', '')}".strip())
        elif kind == "execute_reply" and content.get("status") == "aborted":
            outcome.fail("aborted")
    elif state_of(message) == "dead":
        reason = content.get("reason")
        outcome.fail("the session died" + (f": {reason}" if reason else ""))
        return True
    return state_of(message) == "idle"


Answer = Callable[[dict[str, Any]], Awaitable[None]]
"""Prompts for and sends the line an ``input_request`` asks for (`stdin.answer_input`)."""


async def follow_request(
    feed: FeedSocket, msg_id: str, printer: Printer, answer: Answer | None = None
) -> Outcome:
    """Show the outputs of request `msg_id` as they come; return once it is idle. With
    `answer`, its ``input_request`` (asked of whoever sent it: this user) is answered."""
    outcome = Outcome()
    while True:
        event = await feed.next()
        if parent_id(event.message) != msg_id:
            continue
        if answer is not None and msg_type(event.message) == "input_request":
            await answer(event.message)
            continue
        printer.show(render_message(event.message))
        if note_outcome(outcome, event.message):
            return outcome


async def follow_all(feed: FeedSocket, printer: Printer) -> None:
    """Show everything on the subscribed feeds, for someone watching; returns only on error."""
    while True:
        event = await feed.next()
        printer.show(render_message(event.message, follow=True))
