"""Rate limit, WebSocket origins, CORS, GraphQL limits and production mode."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from shared.stack import Stack
from tests.conftest import running_stack

GOOD, EVIL = "http://good.example", "http://evil.example"


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


def test_rate_limit_answers_429_with_retry_after(http: httpx.Client) -> None:
    statuses = [http.get("/trades").status_code for _ in range(30)]
    assert statuses.count(200) >= 10  # the burst goes through
    assert 429 in statuses
    limited = http.get("/trades")
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"] == "rate_limited"
    assert http.get("/health/ready").status_code == 200  # health is never limited
    # A made-up key does not buy a fresh bucket (auth is off: it names no owner)...
    assert http.get("/trades", headers={"X-API-Key": "made-up"}).status_code == 429
    # ...but another client address has its own.
    other = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=str(http.base_url), transport=other, timeout=10) as elsewhere:
        assert elsewhere.get("/trades").status_code == 200


async def test_websocket_origin_allow_list(limited: Stack) -> None:
    url = limited.api_url().replace("http", "ws")
    for path in ("/ws/trades", "/ws/orderbook"):
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(url + path, origin=EVIL):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403
        for origin in (GOOD, None):
            async with websockets.connect(url + path, origin=origin) as ws:  # type: ignore[arg-type]
                assert ws.protocol.state.name == "OPEN"
    with pytest.raises(InvalidStatus):
        async with websockets.connect(
            url + "/graphql",
            origin=EVIL,  # type: ignore[arg-type]
            subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        ):
            pass
    await asyncio.sleep(2)  # let the rate-limit bucket refill for the next tests


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
    await asyncio.sleep(2)  # a full bucket: 10 tokens, 5 more each second
    many = "mutation { " + " ".join(f"p{i}: {PLACE_ONE}" for i in range(15)) + " }"
    async with httpx.AsyncClient(base_url=limited.api_url(), timeout=10) as http:
        body = (await http.post("/graphql", json={"query": many})).json()
    results = list(body["data"].values())
    placed = [r for r in results if "orderId" in r]
    assert "errors" not in body and len(results) == 15, body
    assert [r for r in results if "orderId" not in r] == [{"reason": "rate_limited"}] * (
        15 - len(placed)
    )
    assert 1 <= len(placed) <= 11, body  # the request's token, then the burst left (+ refill)

    await asyncio.sleep(2)
    url = limited.api_url().replace("http", "ws") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
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
    assert 1 <= outcomes.count("placed") <= 11, outcomes  # the burst (+ refill)
    assert outcomes.count("rate_limited") == 18 - outcomes.count("placed"), outcomes
    await asyncio.sleep(2)  # let the bucket refill for the next tests
