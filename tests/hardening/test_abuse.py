"""The findings of issue 13, one test each, against a real stack: a hostile or careless
client must not take the API away from everyone else.

The stack runs with short header, body and keep-alive timeouts (1 s, 2 s, 1 s) so the slow
attacks end quickly; `python -m tests.abuse_bench` runs the same attacks with the real
defaults and prints how long each took and what a well-behaved client saw meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
import websockets
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from engine.lease import LEASE_MS
from shared.config import Settings
from shared.stack import Stack
from tests.attacks import (
    PROBE_ADDRESS,
    SILENT_ADDRESS,
    SLOW_BODY_ADDRESS,
    SLOW_BODY_HEAD,
    SLOW_HEADER_ADDRESS,
    SLOW_HEADER_DRIP,
    SLOW_HEADER_HEAD,
    api_fds,
    host_port,
    send_head_and_wait,
    status_of,
    trickle,
    ws_frame_header,
)
from tests.conftest import running_stack
from tests.metrics import sample

LIMIT = 65536
ATTACKERS = 300
GIVE_UP_S = 30.0  # an attack the server has not ended by then never ends
JSON = {"content-type": "application/json"}
GQL = Subprotocol("graphql-transport-ws")


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("abuse"),
        HEADER_TIMEOUT_S="1",
        BODY_TIMEOUT_S="2",
        KEEPALIVE_TIMEOUT_S="1",
        SEND_TIMEOUT_S="1",
        # One attack of 300 connections comes from one address: the timeouts must end it,
        # not the per-client cap (tested on its own below).
        MAX_CONNECTIONS_PER_CLIENT="400",
        INSTRUMENTS="DEFAULT,BANDED",
        PRICE_BANDS="BANDED:10:100",  # 10 % around 100 until the first trade
    ) as stack:
        yield stack


@pytest.fixture
def http(edge: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=edge.api_url(), timeout=10) as client:
        yield client


def api_pid(stack: Stack) -> int:
    return stack.processes[f"api-{stack.api_ports[0]}"].pid


def wait_for(condition: Callable[[], object], what: str, deadline_s: float = GIVE_UP_S) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


# -- bodies ----------------------------------------------------------------------------------


async def test_a_10mb_graphql_body_is_refused_before_it_is_read(edge: Stack) -> None:
    """Only the headers and 1 KB of a declared 10.5 MB body are sent: an answer at all
    proves the server did not wait for (or buffer) the body."""
    head = (
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10500000\r\n\r\n"
    )
    answer, _ = await send_head_and_wait(edge.api_url(), head, b'{"query": "' + b" " * 1024, 10)
    assert status_of(answer) == 413, answer[:300]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body == {"error": "body_too_large", "message": f"the body must be at most {LIMIT} bytes"}


async def test_a_chunked_body_is_cut_at_the_limit(edge: Stack) -> None:
    """A chunked body has no declared length: it is counted as it arrives and refused once
    past the limit, while the rest is never sent."""
    head = (
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 8192
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(LIMIT // 8192 + 1))
    answer, _ = await send_head_and_wait(edge.api_url(), head, chunks, 10)
    assert status_of(answer) == 413, answer[:300]


def test_one_limit_for_rest_and_graphql(http: httpx.Client) -> None:
    """REST had its own 16 KiB cap: a 60 KB place is now read (and refused for its content),
    and REST and GraphQL refuse the same oversized body the same way."""
    fits = {"side": 1, "price": 1, "quantity": 1, "client_order_id": "x" * 60_000}
    read = http.post("/orders", json=fits)
    assert read.status_code == 422, read.text[:300]
    assert read.json()["errors"][0]["field"] == "client_order_id"
    big = b'{"query": "{ orderBook { seq } }", "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    for path in ("/orders", "/graphql"):
        refused = http.post(path, content=big, headers=JSON)
        assert refused.status_code == 413, (path, refused.text[:300])
        assert refused.json()["error"] == "body_too_large"
    assert http.get("/health/live").status_code == 200


# -- WebSockets --------------------------------------------------------------------------------


async def test_a_15mb_websocket_frame_closes_1009_unread(edge: Stack) -> None:
    """The frame header declares 15 MB and only 1 KB follows: the close proves the server
    decided on the header, without reading (or parsing) the payload."""
    base = edge.api_url().replace("http", "ws")
    paths: list[tuple[str, list[Subprotocol] | None]] = [("/graphql", [GQL]), ("/ws/trades", None)]
    for path, protocols in paths:
        async with websockets.connect(base + path, subprotocols=protocols) as ws:
            if protocols:
                await ws.send(json.dumps({"type": "connection_init"}))
                assert json.loads(await ws.recv())["type"] == "connection_ack"
            ws.transport.write(ws_frame_header(15_000_000) + b"x" * 1024)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None, path
        assert closed.value.rcvd.code == 1009, (path, closed.value.rcvd)


async def test_three_15mb_subscribe_messages_close_1009(edge: Stack) -> None:
    url = edge.api_url().replace("http", "ws") + "/graphql"
    query = "subscription { trades { tradeId } }" + " " * 15_000_000

    async def one() -> int | None:
        async with websockets.connect(url, subprotocols=[GQL]) as ws:
            await ws.send(json.dumps({"type": "connection_init"}))
            await ws.recv()
            message = {"id": "1", "type": "subscribe", "payload": {"query": query}}
            with pytest.raises(ConnectionClosed) as closed:
                await ws.send(json.dumps(message))
                await asyncio.wait_for(ws.recv(), 10)
            return closed.value.rcvd.code if closed.value.rcvd else None

    assert list(await asyncio.gather(one(), one(), one())) == [1009, 1009, 1009]
    async with httpx.AsyncClient(base_url=edge.api_url(), timeout=10) as http:
        assert (await http.get("/health/live")).status_code == 200


async def test_a_websocket_flood_closes_1008(edge: Stack) -> None:
    """100 messages/s with bursts of 200 per connection; a client that sends 500 at once is
    closed with 1008 (and nothing it sent after the limit is handled)."""
    url = edge.api_url().replace("http", "ws") + "/ws/trades"
    async with websockets.connect(url) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(500):
                await ws.send("x")
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008, closed.value


class ApiLog:
    """The first replica's log from a mark on: what a test's attack made it write."""

    def __init__(self, stack: Stack) -> None:
        self.path = stack.data_dir / "logs" / f"api-{stack.api_ports[0]}.log"
        self.mark = self.path.read_bytes().count(b"\n")

    def tracebacks(self) -> list[bytes]:
        """The lines since the mark that carry an exception or its traceback."""
        written = self.path.read_bytes().splitlines()[self.mark :]
        return [line for line in written if b"Traceback" in line or b'"exception"' in line]


async def test_invalid_utf8_in_a_websocket_message_is_1007_without_a_traceback(edge: Stack) -> None:
    url = edge.api_url().replace("http", "ws") + "/ws/orderbook"
    log = ApiLog(edge)
    async with websockets.connect(url) as ws:
        await ws.send(b'{"a": "\xff\xfe"}', text=True)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007, closed.value
    assert not log.tracebacks()


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_a_subscription_that_does_not_parse_is_refused_without_a_traceback(
    edge: Stack, protocol: str
) -> None:
    """As a GraphQL request over HTTP is answered: a 4400 close naming the syntax error
    (graphql-transport-ws), an error message (the legacy graphql-ws). A parse outside
    Strawberry's own error handling once raised it instead: an ERROR line with a traceback
    per message, and no answer on the legacy protocol."""
    url = edge.api_url().replace("http", "ws") + "/graphql"
    log = ApiLog(edge)
    bad = {"query": "subscription { orderBook("}
    async with websockets.connect(url, subprotocols=[Subprotocol(protocol)]) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "connection_ack"
        start = "subscribe" if protocol == "graphql-transport-ws" else "start"
        await ws.send(json.dumps({"id": "1", "type": start, "payload": bad}))
        if protocol == "graphql-transport-ws":
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
            assert closed.value.rcvd.reason.startswith("Syntax Error"), closed.value.rcvd
        else:
            answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert answer["type"] == "error", answer
            assert answer["payload"]["message"].startswith("Syntax Error"), answer
    assert not log.tracebacks()


# -- slow, silent and too many connections ----------------------------------------------------


async def test_slow_headers_and_slow_bodies_are_closed(edge: Stack) -> None:
    """300 connections send a header line every 0.25 s and never end their headers; 300
    send a declared 1,000-byte body one byte every 0.25 s. Each is answered 408 and closed
    (HEADER_TIMEOUT_S=1, BODY_TIMEOUT_S=2 here), the API's descriptors return to what they
    were, and a well-behaved client is served meanwhile."""
    url, pid = edge.api_url(), api_pid(edge)
    baseline = api_fds(pid)
    attacks = [
        trickle(url, SLOW_HEADER_ADDRESS, SLOW_HEADER_HEAD, SLOW_HEADER_DRIP, 0.25, GIVE_UP_S)
        for _ in range(ATTACKERS)
    ] + [
        trickle(url, SLOW_BODY_ADDRESS, SLOW_BODY_HEAD, b" ", 0.25, GIVE_UP_S)
        for _ in range(ATTACKERS)
    ]
    running = asyncio.gather(*attacks)
    transport = httpx.AsyncHTTPTransport(local_address=PROBE_ADDRESS)
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=10) as probe:
        while api_fds(pid) < baseline + ATTACKERS:  # the attack is under way
            await asyncio.sleep(0.05)
        assert (await probe.get("/health/live")).status_code == 200
        placed = await probe.post("/orders", json={"side": 1, "price": 1, "quantity": 1})
        assert placed.status_code == 201, placed.text
    outcomes = await running
    still_open = [o for o in outcomes if o.closed_after is None]
    assert not still_open, f"{len(still_open)} of {len(outcomes)} still open"
    answered = [status_of(o.answer) for o in outcomes]
    assert answered == [408] * len(outcomes), sorted(set(map(str, answered)))
    await asyncio.to_thread(
        wait_for, lambda: api_fds(pid) <= baseline + 2, f"descriptors back to {baseline}"
    )


async def test_a_silent_connection_and_an_idle_keep_alive_are_closed(edge: Stack) -> None:
    silent = await trickle(edge.api_url(), SILENT_ADDRESS, b"", b"", 1, GIVE_UP_S)
    assert silent.closed_after is not None and silent.answer == b"", silent
    request = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    idle = await trickle(edge.api_url(), SILENT_ADDRESS, request, b"", 1, GIVE_UP_S)
    assert idle.closed_after is not None, idle
    assert status_of(idle.answer) == 200 and idle.answer.count(b"HTTP/1.1") == 1, idle


def test_a_client_that_never_reads_its_answers_is_dropped(edge: Stack) -> None:
    """200 pipelined requests for the OpenAPI document (tens of KB each) from a socket
    with a 4 KB receive buffer that is not read: the API's writes pause, and after
    SEND_TIMEOUT_S (1 s here) it resets the connection, its unread answers dropped in the
    kernel too, and counts the refusal. Without the send timeout the answers waited for
    the reader, and all 200 came; with an abort but no reset, the kernel still sent the
    megabytes it held; and the request then woken wrote to the closed transport, logging a
    traceback."""
    pid = api_pid(edge)
    baseline = api_fds(pid)
    host, port = host_port(edge.api_url())

    def refusals() -> float:
        text = httpx.get(f"{edge.api_url()}/metrics", timeout=10).text
        return sample(text, "exchange_api_edge_refusals_total", reason="send_timeout") or 0.0

    before = refusals()
    log = ApiLog(edge)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, port))
    requests, received, reset = 200, b"", False
    with sock:
        sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * requests)
        time.sleep(3)  # the send timeout and then some, not reading
        sock.settimeout(GIVE_UP_S)
        try:
            while chunk := sock.recv(1 << 16):
                received += chunk
        except ConnectionResetError:
            reset = True
    answers = received.count(b"HTTP/1.1 200 OK")
    assert reset, f"not reset: {answers} of {requests} answers came, then the end of stream"
    assert answers < requests // 10, f"{answers} of {requests} answers came"
    assert refusals() == before + 1
    wait_for(lambda: api_fds(pid) <= baseline, f"descriptors back to {baseline}")
    # The request woken from its drain by the drop writes nothing (no traceback logged).
    assert not log.tracebacks()
    assert httpx.get(f"{edge.api_url()}/health/live", timeout=10).status_code == 200


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("caps"),
        MAX_CONNECTIONS="30",
        MAX_CONNECTIONS_PER_CLIENT="20",
        KEEPALIVE_TIMEOUT_S="120",  # the held connections stay open however slow the machine
    ) as stack:
        yield stack


async def test_connection_caps_refuse_cleanly(capped: Stack) -> None:
    """20 connections per client address and 30 in total (here): one more from the same
    address is a 429, one more from anywhere once 30 are open is a 503, both in the API's
    error shape; closing them frees the places."""
    url = capped.api_url()
    held: list[httpx.AsyncClient] = []

    async def hold(address: str) -> httpx.Response:
        limits = httpx.Limits(max_connections=1)
        transport = httpx.AsyncHTTPTransport(local_address=address, limits=limits)
        client = httpx.AsyncClient(base_url=url, transport=transport, timeout=10)
        held.append(client)
        return await client.get("/health/live")  # keep-alive: the connection stays open

    try:
        first = [await hold("127.0.0.6") for _ in range(20)]
        assert {r.status_code for r in first} == {200}
        over_client = await hold("127.0.0.6")
        assert over_client.status_code == 429, over_client.text
        assert over_client.json()["error"] == "too_many_connections"
        assert over_client.headers["retry-after"] == "1"
        assert {(await hold("127.0.0.7")).status_code for _ in range(10)} == {200}
        over_total = await hold("127.0.0.8")
        assert over_total.status_code == 503, over_total.text
        assert over_total.json()["error"] == "too_many_connections"
    finally:
        for client in held:
            await client.aclose()
    await asyncio.sleep(0)
    deadline = time.monotonic() + GIVE_UP_S
    while (await hold("127.0.0.6")).status_code != 200:
        assert time.monotonic() < deadline, "places never freed"
        await asyncio.sleep(0.1)
    for client in held:
        await client.aclose()


# -- JSON ---------------------------------------------------------------------------------------


def test_a_repeated_key_is_a_422_naming_it(http: httpx.Client) -> None:
    """`"side": 1, ..., "side": -1` placed a sell: the last key won."""
    body = b'{"side": 1, "price": 5, "quantity": 1, "side": -1}'
    rest = http.post("/orders", content=body, headers=JSON)
    assert rest.status_code == 422, rest.text
    assert rest.json()["errors"] == [{"field": "side", "message": "duplicate key"}]
    assert "'side'" in rest.json()["message"]
    nested = (
        b'{"query": "mutation($i: PlaceOrderInput!) { placeOrder(input: $i) '
        b'{ ... on OrderPlaced { orderId } } }", '
        b'"variables": {"i": {"side": 1, "price": "5", "quantity": 1, "side": -1}}}'
    )
    graphql = http.post("/graphql", content=nested, headers=JSON)
    assert graphql.status_code == 422, graphql.text
    assert graphql.json()["errors"] == [{"field": "side", "message": "duplicate key"}]


async def test_invalid_utf8_is_a_json_400_without_a_traceback(edge: Stack) -> None:
    """In a body (REST, GraphQL) and in the request line: each is a 400 in the API's error
    shape (uvicorn answered the last in plain text and logged a warning line)."""
    log = edge.data_dir / "logs" / f"api-{edge.api_ports[0]}.log"
    before = log.read_bytes().count(b"\n")
    line = b"GET /orders/\xff HTTP/1.1\r\nHost: x\r\n\r\n"
    answer, _ = await send_head_and_wait(edge.api_url(), line, b"", 10)
    assert status_of(answer) == 400, answer[:300]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == "invalid_http", answer
    async with httpx.AsyncClient(base_url=edge.api_url(), timeout=10) as http:
        await _invalid_utf8_bodies(http)
    written = log.read_bytes().splitlines()[before:]
    assert not [line for line in written if b"Traceback" in line], written


async def _invalid_utf8_bodies(http: httpx.AsyncClient) -> None:
    rest = await http.post(
        "/orders", content=b'{"side": 1, "price": 1, "quantity": 1, "x": "\xff"}', headers=JSON
    )
    assert rest.status_code == 400 and rest.json()["error"] == "invalid_json", rest.text
    graphql = await http.post(
        "/graphql", content=b'{"query": "{ orderBook { seq } }\xff"}', headers=JSON
    )
    assert graphql.status_code == 400, graphql.text


# -- readiness -----------------------------------------------------------------------------------


def test_readiness_follows_the_engine(edge: Stack, http: httpx.Client) -> None:
    """Readiness reads the engine's lease, which expires within a second (LEASE_MS), so it
    turns 503 (naming the engine) within a second of a kill and 200 again once the engine
    has recovered (`python -m tests.abuse_bench` measures both)."""
    settings = Settings(redis_url=edge.redis_url)
    client = redis.Redis.from_url(edge.redis_url)
    key = settings.engine_lease_of("DEFAULT")
    assert 0 < client.pttl(key) <= LEASE_MS <= 1000, client.pttl(key)
    edge.kill("engine", signal.SIGKILL)
    wait_for(lambda: http.get("/health/ready").status_code == 503, "503 after the kill")
    body = http.get("/health/ready").json()
    assert body["down"] == ["engine:DEFAULT", "engine:BANDED"], body  # one engine serves both
    assert body["engines"] == {"DEFAULT": False, "BANDED": False}, body
    edge.start("engine")
    wait_for(lambda: http.get("/health/ready").status_code == 200, "200 after the restart")
    assert http.get("/health/ready").json()["down"] == []
    client.close()


# -- price bands -----------------------------------------------------------------------------


def test_a_price_band_refuses_far_orders_and_trades(http: httpx.Client) -> None:
    """With an empty book a buy at 1,000,000 rested, and a later sell at 100 traded at
    1,000,000. BANDED has a 10 % band around 100 (then around its last trade)."""
    banded = {"symbol": "BANDED", "quantity": 1}

    def place(**body: object) -> httpx.Response:
        return http.post("/orders", json={**banded, **body})

    far = place(side=1, price=1_000_000)
    assert far.status_code == 409, far.text
    assert far.json()["reason"] == "price_out_of_band" and far.json()["error"] == "rejected"
    low_bid = place(side=1, price=91)  # inside 90..110
    assert low_bid.status_code == 201, low_bid.text
    assert place(side=-1, price=108).status_code == 201
    assert place(side=1, price=108).status_code == 201  # trades at 108: 97.2..118.8 now
    market = place(side=-1, type="market")  # its only trade would be at 91
    assert market.status_code == 409 and market.json()["reason"] == "price_out_of_band"
    bid = http.get(f"/orders/{low_bid.json()['order_id']}").json()
    assert bid["order_alive"] and bid["traded_quantity"] == 0, bid
    mutation = (
        'mutation { placeOrder(input: {side: 1, price: "1000000", quantity: 1, '
        'symbol: "BANDED"}) { ... on OrderRejected { reason } ... on OrderPlaced { orderId } }'
        f' modifyOrder(id: "{low_bid.json()["order_id"]}", price: "1000") {{ success reason }} }}'
    )
    data = http.post("/graphql", json={"query": mutation}).json()["data"]
    assert data["placeOrder"] == {"reason": "price_out_of_band"}, data
    assert data["modifyOrder"] == {"success": False, "reason": "price_out_of_band"}, data
    # Off by default: the same far buy on DEFAULT is placed (and cancelled again).
    unbanded = http.post("/orders", json={"side": 1, "price": 1_000_000, "quantity": 1})
    assert unbanded.status_code == 201, unbanded.text
    assert http.delete(f"/orders/{unbanded.json()['order_id']}").json() == {"success": True}
