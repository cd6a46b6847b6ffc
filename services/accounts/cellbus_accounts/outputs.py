"""The outputs of one cell run, built from its feed messages, as a notebook would show them.

The accounts service saves a cell's outputs as nbformat v4 output dicts (the dicts a ``.ipynb``
file holds), so that a worksheet reopened later, or exported, shows what the person saw while
the cell ran. `CellOutputs` folds the feed messages of ONE execution into those dicts with the
rules of JupyterLab's output area (``@jupyterlab/outputarea``: ``OutputAreaModel.add`` and
``clear``, ``OutputArea._onIOPub`` and ``_onExecuteReply``), so the saved outputs are exactly
what a JupyterLab user would end up with:

- consecutive ``stream`` messages of the same name are one output (the texts appended); a
  stream after any other output, or of the other name, starts a new one;
- ``display_data``, ``execute_result`` and ``error`` each append an output;
- ``update_display_data`` replaces ``data`` and ``metadata`` of every earlier output of this
  run that showed the same ``transient.display_id``, and appends nothing;
- ``clear_output`` clears at once, or with ``wait=True`` at the next output that arrives (an
  ``update_display_data`` is not an arriving output: it updates what is still shown);
- ``execute_input``, ``execute_result`` and ``execute_reply`` set the execution count; a
  ``page`` payload of the reply (IPython's ``obj?``) is not an output: the person who ran the
  cell sees it in a help panel, and nothing of it is saved;
- everything else (``status``, ...) is ignored.

Stream text is kept raw (``\\r`` and backspaces are the renderer's business). It is kept as
a list of chunks while the stream is open and joined only when `CellOutputs.outputs` is read,
so that applying a cell's messages stays linear in their size, however much the cell prints.

The module is pure: no I/O, no clock; the caller decides when to save.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from cellbus_protocol.messages import (
    ClearOutput,
    Content,
    DisplayData,
    Error,
    ExecuteInput,
    ExecuteReply,
    ExecuteResult,
    Stream,
    UpdateDisplayData,
)

__all__ = ["CellOutputs", "text_of"]

Output = dict[str, Any]


def _copy(value: Any) -> Any:
    """A deep copy of JSON-like `value` in plain builtins (dicts, lists, str, numbers)."""
    return msgspec.to_builtins(value)


class CellOutputs:
    """The nbformat v4 outputs and execution count of one execution of a cell.

    Make one per execution (JupyterLab clears the output area when a run starts; so does the
    caller, by starting from ``CellOutputs()``), feed it the run's feed messages in order with
    `apply`, and save `outputs` and `execution_count` whenever `apply` returns True.

    To resume after a restart of the service, pass the saved `outputs` and `execution_count`:
    a trailing stream output goes on growing as before. Two things are not saved, as nbformat
    has no place for them and the saved outputs stay clean nbformat:

    - which outputs showed which ``display_id``: an ``update_display_data`` for a display
      shown before the restart is ignored (a display shown after it is updated as usual);
    - a pending ``clear_output(wait=True)``: the next output is appended to the old ones.

    Reading `outputs` or `current` costs time linear in the outputs' size (joining a stream's
    chunks, copying); the caller should read (save) at a bounded rate, not after every
    message of a chatty cell.
    """

    def __init__(
        self, outputs: list[Output] | None = None, execution_count: int | None = None
    ) -> None:
        self._outputs: list[Output] = []
        # The chunks of the last output while it is a stream that may still grow; its "text"
        # is brought up to date by `_flush`.
        self._chunks: list[str] | None = None
        self._display_ids: dict[str, list[int]] = {}
        self._clear_pending = False
        self._execution_count = execution_count
        for output in outputs or ():
            output = _copy(output)
            if output.get("output_type") != "stream":
                self._append(output)
                continue
            text = output.get("text", "")
            # nbformat allows a multiline string as a list of lines.
            output["text"] = text = "".join(text) if isinstance(text, list) else text
            if self._chunks is not None and self._outputs[-1]["name"] == output["name"]:
                self._chunks.append(text)  # as JupyterLab loads them: merged
            else:
                self._append(output)
                self._chunks = [text]

    @property
    def outputs(self) -> list[Output]:
        """The outputs, as nbformat v4 output dicts: a deep copy, safe to keep and to store."""
        self._flush()
        return [_copy(output) for output in self._outputs]

    def current(self) -> list[Output]:
        """The outputs as they stand, not copied (an open stream's chunks are joined): for a
        caller that stores them before the next `apply` changes them (the saver, which writes
        them at a bounded rate). `outputs` is the copy to keep."""
        self._flush()
        return self._outputs

    @property
    def execution_count(self) -> int | None:
        return self._execution_count

    def apply(self, msg_type: str, content: Content) -> bool:
        """Fold one feed message in; True if `outputs` or `execution_count` changed.

        `content` is the message's content struct from `cellbus_protocol.messages`; a
        `msg_type` it does not match is a TypeError. Unknown msg_types are ignored.
        """
        handler = self._HANDLERS.get(msg_type)
        if handler is None:
            return False
        expected, method = handler
        if not isinstance(content, expected):
            raise TypeError(
                f"{msg_type} needs a {expected.__name__} content, not {type(content).__name__}"
            )
        return method(self, content)

    # --- one method per msg_type ----------------------------------------------------------

    def _stream(self, content: Stream) -> bool:
        last = self._outputs[-1] if self._outputs else None
        if (
            not self._clear_pending
            and self._chunks is not None
            and last is not None
            and last["name"] == content.name
        ):
            if not content.text:
                return False
            self._chunks.append(content.text)
            return True
        self._append({"output_type": "stream", "name": content.name, "text": content.text})
        self._chunks = [content.text]
        return True

    def _display_data(self, content: DisplayData) -> bool:
        self._append(
            {
                "output_type": "display_data",
                "data": _copy(content.data),
                "metadata": _copy(content.metadata),
            }
        )
        display_id = content.transient.get("display_id")
        if display_id:
            self._display_ids.setdefault(display_id, []).append(len(self._outputs) - 1)
        return True

    def _update_display_data(self, content: UpdateDisplayData) -> bool:
        targets = self._display_ids.get(content.transient.get("display_id") or "")
        if not targets:
            return False
        changed = False
        for index in targets:
            old = self._outputs[index]
            if old["data"] != content.data or old["metadata"] != content.metadata:
                self._outputs[index] = {
                    "output_type": "display_data",
                    "data": _copy(content.data),
                    "metadata": _copy(content.metadata),
                }
                changed = True
        return changed

    def _execute_result(self, content: ExecuteResult) -> bool:
        self._set_execution_count(content.execution_count)
        self._append(
            {
                "output_type": "execute_result",
                "data": _copy(content.data),
                "metadata": _copy(content.metadata),
                "execution_count": content.execution_count,
            }
        )
        return True

    def _error(self, content: Error) -> bool:
        self._append(
            {
                "output_type": "error",
                "ename": content.ename,
                "evalue": content.evalue,
                "traceback": list(content.traceback),
            }
        )
        return True

    def _clear_output(self, content: ClearOutput) -> bool:
        if content.wait:
            self._clear_pending = True
            return False
        self._clear_pending = False
        had_outputs = bool(self._outputs)
        self._clear()
        return had_outputs

    def _execute_input(self, content: ExecuteInput) -> bool:
        return self._set_execution_count(content.execution_count)

    def _execute_reply(self, content: ExecuteReply) -> bool:
        return self._set_execution_count(content.execution_count)

    _HANDLERS: dict[str, tuple[type[Content], Callable[[CellOutputs, Any], bool]]] = {
        "stream": (Stream, _stream),
        "display_data": (DisplayData, _display_data),
        "update_display_data": (UpdateDisplayData, _update_display_data),
        "execute_result": (ExecuteResult, _execute_result),
        "error": (Error, _error),
        "clear_output": (ClearOutput, _clear_output),
        "execute_input": (ExecuteInput, _execute_input),
        "execute_reply": (ExecuteReply, _execute_reply),
    }

    # --- helpers --------------------------------------------------------------------------

    def _append(self, output: Output) -> None:
        """Add a new output (not a merge), doing a pending ``clear_output(wait=True)`` first."""
        if self._clear_pending:
            self._clear_pending = False
            self._clear()
        self._flush()
        self._chunks = None
        self._outputs.append(output)

    def _clear(self) -> None:
        self._outputs.clear()
        self._chunks = None
        self._display_ids.clear()

    def _flush(self) -> None:
        """Bring the open stream output's text up to date with its chunks."""
        if self._chunks is not None and len(self._chunks) > 1:
            text = "".join(self._chunks)
            self._chunks[:] = [text]
            self._outputs[-1]["text"] = text

    def _set_execution_count(self, count: int | None) -> bool:
        if count is None or count == self._execution_count:
            return False
        self._execution_count = count
        return True


def text_of(outputs: Iterable[Output]) -> str:
    """The text of every stream output in `outputs`, concatenated in order."""
    return "".join(o["text"] for o in outputs if o.get("output_type") == "stream")
