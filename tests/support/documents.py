"""A test's own copy of a worksheet's document, built from what a client receives.

It reads the document the way a client would: from ``doc_update`` feed messages (as JSON
from the API's WebSocket, or decoded from the bus) and from ``doc_state`` answers, applied
to a pycrdt document; `cells` reads it with the accounts service's own schema reader.
"""

from __future__ import annotations

import base64
from typing import Any

from cellbus_accounts.notebook_doc import CellContent, NotebookDoc
from cellbus_protocol import messages as m
from cellbus_protocol.envelope import Message


class Replica:
    """A document made only of the updates given to it."""

    def __init__(self) -> None:
        self.notebook = NotebookDoc()

    def apply(self, update: bytes | str) -> None:
        """Apply an update, as bytes or base64 (as JSON carries it)."""
        self.notebook.doc.apply_update(
            base64.b64decode(update) if isinstance(update, str) else update
        )

    def take(self, messages: list[dict[str, Any]] | list[Message]) -> None:
        """Apply every ``doc_update`` among feed messages (JSON dicts or decoded)."""
        for message in messages:
            if isinstance(message, Message):
                if isinstance(message.content, m.DocUpdate):
                    self.apply(message.content.update)
            elif message["header"]["msg_type"] == "doc_update":
                self.apply(message["content"]["update"])

    @property
    def cells(self) -> list[CellContent]:
        return self.notebook.read_cells()

    @property
    def sources(self) -> list[str]:
        return [cell.source for cell in self.cells]
