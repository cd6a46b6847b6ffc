"""`RpcClient`: JSON-RPC 2.0 over HTTP (POST {url}/rpc) with a bearer token.

One `aiohttp.ClientSession` per client, opened by `async with`. Every call has a deadline
(`timeout`, 30 s by default). What can go wrong, and what is raised:

- the server answers with an error object: `RpcError(code, message, data)`; a rate-limited call
  (-32029) whose `retry_after` is short is retried (it was not carried out), at most
  `rate_limit_retries` times, before the error is raised;
- no answer (refused, reset, timed out, or a gateway's 502/503/504 page): `ServerUnreachable`;
- an answer that is not a JSON-RPC response: `RpcError(-32603, ...)`.

The feed WebSocket client, `FeedSocket`, lives in `feed.py` and is re-exported here.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from typing import Any, Self

import aiohttp

from .codes import INTERNAL_ERROR, RATE_LIMITED
from .errors import RpcError, ServerUnreachable
from .feed import FeedEvent, FeedSocket

__all__ = ["FeedEvent", "FeedSocket", "RpcClient", "RpcError", "ServerUnreachable", "rpc_url"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
GATEWAY_STATUSES = frozenset({502, 503, 504})


def rpc_url(base: str) -> str:
    return base.rstrip("/") + "/rpc"


class RpcClient:
    """Calls JSON-RPC methods on one server, as one user (or anonymously without a token)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        rate_limit_retries: int = 2,
        max_retry_wait: float = 5.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.rate_limit_retries = rate_limit_retries
        self.max_retry_wait = max_retry_wait
        self._ids = itertools.count(1)
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._http = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def call(self, method: str, /, **params: Any) -> Any:
        """Call `method` with `params` by name; its result, or `RpcError`/`ServerUnreachable`."""
        for attempt in itertools.count():
            try:
                return await self._call_once(method, params)
            except RpcError as error:
                wait = _retry_after(error)
                if wait is None or wait > self.max_retry_wait:
                    raise
                if attempt >= self.rate_limit_retries:
                    raise
                log.debug("%s rate limited; retrying in %s s", method, wait)
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call_once(self, method: str, params: dict[str, Any]) -> Any:
        if self._http is None:
            raise RuntimeError("RpcClient used outside `async with`")
        request_id = next(self._ids)
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            async with asyncio.timeout(self.timeout):
                async with self._http.post(rpc_url(self.url), json=body, headers=headers) as resp:
                    status = resp.status
                    text = await resp.text()
        except TimeoutError as error:
            raise ServerUnreachable(self.url, f"no answer within {self.timeout:g} s") from error
        except aiohttp.InvalidURL as error:
            raise ServerUnreachable(self.url, "not a valid URL") from error
        except (aiohttp.ClientError, OSError) as error:
            raise ServerUnreachable(self.url, _reason(error)) from error
        return _result_of(self.url, method, request_id, status, text)


def _result_of(url: str, method: str, request_id: int, status: int, text: str) -> Any:
    """The `result` of a JSON-RPC response body, or the error it carries, raised."""
    try:
        reply = json.loads(text)
    except ValueError:
        reply = None
    if not isinstance(reply, dict) or ("result" not in reply and "error" not in reply):
        if status in GATEWAY_STATUSES:
            raise ServerUnreachable(url, f"HTTP {status} from a gateway")
        raise RpcError(
            INTERNAL_ERROR, f"{method}: unexpected answer from the server (HTTP {status})"
        )
    error = reply.get("error")
    if error is not None:
        if not isinstance(error, dict):
            raise RpcError(INTERNAL_ERROR, f"{method}: malformed error from the server")
        code = error.get("code")
        code = code if isinstance(code, int) else INTERNAL_ERROR
        raise RpcError(code, str(error.get("message") or ""), error.get("data"))
    if reply.get("id") != request_id:
        raise RpcError(INTERNAL_ERROR, f"{method}: the server answered another request")
    return reply["result"]


def _retry_after(error: RpcError) -> float | None:
    if error.code != RATE_LIMITED or not isinstance(error.data, dict):
        return None
    wait = error.data.get("retry_after")
    return float(wait) if isinstance(wait, int | float) and wait >= 0 else None


def _reason(error: BaseException) -> str:
    if isinstance(error, aiohttp.ClientConnectorError):
        return str(error.os_error.strerror or error.os_error) if error.os_error else str(error)
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    return str(error) or type(error).__name__
