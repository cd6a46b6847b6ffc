"""Comms in a session process: ipywidgets and every library that speaks Jupyter's comms.

The ``comm`` package is how kernels provide comms to libraries: a kernel replaces
``comm.create_comm`` and ``comm.get_comm_manager`` (as ipykernel does), and libraries such as
ipywidgets call them. Here a comm publishes its ``comm_open``, ``comm_msg`` and ``comm_close``
as outputs of whatever request is being served (an execution, or a client's comm message),
which the worker puts on the feed; what clients send (`frames.CommIn`) is handed to the
manager in the main thread, between executions, as ipykernel's shell channel does.

Binary buffers (``buffers``) are not carried: the feed has none. Widgets whose state holds
bytes (an ``Image``'s value) show without those bytes.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import comm
from comm.base_comm import BaseComm, BuffersType, CommManager, MaybeDict

from . import frames

Send = Any
"""The channel's ``send(msg_type, content)`` (see child._Channel)."""


class ServedRequest:
    """What ipywidgets asks of a comm's ``kernel``: the request being served
    (``get_parent``). An ``Output`` widget takes its ``msg_id``, and widget managers then show
    the outputs of that request (an execution, or the comm message running an ``interact``
    callback) inside the widget instead of under the cell."""

    def get_parent(self) -> dict[str, Any]:
        msg_id = getattr(FeedComm.channel, "parent_id", "")
        return {"header": {"msg_id": msg_id}} if msg_id else {}


class FeedComm(BaseComm):
    """A comm whose messages go to the feed through the session's output channel."""

    channel: Send = None
    kernel = ServedRequest()

    def publish_msg(
        self,
        msg_type: str,
        data: MaybeDict = None,
        metadata: MaybeDict = None,
        buffers: BuffersType = None,
        **keys: Any,
    ) -> None:
        if FeedComm.channel is None:
            return
        content = {"comm_id": self.comm_id, "data": {} if data is None else data, **keys}
        if msg_type == "comm_open" and content.get("target_module") is None:
            content.pop("target_module", None)
        # The message's metadata goes along: ipywidgets puts its protocol version there, which
        # widget managers check before they show a widget.
        FeedComm.channel.send(msg_type, content, metadata)


MANAGER = CommManager()
# What the manager logs (a comm for an unknown target, a handler that failed) is the
# kernel's business, as in ipykernel: not printed into the outputs of whoever sent it.
logging.getLogger("Comm").addHandler(logging.NullHandler())
logging.getLogger("Comm").propagate = False


def _create_comm(*args: Any, **kwargs: Any) -> BaseComm:
    return FeedComm(*args, **kwargs)


def _get_comm_manager() -> CommManager:
    return MANAGER


def install(channel: Send) -> None:
    """Make ``comm.create_comm`` and ``comm.get_comm_manager`` this kernel's (their public
    seam), publishing through `channel`."""
    FeedComm.channel = channel
    comm.create_comm = _create_comm
    comm.get_comm_manager = _get_comm_manager


HANDLERS = {
    "comm_open": MANAGER.comm_open,
    "comm_msg": MANAGER.comm_msg,
    "comm_close": MANAGER.comm_close,
}


def handle(frame: frames.CommIn) -> None:
    """Hand a client's comm message to the manager, as a Jupyter message (handlers read
    ``content``, ``header``, ``metadata`` and ``buffers``). A failing handler is the
    manager's to report (it logs, ipywidgets shows a traceback)."""
    handler = HANDLERS.get(frame.msg_type)
    if handler is None:
        return
    msg = {
        "header": {**frame.header, "msg_id": frame.id, "msg_type": frame.msg_type},
        "msg_id": frame.id,
        "msg_type": frame.msg_type,
        "parent_header": {},
        "metadata": {},
        "content": frame.content,
        "buffers": [],
    }
    handler(None, None, msg)  # type: ignore[arg-type]  # no ZMQ stream or ident here


def info(target_name: str | None) -> dict[str, Any]:
    """A ``comm_info_reply``: the open comms, of one target if `target_name` is given."""
    comms = {
        comm_id: {"target_name": c.target_name}
        for comm_id, c in list(MANAGER.comms.items())
        if target_name is None or c.target_name == target_name
    }
    return {"status": "ok", "comms": comms}


def preload_widgets() -> None:
    """Import ipywidgets in the template, after `install`: it registers its comm targets
    (``jupyter.widget``, and ``jupyter.widget.control``, which JupyterLab opens to restore
    widgets) with this manager. Measured (docs/performance.md): an idle session costs
    ~0.1 MiB more, one that makes a widget ~3.5 MiB less than importing it itself."""
    importlib.import_module("ipywidgets")


def widget_state() -> dict[str, Any]:
    """The ipywidgets manager state (``application/vnd.jupyter.widget-state+json``), empty
    when the session has no widget."""
    ipywidgets = sys.modules.get("ipywidgets")
    if ipywidgets is None:
        return {"status": "ok", "state": {}}
    for _ in range(3):  # the main thread may be making a widget meanwhile: look again
        try:
            state: dict[str, Any] = ipywidgets.Widget.get_manager_state(drop_defaults=True)
        except RuntimeError:  # "dictionary changed size during iteration"
            continue
        return {"status": "ok", "state": state if state.get("state") else {}}
    return {"status": "error", "ename": "Busy", "evalue": "widgets kept changing"}
