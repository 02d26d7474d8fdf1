"""Rate limit, WebSocket origins, CORS, GraphQL limits and production mode."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections.abc import Iterator

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin, Subprotocol

from shared.stack import Stack
from tests.conftest import running_stack

GOOD, EVIL = Origin("http://good.example"), Origin("http://evil.example")


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("limits"),
        RATE_LIMIT_PER_S="5",
        RATE_LIMIT_BURST="10",
        ALLOWED_ORIGINS=GOOD,
        PRODUCTION="1",
    ) as stack:
        yield stack


@pytest.fixture
def http(limited: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=limited.api_url(), timeout=10) as client:
        yield client


RATE, BURST = 5, 10
_addresses = itertools.count(10)


def fresh_address() -> str:
    """A client address of its own, so a test starts with a full bucket (buckets are per
    peer address with auth off) instead of sleeping until a shared one refills."""
    return f"127.0.0.{next(_addresses)}"


def most_allowed(elapsed: float, tokens: float = BURST) -> int:
    """The most requests a bucket holding `tokens` lets through in `elapsed` seconds: what
    it holds plus what refilled meanwhile (measured around the requests, so an upper bound)."""
    return math.floor(tokens + RATE * elapsed)


def client_at(limited: Stack, address: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=limited.api_url(), transport=transport, timeout=10)


def test_rate_limit_answers_429_with_retry_after(limited: Stack) -> None:
    with client_at(limited, fresh_address()) as http:
        started = time.monotonic()
        statuses: list[int] = []
        while 429 not in statuses:
            assert len(statuses) < 500, "never limited"
            response = http.get("/trades")
            statuses.append(response.status_code)
        elapsed = time.monotonic() - started
        assert set(statuses) == {200, 429}, statuses
        assert BURST <= statuses.count(200) <= most_allowed(elapsed), (statuses, elapsed)
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["error"] == "rate_limited"
        assert http.get("/health/ready").status_code == 200  # health is never limited

        # A made-up key does not buy a fresh bucket (auth is off: it names no owner): right
        # after a 429, it gets only what refilled, not a burst.
        started = time.monotonic()
        keyed = [
            http.get("/trades", headers={"X-API-Key": f"made-up-{i}"}).status_code
            for i in range(BURST)
        ]
        assert keyed.count(200) <= most_allowed(time.monotonic() - started, tokens=1), keyed
    # ...but another client address has its own.
    with client_at(limited, fresh_address()) as elsewhere:
        assert [elsewhere.get("/trades").status_code for _ in range(BURST)] == [200] * BURST


async def test_websocket_origin_allow_list(limited: Stack) -> None:
    url = limited.api_url().replace("http", "ws")
    for path in ("/ws/trades", "/ws/orderbook"):
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(url + path, origin=EVIL):
                pass
        assert refused.value.response.status_code == 403
        for origin in (GOOD, None):
            async with websockets.connect(url + path, origin=origin) as ws:
                assert ws.protocol.state.name == "OPEN"
    with pytest.raises(InvalidStatus):
        async with websockets.connect(
            url + "/graphql",
            origin=EVIL,
            subprotocols=[Subprotocol("graphql-transport-ws")],
        ):
            pass


def test_cors_allows_only_listed_origins(http: httpx.Client) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    good = http.options("/orders", headers={"Origin": GOOD, **preflight})
    assert good.headers.get("access-control-allow-origin") == GOOD
    assert "access-control-allow-credentials" not in good.headers
    evil = http.options("/orders", headers={"Origin": EVIL, **preflight})
    assert evil.headers.get("access-control-allow-origin") is None


def test_graphql_limits_and_production_mode(http: httpx.Client) -> None:
    # (No type in the schema nests, so the depth limit guards future changes and is not
    # reachable with valid fields today.)
    fine = "{ " + " ".join(f"b{i}: orderBook {{ seq }}" for i in range(15)) + " }"
    assert "errors" not in http.post("/graphql", json={"query": fine}).json()
    aliases = "{ " + " ".join(f"b{i}: orderBook {{ seq }}" for i in range(16)) + " }"
    body = http.post("/graphql", json={"query": aliases}).json()
    assert "aliases" in body["errors"][0]["message"].lower()
    tokens = "{ " + " ".join("orderBook { seq }" for _ in range(800)) + " }"
    assert "tokens" in http.post("/graphql", json={"query": tokens}).json()["errors"][0]["message"]
    introspection = http.post("/graphql", json={"query": "{ __schema { types { name } } }"}).json()
    assert "errors" in introspection and "introspection" in str(introspection).lower()
    assert http.get("/graphql", headers={"Accept": "text/html"}).status_code != 200


PLACE_ONE = (
    'placeOrder(input: {side: 1, price: "1", quantity: 1}) '
    "{ ... on OrderPlaced { orderId } ... on OrderRejected { reason } }"
)


async def test_graphql_mutations_pay_the_rate_limit_one_each(limited: Stack) -> None:
    """The middleware charges one token per HTTP request; a document of many mutations, or
    a WebSocket carrying many operations, must not place more than the limit allows, and
    says which mutations were refused."""
    many = "mutation { " + " ".join(f"p{i}: {PLACE_ONE}" for i in range(15)) + " }"
    transport = httpx.AsyncHTTPTransport(local_address=fresh_address())  # a full bucket
    async with httpx.AsyncClient(
        base_url=limited.api_url(), transport=transport, timeout=10
    ) as http:
        started = time.monotonic()
        body = (await http.post("/graphql", json={"query": many})).json()
        elapsed = time.monotonic() - started
    results = list(body["data"].values())
    placed = [r for r in results if "orderId" in r]
    assert "errors" not in body and len(results) == 15, body
    assert [r for r in results if "orderId" not in r] == [{"reason": "rate_limited"}] * (
        15 - len(placed)
    )
    # The request's token pays for the first mutation, the burst for the next ones.
    assert BURST <= len(placed) <= most_allowed(elapsed), (len(placed), elapsed)

    url = limited.api_url().replace("http", "ws") + "/graphql"
    async with websockets.connect(
        url,
        subprotocols=[Subprotocol("graphql-transport-ws")],
        local_addr=(fresh_address(), 0),
    ) as ws:
        started = time.monotonic()
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        for i in range(18):  # under MAX_SUBSCRIPTIONS (20) operations in flight
            payload = {"query": f"mutation {{ {PLACE_ONE} }}"}
            await ws.send(json.dumps({"id": str(i), "type": "subscribe", "payload": payload}))
        outcomes: list[str] = []
        while len(outcomes) < 18:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message["type"] == "next":
                result = message["payload"]["data"]["placeOrder"]
                outcomes.append("placed" if "orderId" in result else result["reason"])
        elapsed = time.monotonic() - started
    # Every operation pays: the burst, plus what refilled while they ran.
    assert BURST <= outcomes.count("placed") <= most_allowed(elapsed), (outcomes, elapsed)
    assert outcomes.count("rate_limited") == 18 - outcomes.count("placed"), outcomes
