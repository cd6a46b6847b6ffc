"""Questions a session process answers at once, even while a cell runs (its reader thread):
completion, inspection, whether code is complete, history, open comms, widget state.

Each answer is the content of the Jupyter reply, as ipykernel gives it; a question that
fails is answered with status ``error``, never by an exception in the reader thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from IPython.core.completer import provisionalcompleter, rectify_completions
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.tokenutil import token_at_cursor

from . import comms, frames

HISTORY_KEPT = 1000
"""The most inputs a checkpoint keeps of a session's history (the latest ones)."""


def answer(shell: InteractiveShell, question: frames.Question) -> dict[str, Any]:
    """The reply content for `question`."""
    handler: Callable[[InteractiveShell, Any], dict[str, Any]] = _HANDLERS[type(question)]
    try:
        return handler(shell, question)
    except Exception as exc:
        return {"status": "error", "ename": type(exc).__name__, "evalue": str(exc)}


def complete(shell: InteractiveShell, request: frames.Complete) -> dict[str, Any]:
    """Completions as ipykernel gives them: IPython's completions over the whole cell,
    rectified to one common range (the legacy ``shell.complete`` loses matches after a dot)."""
    code = request.code
    cursor_pos = min(max(request.cursor_pos, 0), len(code))
    with provisionalcompleter():
        found = list(rectify_completions(code, shell.Completer.completions(code, cursor_pos)))
    start, end = (found[0].start, found[0].end) if found else (cursor_pos, cursor_pos)
    return {
        "status": "ok",
        "matches": [c.text for c in found],
        "cursor_start": start,
        "cursor_end": end,
        "metadata": {
            "_jupyter_types_experimental": [
                {"start": c.start, "end": c.end, "text": c.text, "type": c.type} for c in found
            ]
        },
    }


def inspect(shell: InteractiveShell, request: frames.Inspect) -> dict[str, Any]:
    cursor_pos = min(max(request.cursor_pos, 0), len(request.code))
    name = token_at_cursor(request.code, cursor_pos)
    try:
        bundle = shell.object_inspect_mime(name, detail_level=request.detail_level)
    except KeyError:
        return {"status": "ok", "found": False, "data": {}, "metadata": {}}
    return {"status": "ok", "found": True, "data": bundle, "metadata": {}}


def is_complete(shell: InteractiveShell, request: frames.IsComplete) -> dict[str, Any]:
    """IPython's own judgement (its input transformers know magics and ``?``)."""
    status, indent = shell.input_transformer_manager.check_complete(request.code)
    if status == "incomplete":
        return {"status": status, "indent": " " * (indent or 0)}
    return {"status": status, "indent": ""}


def history(shell: InteractiveShell, request: frames.History) -> dict[str, Any]:
    """IPython's history (in memory, per session), as ipykernel's ``do_history``."""
    manager = shell.history_manager
    assert manager is not None  # prepare_shell turns it on
    raw, output = request.raw, request.output
    found: Any
    if request.hist_access_type == "tail":
        found = manager.get_tail(request.n, raw=raw, output=output, include_latest=True)
    elif request.hist_access_type == "range":
        found = manager.get_range(request.session, request.start, request.stop, raw, output)
    elif request.hist_access_type == "search":
        found = manager.search(
            request.pattern, raw=raw, output=output, n=request.n, unique=request.unique
        )
    else:
        found = []
    return {"status": "ok", "history": [list(entry) for entry in found]}


def kept_history(shell: InteractiveShell) -> list[frames.HistoryEntry]:
    """The session's inputs to save with its namespace: the latest `HISTORY_KEPT`."""
    manager = shell.history_manager
    if manager is None:
        return []
    parsed, raw = manager.input_hist_parsed, manager.input_hist_raw
    first = max(1, len(parsed) - HISTORY_KEPT)
    return [(line, parsed[line], raw[line]) for line in range(first, min(len(parsed), len(raw)))]


def restore_history(shell: InteractiveShell, entries: list[frames.HistoryEntry]) -> None:
    """Put a checkpoint's inputs back, at their execution counts (for ``In``, ``_i3``,
    ``%history`` and ``history_request``), as if this process had run them."""
    manager = shell.history_manager
    if manager is None or not entries:
        return
    last = max(line for line, _, _ in entries)
    parsed, raw = [""] * (last + 1), [""] * (last + 1)
    for line, source, source_raw in entries:
        if line > 0:
            parsed[line], raw[line] = source, source_raw
    manager.input_hist_parsed[:] = parsed
    manager.input_hist_raw[:] = raw
    with manager.db_input_cache_lock:
        manager.db_input_cache.extend((line, src, src_raw) for line, src, src_raw in entries)
    manager.writeout_cache()


def comm_info(shell: InteractiveShell, request: frames.CommInfo) -> dict[str, Any]:
    return comms.info(request.target_name)


def widget_state(shell: InteractiveShell, request: frames.WidgetState) -> dict[str, Any]:
    return comms.widget_state()


_HANDLERS: dict[type, Callable[[InteractiveShell, Any], dict[str, Any]]] = {
    frames.Complete: complete,
    frames.Inspect: inspect,
    frames.IsComplete: is_complete,
    frames.History: history,
    frames.CommInfo: comm_info,
    frames.WidgetState: widget_state,
}
