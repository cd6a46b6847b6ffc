"""The JSON-RPC 2.0 layer (`cellbus_web.rpc`), seen from a client over real HTTP.

A toy Api of this file's own is mounted on an aiohttp TestServer. Each test is named for what
a client sees; the cases follow https://www.jsonrpc.org/specification, section by section.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import jsonschema  # through nbformat, a dependency of cellbus-web
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cellbus_protocol.errors import BusUnavailable, RemoteError, RequestTimeout, ValidationError
from cellbus_web import rpc
from cellbus_web.rpc import Api, Call, RpcError

Client = TestClient[web.Request, web.Application]
MAX_BODY = 8000  # room for a batch of 101 short calls
JSON_HEADERS = {"Content-Type": "application/json"}
AUTHORIZED = {**JSON_HEADERS, "Authorization": "Bearer good"}


class Point(msgspec.Struct):
    x: int
    y: int


@dataclass
class Toy:
    """The toy Api and what its hooks saw."""

    api: Api
    authentications: list[str] = field(default_factory=list)
    rendezvous: dict[str, asyncio.Event] = field(default_factory=dict)
    notified: list[str] = field(default_factory=list)


def build_toy() -> Toy:
    toy: Toy  # made below, once its hook exists

    async def authenticate(call: Call) -> None:
        toy.authentications.append(call.request.headers.get("Authorization", ""))
        await asyncio.sleep(0)  # let a batch's other calls reach the hook if they could
        if call.request.headers.get("Authorization") != "Bearer good":
            raise RpcError(rpc.UNAUTHENTICATED, "log in first")
        call.state["user"] = "ada"

    toy = Toy(Api(authenticate=authenticate))
    add_arithmetic(toy.api)
    add_failures(toy)
    add_sessions_and_rendezvous(toy)
    return toy


def add_arithmetic(api: Api) -> None:
    """Methods that compute: parameters by name and position, structs in and out."""

    @api.method("math.add")
    async def add(call: Call, a: int, b: int = 0) -> int:
        """Add two integers.

        The second one defaults to zero.
        """
        return a + b

    @api.method("greet", public=True)
    async def greet(call: Call, name: str, title: str | None = None) -> str:
        """Say hello to someone, politely if a title is given."""
        return f"hello {title + ' ' if title else ''}{name}"

    @api.method("geometry.move")
    async def move(call: Call, point: Point, dx: int) -> Point:
        """Move a point along x."""
        return Point(point.x + dx, point.y)

    @api.method("points.sum")
    async def sum_points(call: Call, points: list[Point]) -> int:
        """Sum every coordinate."""
        return sum(p.x + p.y for p in points)


def add_failures(toy: Toy) -> None:
    """Methods about who calls, notifications and the ways a call fails."""
    api = toy.api

    @api.method("whoami")
    async def whoami(call: Call) -> str:
        """The authenticated user."""
        return str(call.state["user"])

    @api.method("ping", public=True)
    async def ping(call: Call) -> str:
        """Answer pong."""
        return "pong"

    @api.method("note", public=True)
    async def note(call: Call, text: str) -> None:
        """Record text; meant to be sent as a notification."""
        toy.notified.append(text)

    @api.method("boom", public=True)
    async def boom(call: Call) -> None:
        """Fail with an unexpected exception."""
        raise RuntimeError("password=hunter2 in /srv/secret.py")

    @api.method("refuse", public=True)
    async def refuse(call: Call) -> None:
        """Fail with an application error."""
        raise RpcError(rpc.CONFLICT, "version conflict", {"current": 3})

    @api.method("service.fails", public=True)
    async def service_fails(call: Call, how: str) -> None:
        """Fail as a service behind the API does (see SERVICE_FAILURES)."""
        raise SERVICE_FAILURES[how]


SERVICE_FAILURES: dict[str, Exception] = {
    "redis down": BusUnavailable("connection refused"),
    "no reply": RequestTimeout("no reply within 10 s"),
    "not found": RemoteError("not_found", "no worksheet w1"),
    "stale": RemoteError("conflict", "the cell is at version 3", {"version": 3}),
    "invalid": RemoteError("invalid", "a title has 1 to 200 printable characters"),
    "accounts bug": RemoteError("internal", "the accounts service failed; see its log"),
    "bad bytes": ValidationError("bad envelope"),
}


def add_sessions_and_rendezvous(toy: Toy) -> None:
    """Methods that set cookies, and two that meet (to prove a batch's calls overlap)."""
    api = toy.api

    @api.method("login", public=True)
    async def login(call: Call, user: str) -> bool:
        """Set the session cookie and clear the old one."""
        call.set_cookie("session", f"token-{user}", httponly=True, samesite="Strict")
        call.del_cookie("old_session")
        return True

    @api.method("rendezvous.wait", public=True)
    async def wait(call: Call, key: str) -> str:
        """Wait for rendezvous.release with the same key (proves batch calls overlap)."""
        event = toy.rendezvous.setdefault(key, asyncio.Event())
        async with asyncio.timeout(5):
            await event.wait()
        return "released"

    @api.method("rendezvous.release", public=True)
    async def release(call: Call, key: str) -> str:
        """Release rendezvous.wait."""
        toy.rendezvous.setdefault(key, asyncio.Event()).set()
        return "done"


@pytest.fixture
def toy() -> Toy:
    return build_toy()


async def serve(view: type[web.View]) -> Client:
    app = web.Application()
    app.router.add_view("/rpc", view)
    return TestClient(TestServer(app))


@pytest.fixture
async def client(toy: Toy) -> AsyncIterator[Client]:
    async with await serve(toy.api.handler(max_body_bytes=MAX_BODY)) as test_client:
        yield test_client


async def post(client: Client, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """POST a JSON value (or raw bytes) and return (HTTP status, decoded body or None)."""
    data = body if isinstance(body, bytes) else msgspec.json.encode(body)
    async with client.post("/rpc", data=data, headers=headers or AUTHORIZED) as response:
        raw = await response.read()
        return response.status, (msgspec.json.decode(raw) if raw else None)


def request(method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        message["params"] = params
    return message


def notification(method: str, params: Any = None) -> dict[str, Any]:
    message = request(method, params)
    del message["id"]
    return message


def error_of(response: dict[str, Any]) -> tuple[int, str, Any]:
    assert set(response) == {"jsonrpc", "error", "id"} and response["jsonrpc"] == "2.0"
    return response["error"]["code"], response["error"]["message"], response["id"]


# --- calls that succeed ----------------------------------------------------------------------


async def test_a_call_with_named_params_returns_its_result(client: Client) -> None:
    status, body = await post(client, request("math.add", {"a": 2, "b": 3}, id="x1"))
    assert status == 200
    assert body == {"jsonrpc": "2.0", "result": 5, "id": "x1"}


async def test_a_call_with_positional_params_returns_its_result(client: Client) -> None:
    _, body = await post(client, request("math.add", [2, 3], id=7))
    assert body == {"jsonrpc": "2.0", "result": 5, "id": 7}


async def test_an_omitted_optional_param_takes_its_default(client: Client) -> None:
    _, named = await post(client, request("math.add", {"a": 2}))
    _, positional = await post(client, request("math.add", [2]))
    assert named["result"] == positional["result"] == 2


async def test_params_may_be_left_out_when_none_are_needed(client: Client) -> None:
    _, body = await post(client, request("ping"))
    assert body["result"] == "pong"
    _, body = await post(client, request("ping", []))
    assert body["result"] == "pong"


async def test_null_is_accepted_for_an_optional_param(client: Client) -> None:
    _, body = await post(client, request("greet", {"name": "ada", "title": None}))
    assert body["result"] == "hello ada"
    _, body = await post(client, request("greet", ["ada", "Dr"]))
    assert body["result"] == "hello Dr ada"


async def test_structs_are_converted_in_and_out(client: Client) -> None:
    _, body = await post(client, request("geometry.move", {"point": {"x": 1, "y": 2}, "dx": 4}))
    assert body["result"] == {"x": 5, "y": 2}


async def test_a_response_is_json_and_never_cached(client: Client) -> None:
    async with client.post(
        "/rpc", data=msgspec.json.encode(request("ping")), headers=JSON_HEADERS
    ) as response:
        assert response.status == 200
        assert response.content_type == "application/json"
        assert response.headers["Cache-Control"] == "no-store"


async def test_a_charset_in_the_content_type_is_accepted(client: Client) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    status, body = await post(client, request("ping"), headers=headers)
    assert status == 200 and body["result"] == "pong"


# --- parse errors and invalid requests -------------------------------------------------------


async def test_invalid_json_is_a_parse_error_with_a_null_id(client: Client) -> None:
    status, body = await post(
        client, b'{"jsonrpc": "2.0", "method": "ping", "params": "bar", "baz]'
    )
    assert status == 200
    code, _, id_ = error_of(body)
    assert (code, id_) == (rpc.PARSE_ERROR, None)


async def test_an_empty_body_is_a_parse_error(client: Client) -> None:
    _, body = await post(client, b"")
    assert error_of(body)[0] == rpc.PARSE_ERROR


async def test_an_invalid_json_batch_is_one_parse_error(client: Client) -> None:
    _, body = await post(client, b'[{"jsonrpc": "2.0", "method": "ping", "id": 1},{"jsonrpc"]')
    assert isinstance(body, dict) and error_of(body)[0] == rpc.PARSE_ERROR


@pytest.mark.parametrize("document", [b"1", b'"x"', b"null", b"true"])
async def test_json_that_is_neither_object_nor_array_is_an_invalid_request(
    client: Client, document: bytes
) -> None:
    status, body = await post(client, document)
    assert status == 200
    code, _, id_ = error_of(body)
    assert (code, id_) == (rpc.INVALID_REQUEST, None)


@pytest.mark.parametrize(
    ("message", "answered_id", "complaint"),
    [
        ({"method": "ping", "id": 1}, 1, "jsonrpc"),
        ({"jsonrpc": "1.0", "method": "ping", "id": 2}, 2, "jsonrpc"),
        ({"jsonrpc": 2.0, "method": "ping", "id": "a"}, "a", "jsonrpc"),
        ({"jsonrpc": "2.0", "id": 3}, 3, "method"),
        ({"jsonrpc": "2.0", "method": 1, "params": "bar"}, None, "method"),
        ({"jsonrpc": "2.0", "method": "ping", "params": "bar", "id": 4}, 4, "params"),
        ({"jsonrpc": "2.0", "method": "ping", "params": None, "id": 5}, 5, "params"),
        ({"jsonrpc": "2.0", "method": "ping", "id": {"a": 1}}, None, "id"),
        ({"jsonrpc": "2.0", "method": "ping", "id": [1]}, None, "id"),
        ({"jsonrpc": "2.0", "method": "ping", "id": 1.5}, None, "id"),
        ({"jsonrpc": "2.0", "method": "ping", "id": True}, None, "id"),
        ({"jsonrpc": "1.0", "method": "ping", "id": [1]}, None, "id"),
    ],
)
async def test_an_invalid_request_object_is_refused_with_its_id_if_valid(
    client: Client, message: dict[str, Any], answered_id: Any, complaint: str
) -> None:
    status, body = await post(client, message)
    assert status == 200
    code, text, id_ = error_of(body)
    assert (code, id_) == (rpc.INVALID_REQUEST, answered_id)
    assert complaint in text


async def test_an_invalid_request_is_answered_even_without_an_id(client: Client) -> None:
    status, body = await post(client, {"jsonrpc": "2.0", "method": 1, "params": "bar"})
    assert status == 200 and error_of(body)[:1] == (rpc.INVALID_REQUEST,)


async def test_an_integral_float_id_is_accepted(client: Client) -> None:
    _, body = await post(client, request("ping", id=3.0))
    assert body == {"jsonrpc": "2.0", "result": "pong", "id": 3.0}


# --- method not found and invalid params -----------------------------------------------------


async def test_an_unknown_method_is_method_not_found(client: Client) -> None:
    _, body = await post(client, request("foobar", id="1"))
    code, text, id_ = error_of(body)
    assert (code, id_) == (rpc.METHOD_NOT_FOUND, "1")
    assert "foobar" in text


async def test_a_method_of_the_library_prefix_is_not_found(client: Client) -> None:
    """The view's own attributes are never methods (aiohttp-jsonrpc looked up rpc_*)."""
    _, body = await post(client, request("post"))
    assert error_of(body)[0] == rpc.METHOD_NOT_FOUND


@pytest.mark.parametrize(
    ("method", "params", "expected"),
    [
        ("math.add", {"b": 1}, "missing required param: a"),
        ("math.add", [], "missing required param: a"),
        ("math.add", {"a": 1, "c": 2}, "unknown param: c"),
        ("math.add", [1, 2, 3], "too many params: math.add takes 2, got 3"),
        ("ping", [1], "too many params: ping takes 0, got 1"),
        ("math.add", {"a": "1"}, "a: expected int, got str"),
        ("math.add", [1, "2"], "b: expected int, got str"),
        ("math.add", {"a": None}, "a: expected int, got null"),
        ("math.add", {"a": True}, "a: expected int, got bool"),
        ("math.add", {"a": 1.5}, "a: expected int, got float"),
        ("greet", {"name": 5}, "name: expected str, got int"),
        ("geometry.move", {"point": {"x": 1}, "dx": 1}, "point: object missing required field y"),
        ("points.sum", {"points": [{"x": 1, "y": "2"}]}, "points[0].y: expected int, got str"),
    ],
)
async def test_wrong_params_are_invalid_params_naming_the_param(
    client: Client, method: str, params: Any, expected: str
) -> None:
    _, body = await post(client, request(method, params, id=9))
    code, text, id_ = error_of(body)
    assert (code, text, id_) == (rpc.INVALID_PARAMS, expected, 9)
    assert "data" not in body["error"]


# --- errors raised by methods ----------------------------------------------------------------


async def test_an_rpc_error_reaches_the_client_with_its_code_message_and_data(
    client: Client,
) -> None:
    _, body = await post(client, request("refuse", id=4))
    assert body == {
        "jsonrpc": "2.0",
        "error": {"code": rpc.CONFLICT, "message": "version conflict", "data": {"current": 3}},
        "id": 4,
    }


async def test_an_unexpected_exception_is_an_internal_error_that_hides_its_text(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="cellbus_web.rpc"):
        status, body = await post(client, request("boom", id=5))
    assert status == 200
    code, text, id_ = error_of(body)
    assert (code, text, id_) == (rpc.INTERNAL_ERROR, "internal error", 5)
    assert set(body["error"]["data"]) == {"error_id"}
    error_id = body["error"]["data"]["error_id"]
    assert len(error_id) >= 16 and int(error_id, 16) >= 0
    assert "hunter2" not in msgspec.json.encode(body).decode()
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert len(logged) == 1
    assert "boom" in logged[0].getMessage() and logged[0].exc_info is not None


@pytest.mark.parametrize(
    ("how", "code", "message", "data"),
    [
        ("redis down", rpc.UNAVAILABLE, rpc.UNAVAILABLE_MESSAGE, None),
        ("no reply", rpc.UNAVAILABLE, rpc.UNAVAILABLE_MESSAGE, None),
        ("not found", rpc.NOT_FOUND, "no worksheet w1", None),
        ("stale", rpc.CONFLICT, "the cell is at version 3", {"version": 3}),
        ("invalid", rpc.INVALID_PARAMS, "a title has 1 to 200 printable characters", None),
    ],
)
async def test_a_service_failure_becomes_its_api_error(
    client: Client, how: str, code: int, message: str, data: Any
) -> None:
    """Methods let the failures of the services behind them through; the RPC layer maps them
    with one table, once, where the method was dispatched."""
    _, body = await post(client, request("service.fails", [how], id=6))
    error = {"code": code, "message": message} | ({} if data is None else {"data": data})
    assert body == {"jsonrpc": "2.0", "error": error, "id": 6}


@pytest.mark.parametrize("how", ["accounts bug", "bad bytes"])
async def test_a_service_failure_with_no_api_code_is_an_internal_error(
    client: Client, how: str
) -> None:
    _, body = await post(client, request("service.fails", [how], id=7))
    code, text, _ = error_of(body)
    assert (code, text) == (rpc.INTERNAL_ERROR, "internal error")
    assert "accounts service" not in msgspec.json.encode(body).decode()


# --- notifications ---------------------------------------------------------------------------


async def test_a_notification_runs_and_gets_no_response(client: Client, toy: Toy) -> None:
    async with client.post(
        "/rpc", data=msgspec.json.encode(notification("note", ["hi"])), headers=JSON_HEADERS
    ) as response:
        assert response.status == 204
        assert await response.read() == b""
        assert response.headers["Cache-Control"] == "no-store"
    assert toy.notified == ["hi"]


@pytest.mark.parametrize(
    "message",
    [
        notification("foobar"),
        notification("math.add", {"a": "x"}),
        notification("boom"),
        notification("whoami"),  # no credentials
    ],
)
async def test_a_failing_notification_gets_no_response_either(
    client: Client, message: dict[str, Any]
) -> None:
    status, body = await post(client, message, headers=JSON_HEADERS)
    assert (status, body) == (204, None)


async def test_a_null_id_is_not_a_notification(client: Client) -> None:
    status, body = await post(client, request("ping", id=None))
    assert status == 200
    assert body == {"jsonrpc": "2.0", "result": "pong", "id": None}


# --- batches ---------------------------------------------------------------------------------


async def test_an_empty_batch_is_one_invalid_request_error(client: Client) -> None:
    status, body = await post(client, [])
    assert status == 200 and isinstance(body, dict)
    code, _, id_ = error_of(body)
    assert (code, id_) == (rpc.INVALID_REQUEST, None)


async def test_a_batch_of_non_objects_is_one_invalid_request_error_per_entry(
    client: Client,
) -> None:
    _, body = await post(client, [1, 2, 3])
    assert isinstance(body, list) and len(body) == 3
    assert [error_of(entry)[0::2] for entry in body] == [(rpc.INVALID_REQUEST, None)] * 3


async def test_a_mixed_batch_answers_only_the_calls_in_request_order(
    client: Client, toy: Toy
) -> None:
    batch = [
        request("math.add", [1, 2], id="1"),
        notification("note", ["first"]),
        request("math.add", {"a": 4}, id="2"),
        {"foo": "boo"},
        request("foo.get", {"name": "myself"}, id="5"),
        request("whoami", id="9"),
        notification("note", ["second"]),
    ]
    status, body = await post(client, batch)
    assert status == 200
    assert body[0] == {"jsonrpc": "2.0", "result": 3, "id": "1"}
    assert body[1] == {"jsonrpc": "2.0", "result": 4, "id": "2"}
    assert error_of(body[2])[0::2] == (rpc.INVALID_REQUEST, None)
    assert error_of(body[3])[0::2] == (rpc.METHOD_NOT_FOUND, "5")
    assert body[4] == {"jsonrpc": "2.0", "result": "ada", "id": "9"}
    assert len(body) == 5
    assert sorted(toy.notified) == ["first", "second"]


async def test_a_batch_of_only_notifications_gets_no_response(client: Client, toy: Toy) -> None:
    batch = [notification("note", ["a"]), notification("note", ["b"]), notification("foobar")]
    status, body = await post(client, batch)
    assert (status, body) == (204, None)
    assert sorted(toy.notified) == ["a", "b"]


async def test_a_batch_runs_its_calls_concurrently_and_answers_in_request_order(
    client: Client,
) -> None:
    batch = [request("rendezvous.wait", ["k"], id=1), request("rendezvous.release", ["k"], id=2)]
    _, body = await post(client, batch)
    assert [(r["id"], r["result"]) for r in body] == [(1, "released"), (2, "done")]


async def test_a_batch_of_one_hundred_is_answered(client: Client) -> None:
    _, body = await post(client, [request("ping", id=i) for i in range(100)])
    assert [r["id"] for r in body] == list(range(100))


async def test_a_batch_over_one_hundred_is_one_invalid_request_error(client: Client) -> None:
    status, body = await post(client, [request("ping", id=i) for i in range(101)])
    assert status == 200 and isinstance(body, dict)
    code, text, id_ = error_of(body)
    assert (code, id_) == (rpc.INVALID_REQUEST, None)
    assert "at most 100" in text


# --- authentication --------------------------------------------------------------------------


async def test_a_method_that_needs_authentication_refuses_a_stranger(
    client: Client, toy: Toy
) -> None:
    _, body = await post(client, request("whoami"), headers=JSON_HEADERS)
    assert error_of(body)[:2] == (rpc.UNAUTHENTICATED, "log in first")
    assert toy.authentications == [""]


async def test_an_authenticated_call_sees_what_the_hook_stored(client: Client) -> None:
    _, body = await post(client, request("whoami"))
    assert body["result"] == "ada"


async def test_a_batch_authenticates_once(client: Client, toy: Toy) -> None:
    batch = [request("whoami", id=i) for i in range(5)] + [request("math.add", [1, 1], id=5)]
    _, body = await post(client, batch)
    assert [r["result"] for r in body] == ["ada"] * 5 + [2]
    assert toy.authentications == ["Bearer good"]


async def test_a_refused_batch_authenticates_once_and_refuses_every_private_call(
    client: Client, toy: Toy
) -> None:
    batch = [request("whoami", id=1), request("ping", id=2), request("math.add", [1], id=3)]
    _, body = await post(client, batch, headers=JSON_HEADERS)
    assert error_of(body[0])[0] == rpc.UNAUTHENTICATED
    assert body[1]["result"] == "pong"
    assert error_of(body[2])[0] == rpc.UNAUTHENTICATED
    assert len(toy.authentications) == 1


async def test_public_methods_never_authenticate(client: Client, toy: Toy) -> None:
    batch = [request("ping", id=1), request("greet", ["ada"], id=2), request("rpc.discover", id=3)]
    _, body = await post(client, batch, headers=JSON_HEADERS)
    assert all("result" in r for r in body)
    assert toy.authentications == []


async def test_without_a_hook_private_methods_are_refused() -> None:
    api = Api()

    @api.method("secret")
    async def secret(call: Call) -> str:
        return "s"

    @api.method("open", public=True)
    async def open_(call: Call) -> str:
        return "o"

    async with await serve(api.handler(max_body_bytes=MAX_BODY)) as test_client:
        _, body = await post(test_client, [request("secret", id=1), request("open", id=2)])
    assert error_of(body[0])[0] == rpc.UNAUTHENTICATED
    assert body[1]["result"] == "o"


# --- cookies ---------------------------------------------------------------------------------


async def test_cookies_set_by_a_method_reach_the_client(client: Client) -> None:
    data = msgspec.json.encode(request("login", ["ada"]))
    async with client.post("/rpc", data=data, headers=JSON_HEADERS) as response:
        assert (await response.json())["result"] is True
        cookies = response.headers.getall("Set-Cookie")
    session = next(c for c in cookies if c.startswith("session="))
    assert "session=token-ada" in session and "HttpOnly" in session and "Strict" in session
    old = next(c for c in cookies if c.startswith("old_session="))
    assert "Max-Age=0" in old


async def test_cookies_set_by_a_notification_reach_the_client(client: Client) -> None:
    data = msgspec.json.encode(notification("login", ["bob"]))
    async with client.post("/rpc", data=data, headers=JSON_HEADERS) as response:
        assert response.status == 204
        assert response.cookies["session"].value == "token-bob"


# --- the HTTP layer --------------------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_body_that_is_not_declared_json_is_refused_with_415(
    client: Client, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    data = msgspec.json.encode(request("ping"))
    async with client.post(
        "/rpc", data=data, headers=headers, skip_auto_headers=["Content-Type"]
    ) as response:
        assert response.status == 415
        assert response.content_type == "application/json"
        body = await response.json()
    code, text, id_ = error_of(body)
    assert (code, id_) == (rpc.INVALID_REQUEST, None)
    assert text == "Content-Type must be application/json"


async def test_get_is_not_allowed(client: Client) -> None:
    async with client.get("/rpc") as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"


async def test_a_body_over_the_limit_is_refused_with_413(client: Client) -> None:
    big = msgspec.json.encode(request("greet", ["x" * MAX_BODY]))
    status, body = await post(client, big)
    assert status == 413
    assert body == {
        "jsonrpc": "2.0",
        "error": {
            "code": rpc.TOO_LARGE,
            "message": f"the request body is larger than {MAX_BODY} bytes",
        },
        "id": None,
    }


async def test_a_body_of_exactly_the_limit_is_read(client: Client) -> None:
    message = msgspec.json.encode(request("greet", ["x"]))
    padded = message + b" " * (MAX_BODY - len(message))
    status, body = await post(client, padded)
    assert (status, body["result"]) == (200, "hello x")


async def test_a_chunked_body_over_the_limit_is_refused_with_413(client: Client) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"jsonrpc": "2.0", "method": "greet", "params": ["'
        for _ in range(10):
            yield b"x" * (MAX_BODY // 4)
        yield b'"], "id": 1}'

    async with client.post("/rpc", data=chunks(), headers=JSON_HEADERS) as response:
        assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
        assert response.status == 413
        body = await response.json()
    assert error_of(body)[:2] == (
        rpc.TOO_LARGE,
        f"the request body is larger than {MAX_BODY} bytes",
    )


async def test_a_chunked_body_under_the_limit_is_read(client: Client) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"jsonrpc": "2.0", "method": "greet",'
        yield b' "params": ["ada"], "id": 1}'

    async with client.post("/rpc", data=chunks(), headers=JSON_HEADERS) as response:
        assert (await response.json())["result"] == "hello ada"


async def test_a_body_that_stalls_is_refused_with_408(toy: Toy) -> None:
    never = asyncio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"jsonrpc": "2.0",'
        await never.wait()
        yield b"}"

    view = toy.api.handler(max_body_bytes=MAX_BODY, read_timeout=0.2)
    async with await serve(view) as test_client:
        try:
            async with test_client.post("/rpc", data=chunks(), headers=JSON_HEADERS) as response:
                assert response.status == 408
                body = await response.json()
        finally:
            never.set()
    assert error_of(body)[0] == rpc.INVALID_REQUEST
    assert "did not arrive within 0.2 seconds" in body["error"]["message"]


def test_each_error_code_name_of_the_module_is_its_member() -> None:
    assert all(getattr(rpc, code.name) is code for code in rpc.ErrorCode)


def test_the_handler_is_a_plain_aiohttp_view(toy: Toy) -> None:
    view = toy.api.handler(max_body_bytes=MAX_BODY)
    assert issubclass(view, rpc.RpcView) and rpc.RpcView.__bases__ == (web.View,)
    assert view.max_body_bytes == MAX_BODY and view.api is toy.api


# --- OpenRPC ---------------------------------------------------------------------------------


async def test_rpc_discover_returns_an_openrpc_document_of_the_methods(
    client: Client,
) -> None:
    _, body = await post(client, request("rpc.discover"), headers=JSON_HEADERS)
    document = body["result"]
    assert document["openrpc"] == "1.2.6"
    assert document["info"] == {"title": "cellbus", "version": metadata.version("cellbus-web")}
    methods = {m["name"]: m for m in document["methods"]}
    assert "rpc.discover" not in methods
    assert {"math.add", "greet", "geometry.move", "whoami", "login"} <= set(methods)

    add = methods["math.add"]
    assert add["summary"] == "Add two integers."
    assert add["description"] == "The second one defaults to zero."
    assert add["params"] == [
        {"name": "a", "required": True, "schema": {"type": "integer"}},
        {"name": "b", "required": False, "schema": {"type": "integer"}},
    ]
    assert add["result"] == {"name": "result", "schema": {"type": "integer"}}
    assert {"code": rpc.UNAUTHENTICATED, "message": "unauthenticated"} in add["errors"]
    assert {e["code"] for e in add["errors"]} == set(rpc.REMOTE_ERRORS.values())

    greet = methods["greet"]
    assert "description" not in greet
    assert greet["params"][1] == {
        "name": "title",
        "required": False,
        "schema": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    }
    move = methods["geometry.move"]
    assert move["params"][0]["schema"] == {"$ref": "#/components/schemas/Point"}
    assert move["result"]["schema"] == {"$ref": "#/components/schemas/Point"}
    point = document["components"]["schemas"]["Point"]
    assert point["properties"] == {"x": {"type": "integer"}, "y": {"type": "integer"}}


async def test_the_openrpc_document_is_well_formed(toy: Toy) -> None:
    """The meta-schema cannot be fetched here, so its rules that matter are checked by hand."""
    document = toy.api.openrpc(title="toy", version="1.2.3")
    assert set(document) == {"openrpc", "info", "methods", "components"}
    names = [m["name"] for m in document["methods"]]
    assert len(names) == len(set(names))
    components = document["components"]["schemas"]

    def refs(value: Any) -> list[str]:
        if isinstance(value, dict):
            found = [value["$ref"]] if "$ref" in value else []
            return found + [r for v in value.values() for r in refs(v)]
        if isinstance(value, list):
            return [r for v in value for r in refs(v)]
        return []

    for name in refs(document):
        assert name.startswith("#/components/schemas/")
        assert name.removeprefix("#/components/schemas/") in components
    for method in document["methods"]:
        assert set(method) <= {"name", "summary", "description", "params", "result", "errors"}
        required = [p["required"] for p in method["params"]]
        assert required == sorted(required, reverse=True), "optional params must come last"
        for descriptor in [*method["params"], method["result"]]:
            assert isinstance(descriptor["name"], str)
            jsonschema.Draft7Validator.check_schema(descriptor["schema"])
        codes = [e["code"] for e in method["errors"]]
        assert len(codes) == len(set(codes))
    for schema in components.values():
        jsonschema.Draft7Validator.check_schema(schema)


# --- registration ----------------------------------------------------------------------------


def test_registration_refuses_what_could_not_be_served() -> None:
    api = Api()

    def sync(call: Call) -> None:
        pass

    async def spread(call: Call, *args: int) -> None:
        pass

    async def unschemable(call: Call, thing: object) -> None:
        pass

    async def ping(call: Call) -> str:
        return "pong"

    with pytest.raises(TypeError, match="async"):
        api.method("sync")(sync)  # type: ignore[arg-type]  # the point: it is not async
    with pytest.raises(TypeError, match="name"):
        api.method("spread")(spread)
    with pytest.raises(TypeError):
        api.method("unschemable")(unschemable)
    with pytest.raises(ValueError, match="reserved"):
        api.method("rpc.ping")
    api.method("ping")(ping)
    with pytest.raises(ValueError, match="twice"):
        api.method("ping")(ping)
