"""`FeedSocket`: the feed WebSocket ({url}/ws), subscribed to sessions, that survives drops.

The server sends feed messages in ``messages`` frames, a batch of one session's messages each
(``{"type": "messages", "session": S, "cursor": N, "messages": [{"cursor": c, "message": M},
...]}``), handed out here one by one. It keeps, per subscribed session, the cursor of the last
message it handed out (or "now" until the server has said where "now" is). A reader task takes
frames off the socket and puts each new message on a queue that `next()` / `async for` read.
When the connection ends (an `overflow` or `closing` frame, a close, an error, a heartbeat that
goes unanswered), the reader reconnects, waiting 0.2 s doubling to 5 s between attempts (right
away after an `overflow`), and subscribes every session again from its last cursor. A message
whose cursor is not past the session's last one is a repeat and is dropped, so nothing is shown
twice; since resuming always starts from the last cursor handed out, nothing is skipped either.

A server that restarted is a new epoch (docs/protocol.md, "Epochs"): each `subscribed` frame
names it, and a resubscription sends the epoch its cursor came from. If the server no longer
has every message up to that cursor (it lost the last ones when it was killed), it answers
`reset` with the cursor it still shares with this client, and the feed goes on from there: the
messages after it are new ones, although their cursors may be ones seen before.

The first connection fails loudly (`ServerUnreachable`, or `RpcError` for a refused handshake);
later ones are retried until the socket is closed, except a 401/403 handshake, which ends the
feed with `RpcError`. An `error` frame for a pending `subscribe` fails that call; any other
`error` frame ends the feed (raised by `next()`), except "rate limited" and "unavailable", which
are treated as a drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Self

import aiohttp

from .codes import FORBIDDEN, RATE_LIMITED, UNAUTHENTICATED, UNAVAILABLE
from .errors import RpcError, ServerUnreachable

log = logging.getLogger(__name__)

Cursor = int | Literal["now"]
TRANSIENT_CODES = frozenset({RATE_LIMITED, UNAVAILABLE})


@dataclass(frozen=True)
class FeedEvent:
    """One feed message: its session, its cursor on that session's feed, the Jupyter message."""

    session: str
    cursor: int
    message: dict[str, Any]


class _Dropped(Exception):
    """The connection ended; `now` says whether to reconnect without waiting."""

    def __init__(self, reason: str, *, now: bool = False) -> None:
        super().__init__(reason)
        self.now = now


def ws_url(base: str) -> str:
    base = base.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://") + "/ws"
    if base.startswith("http://"):
        return "ws://" + base.removeprefix("http://") + "/ws"
    return base + "/ws"


