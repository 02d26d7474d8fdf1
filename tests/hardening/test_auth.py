"""AUTH_MODE=api_key: orders belong to the key that placed them; trades and book stay public."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import websockets
from websockets.typing import Subprotocol

from graphql_api.security import hash_key
from shared.stack import Stack
from tests.conftest import recent_trades, running_stack

ALICE, BOB = "alice-secret-key", "bob-secret-key"


@pytest.fixture(scope="module")
def auth_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    keys = f"alice:{hash_key(ALICE)},bob:{hash_key(BOB)}"
    with running_stack(
        tmp_path_factory.mktemp("auth"), AUTH_MODE="api_key", API_KEYS=keys
    ) as stack:
        yield stack


@pytest.fixture
def anon(auth_stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=auth_stack.api_url(), timeout=10) as client:
        yield client


@pytest.fixture
def alice(auth_stack: Stack) -> Iterator[httpx.Client]:
    headers = {"X-API-Key": ALICE}
    with httpx.Client(base_url=auth_stack.api_url(), timeout=10, headers=headers) as client:
        yield client


@pytest.fixture
def bob(auth_stack: Stack) -> Iterator[httpx.Client]:
    headers = {"X-API-Key": BOB}
    with httpx.Client(base_url=auth_stack.api_url(), timeout=10, headers=headers) as client:
        yield client


def place(client: httpx.Client, **body: object) -> str:
    response = client.post("/orders", json={"side": 1, "price": 10, "quantity": 1, **body})
    assert response.status_code in (200, 201), response.text
    order_id: str = response.json()["order_id"]
    return order_id


def test_mutations_and_own_reads_need_a_key(anon: httpx.Client) -> None:
    for response in (
        anon.post("/orders", json={"side": 1, "price": 10, "quantity": 1}),
        anon.get("/orders"),
        anon.delete("/orders/1"),
        anon.post(
            "/orders",
            json={"side": 1, "price": 10, "quantity": 1},
            headers={"X-API-Key": "not-a-key"},
        ),
    ):
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "unauthenticated"
        assert response.headers["www-authenticate"] == "ApiKey"
    assert anon.get("/trades").status_code == 200
    assert anon.get("/orderbook").status_code == 200


def test_only_the_owner_may_change_an_order(alice: httpx.Client, bob: httpx.Client) -> None:
    mine = place(alice, price=11, quantity=3)
    assert bob.delete(f"/orders/{mine}").json() == {"success": False, "reason": "not_owner"}
    assert bob.put(f"/orders/{mine}", json={"price": 12}).json() == {
        "success": False,
        "reason": "not_owner",
    }
    order = alice.get(f"/orders/{mine}").json()
    assert (order["order_price"], order["order_alive"]) == (11, True)
    assert bob.get(f"/orders/{mine}").status_code == 404
    assert mine not in [o["order_id"] for o in bob.get("/orders").json()]
    assert mine in [o["order_id"] for o in alice.get("/orders").json()]
    assert alice.delete(f"/orders/{mine}").json() == {"success": True}


def test_another_owners_dead_order_is_not_owner_too(alice: httpx.Client, bob: httpx.Client) -> None:
    """The engine forgets dead orders, so it cannot tell whose they were; the API asks the
    store, or a non-owner would learn that the order was filled or cancelled."""
    mine = place(alice, price=11, quantity=3)
    assert alice.delete(f"/orders/{mine}").json() == {"success": True}
    refused = {"success": False, "reason": "not_owner"}
    assert bob.delete(f"/orders/{mine}").json() == refused
    assert bob.put(f"/orders/{mine}", json={"price": 12}).json() == refused
    assert alice.delete(f"/orders/{mine}").json() == {
        "success": False,
        "reason": "order_not_alive",
    }


def test_trades_between_owners_are_public(
    alice: httpx.Client, bob: httpx.Client, anon: httpx.Client
) -> None:
    ask = place(alice, side=-1, price=20, quantity=2)
    bid = place(bob, side=1, price=20, quantity=2)
    trades = recent_trades(anon)
    assert any(t["bid_order_id"] == bid and t["ask_order_id"] == ask for t in trades)


def test_client_order_ids_are_scoped_per_owner(alice: httpx.Client, bob: httpx.Client) -> None:
    a = alice.post("/orders", json={"side": 1, "price": 5, "quantity": 1, "client_order_id": "x1"})
    b = bob.post("/orders", json={"side": 1, "price": 5, "quantity": 1, "client_order_id": "x1"})
    assert a.status_code == b.status_code == 201
    assert a.json()["order_id"] != b.json()["order_id"]
    again = alice.post(
        "/orders", json={"side": 1, "price": 5, "quantity": 1, "client_order_id": "x1"}
    )
    assert again.status_code == 200 and again.json()["order_id"] == a.json()["order_id"]


PLACE = (
    'mutation { placeOrder(input: {side: 1, price: "7", quantity: 1}) '
    "{ ... on OrderPlaced { orderId } } }"
)


def test_graphql_uses_the_same_keys(
    alice: httpx.Client, bob: httpx.Client, anon: httpx.Client
) -> None:
    denied = anon.post("/graphql", json={"query": PLACE}).json()
    assert denied["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    order_id = alice.post("/graphql", json={"query": PLACE}).json()["data"]["placeOrder"]["orderId"]
    cancel = f'mutation {{ cancelOrder(id: "{order_id}") {{ success reason }} }}'
    assert bob.post("/graphql", json={"query": cancel}).json()["data"]["cancelOrder"] == {
        "success": False,
        "reason": "not_owner",
    }
    seen = f'{{ order(id: "{order_id}") {{ orderAlive }} }}'
    assert bob.post("/graphql", json={"query": seen}).json()["data"]["order"] is None
    assert alice.post("/graphql", json={"query": seen}).json()["data"]["order"] == {
        "orderAlive": True
    }


# `apiKey`, or the header's name as GraphiQL sends its Headers editor there.
@pytest.mark.parametrize("name", ["apiKey", "X-API-Key", "x-api-key"])
async def test_graphql_websocket_key_in_connection_init(auth_stack: Stack, name: str) -> None:
    url = auth_stack.api_url().replace("http", "ws") + "/graphql"
    async with websockets.connect(url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {name: ALICE}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": PLACE}}))
        message = json.loads(await ws.recv())
        assert message["type"] == "next", message
        assert message["payload"]["data"]["placeOrder"]["orderId"]


@pytest.mark.parametrize("payload", [{}, {"apiKey": 12}, {"X-API-Key": ["k"]}, {"x": ALICE}])
async def test_graphql_websocket_without_a_usable_key_is_unauthenticated(
    auth_stack: Stack, payload: dict[str, object]
) -> None:
    url = auth_stack.api_url().replace("http", "ws") + "/graphql"
    async with websockets.connect(url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": PLACE}}))
        message = json.loads(await ws.recv())
        assert message["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", message


def test_a_repeated_key_header_counts_its_first_value_on_every_route(anon: httpx.Client) -> None:
    """Reads (FastAPI), writes (the order routes) and the rate limiter all take the first
    X-API-Key of a request, so one request cannot be one owner here and another there."""
    body = {"side": 1, "price": 10, "quantity": 1}
    first_valid = [("X-API-Key", ALICE), ("X-API-Key", "junk")]
    first_junk = [("X-API-Key", "junk"), ("X-API-Key", ALICE)]
    placed = anon.post("/orders", json=body, headers=first_valid)
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["order_id"]
    assert anon.get(f"/orders/{order_id}", headers=first_valid).status_code == 200
    for response in (
        anon.post("/orders", json=body, headers=first_junk),
        anon.get(f"/orders/{order_id}", headers=first_junk),
        anon.delete(f"/orders/{order_id}", headers=first_junk),
    ):
        assert response.status_code == 401, response.text
    assert anon.delete(f"/orders/{order_id}", headers=first_valid).json() == {"success": True}


def test_an_orders_fills_are_its_owners_only(
    alice: httpx.Client, bob: httpx.Client, anon: httpx.Client
) -> None:
    ask = place(alice, side=-1, price=77, quantity=2)
    bid = place(bob, side=1, price=77, quantity=2)
    (fill,) = alice.get(f"/orders/{ask}/trades").json()
    assert (fill["ask_order_id"], fill["bid_order_id"], fill["quantity"]) == (ask, bid, 2)
    assert bob.get(f"/orders/{bid}/trades").json() == [fill]
    # another key's order is not found, exactly as GET /orders/{id} answers
    for client, order_id in ((bob, ask), (alice, bid)):
        response = client.get(f"/orders/{order_id}/trades")
        assert response.status_code == 404, response.text
        assert response.json() == client.get(f"/orders/{order_id}").json()
    assert anon.get(f"/orders/{ask}/trades").status_code == 401
    # newest first lists only the caller's own orders
    newest = bob.get("/orders", params={"order": "desc", "limit": 1000}).json()
    assert newest[0]["order_id"] == bid
    assert ask not in {o["order_id"] for o in newest}
    # GraphQL reaches an order's fills only through an order the caller may see
    query = "query($id: ID!) { order(id: $id) { trades { nodes { tradeId } } } }"
    seen = alice.post("/graphql", json={"query": query, "variables": {"id": ask}}).json()
    assert seen["data"]["order"]["trades"]["nodes"] == [{"tradeId": fill["trade_id"]}]
    hidden = bob.post("/graphql", json={"query": query, "variables": {"id": ask}}).json()
    assert hidden["data"]["order"] is None
