"""Feed messages and saved outputs, as text for a terminal.

Pure functions: each returns a `Rendered` (or None for what is not shown) and never writes;
`terminal.Printer` writes them. `render_message` takes a Jupyter feed message; `render_output`
a saved nbformat v4 output, which has the same fields under `output_type`.

A MIME bundle is shown as the first of: text/markdown as is; a placeholder with the size for a
binary type (`[image/png 12.3 kB]`: images, PDF, ...); text/plain; `[text/html]`; JSON, pretty;
text/latex as is; a placeholder for anything else. Markdown and images come before text/plain
because their text/plain is only a repr (`<IPython.core.display.Markdown object>`,
`<Figure size 640x480 with 1 Axes>`). `follow=True` is the view of someone watching a session
(`cellbus tail`, other people's runs in `cellbus repl`): it adds who ran what and the worksheet
events; without it only the outputs of one's own request are shown.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

RULE = "──"
BOLD = "\x1b[1m"
DIM = "\x1b[2m"
RESET = "\x1b[0m"
BINARY_PREFIXES = ("image/", "audio/", "video/")
BINARY_TYPES = frozenset({"application/pdf", "application/octet-stream"})
PREFERRED_BINARY = ("image/png", "image/jpeg", "image/gif", "image/svg+xml")


@dataclass(frozen=True)
class Rendered:
    """Text to write. `inline`: stream text, written exactly as it came; otherwise a block that
    starts on a fresh line and ends with a newline. `stderr`: goes to standard error."""

    text: str
    stderr: bool = False
    inline: bool = False


def render_message(
    message: Mapping[str, Any], *, follow: bool = False, out_prompt: bool = False
) -> Rendered | None:
    """A Jupyter feed message (or a cellbus worksheet event) as terminal text."""
    header = message.get("header") or {}
    msg_type = str(header.get("msg_type") or message.get("msg_type") or "")
    content = message.get("content") or {}
    who = str(header.get("username") or "someone")
    if msg_type == "execute_input":
        return _execute_input(who, content) if follow else None
    if msg_type == "status":  # busy, idle, starting: nothing to show
        return None
    if msg_type == "session_state":
        return _session_state(content, follow=follow)
    if msg_type == "execute_reply":
        if content.get("status") == "aborted":
            return Rendered(f"{RULE} aborted", stderr=True)
        return None
    event = describe_event(msg_type, who, content)
    if event is not None:
        return Rendered(f"{DIM}{RULE} {event}{RESET}") if follow else None
    return render_content(msg_type, content, out_prompt=out_prompt)


def render_output(output: Mapping[str, Any]) -> Rendered | None:
    """A saved nbformat v4 output (as on a cell) as terminal text."""
    return render_content(str(output.get("output_type") or ""), output)


def render_content(
    kind: str, content: Mapping[str, Any], *, out_prompt: bool = False
) -> Rendered | None:
    """An output by its msg_type / output_type: stream, display data, result or error."""
    if kind == "stream":
        text = _text(content.get("text"))
        return Rendered(text, stderr=content.get("name") == "stderr", inline=True) if text else None
    if kind in ("display_data", "update_display_data"):
        return Rendered(bundle_text(content.get("data") or {}))
    if kind == "execute_result":
        text = bundle_text(content.get("data") or {})
        count = content.get("execution_count")
        if out_prompt and count is not None:
            text = f"Out[{count}]: " + ("\n" + text if "\n" in text else text)
        return Rendered(text)
    if kind == "error":
        return Rendered(error_text(content))
    return None  # clear_output, and anything not known, show nothing


def bundle_text(data: Mapping[str, Any]) -> str:
    """The one representation of a MIME bundle that a terminal shows (see the module doc)."""
    if "text/markdown" in data:
        return _text(data["text/markdown"])
    binary = [mime for mime in PREFERRED_BINARY if mime in data]
    binary += [mime for mime in data if is_binary(mime)]
    if binary:
        mime = binary[0]
        return f"[{mime} {format_size(payload_size(mime, data[mime]))}]"
    if "text/plain" in data:
        return _text(data["text/plain"])
    if "text/html" in data:
        return "[text/html]"
    if "application/json" in data:
        return json.dumps(data["application/json"], indent=2, ensure_ascii=False)
    if "text/latex" in data:
        return _text(data["text/latex"])
    return " ".join(f"[{mime}]" for mime in data) or "[empty output]"


def error_text(content: Mapping[str, Any]) -> str:
    """An error's traceback (ANSI colours kept), or "ename: evalue" when it has none."""
    traceback = content.get("traceback")
    if isinstance(traceback, list) and traceback:
        return "\n".join(str(line) for line in traceback)
    return f"{content.get('ename', 'Error')}: {content.get('evalue', '')}"


