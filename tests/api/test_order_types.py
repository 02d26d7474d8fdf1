"""Quantity changes, IOC, FOK and market orders through REST and GraphQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import place, recent_trades

pytestmark = pytest.mark.usefixtures("empty_book")


def gql(http: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    response = http.post("/graphql", json={"query": query, "variables": variables})
    body = response.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def my_trades(http: httpx.Client, order_id: str) -> list[dict[str, Any]]:
    trades = recent_trades(http)
    return [t for t in trades if order_id in (t["bid_order_id"], t["ask_order_id"])]


def test_rest_reduce_quantity_keeps_priority(http: httpx.Client) -> None:
    first = place(http, -1, 100, 10)
    second = place(http, -1, 100, 10)
    assert http.put(f"/orders/{first}", json={"quantity": 4}).json() == {"success": True}
    order = http.get(f"/orders/{first}").json()
    assert (order["order_quantity"], order["remaining_quantity"]) == (4, 4)
    buy = place(http, 1, 100, 5)
    fills = [(t["ask_order_id"], t["quantity"]) for t in my_trades(http, buy)]
    assert fills == [(first, 4), (second, 1)]


def test_rest_raise_quantity_moves_to_tail_and_price_with_quantity(http: httpx.Client) -> None:
    first = place(http, -1, 100, 2)
    second = place(http, -1, 100, 2)
    assert http.put(f"/orders/{first}", json={"quantity": 3}).json() == {"success": True}
    buy = place(http, 1, 100, 3)
    assert [(t["ask_order_id"], t["quantity"]) for t in my_trades(http, buy)] == [
        (second, 2),
        (first, 1),
    ]
    assert http.put(f"/orders/{first}", json={"price": 101, "quantity": 5}).json() == {
        "success": True
    }
    order = http.get(f"/orders/{first}").json()
    assert (order["order_price"], order["order_quantity"], order["traded_quantity"]) == (101, 5, 1)
    assert order["remaining_quantity"] == 4


def test_rest_quantity_not_above_traded_is_refused(http: httpx.Client) -> None:
    ask = place(http, -1, 100, 10)
    place(http, 1, 100, 6)
    for quantity in (6, 2):
        assert http.put(f"/orders/{ask}", json={"quantity": quantity}).json() == {
            "success": False,
            "reason": "quantity_not_above_traded",
        }
    assert http.get(f"/orders/{ask}").json()["remaining_quantity"] == 4
    bad = http.put(f"/orders/{ask}", json={"quantity": 1.5})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "quantity"
    empty = http.put(f"/orders/{ask}", json={})
    assert empty.status_code == 422


def test_rest_ioc_and_fok(http: httpx.Client) -> None:
    ask = place(http, -1, 100, 3)
    place(http, -1, 102, 3)
    ioc = http.post(
        "/orders", json={"side": 1, "price": 101, "quantity": 5, "time_in_force": "IOC"}
    )
    assert ioc.status_code == 201
    ioc_id = ioc.json()["order_id"]
    order = http.get(f"/orders/{ioc_id}").json()
    assert order["time_in_force"] == "IOC" and order["type"] == "limit"
    assert (order["traded_quantity"], order["cancelled_quantity"], order["order_alive"]) == (
        3,
        2,
        False,
    )
    assert [t["ask_order_id"] for t in my_trades(http, ioc_id)] == [ask]

    fok = http.post(
        "/orders", json={"side": 1, "price": 102, "quantity": 4, "time_in_force": "FOK"}
    )
    fok_order = http.get(f"/orders/{fok.json()['order_id']}").json()
    assert (fok_order["traded_quantity"], fok_order["cancelled_quantity"]) == (0, 4)
    book = http.get("/orderbook").json()
    assert book["asks"] == [{"price": 102, "quantity": 3}] and book["bids"] == []


def test_rest_market_orders(http: httpx.Client) -> None:
    rejected = http.post("/orders", json={"side": 1, "quantity": 1, "type": "market"})
    assert rejected.status_code == 409 and rejected.json()["reason"] == "no_liquidity"
    place(http, -1, 100, 2)
    place(http, -1, 105, 2)
    market = http.post("/orders", json={"side": 1, "quantity": 5, "type": "market"})
    assert market.status_code == 201
    order = http.get(f"/orders/{market.json()['order_id']}").json()
    assert order["type"] == "market" and order["order_price"] is None
    assert (order["traded_quantity"], order["cancelled_quantity"]) == (4, 1)
    prices = [t["trade_price"] for t in my_trades(http, order["order_id"])]
    assert prices == [100, 105]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"side": 1, "quantity": 1, "type": "market", "price": 10}, "price"),
        ({"side": 1, "quantity": 1, "type": "market", "time_in_force": "GTC"}, "time_in_force"),
        ({"side": 1, "quantity": 1, "type": "stop"}, "type"),
        ({"side": 1, "quantity": 1, "price": 10, "time_in_force": "DAY"}, "time_in_force"),
        ({"side": 1, "quantity": 1, "time_in_force": "IOC"}, "price"),
    ],
)
def test_rest_bad_order_type_input(http: httpx.Client, body: dict[str, Any], field: str) -> None:
    response = http.post("/orders", json=body)
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["errors"]]


PLACE = """mutation($input: PlaceOrderInput!) {
  placeOrder(input: $input) {
    __typename
    ... on OrderPlaced { orderId }
    ... on OrderRejected { reason errors { field message } }
  }
}"""
ORDER = """query($id: ID!) { order(id: $id) {
  orderType timeInForce orderPrice orderQuantity tradedQuantity cancelledQuantity orderAlive
} }"""
MODIFY = """mutation($id: ID!, $price: Price, $quantity: Int) {
  modifyOrder(id: $id, price: $price, quantity: $quantity) { success reason }
}"""


def test_graphql_order_types_and_quantity(http: httpx.Client) -> None:
    none = gql(http, PLACE, input={"side": -1, "quantity": 1, "type": "MARKET"})["placeOrder"]
    assert none == {"__typename": "OrderRejected", "reason": "no_liquidity", "errors": []}

    ask = place(http, -1, 100, 5)
    ioc = gql(http, PLACE, input={"side": 1, "quantity": 8, "price": "100", "timeInForce": "IOC"})[
        "placeOrder"
    ]
    state = gql(http, ORDER, id=ioc["orderId"])["order"]
    assert state == {
        "orderType": "LIMIT",
        "timeInForce": "IOC",
        "orderPrice": "100",
        "orderQuantity": 8,
        "tradedQuantity": 5,
        "cancelledQuantity": 3,
        "orderAlive": False,
    }
    assert http.get(f"/orders/{ask}").json()["order_alive"] is False

    bid = place(http, 1, 99, 10)
    assert gql(http, MODIFY, id=bid, quantity=7)["modifyOrder"] == {"success": True, "reason": None}
    assert gql(http, ORDER, id=bid)["order"]["orderQuantity"] == 7
    market = gql(http, PLACE, input={"side": -1, "quantity": 2, "type": "MARKET"})["placeOrder"]
    m = gql(http, ORDER, id=market["orderId"])["order"]
    assert (m["orderType"], m["timeInForce"], m["orderPrice"], m["tradedQuantity"]) == (
        "MARKET",
        "IOC",
        None,
        2,
    )
    assert gql(http, MODIFY, id=bid, quantity=2)["modifyOrder"] == {
        "success": False,
        "reason": "quantity_not_above_traded",
    }
    bad = gql(http, PLACE, input={"side": 1, "quantity": 1, "type": "MARKET", "price": "5"})
    assert bad["placeOrder"]["errors"][0]["field"] == "price"


def test_graphql_fok_all_or_nothing(http: httpx.Client) -> None:
    place(http, -1, 50, 2)
    killed = gql(
        http, PLACE, input={"side": 1, "quantity": 3, "price": "50", "timeInForce": "FOK"}
    )["placeOrder"]
    assert gql(http, ORDER, id=killed["orderId"])["order"]["cancelledQuantity"] == 3
    filled = gql(
        http, PLACE, input={"side": 1, "quantity": 2, "price": "50", "timeInForce": "FOK"}
    )["placeOrder"]
    assert gql(http, ORDER, id=filled["orderId"])["order"]["tradedQuantity"] == 2
