"""The JSON-RPC 2.0 layer of the web service: parsing, batches, params, errors, OpenRPC.

`RpcView` is a plain aiohttp ``web.View``. It used to subclass aiohttp-jsonrpc 0.4's
``JSONRPCView``, but that library breaks the specification (HTTP 400 text for parse
errors, -32500 for unknown methods, Python signatures and exception text sent to the caller,
``[]`` for an empty batch, no ``"jsonrpc"`` check), so every seam it has (``post``,
``_handle``, ``_lookup_method``, ``_make_response``) had been replaced here, and the base class
added nothing but ``rpc_*`` attribute lookup, a way in for names nobody registered. So it
derives from aiohttp's public ``web.View`` alone, and methods come from an ``Api`` registry.

Errors: `ErrorCode` is the one table of the codes the API answers with; the browser reads it
from ``frontend/web/src/generated.js``, written from it by ``python -m
cellbus_web.client_facts`` (a unit test fails when the two differ). Failures of the services
behind the API are mapped to these codes in one place, `api_error`, applied once where a method
is dispatched: a remote service's error code by `REMOTE_ERRORS`, a bus that does not answer as
UNAVAILABLE, anything else as INTERNAL_ERROR (logged with an id that the client is given)::

    -32700 PARSE_ERROR       the body is not JSON
    -32600 INVALID_REQUEST   not a request object; also the body of HTTP 415 and 408
    -32601 METHOD_NOT_FOUND  no such method
    -32602 INVALID_PARAMS    params missing, unknown, surplus or of the wrong type
    -32603 INTERNAL_ERROR    a bug; data {"error_id": ...}, and the same id is logged
    -32001 UNAUTHENTICATED   no valid credentials
    -32003 FORBIDDEN         valid credentials, but not allowed
    -32004 NOT_FOUND         the thing named does not exist
    -32009 CONFLICT          a stale version, or a state that forbids the change
    -32010 TAKEN             a name already in use
    -32013 TOO_LARGE         a body or value over its limit (also the body of HTTP 413)
    -32029 RATE_LIMITED      too many requests; try later
    -32050 UNAVAILABLE       a service behind this one does not answer

Conformance (https://www.jsonrpc.org/specification):
- Invalid JSON: one -32700 error with id null. JSON neither object nor array: -32600.
- A request needs ``"jsonrpc": "2.0"``, a string ``method``, ``params`` (if present) an array
  or object, ``id`` (if present) a string, an integer or null; otherwise -32600 with the id if
  it was valid, else null. An invalid request is answered even without an id.
- No ``id`` member: a notification, run but never answered, even on error. ``"id": null`` is
  not a notification.
- ``[]`` is one -32600 error object. Each invalid batch entry gets its own -32600. A batch runs
  concurrently and is answered with an array of its non-notification responses in request
  order, or with nothing (HTTP 204) if there are none. At most MAX_BATCH entries.
- Only RpcError's code, message and data reach the client, never an exception's text.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import itertools
import logging
import secrets
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import msgspec
from aiohttp import web

from cellbus_protocol.errors import BusError, RemoteError

log = logging.getLogger(__name__)


class ErrorCode(enum.IntEnum):
    """Every error code of the API: the JSON-RPC 2.0 ones, then cellbus's own."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    UNAUTHENTICATED = -32001
    FORBIDDEN = -32003
    NOT_FOUND = -32004
    CONFLICT = -32009
    TAKEN = -32010
    TOO_LARGE = -32013
    RATE_LIMITED = -32029
    UNAVAILABLE = -32050


# The names the methods use (``rpc.NOT_FOUND``): the members themselves, in definition order
# (tests/unit/test_rpc.py checks that each name is its member).
(
    PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR,
    UNAUTHENTICATED, FORBIDDEN, NOT_FOUND, CONFLICT, TAKEN, TOO_LARGE, RATE_LIMITED, UNAVAILABLE,
) = ErrorCode  # fmt: skip

REMOTE_ERRORS: dict[str, ErrorCode] = {
    "unauthenticated": UNAUTHENTICATED,
    "forbidden": FORBIDDEN,
    "not_found": NOT_FOUND,
    "conflict": CONFLICT,
    "taken": TAKEN,
    "too_large": TOO_LARGE,
    "rate_limited": RATE_LIMITED,
    "unavailable": UNAVAILABLE,
    "invalid": INVALID_PARAMS,
}
"""The error codes of the services behind the API (`RemoteError.code`, see
`cellbus_protocol.accounts`) that a client is told about, and the API code each becomes. A code
not listed (``internal``) is a failure of ours: INTERNAL_ERROR, with its text only in the log."""

