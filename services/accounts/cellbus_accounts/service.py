"""The accounts service: answers requests on the bus, one handler per operation.

Requests are taken from `keys.ACCOUNTS` by every accounts process in one consumer group, so
several processes share the load. Each request is handled in its own task (up to
`CONCURRENCY` at once) and always answered: a handler's `AccountsError` becomes its error
reply; a record deleted while the request ran (`store.NotFound`) is the ordinary
``not_found``; a request that does not decode is ``invalid``; a database that is away is
``unavailable`` (nothing was written); anything else is logged with the request id and
answered ``internal``. The service itself never stops on a bad request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from cellbus_protocol import accounts as a
from cellbus_protocol import codec, keys
from cellbus_protocol.bus import Bus, QueueItem
from cellbus_protocol.errors import BusUnavailable, ValidationError

from .handlers import AccountsError, Handlers
from .store import NotFound, StoreUnavailable

log = logging.getLogger(__name__)

CONCURRENCY = 32


class AccountsService:
    def __init__(self, handlers: Handlers, bus: Bus, name: str) -> None:
        self.handlers = handlers
        self.bus = bus
        self._consumer = bus.consumer(keys.ACCOUNTS_GROUP, name)
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self.ready = asyncio.Event()

    async def run(self) -> None:
        await self._consumer.add(keys.ACCOUNTS)
        self.ready.set()
        log.info("accounts service ready")
        self._spawn(self._convert_old_worksheets())
        while not self._stopping.is_set():
            try:
                item = await self._consumer.get()  # until a request comes, or `stop` wakes it
            except BusUnavailable as exc:
                log.warning("cannot read requests: %s", exc)
                await asyncio.sleep(1.0)
                continue
            if item is not None:
                await self._serve_in_turn(item)
        # What the consumer read ahead is this process's alone: answered, not left pending.
        for item in self._consumer.taken():
            await self._serve_in_turn(item)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        await self._consumer.close()

    def stop(self) -> None:
        """Take no more requests: the loop ends at once, then the requests taken are answered
        (up to 10 s) and `run` returns."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._spawn(self._wake())

    async def _wake(self) -> None:
        try:
            await self._consumer.wake()
        except BusUnavailable as exc:  # the read fails as well, and the loop sees the stop
            log.warning("cannot wake the requests reader: %s", exc)

    async def _serve_in_turn(self, item: QueueItem) -> None:
        """Serve `item` in a task of its own once one of the `CONCURRENCY` slots is free."""
        await self._slots.acquire()
        self._spawn(self._serve(item))

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _convert_old_worksheets(self) -> None:
        """Give worksheets made before documents their document, while requests are served
        (a worksheet used meanwhile is converted on first use; each once, by whoever gets
        there first)."""
        try:
            converted = await self.handlers.documents.convert_all()
        except StoreUnavailable as exc:
            log.warning("old worksheets not converted yet (on first use instead): %s", exc)
            return
        if converted:
            log.info("%d worksheets converted into documents", converted)

    async def _serve(self, item: QueueItem) -> None:
        try:
            reply = await self._answer(item)
            await self.bus.reply(item, codec.encode_record(reply))
            await self._consumer.ack(item)
        except BusUnavailable as exc:
            log.warning("request %s: could not reply: %s", item.id, exc)
        finally:
            self._slots.release()

    async def _answer(self, item: QueueItem) -> a.Reply[Any]:
        try:
            request = a.decode_request(item.data)
        except ValidationError as exc:
            log.warning("request %s: %s", item.id, exc)
            return _error("invalid", str(exc))
        try:
            return a.Reply(result=await self.handlers.handle(request))
        except AccountsError as exc:
            return _error(exc.code, exc.message, exc.data)
        except NotFound as exc:  # deleted between the handler's check and its write
            return _error("not_found", str(exc))
        except StoreUnavailable as exc:
            log.warning("request %s (%s): %s", item.id, type(request).__name__, exc)
            return _error("unavailable", "the database is unavailable; nothing was changed")
        except BusUnavailable as exc:
            log.warning("request %s (%s): %s", item.id, type(request).__name__, exc)
            return _error("unavailable", "the message bus is unavailable")
        except Exception:
            log.exception("request %s (%s) failed", item.id, type(request).__name__)
            return _error("internal", "the accounts service failed; see its log")


def _error(code: str, message: str, data: object = None) -> a.Reply[Any]:
    return a.Reply(error=a.ErrorInfo(code=code, message=message, data=data))
