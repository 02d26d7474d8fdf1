"""Bad clients against the real stack: malformed JSON, wrong content types, oversized bodies,
unknown routes and methods, order ids of every shape, WebSocket garbage and abrupt
disconnects on /ws/trades, /ws/orderbook and /graphql (graphql-transport-ws and graphql-ws).

After each abuse the service must still be up and serving others: both replicas answer
/health/ready with 200, and a fresh client places an order on one replica and reads it back
on the other (`still_serving`). Bad input must never reach the engine (nothing is appended
to the command stream), and live feeds must still deliver every trade afterwards.

Where the server does something wrong (a 5xx, a connection dropped without a close frame),
the precise expectation is a separate test marked xfail(strict=True), so that the "still
serving" checks of the same case stay hard assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.api.test_graphql import Feed
from tests.fuzz.conftest import JSON, CommandLog

pytestmark = pytest.mark.usefixtures("empty_book")

TIMEOUT = 10.0
MEGABYTE = 1024 * 1024


def xfail(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=reason)


# -- malformed JSON ---------------------------------------------------------------------------

# (id, raw body, REST status, REST error code)
MALFORMED: list[tuple[str, bytes, int, str]] = [
    ("empty", b"", 400, "invalid_json"),
    ("whitespace", b" \n\t ", 400, "invalid_json"),
    ("truncated", b'{"side": 1, "price": 1', 400, "invalid_json"),
    ("not-json", b"{not json}", 400, "invalid_json"),
    ("single-quotes", b"{'side': 1, 'price': 1, 'quantity': 1}", 400, "invalid_json"),
    ("trailing-garbage", b'{"side": 1, "price": 1, "quantity": 1} x', 400, "invalid_json"),
    ("trailing-comma", b'{"side": 1, "price": 1, "quantity": 1,}', 400, "invalid_json"),
    ("nul-byte", b'{"side": 1,\x00 "price": 1, "quantity": 1}', 400, "invalid_json"),
    ("invalid-utf8", b'{"side": 1, "price": "\xff\xfe", "quantity": 1}', 400, "invalid_json"),
    (
        # json.loads decodes bytes with surrogatepass: the lone surrogate is a (bad) price
        "lone-surrogate-bytes",
        b'{"side": 1, "price": "\xed\xa0\x80", "quantity": 1}',
        422,
        "invalid_request",
    ),
    ("deep-nesting", b"[" * 8000 + b"]" * 8000, 400, "invalid_json"),  # within the 16 KiB
    (
        "huge-integer",
        b'{"side": 1' + b"0" * 5000 + b', "price": 1, "quantity": 1}',
        400,
        "invalid_json",
    ),
    ("null", b"null", 422, "invalid_request"),
    ("number", b"42", 422, "invalid_request"),
    ("string", b'"side=1"', 422, "invalid_request"),
    ("array", b'[{"side": 1, "price": 1, "quantity": 1}]', 422, "invalid_request"),
]
MALFORMED_IDS = [case[0] for case in MALFORMED]


@pytest.mark.parametrize(("name", "raw", "status", "error"), MALFORMED, ids=MALFORMED_IDS)
def test_rest_malformed_json(
    http: httpx.Client,
    commands: CommandLog,
    still_serving: Callable[[], None],
    name: str,
    raw: bytes,
    status: int,
    error: str,
) -> None:
    before = commands.mark()
    resting = http.post("/orders", json={"side": -1, "price": 900, "quantity": 3}).json()
    for method, url in (("POST", "/orders"), ("PUT", f"/orders/{resting['order_id']}")):
        response = http.request(method, url, content=raw, headers=JSON)
        assert response.status_code == status, (method, response.status_code, response.text)
        assert response.json()["error"] == error, response.text
    assert commands.since(before) == 1  # only the setup order
    still_serving()


@pytest.mark.parametrize(("name", "raw"), [(c[0], c[1]) for c in MALFORMED], ids=MALFORMED_IDS)
def test_graphql_malformed_json_leaves_service_serving(
    http: httpx.Client,
    commands: CommandLog,
    still_serving: Callable[[], None],
    name: str,
    raw: bytes,
) -> None:
    before = commands.mark()
    response = http.post("/graphql", content=raw, headers=JSON)
    assert response.status_code != 200, response.text
    assert commands.since(before) == 0
    still_serving()


@pytest.mark.parametrize(("name", "raw"), [(c[0], c[1]) for c in MALFORMED], ids=MALFORMED_IDS)
def test_graphql_malformed_json_is_400(http: httpx.Client, name: str, raw: bytes) -> None:
    response = http.post("/graphql", content=raw, headers=JSON)
    assert response.status_code == 400, (response.status_code, response.text[:300])


@pytest.mark.parametrize(
    "variables",
    [
        pytest.param("[" * 5000 + "]" * 5000, id="deep-nesting"),
        pytest.param("1" * 5000, id="huge-integer"),
        pytest.param("{not json", id="not-json"),
    ],
)
def test_graphql_get_with_malformed_variables_is_400(http: httpx.Client, variables: str) -> None:
    params = {"query": "{ orderBook { seq } }", "variables": variables}
    response = http.get("/graphql", params=params, headers={"accept": "application/json"})
    assert response.status_code == 400, (response.status_code, response.text[:300])


def test_graphql_get_with_malformed_variables_leaves_service_serving(
    base_url: str, still_serving: Callable[[], None]
) -> None:
    for variables in ("[" * 5000 + "]" * 5000, "1" * 5000, "{not json"):
        params = {"query": "{ orderBook { seq } }", "variables": variables}
        # a fresh connection each time: after a 500 the server drops the kept-alive one
        response = httpx.get(
            f"{base_url}/graphql", params=params, headers={"accept": "application/json"}
        )
        assert response.status_code != 200, response.text
    still_serving()


# -- content types ----------------------------------------------------------------------------

# The types a browser may send cross-origin without a preflight (plus none at all): a
# mutation in such a request must never run (the CSRF guard of a JSON-only API).
SIMPLE_TYPES = [
    None,
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
]
OTHER_TYPES = [
    "text/json",
    "application/xml",
    "application/jsonx",
    "application/json-seq",
    "application/octet-stream",
    "*/*",
]
ORDER_BODY = b'{"side": 1, "price": 1, "quantity": 1}'
CANCEL_BODY = b'{"query": "mutation { cancelOrder(id: \\"1\\") { success } }"}'


@pytest.mark.parametrize("content_type", [*SIMPLE_TYPES, *OTHER_TYPES], ids=str)
def test_rest_wrong_content_type_is_415(
    http: httpx.Client,
    commands: CommandLog,
    still_serving: Callable[[], None],
    content_type: str | None,
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    before = commands.mark()
    for method, url in (("POST", "/orders"), ("PUT", "/orders/1")):
        response = http.request(method, url, content=ORDER_BODY, headers=headers)
        assert response.status_code == 415, (method, response.status_code, response.text)
        assert response.json()["error"] == "unsupported_media_type"
    assert commands.since(before) == 0
    still_serving()


@pytest.mark.parametrize("content_type", SIMPLE_TYPES, ids=str)
def test_graphql_mutation_in_a_simple_request_is_refused(
    http: httpx.Client,
    commands: CommandLog,
    still_serving: Callable[[], None],
    content_type: str | None,
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    before = commands.mark()
    response = http.post("/graphql", content=CANCEL_BODY, headers=headers)
    assert response.status_code == 400, (response.status_code, response.text)
    assert commands.since(before) == 0
    still_serving()


@pytest.mark.parametrize("content_type", OTHER_TYPES, ids=str)
def test_graphql_other_content_types_are_no_5xx(
    http: httpx.Client, still_serving: Callable[[], None], content_type: str
) -> None:
    body = b'{"query": "{ orderBook { seq } }"}'
    response = http.post("/graphql", content=body, headers={"content-type": content_type})
    assert response.status_code < 500, (response.status_code, response.text)
    still_serving()


def test_json_with_parameters_and_case_is_accepted(http: httpx.Client) -> None:
    """The content-type check is not so strict that it refuses valid JSON spellings."""
    for content_type in ("application/json; charset=utf-8", "Application/JSON"):
        response = http.post("/orders", content=ORDER_BODY, headers={"content-type": content_type})
        assert response.status_code == 201, (content_type, response.text)
        http.delete(f"/orders/{response.json()['order_id']}")


# -- oversized requests -----------------------------------------------------------------------


def _chunks(total: int) -> Iterator[bytes]:
    """A JSON body of `total` bytes sent chunked, without a Content-Length."""
    yield b'{"side": 1, "price": 1, "quantity": 1, "client_order_id": "'
    for _ in range(total // 65536):
        yield b"x" * 65536
    yield b'"}'


def test_oversized_rest_bodies_are_413(
    http: httpx.Client, commands: CommandLog, still_serving: Callable[[], None]
) -> None:
    big = b'{"side": 1, "price": 1, "quantity": 1, "pad": "' + b"x" * MEGABYTE + b'"}'
    before = commands.mark()
    for method, url in (("POST", "/orders"), ("PUT", "/orders/1")):
        declared = http.request(method, url, content=big, headers=JSON)
        assert declared.status_code == 413, (method, declared.text)
        assert declared.json()["error"] == "body_too_large"
        streamed = http.request(method, url, content=_chunks(MEGABYTE), headers=JSON)
        assert streamed.status_code == 413, (method, streamed.text)
    assert commands.since(before) == 0
    still_serving()


def test_oversized_graphql_body_and_headers_are_refused_unparsed(
    http: httpx.Client, commands: CommandLog, still_serving: Callable[[], None]
) -> None:
    """The body limit applies to GraphQL as to REST, before any parsing: valid or not,
    a body over it is a 413; headers over their limit are a 431."""
    before = commands.mark()
    padded = json.dumps({"query": "{ orderBook { seq } }" + " " * MEGABYTE}).encode()
    assert http.post("/graphql", content=padded, headers=JSON).status_code == 413
    variables = {"query": "{ orderBook { seq } }", "variables": {"pad": "x" * MEGABYTE}}
    assert http.post("/graphql", json=variables).status_code == 413
    garbage = http.post("/graphql", content=b"{" + b"x" * MEGABYTE, headers=JSON)
    assert garbage.status_code == 413, garbage.text[:200]
    assert garbage.json()["error"] == "body_too_large"
    header = http.get("/orders", params={"limit": 1}, headers={"x-pad": "x" * MEGABYTE})
    assert header.status_code == 431, header.text[:200]
    assert commands.since(before) == 0
    still_serving()


# -- raw HTTP: paths httpx would normalise, invalid request lines -----------------------------


def _raw_http(base_url: str, request: bytes) -> bytes:
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    return response


def _raw_get(base_url: str, target: bytes) -> tuple[int, bytes]:
    response = _raw_http(
        base_url, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    status = int(response.split(b" ", 2)[1])
    return status, response


TRAVERSALS = [
    b"/../../../../etc/passwd",
    b"/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    b"/..%2f..%2f..%2fetc%2fpasswd",
    b"/orders/../../../etc/passwd",
    b"/....//....//etc/passwd",
    b"/../pyproject.toml",
    b"/..%5c..%5cpyproject.toml",
    b"/index.html%00.js",
]


@pytest.mark.parametrize("target", TRAVERSALS, ids=[t.decode() for t in TRAVERSALS])
def test_path_traversal_leaks_nothing(base_url: str, target: bytes) -> None:
    status, response = _raw_get(base_url, target)
    assert status == 404, response[:300]
    assert b"root:" not in response and b"[project]" not in response


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"FOO /orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
        (b"GET /orders/\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
        (
            b"GET /orders?x="
            + b"a" * MEGABYTE
            + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            414,  # over MAX_HEADER_BYTES: refused before the rest of the head is read
        ),
        (
            b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: abc\r\nConnection: close\r\n\r\n{}",
            400,
        ),
        (
            b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: -5\r\nConnection: close\r\n\r\n{}",
            400,
        ),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),  # TLS on the plain port
    ],
    ids=[
        "garbage",
        "unknown-method",
        "invalid-utf8-path",
        "1mb-url",
        "bad-length",
        "negative-length",
        "tls",
    ],
)
def test_invalid_http_is_refused(
    base_url: str,
    commands: CommandLog,
    still_serving: Callable[[], None],
    request_bytes: bytes,
    status: int,
) -> None:
    before = commands.mark()
    response = _raw_http(base_url, request_bytes)
    assert response.startswith(b"HTTP/1.1 %d " % status), response[:300]
    assert commands.since(before) == 0
    still_serving()


def test_client_that_stops_mid_body_does_not_block_others(
    base_url: str, commands: CommandLog, still_serving: Callable[[], None]
) -> None:
    """A declared body that never fully arrives ties up only its own connection."""
    parts = urlsplit(base_url)
    before = commands.mark()
    sockets = []
    for _ in range(20):
        sock = socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT)
        sock.sendall(
            b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"side": 1, '
        )
        sockets.append(sock)
    try:
        still_serving()  # places and cancels one order: two commands
        assert commands.since(before) == 2
    finally:
        for sock in sockets:
            sock.close()
    time.sleep(0.3)  # the server sees the disconnects: a cut body must not become an order
    assert commands.since(before) == 2
    still_serving()


# -- unknown routes and methods ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "status"),
    [
        ("GET", "/nope", 404),
        ("POST", "/nope", 404),
        ("GET", "/orders/1/extra", 404),
        ("GET", "/graphql/extra", 404),
        ("GET", "/ws/trades", 404),
        ("DELETE", "/orders", 405),
        ("PATCH", "/orders", 405),
        ("PUT", "/orders", 405),
        ("POST", "/orders/1", 405),
        ("PATCH", "/orders/1", 405),
        ("TRACE", "/orders/1", 405),
        ("DELETE", "/trades", 405),
        ("POST", "/orderbook", 405),
        ("PATCH", "/graphql", 405),
    ],
)
def test_unknown_route_or_method_answers_in_the_error_shape(
    http: httpx.Client,
    commands: CommandLog,
    still_serving: Callable[[], None],
    method: str,
    url: str,
    status: int,
) -> None:
    before = commands.mark()
    response = http.request(method, url, content=ORDER_BODY, headers=JSON)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == {404: "not_found", 405: "method_not_allowed"}[status], body
    assert body["message"]
    assert commands.since(before) == 0
    still_serving()


@pytest.mark.parametrize(
    ("method", "url", "allowed"),
    [
        ("PATCH", "/orders", {"GET", "POST"}),
        ("PATCH", "/orders/1", {"GET", "PUT", "DELETE"}),
        ("OPTIONS", "/orders/1", {"GET", "PUT", "DELETE"}),
        ("PATCH", "/graphql", {"GET", "POST"}),
        ("DELETE", "/trades", {"GET"}),
        ("HEAD", "/orders", {"GET", "POST"}),
    ],
)
def test_405_allow_header_names_the_real_methods(
    http: httpx.Client, method: str, url: str, allowed: set[str]
) -> None:
    response = http.request(method, url)
    assert response.status_code == 405
    methods = {m.strip() for m in response.headers.get("allow", "").split(",")} - {"HEAD", ""}
    assert methods == allowed, response.headers.get("allow")


@pytest.mark.parametrize(
    "url",
    [url for url in ("/health/ready", "/orders", "/trades", "/orderbook")],
)
def test_head_on_a_get_route_is_not_404(http: httpx.Client, url: str) -> None:
    response = http.head(url)
    assert response.status_code in (200, 405), response.status_code


# -- order ids of every shape -----------------------------------------------------------------

BAD_IDS = [
    "",
    " ",
    "%20",
    "%09",
    "%0A1",
    "é",
    "%C3%A9",
    "\u0661\u0662",  # Arabic-Indic digits: str.isdigit() is true
    "\uff11",  # fullwidth one
    "1" * 40,
    str(10**40),
    "-1",
    "+1",
    "0",
    "000",
    "1.5",
    "1e3",
    "0x10",
    "1 ",
    "..",
    "..%2F",
    "%2e%2e%2f",
    "%00",
    "1%00",
    "%ff",
    "null",
    "undefined",
    "[1]",
    "1;DROP TABLE orders",
    "a" * 2000,
]


@pytest.mark.parametrize("bad_id", BAD_IDS, ids=[repr(i)[:30] for i in BAD_IDS])
def test_rest_invalid_order_id(http: httpx.Client, commands: CommandLog, bad_id: str) -> None:
    before = commands.mark()
    for method in ("GET", "PUT", "DELETE"):
        if method == "PUT":
            response = http.request(
                method, f"/orders/{bad_id}", content=b'{"price": 1}', headers=JSON
            )
        else:
            response = http.request(method, f"/orders/{bad_id}")
        assert response.status_code < 500, (method, response.status_code, response.text)
        if response.status_code < 400:
            # "", ".." and "." segments redirect or resolve to another route: never an order
            assert method == "GET" or 300 <= response.status_code < 400, response.status_code
        elif response.status_code == 422:
            assert response.json()["errors"][0]["field"] == "order_id", response.text
    assert commands.since(before) == 0


def test_rest_raw_dot_segments_and_nul_in_id(base_url: str, commands: CommandLog) -> None:
    """Ids httpx would normalise or refuse to send, written on the wire as they are."""
    before = commands.mark()
    for target in (b"/orders/../", b"/orders/./1", b"/orders/%00", b"/orders/1%2F2"):
        status, response = _raw_get(base_url, target)
        assert status < 500, response[:300]
        if status < 400:  # dot segments redirect or resolve to another route, never an order
            assert 300 <= status < 400 or b'"order_id"' not in response, response[:300]
    assert commands.since(before) == 0


ORDER_QUERY = "query($id: ID!) { order(id: $id) { orderId } }"
CANCEL = "mutation($id: ID!) { cancelOrder(id: $id) { success reason errors { field } } }"
MODIFY = "mutation($id: ID!) { modifyOrder(id: $id, price: 1) { success reason errors { field } } }"
GRAPHQL_BAD_IDS: list[object] = [
    "",
    " ",
    "é",
    "\u0661\u0662",
    "\uff11",
    "1" * 40,
    "-1",
    "+1",
    "0",
    "1.5",
    "0x10",
    "../",
    "\u0000",
    "1\u0000",
    "a" * 2000,
    10**40,
    -1,
    0,
]


@pytest.mark.parametrize("bad_id", GRAPHQL_BAD_IDS, ids=[repr(i)[:30] for i in GRAPHQL_BAD_IDS])
def test_graphql_invalid_order_id(http: httpx.Client, commands: CommandLog, bad_id: object) -> None:
    before = commands.mark()
    order = http.post("/graphql", json={"query": ORDER_QUERY, "variables": {"id": bad_id}})
    assert order.status_code == 200, order.text
    assert order.json() == {"data": {"order": None}}
    for query, name in ((CANCEL, "cancelOrder"), (MODIFY, "modifyOrder")):
        response = http.post("/graphql", json={"query": query, "variables": {"id": bad_id}})
        assert response.status_code == 200, response.text
        result = response.json()["data"][name]
        assert (result["success"], result["reason"]) == (False, "invalid_input"), result
        assert result["errors"] == [{"field": "id"}], result
    assert commands.since(before) == 0


@pytest.mark.parametrize("bad_id", [1.5, True, None, [1], {"id": 1}], ids=repr)
def test_graphql_id_of_the_wrong_json_type_is_a_graphql_error(
    http: httpx.Client, commands: CommandLog, bad_id: object
) -> None:
    before = commands.mark()
    for query in (ORDER_QUERY, CANCEL, MODIFY):
        response = http.post("/graphql", json={"query": query, "variables": {"id": bad_id}})
        assert response.status_code < 500, response.text
        payload = response.json()
        assert payload.get("errors") and payload.get("data") is None, payload
    assert commands.since(before) == 0


# -- WebSockets -------------------------------------------------------------------------------

TRANSPORT_WS = Subprotocol("graphql-transport-ws")
LEGACY_WS = "graphql-ws"
INIT = json.dumps({"type": "connection_init"})


def ws_url(base_url: str, path: str) -> str:
    return "ws://" + base_url.removeprefix("http://") + path


@dataclass
class WsOutcome:
    """How a WebSocket exchange ended: messages received, then a close frame (code), an
    abnormal closure (the TCP connection dropped without a close frame), or still open."""

    messages: list[str | bytes] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    abnormal: bool = False


@dataclass(frozen=True)
class BadText:
    """Bytes sent in a *text* frame (so they can be invalid UTF-8)."""

    data: bytes


async def ws_exchange(
    url: str, frames: list[str | bytes | BadText], subprotocol: str | None = None, wait: float = 1.5
) -> WsOutcome:
    """Send `frames`, then read until the server closes or `wait` seconds pass in silence."""
    outcome = WsOutcome()
    protocols = [Subprotocol(subprotocol)] if subprotocol else None
    async with connect(
        url, subprotocols=protocols, open_timeout=TIMEOUT, close_timeout=2, max_size=None
    ) as ws:
        try:
            for frame in frames:
                if isinstance(frame, BadText):
                    await ws.send(frame.data, text=True)
                else:
                    await ws.send(frame)
            while True:
                outcome.messages.append(await asyncio.wait_for(ws.recv(), wait))
        except TimeoutError:
            pass
        except ConnectionClosed as closed:
            if closed.rcvd is None:
                outcome.abnormal = True
            else:
                outcome.close_code, outcome.close_reason = closed.rcvd.code, closed.rcvd.reason
    return outcome


@pytest.fixture
async def ahttp(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
        yield client


async def aplace(client: httpx.AsyncClient, side: int, price: object, quantity: int) -> str:
    response = await client.post(
        "/orders", json={"side": side, "price": price, "quantity": quantity}
    )
    assert response.status_code == 201, response.text
    order_id: str = response.json()["order_id"]
    return order_id


async def ws_json(ws: ClientConnection) -> AsyncIterator[dict[str, Any]]:
    async for raw in ws:
        yield json.loads(raw)


async def make_feeds_live(client: httpx.AsyncClient, feeds: list[Feed], price: int) -> None:
    """Cross 1-lot probes at `price` until every feed has delivered a trade: a subscription
    is live some time after the client asked for it, and nothing tells the client when.
    Leaves a 1000-lot ask resting at `price`."""
    await aplace(client, -1, price, 1000)
    waiting = list(feeds)
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while waiting:
        assert asyncio.get_running_loop().time() < deadline, "a feed never delivered a trade"
        await aplace(client, 1, price, 1)
        still = []
        for feed in waiting:
            try:
                await feed.next(0.5)
            except TimeoutError:
                still.append(feed)
        waiting = still


JUNK = bytes(range(256)) * 4

PLAIN_WS_CASES = [
    pytest.param([JUNK], id="binary-junk"),
    # Under the message size (64 KiB) and burst (200) limits: over them, the connection is
    # closed (tests/hardening/test_abuse.py).
    pytest.param(["x" * 60_000], id="60kb-text"),
    pytest.param([JUNK * 60], id="60kb-binary"),
    pytest.param(["{not json"] * 150, id="150-frames"),
    pytest.param([json.dumps({"type": "subscribe", "id": "1"})], id="graphql-message"),
]


@pytest.mark.parametrize("frames", PLAIN_WS_CASES)
async def test_ws_trades_ignores_garbage_and_keeps_delivering(
    base_url: str,
    ahttp: httpx.AsyncClient,
    still_serving: Callable[[], None],
    frames: list[str | bytes],
) -> None:
    async with connect(ws_url(base_url, "/ws/trades"), open_timeout=TIMEOUT, max_size=None) as ws:
        for frame in frames:
            await ws.send(frame)
        feed = Feed(ws_json(ws))
        try:
            await make_feeds_live(ahttp, [feed], 313)
            bid = await aplace(ahttp, 1, 313, 2)
            trade = await feed.until(lambda t: t["bid_order_id"] == bid)
            assert (trade["trade_price"], trade["quantity"]) == (313, 2), trade
        finally:
            await feed.close()
    still_serving()


@pytest.mark.parametrize("frames", PLAIN_WS_CASES)
async def test_ws_orderbook_ignores_garbage_and_keeps_delivering(
    base_url: str, still_serving: Callable[[], None], frames: list[str | bytes]
) -> None:
    async with connect(
        ws_url(base_url, "/ws/orderbook"), open_timeout=TIMEOUT, max_size=None
    ) as ws:
        for frame in frames:
            await ws.send(frame)
        for _ in range(2):  # books arrive every second (BOOK_INTERVAL_S=1)
            book = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert {"timestamp", "seq", "bids", "asks"} <= set(book), book
    still_serving()


@pytest.mark.parametrize("path", ["/ws/trades", "/ws/orderbook", "/ws/orders", "/ws/book"])
async def test_ws_invalid_utf8_text_is_closed_with_1007(
    base_url: str, still_serving: Callable[[], None], path: str
) -> None:
    outcome = await ws_exchange(ws_url(base_url, path), [BadText(b'{"a": "\xff\xfe"}')], wait=5)
    assert outcome.close_code == 1007, outcome
    still_serving()


async def _abort(ws: ClientConnection) -> None:
    """Drop the TCP connection: no close frame, no FIN handshake on the WebSocket level."""
    ws.transport.abort()
    with contextlib.suppress(Exception):
        await ws.wait_closed()


async def test_abrupt_disconnects_lose_no_event(
    base_url: str,
    base_url2: str,
    ahttp: httpx.AsyncClient,
    commands: CommandLog,
    still_serving: Callable[[], None],
) -> None:
    """Many clients vanish mid-stream (subscribed and receiving, mid-message, mid-handshake)
    on every live endpoint of both replicas; then fresh subscribers on both replicas still
    get the next trade."""
    parts = urlsplit(base_url)
    before = commands.mark()
    doomed: list[ClientConnection] = []
    for url in (base_url, base_url2):
        for _ in range(5):
            for path in ("/ws/trades", "/ws/orderbook"):
                doomed.append(await connect(ws_url(url, path), open_timeout=TIMEOUT))
            ws = await connect(
                ws_url(url, "/graphql"), subprotocols=[TRANSPORT_WS], open_timeout=TIMEOUT
            )
            await ws.send(INIT)
            await ws.recv()
            for number, query in enumerate(("trades { tradeId }", "orderBook { seq }")):
                payload = {"query": f"subscription {{ {query} }}"}
                await ws.send(
                    json.dumps({"type": "subscribe", "id": str(number), "payload": payload})
                )
            await ws.send('{"type": "subscribe", "id": "9", "payl')  # cut mid-message
            doomed.append(ws)
    # trades and books are flowing to every doomed client when it vanishes
    ask = await aplace(ahttp, -1, 311, 5)
    await aplace(ahttp, 1, 311, 5)
    await asyncio.sleep(1.2)
    for ws in doomed:
        await _abort(ws)
    for _ in range(5):  # an upgrade request cut off before its end
        with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET /ws/trades HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
    assert (await ahttp.get(f"/orders/{ask}")).json()["traded_quantity"] == 5
    assert commands.since(before) == 2  # the two orders above; nothing from the vanished clients

    sockets = [
        await connect(ws_url(url, "/ws/trades"), open_timeout=TIMEOUT)
        for url in (base_url, base_url2)
    ]
    feeds = [Feed(ws_json(ws)) for ws in sockets]
    try:
        await make_feeds_live(ahttp, feeds, 317)
        bid = await aplace(ahttp, 1, 317, 3)  # crosses the resting 1000-lot ask
        for feed in feeds:
            trade = await feed.until(lambda t: t["bid_order_id"] == bid)
            assert (trade["quantity"], trade["trade_price"]) == (3, 317), trade
    finally:
        for feed in feeds:
            await feed.close()
        for ws in sockets:
            await ws.close()
    still_serving()


# -- GraphQL over WebSocket -------------------------------------------------------------------

SUBSCRIBE_BOOK = json.dumps(
    {"type": "subscribe", "id": "1", "payload": {"query": "subscription { orderBook { seq } }"}}
)
HUGE_VARIABLE = (
    '{"type": "subscribe", "id": "1", "payload": {"query": "{ orderBook { seq } }", '
    '"variables": {"x": ' + "1" * 5000 + "}}}"
)


@dataclass(frozen=True)
class WsCase:
    id: str
    frames: list[str | bytes | BadText]
    close_code: int | None  # what the protocol prescribes; None: any orderly outcome
    bug: str | None = None


TRANSPORT_CASES = [
    WsCase("invalid-json", [INIT, "{not json"], 4400),
    WsCase("1mb-garbage", [INIT, "x" * MEGABYTE], 1009),  # over WS_MAX_MESSAGE_BYTES
    WsCase("binary-frame", [INIT, JUNK], 4400),
    WsCase("invalid-utf8", [INIT, BadText(b'{"type": "\xff"}')], 1007),
    WsCase("subscribe-before-init", [SUBSCRIBE_BOOK], 4401),
    WsCase("duplicate-id", [INIT, SUBSCRIBE_BOOK, SUBSCRIBE_BOOK], 4409),
    WsCase("init-twice", [INIT, INIT], 4429),
    WsCase("unknown-type", [INIT, json.dumps({"type": "shout"})], 4400),
    WsCase("type-not-a-string", [INIT, json.dumps({"type": 5})], 4400),
    WsCase("subscribe-without-id", [INIT, json.dumps({"type": "subscribe"})], 4400),
    WsCase(
        "init-payload-not-object", [json.dumps({"type": "connection_init", "payload": 5})], 4400
    ),
    WsCase("array-message", [INIT, "[1, 2]"], 4400),
    WsCase("number-message", [INIT, "1"], 4400),
    WsCase("null-message", [INIT, "null"], 4400),
    WsCase("string-message", [INIT, '"subscribe"'], 4400),
    WsCase(
        "payload-not-object",
        [INIT, json.dumps({"type": "subscribe", "id": "1", "payload": []})],
        4400,
    ),
    WsCase(
        "query-not-a-string",
        [INIT, json.dumps({"type": "subscribe", "id": "1", "payload": {"query": 5}})],
        4400,
    ),
    WsCase(
        "id-not-a-string",
        [INIT, json.dumps({"type": "subscribe", "id": [1], "payload": {"query": "{ trades }"}})],
        4400,
    ),
    WsCase("complete-id-not-a-string", [INIT, json.dumps({"type": "complete", "id": {}})], 4400),
    WsCase("huge-integer", [INIT, HUGE_VARIABLE], 4400),
    WsCase("deep-nesting", [INIT, "[" * 30_000 + "]" * 30_000], 4400),  # within 64 KiB
]
LEGACY_CASES = [
    WsCase("legacy-start-before-init", [SUBSCRIBE_BOOK.replace("subscribe", "start")], 4401),
    WsCase("legacy-array-message", [INIT, "[1, 2]"], None),
    WsCase("legacy-huge-integer", [INIT, HUGE_VARIABLE.replace("subscribe", "start")], None),
]
ALL_WS_CASES = [(TRANSPORT_WS, c) for c in TRANSPORT_CASES] + [(LEGACY_WS, c) for c in LEGACY_CASES]


@pytest.mark.parametrize(("protocol", "case"), ALL_WS_CASES, ids=[c.id for _, c in ALL_WS_CASES])
async def test_graphql_ws_abuse_leaves_service_serving(
    base_url: str,
    commands: CommandLog,
    still_serving: Callable[[], None],
    protocol: str,
    case: WsCase,
) -> None:
    before = commands.mark()
    await ws_exchange(ws_url(base_url, "/graphql"), case.frames, protocol)
    assert commands.since(before) == 0
    still_serving()


@pytest.mark.parametrize(
    ("protocol", "case"),
    [pytest.param(p, c, id=c.id, marks=[xfail(c.bug)] if c.bug else []) for p, c in ALL_WS_CASES],
)
async def test_graphql_ws_abuse_is_closed_per_protocol(
    base_url: str, protocol: str, case: WsCase
) -> None:
    """graphql-transport-ws prescribes a close code for each kind of bad message (4400
    invalid message, 4401 unauthorized, 4409 duplicate id, 4429 repeated init); RFC 6455 says
    1007 for invalid UTF-8. Never an abnormal closure (a connection dropped without a close
    frame) and never an open connection after an invalid message. The legacy graphql-ws
    protocol prescribes no codes: there only the abnormal closure is wrong."""
    outcome = await ws_exchange(ws_url(base_url, "/graphql"), case.frames, protocol, wait=3)
    assert not outcome.abnormal, f"connection dropped without a close frame: {outcome}"
    if case.close_code is not None:
        assert outcome.close_code == case.close_code, outcome


async def test_unknown_subprotocol_is_refused_with_4406(base_url: str) -> None:
    outcome = await ws_exchange(ws_url(base_url, "/graphql"), [INIT], "bogus-protocol", wait=5)
    assert outcome.close_code == 4406, outcome


async def test_subscriptions_still_deliver_after_the_abuse(
    base_url: str, base_url2: str, ahttp: httpx.AsyncClient, still_serving: Callable[[], None]
) -> None:
    """After every garbage frame and crashed connection above, a real GraphQL client (gql)
    subscribes on both replicas, on both subprotocols, and receives the same trade."""
    feeds: list[Feed] = []
    async with contextlib.AsyncExitStack() as stack:
        for url, protocol in ((base_url, TRANSPORT_WS), (base_url2, LEGACY_WS)):
            transport = WebsocketsTransport(
                url=ws_url(url, "/graphql"), subprotocols=[protocol], close_timeout=5
            )
            session = await stack.enter_async_context(Client(transport=transport))
            request = GraphQLRequest("subscription { trades { bidOrderId quantity tradePrice } }")
            feeds.append(Feed(session.subscribe(request)))
        try:
            await make_feeds_live(ahttp, feeds, 331)
            bid = await aplace(ahttp, 1, 331, 2)
            for feed in feeds:
                result = await feed.until(lambda r: r["trades"]["bidOrderId"] == bid)
                assert result["trades"] == {"bidOrderId": bid, "quantity": 2, "tradePrice": "331"}
        finally:
            for feed in feeds:
                await feed.close()
    still_serving()