class FeedSocket:
    """A subscription to the feeds of some sessions, resumed across reconnects."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        connect_timeout: float = 10.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        heartbeat: float = 20.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.connect_timeout = connect_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.heartbeat = heartbeat
        self.connections = 0  # how many times a connection was made (for diagnostics and tests)
        self.cursors: dict[str, Cursor] = {}
        self.epochs: dict[str, str] = {}  # session -> the server's epoch its cursor is from
        self.resets = 0  # how many subscriptions the server reset (for diagnostics and tests)
        self._acks: dict[str, asyncio.Future[int]] = {}
        self._queue: asyncio.Queue[FeedEvent | BaseException] = asyncio.Queue()
        self._http: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._delay = backoff_initial

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Make the first connection and start reading; raises if the server refuses it."""
        self._http = aiohttp.ClientSession()
        try:
            self._ws = await self._open()
        except BaseException:
            await self._http.close()
            raise
        self._reader = asyncio.create_task(self._read_forever(), name="cellbus-feed-reader")

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        try:
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader  # its failure, if any, was handed to next() already
            if self._ws is not None:
                await self._ws.close()
        finally:
            self._ws = None
            if self._http is not None:
                await self._http.close()
                self._http = None

    async def subscribe(
        self, session: str, cursor: Cursor = "now", *, timeout: float = 10.0
    ) -> int:
        """Follow `session` after `cursor` (0: from the oldest kept; "now": only new messages).

        Waits for the server's `subscribed` and returns the cursor it gave; an `error` frame for
        the session raises `RpcError`.
        """
        self.cursors[session] = cursor
        ack = asyncio.get_running_loop().create_future()
        self._acks[session] = ack
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                await self._send(self._subscribe_frame(session, cursor))
        # else: the reader subscribes it again when it has reconnected
        try:
            async with asyncio.timeout(timeout):
                return await self._await_ack(ack)
        except TimeoutError as error:
            raise ServerUnreachable(self.url, f"no `subscribed` within {timeout:g} s") from error
        finally:
            if self._acks.get(session) is ack:
                del self._acks[session]

    def _subscribe_frame(self, session: str, cursor: Cursor) -> dict[str, Any]:
        frame: dict[str, Any] = {"op": "subscribe", "session": session, "cursor": cursor}
        epoch = self.epochs.get(session)
        if isinstance(cursor, int) and cursor > 0 and epoch is not None:
            frame["epoch"] = epoch  # the server checks that it still has what we saw
        return frame

    async def unsubscribe(self, session: str) -> None:
        self.cursors.pop(session, None)
        self.epochs.pop(session, None)
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(aiohttp.ClientError, ConnectionError):
                await self._send({"op": "unsubscribe", "session": session})

    async def next(self) -> FeedEvent:
        """The next new message of any subscribed session; raises if the feed has ended."""
        item = await self._queue.get()
        if isinstance(item, BaseException):
            self._queue.put_nowait(item)  # every later call sees the same end
            raise item
        return item

    async def __aiter__(self) -> AsyncIterator[FeedEvent]:
        while True:
            yield await self.next()

    async def _await_ack(self, ack: asyncio.Future[int]) -> int:
        """`ack`'s result, or the reader's failure if the feed ends first."""
        if self._reader is None:
            return await ack
        either: set[asyncio.Future[Any]] = {ack, self._reader}
        done, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if ack in done:
            return ack.result()
        ack.cancel()
        self._reader.result()  # raises what ended the reader
        raise ServerUnreachable(self.url, "the feed ended")

    async def _send(self, frame: dict[str, Any]) -> None:
        assert self._ws is not None
        async with asyncio.timeout(self.connect_timeout):
            await self._ws.send_str(json.dumps(frame))

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        assert self._http is not None
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            async with asyncio.timeout(self.connect_timeout):
                ws = await self._http.ws_connect(
                    ws_url(self.url), headers=headers, heartbeat=self.heartbeat
                )
        except aiohttp.WSServerHandshakeError as error:
            raise self._handshake_error(error.status) from error
        except TimeoutError as error:
            raise ServerUnreachable(self.url, "no answer from the feed WebSocket") from error
        except (aiohttp.ClientError, OSError) as error:
            raise ServerUnreachable(self.url, str(error) or type(error).__name__) from error
        self.connections += 1
        return ws

    async def _read_forever(self) -> None:
        try:
            while True:
                assert self._ws is not None
                try:
                    await self._read(self._ws)
                    dropped = _Dropped("closed by the server")
                except _Dropped as error:
                    dropped = error
                except (aiohttp.ClientError, ConnectionError) as error:
                    dropped = _Dropped(str(error) or type(error).__name__)
                log.info("feed connection ended (%s); reconnecting", dropped)
                await self._ws.close()
                self._ws = None
                await self._reconnect(now=dropped.now)
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            self._queue.put_nowait(error)
            for ack in self._acks.values():
                if not ack.done():
                    ack.set_exception(error)
            raise

    async def _reconnect(self, *, now: bool) -> None:
        """Connect again and subscribe every session from its last cursor; retries forever."""
        delay = 0.0 if now else self._delay
        while True:
            await asyncio.sleep(delay)
            self._delay = min(self._delay * 2, self.backoff_max)
            delay = self._delay
            try:
                self._ws = await self._open()
            except ServerUnreachable as error:
                log.info("feed reconnect failed (%s)", error.reason)
                continue
            try:
                for session, cursor in list(self.cursors.items()):
                    await self._send(self._subscribe_frame(session, cursor))
            except (aiohttp.ClientError, ConnectionError, TimeoutError) as error:
                log.info("feed resubscribe failed (%s)", error)
                await self._ws.close()
                self._ws = None
                continue
            return

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for frame in ws:
            if frame.type is not aiohttp.WSMsgType.TEXT:
                if frame.type is aiohttp.WSMsgType.ERROR:
                    raise _Dropped(f"WebSocket error: {ws.exception()}")
                continue
            try:
                data = json.loads(frame.data)
            except ValueError:
                log.warning("feed: a frame that is not JSON; ignored")
                continue
            if isinstance(data, dict):
                self._handle(data)

    def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        session = frame.get("session")
        if kind == "messages" and isinstance(session, str):
            for item in frame.get("messages") or ():
                if isinstance(item, dict):
                    self._on_message(session, item.get("cursor"), item.get("message"))
        elif kind == "subscribed" and isinstance(session, str):
            self._on_subscribed(session, frame)
        elif kind == "error":
            self._on_error(frame, session)
        elif kind in ("overflow", "closing"):
            for name, cursor in (frame.get("cursors") or {}).items():
                if self.cursors.get(name) == "now" and isinstance(cursor, int):
                    self.cursors[name] = cursor
            raise _Dropped(f"server sent {kind}", now=kind == "overflow")
        else:
            log.debug("feed: frame of type %r ignored", kind)

    def _on_subscribed(self, session: str, frame: dict[str, Any]) -> None:
        cursor = frame.get("cursor")
        if isinstance(cursor, int):
            if session in self.cursors:
                if frame.get("reset"):
                    # the server restarted and lost what we saw after `cursor`: what comes
                    # after it is new, even at cursors we had seen
                    log.info("feed of %s: the server kept messages up to %d only", session, cursor)
                    self.cursors[session] = cursor
                    self.resets += 1
                elif not isinstance(self.cursors.get(session), int):
                    self.cursors[session] = cursor
                epoch = frame.get("epoch")
                if isinstance(epoch, str):
                    self.epochs[session] = epoch
            ack = self._acks.get(session)
            if ack is not None and not ack.done():
                ack.set_result(cursor)
        self._delay = self.backoff_initial

    def _handshake_error(self, status: int) -> Exception:
        """401/403 end the feed; any other refusal is treated as "cannot reach" and retried."""
        if status == 401:
            return RpcError(UNAUTHENTICATED, "not logged in (the server refused the token)")
        if status == 403:
            return RpcError(FORBIDDEN, "the server refused the feed WebSocket (forbidden)")
        return ServerUnreachable(self.url, f"the feed WebSocket was refused (HTTP {status})")

    def _on_message(self, session: str, cursor: object, message: object) -> None:
        if not isinstance(cursor, int) or not isinstance(message, dict):
            return
        last = self.cursors.get(session)
        if last is None:
            return  # unsubscribed meanwhile
        if isinstance(last, int) and cursor <= last:
            return  # a repeat after resuming
        self.cursors[session] = cursor
        self._delay = self.backoff_initial
        self._queue.put_nowait(FeedEvent(session, cursor, message))

    def _on_error(self, frame: dict[str, Any], session: object) -> None:
        code = frame.get("code")
        error = RpcError(
            code if isinstance(code, int) else 0, str(frame.get("message") or "feed error")
        )
        ack = self._acks.get(session) if isinstance(session, str) else None
        if isinstance(session, str) and ack is not None and not ack.done():
            self.cursors.pop(session, None)
            ack.set_exception(error)
        elif error.code in TRANSIENT_CODES:
            raise _Dropped(error.message)
        else:
            raise error