def describe_event(msg_type: str, who: str, content: Mapping[str, Any]) -> str | None:
    """A worksheet event as a sentence ("alice renamed the worksheet to 'Orbits'"); None for
    other types. Edits of the worksheet's document (``doc_update``, one per keystroke in a
    browser) are not told: `cellbus show` prints the worksheet as it is."""
    if msg_type == "worksheet_renamed":
        return f"{who} renamed the worksheet to {content.get('title')!r}"
    if msg_type == "input_request":  # the one asked is prompted (`stdin`), others are told
        return f"{who} is asked for input: {content.get('prompt')!r}"
    if msg_type == "worksheet_shared":
        user, role = content.get("username"), content.get("role")
        if role == "none":
            return f"{who} removed {user} from the worksheet"
        return f"{who} shared the worksheet with {user} as {role}"
    if msg_type == "outputs_cleared":
        cells = content.get("cells")
        count = len(cells) if isinstance(cells, list) else 0
        return f"{who} cleared the outputs of {count} cell{'' if count == 1 else 's'}"
    return None


def is_binary(mime: str) -> bool:
    return mime.startswith(BINARY_PREFIXES) or mime in BINARY_TYPES


def payload_size(mime: str, value: Any) -> int:
    """The size in bytes of a bundle value: base64 decoded, except for SVG (text)."""
    text = _text(value)
    if mime == "image/svg+xml" or not isinstance(value, str | list):
        return len(text.encode("utf-8"))
    b64 = "".join(text.split())
    return max(0, len(b64) * 3 // 4 - b64.count("=", -2))


def format_size(size: int) -> str:
    """12 B, 12.3 kB, 1.2 MB (decimal units)."""
    if size < 1000:
        return f"{size} B"
    if size < 1_000_000:
        return f"{size / 1000:.1f} kB"
    return f"{size / 1_000_000:.1f} MB"


def short_id(value: object) -> str:
    return str(value)[:8] if value else "?"


def cell_heading(cell: Mapping[str, Any]) -> str:
    """A cell's source after its "[n]" (its execution count, blank if never run)."""
    count = cell.get("execution_count")
    prefix = f"[{count if count is not None else ' '}]"
    lines = _text(cell.get("source")).split("\n") or [""]
    indent = " " * (len(prefix) + 1)
    body = ("\n" + indent).join(lines)
    return f"{BOLD}{prefix}{RESET} {body}".rstrip()


def _execute_input(who: str, content: Mapping[str, Any]) -> Rendered:
    count = content.get("execution_count")
    label = f" [{count}]" if count is not None else ""
    code = _text(content.get("code")).rstrip("\n")
    return Rendered(f"{BOLD}{RULE} {who} runs{label}:{RESET}\n{code}")


def _session_state(content: Mapping[str, Any], *, follow: bool) -> Rendered | None:
    """cellbus's ``session_state``: a death is told always, a restart to followers; the
    others (hibernated, restoring) happen on their own and need no attention."""
    state = content.get("state")
    reason = content.get("reason")
    if state == "dead":
        return Rendered(f"{RULE} the session died" + (f": {reason}" if reason else ""), stderr=True)
    if follow and state == "restarting":
        return Rendered(f"{DIM}{RULE} the session is restarting{RESET}")
    return None


def _text(value: Any) -> str:
    """nbformat allows multi-line strings as lists of lines; join them."""
    if isinstance(value, list):
        return "".join(str(part) for part in value)
    return "" if value is None else str(value)


def format_time(value: Any) -> str:
    """A timestamp (ISO 8601 text or seconds since the epoch) as local "YYYY-MM-DD HH:MM"."""
    try:
        if isinstance(value, int | float):
            moment = datetime.fromtimestamp(value).astimezone()
        elif isinstance(value, str) and value:
            moment = datetime.fromisoformat(value).astimezone()
        else:
            return ""
    except (ValueError, OverflowError, OSError):
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M")


def format_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Rows under a header, in columns two spaces apart; the last column is not padded."""
    table = [list(header)] + [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = []
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def owner_name(owner: Any) -> str:
    """A worksheet's owner, whether the server sends a user name or a user object."""
    if isinstance(owner, Mapping):
        return str(owner.get("username") or owner.get("id") or "")
    return "" if owner is None else str(owner)
