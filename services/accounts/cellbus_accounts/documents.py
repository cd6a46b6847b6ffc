"""Worksheets' documents: the one place they change, in step with their history.

The database is the one source of truth (`store.documents`): an update is committed there,
then published on the worksheet's session feed (``doc_update``), then acknowledged. This
module keeps a copy of recently used documents in memory so that an edit does not reload its
document, and keeps that copy honest:

- every change to a document happens under its lock, after reading any updates another
  accounts process committed meanwhile (`_catch_up`), and is committed as the next number of
  the document's history; if another process took that number first, the copy catches up and
  the commit is tried again (updates commute, so the order of commits does not matter to the
  result);
- a change whose commit fails is not kept: the copy is dropped, and the next use reloads the
  document from the database. A Yjs document cannot take an update back, so this is the only
  way for memory never to hold what the database does not;
- a document is never rebuilt from another representation while its history exists (how the
  peer duplicated cells): the conversion of a worksheet from the old ``cells`` rows happens
  once, as the document's first update, under the same lock and only if it has no history.

Every `SNAPSHOT_EVERY` updates the whole document is written as a snapshot, so loading reads
one snapshot and at most that many updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pycrdt import merge_updates

from cellbus_protocol import codec, keys
from cellbus_protocol import messages as m
from cellbus_protocol.bus import Bus
from cellbus_protocol.envelope import new_message
from cellbus_protocol.views import DocState

from .notebook_doc import CellContent, NotebookDoc, changed_cells, repeated_copies
from .store import Store

log = logging.getLogger(__name__)

T = TypeVar("T")

SERVICE_NAME = "cellbus"
"""The author of the service's own edits on the feed (a run's execution count, conversions)."""
MARKDOWN_MAGIC = "%%markdown"
"""How the old cells held a Markdown cell: its first line. The conversion makes them real
Markdown cells."""
SNAPSHOT_EVERY = 200
MAX_LOADED = 500
COMMIT_ATTEMPTS = 5


class WorksheetRef(Protocol):
    """What a document needs of its worksheet: its id, and its session (whose feed carries
    the document's updates). A `store.Worksheet` is one."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def session(self) -> str: ...


@dataclass(frozen=True)
class DocumentOf:
    """A `WorksheetRef` made from the two facts (where no `store.Worksheet` was read)."""

    id: uuid.UUID
    session: str


@dataclass(frozen=True)
class Author:
    """Who made an update: stored with it, and named on the feed."""

    id: uuid.UUID | None  # None: cellbus itself
    name: str


SERVICE = Author(None, SERVICE_NAME)


def _is_panic(exc: BaseException) -> bool:
    """A Rust panic inside pycrdt (pyo3's PanicException derives from BaseException)."""
    return type(exc).__name__ == "PanicException"


class DocumentError(ValueError):
    """An update or state vector that is not one (the message says why, for the caller)."""


@dataclass
class LoadedDocument:
    """A document in memory, as of update `seq` of its history."""

    worksheet_id: uuid.UUID
    notebook: NotebookDoc
    seq: int = 0
    snapshot_seq: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    changed: set[str] = field(default_factory=set)  # cells changed since the last commit
    inserted: set[str] = field(default_factory=set)  # of them, inserted
    made: list[bytes] = field(default_factory=list)  # updates of transactions since then
    uncommitted: bool = False  # memory holds a change the database may not

    def __post_init__(self) -> None:
        self._cells = self.notebook.cells.observe_deep(self._observe)
        self._transactions = self.notebook.doc.observe(lambda event: self.made.append(event.update))

    def _observe(self, events: list[Any]) -> None:
        changed, inserted = changed_cells(self.notebook, events)
        self.changed |= changed
        self.inserted |= inserted


def legacy_document(cells: list[tuple[str, str]]) -> bytes:
    """The first update of a worksheet made before documents, from its old cells (id,
    source) in order: a cell whose first line is ``%%markdown`` becomes a Markdown cell."""
    notebook = NotebookDoc()
    contents = []
    for cell_id, source in cells:
        first, _, rest = source.partition("\n")
        if first.rstrip() == MARKDOWN_MAGIC:
            contents.append(CellContent(id=cell_id, cell_type="markdown", source=rest))
        else:
            contents.append(CellContent(id=cell_id, source=source))
    with notebook.doc.transaction():
        notebook.initialise(default_metadata())
        notebook.extend(contents)
    return notebook.doc.get_update()


def default_metadata() -> dict[str, Any]:
    """A new worksheet's notebook metadata: the kernel it runs on."""
    return {
        "kernelspec": {"name": "python3", "display_name": "Python 3 (cellbus)",
                       "language": "python"},
        "language_info": {"name": "python"},
    }  # fmt: skip


def new_document(
    cells: list[CellContent], metadata: dict[str, Any], nbformat_minor: int = 5
) -> bytes:
    """The first update of a new worksheet's document (made by the service, never by a
    client)."""
    notebook = NotebookDoc()
    with notebook.doc.transaction():
        notebook.initialise(metadata, nbformat_minor)
        notebook.extend(cells)
    return notebook.doc.get_update()


class Documents:
    """The worksheets' documents: loading, applying clients' updates, the service's own
    edits, and the sync handshake."""

    def __init__(self, store: Store, bus: Bus, *, max_update_bytes: int) -> None:
        self.store = store
        self.bus = bus
        self.max_update_bytes = max_update_bytes
        self._loaded: OrderedDict[uuid.UUID, LoadedDocument] = OrderedDict()

    # -- the document of a worksheet, locked and up to date ----------------------------------
    @contextlib.asynccontextmanager
    async def locked(
        self, sheet: WorksheetRef, *, fresh: bool = True
    ) -> AsyncIterator[LoadedDocument]:
        """The worksheet's document with its lock held, as of the newest committed update;
        without `fresh`, as of this process's last commit or read, which is the newest
        unless another accounts process wrote since (a commit finds that out by itself:
        see `_commit`). A client's update needs no fresh copy (it applies to any state);
        reads and the service's own edits do."""
        loaded = self._loaded.get(sheet.id)
        if loaded is None:
            loaded = LoadedDocument(sheet.id, NotebookDoc())
            self._loaded[sheet.id] = loaded
        self._loaded.move_to_end(sheet.id)
        async with loaded.lock:
            if self._loaded.get(sheet.id) is not loaded:  # dropped while we waited
                async with self.locked(sheet, fresh=fresh) as again:
                    yield again
                return
            try:
                if fresh or loaded.seq == 0:
                    await self._catch_up(loaded)
                yield loaded
            except BaseException:
                if loaded.uncommitted:  # memory may hold what the database does not:
                    self._drop(loaded)  # read it again next time
                raise
        self._trim()

    async def _catch_up(self, loaded: LoadedDocument) -> None:
        history, seq = await self.store.documents.history(loaded.worksheet_id, loaded.seq)
        if seq == 0 and not history.updates:
            if await self.store.documents.convert(loaded.worksheet_id, legacy_document):
                log.info("worksheet %s converted into a document", loaded.worksheet_id)
            history, seq = await self.store.documents.history(loaded.worksheet_id, 0)
        if history.snapshot is not None:
            loaded.notebook.doc.apply_update(history.snapshot)
            loaded.snapshot_seq = seq if not history.updates else history.updates[0][0] - 1
        for _, update in history.updates:
            loaded.notebook.doc.apply_update(update)
        loaded.seq = seq
        loaded.changed.clear()

    def _drop(self, loaded: LoadedDocument) -> None:
        if self._loaded.get(loaded.worksheet_id) is loaded:
            del self._loaded[loaded.worksheet_id]

    def _trim(self) -> None:
        while len(self._loaded) > MAX_LOADED:
            oldest = next(iter(self._loaded.values()))
            if oldest.lock.locked():
                return
            self._drop(oldest)

    # -- changes ----------------------------------------------------------------------------
    async def apply(self, sheet: WorksheetRef, author: Author, update: bytes) -> int:
        """Apply a client's update: committed, published, then its number returned (the
        caller acknowledges it). `DocumentError` if it is not a Yjs update or too large."""
        if len(update) > self.max_update_bytes:
            raise DocumentError(
                f"the update has {len(update):,} bytes; the limit is {self.max_update_bytes:,}"
            )
        async with self.locked(sheet, fresh=False) as loaded:
            loaded.inserted.clear()
            loaded.uncommitted = True
            try:
                loaded.notebook.doc.apply_update(update)
            except ValueError as exc:
                raise DocumentError(f"not a Yjs update: {exc}") from None
            except BaseException as exc:  # yrs panics on some malformed updates
                if not _is_panic(exc):
                    raise
                self._drop(loaded)  # half applied, maybe: read it again from the database
                raise DocumentError("not a Yjs update (it could not be applied)") from None
            seq = await self._commit(loaded, update, author)
            await self._publish(sheet, author, update)
            if loaded.inserted:
                await self._drop_repeated_copies(sheet, loaded)
        return seq

    async def _drop_repeated_copies(self, sheet: WorksheetRef, loaded: LoadedDocument) -> None:
        """See `notebook_doc.repeated_copies`: the service's own edit, right after the
        update that made the copies (under the same lock)."""
        repeated = repeated_copies(loaded.notebook, loaded.inserted)
        loaded.inserted.clear()
        if not repeated:
            return
        loaded.made.clear()
        loaded.uncommitted = True
        with loaded.notebook.doc.transaction():
            for index in repeated:
                loaded.notebook.delete(index)
        repair = loaded.made[0] if len(loaded.made) == 1 else merge_updates(*loaded.made)
        await self._commit(loaded, repair, SERVICE)
        await self._publish(sheet, SERVICE, repair)

    async def edit(
        self,
        sheet: WorksheetRef,
        author: Author,
        change: Callable[[NotebookDoc], T],
        *,
        check: Callable[[NotebookDoc], Awaitable[None]] | None = None,
    ) -> T:
        """Make the service's own edit (`change`, in one transaction: one update), commit
        and publish it; `author` is who asked (`SERVICE`: cellbus itself). An edit that changes
        nothing writes nothing. `check` runs first under the same lock (a compare-and-set's
        compare: it raises to refuse)."""
        async with self.locked(sheet) as loaded:
            if check is not None:
                await check(loaded.notebook)
            loaded.made.clear()
            loaded.uncommitted = True
            with loaded.notebook.doc.transaction():
                result = change(loaded.notebook)
            if not loaded.made:
                loaded.uncommitted = False
                return result  # the edit changed nothing
            update = loaded.made[0] if len(loaded.made) == 1 else merge_updates(*loaded.made)
            await self._commit(loaded, update, author)
        await self._publish(sheet, author, update)
        return result

    async def read(self, sheet: WorksheetRef, reader: Callable[[NotebookDoc], T]) -> T:
        async with self.locked(sheet) as loaded:
            return reader(loaded.notebook)

    async def sync(self, sheet: WorksheetRef, state_vector: bytes) -> DocState:
        """Sync step 2 for a client at `state_vector`, and the server's state vector."""
        async with self.locked(sheet) as loaded:
            doc = loaded.notebook.doc
            try:
                update = doc.get_update(state_vector)
            except ValueError:
                raise DocumentError("not a Yjs state vector") from None
            except BaseException as exc:
                if not _is_panic(exc):
                    raise
                raise DocumentError("not a Yjs state vector") from None
            return DocState(update=update, state_vector=doc.get_state())

    async def _commit(self, loaded: LoadedDocument, update: bytes, author: Author) -> int:
        documents = self.store.documents
        for _ in range(COMMIT_ATTEMPTS):
            changed, loaded.changed = loaded.changed, set()
            loaded.made.clear()
            seq = await documents.append(
                loaded.worksheet_id, update, author.id, changed, expect_seq=loaded.seq
            )
            if seq is not None:
                loaded.seq = seq
                loaded.made.clear()
                loaded.uncommitted = False
                if seq - loaded.snapshot_seq >= SNAPSHOT_EVERY:
                    await documents.save_snapshot(
                        loaded.worksheet_id, seq, loaded.notebook.doc.get_update()
                    )
                    loaded.snapshot_seq = seq
                return seq
            # another accounts process committed first: take its updates, then try again
            loaded.changed = changed
            history, loaded.seq = await documents.history(loaded.worksheet_id, loaded.seq)
            for _, missed in history.updates:
                loaded.notebook.doc.apply_update(missed)
        raise RuntimeError(f"could not commit to the document of {loaded.worksheet_id}")

    async def _publish(self, sheet: WorksheetRef, author: Author, update: bytes) -> None:
        content = m.DocUpdate(update=update)
        msg = new_message(content, session=sheet.session, username=author.name)
        await self.bus.publish(keys.feed(sheet.session), codec.encode(msg))

    # -- the conversion of old worksheets ---------------------------------------------------
    async def convert_all(self) -> int:
        """Give every worksheet without a document its document (from its old cells), one
        transaction per worksheet; safe while services are up (each conversion happens once,
        whoever gets there first). Returns how many this call converted."""
        converted = 0
        for worksheet_id in await self.store.documents.worksheets_without_document():
            if await self.store.documents.convert(worksheet_id, legacy_document):
                converted += 1
        return converted