UNAVAILABLE_MESSAGE = "a service is not answering; try again shortly"

MAX_BATCH = 100
READ_TIMEOUT_SECONDS = 30.0
OPENRPC_VERSION = "1.2.6"
JSON = "application/json"

MethodFn = Callable[..., Awaitable[Any]]


class RpcError(Exception):
    """An error for the client: code, message, optional data."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # Converted now, so that data that cannot be sent fails where it is raised.
        self.data = msgspec.to_builtins(data)


def api_error(exc: BaseException) -> RpcError | None:
    """What the client is told of `exc`: the `RpcError` for a failure it should hear about
    (a remote service's error code in `REMOTE_ERRORS`, a bus that does not answer), or None
    for a bug, which is INTERNAL_ERROR. Applied once, where `RpcView` dispatches a method (and
    by the feed socket for its frames), so that methods never translate errors themselves."""
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, RemoteError):
        code = REMOTE_ERRORS.get(exc.code)
        return None if code is None else RpcError(code, exc.message, exc.data)
    if isinstance(exc, BusError):  # Redis away, or no reply within the deadline
        return RpcError(UNAVAILABLE, UNAVAILABLE_MESSAGE)
    return None


@dataclass
class Call:
    """What a method sees of the HTTP request it is part of."""

    request: web.Request
    state: dict[str, Any] = field(default_factory=dict)
    response_cookies: list[tuple[str, str | None, dict[str, Any]]] = field(default_factory=list)

    def set_cookie(self, name: str, value: str, **kwargs: Any) -> None:
        """Queue a cookie for the HTTP response (kwargs as for aiohttp's set_cookie)."""
        self.response_cookies.append((name, value, kwargs))

    def del_cookie(self, name: str, **kwargs: Any) -> None:
        """Queue a cookie's deletion (kwargs: the domain and path it was set with)."""
        self.response_cookies.append((name, None, kwargs))


@dataclass(frozen=True)
class _Param:
    name: str
    annotation: Any
    required: bool


@dataclass(frozen=True)
class _Method:
    """A registered method, inspected once at registration so that mistakes fail at import."""

    name: str
    fn: MethodFn
    public: bool
    params: tuple[_Param, ...]
    result: Any
    summary: str
    description: str

    @classmethod
    def inspect(cls, name: str, fn: MethodFn, public: bool) -> _Method:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"method {name}: must be an async function")
        hints = typing.get_type_hints(fn)
        _call, *rest = inspect.signature(fn).parameters.values()
        nameable = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        if any(p.kind not in nameable for p in rest):
            raise TypeError(f"method {name}: every param after the Call must have a name")
        params = [_Param(p.name, hints.get(p.name, Any), p.default is p.empty) for p in rest]
        if any(a.required < b.required for a, b in itertools.pairwise(params)):
            raise TypeError(f"method {name}: optional params must follow required ones (OpenRPC)")
        summary, _, description = (inspect.getdoc(fn) or "").partition("\n\n")
        summary = " ".join(summary.split())
        result = hints.get("return", Any)
        return cls(name, fn, public, tuple(params), result, summary, description.strip())

    def bind(self, params: list[Any] | dict[str, Any] | None) -> dict[str, Any]:
        """fn's keyword arguments, converted to their annotations; or INVALID_PARAMS."""
        names = [param.name for param in self.params]
        if isinstance(params, list):
            if len(params) > len(names):
                message = f"too many params: {self.name} takes {len(names)}, got {len(params)}"
                raise RpcError(INVALID_PARAMS, message)
            given = dict(zip(names, params, strict=False))
        else:
            given = params or {}
            unknown = [name for name in given if name not in names]
            if unknown:
                raise RpcError(INVALID_PARAMS, f"unknown param: {', '.join(unknown)}")
        values = {}
        for param in self.params:
            if param.name in given:
                values[param.name] = _convert(param, given[param.name])
            elif param.required:
                raise RpcError(INVALID_PARAMS, f"missing required param: {param.name}")
        return values


def _convert(param: _Param, value: Any) -> Any:
    """Strict, as JSON types must match: no "1" for an int, null only where Optional."""
    try:
        return msgspec.convert(value, param.annotation, strict=True)
    except msgspec.ValidationError as error:
        # msgspec says "Expected `int`, got `str` - at `$.x[0]`"; we say "p.x[0]: expected ..."
        problem, _, where = str(error).replace("`", "").partition(" - at $")
        message = f"{param.name}{where}: {problem[:1].lower()}{problem[1:]}"
        raise RpcError(INVALID_PARAMS, message) from None


def _schemas(methods: list[_Method]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """JSON schemas of each method's params then result, in order, and their components."""
    types = [t for m in methods for t in (*(p.annotation for p in m.params), m.result)]
    return msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")


def _package_version() -> str:
    try:
        return metadata.version("cellbus-web")
    except metadata.PackageNotFoundError:
        return "0.1.0"


class Api:
    """A registry of methods. A method is `async def fn(call: Call, <params with type
    annotations>) -> <result annotation>`; its docstring's first paragraph is its summary for
    OpenRPC and the rest its description."""

    def __init__(self, *, authenticate: Callable[[Call], Awaitable[Any]] | None = None) -> None:
        self.authenticate = authenticate
        self._methods: dict[str, _Method] = {}
        self._add(_Method.inspect("rpc.discover", self._discover, public=True))

    def method(self, name: str, *, public: bool = False) -> Callable[[MethodFn], MethodFn]:
        """Register fn as `name`; a public method runs without authentication."""
        if name.startswith("rpc."):
            raise ValueError(f"method {name}: the rpc. prefix is reserved by JSON-RPC 2.0")

        def register(fn: MethodFn) -> MethodFn:
            self._add(_Method.inspect(name, fn, public))
            return fn

        return register

    def _add(self, method: _Method) -> None:
        if method.name in self._methods:
            raise ValueError(f"method {method.name} is registered twice")
        _schemas([method])  # an annotation with no JSON schema fails here, at import
        self._methods[method.name] = method

    def lookup(self, name: str) -> _Method | None:
        return self._methods.get(name)

    def openrpc(self, *, title: str, version: str) -> dict[str, Any]:
        """An OpenRPC 1.2.6 document. rpc.* methods are left out: clients know rpc.discover by
        convention, and its result schema would be a remote $ref offline tools cannot follow."""
        methods = [m for m in self._methods.values() if not m.name.startswith("rpc.")]
        schemas, components = _schemas(methods)
        schema_of = iter(schemas)
        errors = [{"code": c, "message": n.replace("_", " ")} for n, c in REMOTE_ERRORS.items()]
        described = []
        for method in methods:
            entry: dict[str, Any] = {"name": method.name, "summary": method.summary}
            if method.description:
                entry["description"] = method.description
            entry["params"] = [
                {"name": p.name, "required": p.required, "schema": next(schema_of)}
                for p in method.params
            ]
            entry["result"] = {"name": "result", "schema": next(schema_of)}
            entry["errors"] = errors
            described.append(entry)
        return {
            "openrpc": OPENRPC_VERSION,
            "info": {"title": title, "version": version},
            "methods": described,
            "components": {"schemas": components},
        }

    async def _discover(self, call: Call) -> dict[str, Any]:
        """The OpenRPC document of this API."""
        return self.openrpc(title="cellbus", version=_package_version())

    def handler(
        self, *, max_body_bytes: int, read_timeout: float = READ_TIMEOUT_SECONDS
    ) -> type[RpcView]:
        """A View class to mount at /rpc: `app.router.add_view("/rpc", api.handler(...))`."""
        attributes = {"api": self, "max_body_bytes": max_body_bytes, "read_timeout": read_timeout}
        return type("ApiRpcView", (RpcView,), attributes)


def _failure(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error = {"code": code, "message": message} | ({} if data is None else {"data": data})
    return {"jsonrpc": "2.0", "error": error, "id": request_id}


def _is_valid_id(value: Any) -> bool:
    if isinstance(value, float):
        return value.is_integer()  # the spec: numbers SHOULD NOT have fractional parts
    return value is None or isinstance(value, str) or type(value) is int  # not bool


def _envelope_problem(entry: Any) -> str | None:
    """Why entry is not a valid request object, or None if it is."""
    if not isinstance(entry, dict):
        return "a request must be an object"
    if not _is_valid_id(entry.get("id")):
        return "id must be a string, an integer or null"
    if entry.get("jsonrpc") != "2.0":
        return 'jsonrpc must be exactly "2.0"'
    if not isinstance(entry.get("method"), str):
        return "method must be a string"
    if not isinstance(entry.get("params", []), list | dict):
        return "params must be an array or an object"
    return None


class RpcView(web.View):
    """POST /rpc; Api.handler() binds it to an Api and limits."""

    api: Api
    max_body_bytes: int
    read_timeout: float

    def __init__(self, request: web.Request) -> None:
        super().__init__(request)
        self.call = Call(request)  # one per HTTP request: a batch shares state and cookies
        self._auth_lock = asyncio.Lock()
        self._auth_done = False
        self._auth_error: Exception | None = None

    async def post(self) -> web.Response:
        if self.request.content_type != JSON:
            return self._refuse(415, INVALID_REQUEST, "Content-Type must be application/json")
        try:
            body = await self._read_body()
        except TimeoutError:
            message = f"the request body did not arrive within {self.read_timeout:g} seconds"
            return self._refuse(408, INVALID_REQUEST, message)
        if body is None:
            message = f"the request body is larger than {self.max_body_bytes} bytes"
            return self._refuse(413, TOO_LARGE, message)
        try:
            document = msgspec.json.decode(body)
        except (msgspec.DecodeError, RecursionError, ValueError):  # nested too deep, bad UTF-8
            return self._reply(_failure(None, PARSE_ERROR, "parse error: the body is not JSON"))
        return self._reply(await self._dispatch(document))

    async def _read_body(self) -> bytes | None:
        """The body, or None past max_body_bytes: Content-Length is checked first, and the
        limit is enforced while reading too, since a chunked body declares no length."""
        limit = self.max_body_bytes
        if (self.request.content_length or 0) > limit:
            return None
        chunks, size = [], 0
        async with asyncio.timeout(self.read_timeout):
            while chunk := await self.request.content.read(limit + 1 - size):
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    return None
        return b"".join(chunks)

    async def _dispatch(self, document: Any) -> Any:
        if isinstance(document, dict):
            return await self._handle(document)
        if not isinstance(document, list):
            message = "the body must be a request object or an array of them"
            return _failure(None, INVALID_REQUEST, message)
        if not document:
            return _failure(None, INVALID_REQUEST, "an empty batch is not a request")
        if len(document) > MAX_BATCH:
            message = f"a batch holds at most {MAX_BATCH} requests; this one has {len(document)}"
            return _failure(None, INVALID_REQUEST, message)
        responses = await asyncio.gather(*(self._handle(entry) for entry in document))
        return [response for response in responses if response is not None] or None

    async def _handle(self, json_request: Any) -> dict[str, Any] | None:
        """One request object's response, or None for a notification."""
        problem = _envelope_problem(json_request)
        given_id = json_request.get("id") if isinstance(json_request, dict) else None
        if problem is not None:
            return _failure(given_id if _is_valid_id(given_id) else None, INVALID_REQUEST, problem)
        params = json_request.get("params")
        response = await self._answer(json_request["method"], params, given_id)
        return response if "id" in json_request else None

    async def _answer(self, name: str, params: Any, request_id: Any) -> dict[str, Any]:
        log.debug("rpc call %s id=%r", name, request_id)
        try:
            method = self._method(name)
            if not method.public:
                await self._authenticate()
            result = await method.fn(self.call, **method.bind(params))
            return {"jsonrpc": "2.0", "result": msgspec.to_builtins(result), "id": request_id}
        except Exception as exc:
            error = api_error(exc)
            if error is not None:
                return _failure(request_id, error.code, error.message, error.data)
            error_id = secrets.token_hex(8)
            log.exception("internal error %s in method %s (id=%r)", error_id, name, request_id)
            return _failure(request_id, INTERNAL_ERROR, "internal error", {"error_id": error_id})

    def _method(self, name: str) -> _Method:
        method = self.api.lookup(name)
        if method is None:
            raise RpcError(METHOD_NOT_FOUND, f"method not found: {name[:100]}")
        return method

    async def _authenticate(self) -> None:
        """Run the hook once per HTTP request: a batch's calls run concurrently, so a cache in
        call.state alone would not stop each of them calling it. Every call sees the first
        outcome. With no hook, non-public methods are refused: fail closed."""
        if self.api.authenticate is None:
            raise RpcError(UNAUTHENTICATED, "this method needs authentication")
        async with self._auth_lock:
            if not self._auth_done:
                self._auth_done = True
                try:
                    await self.api.authenticate(self.call)
                except Exception as error:
                    self._auth_error = error
        if self._auth_error is not None:
            raise self._auth_error

    def _refuse(self, status: int, code: int, message: str) -> web.Response:
        return self._reply(_failure(None, code, message), status)

    def _reply(self, payload: Any, status: int = 200) -> web.Response:
        response = _response(payload, status)
        for name, value, options in self.call.response_cookies:
            if value is None:
                response.del_cookie(name, **options)
            else:
                response.set_cookie(name, value, **options)
        return response


def _response(payload: Any, status: int) -> web.Response:
    """None is no response (HTTP 204); anything else is encoded as JSON."""
    headers = {"Cache-Control": "no-store"}
    if payload is None:
        return web.Response(status=204, headers=headers)
    body = msgspec.json.encode(payload)
    return web.Response(status=status, body=body, headers=headers, content_type=JSON)
