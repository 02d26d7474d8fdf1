"""The private order feed with API keys off (`/ws/orders`, GraphQL `orderUpdates`): every
event about every order, one message each with its `seq`, resumable after any `seq`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.feed_clients import gql_subscription, send, ws_feed
from tests.api.test_graphql import Feed

pytestmark = pytest.mark.usefixtures("empty_book")

ORDER_UPDATES = """
subscription Orders($after: ID) {
  orderUpdates(after: $after) {
    __typename
    ... on OrderAcceptedEvent { seq orderId side orderPrice quantity orderType timeInForce }
    ... on OrderTradeEvent {
      seq tradeId price quantity bidOrderId askOrderId bidRemaining askRemaining
    }
    ... on OrderModifiedEvent { seq orderId price }
    ... on OrderQuantityChangedEvent { seq orderId quantity remaining }
    ... on OrderCancelledEvent { seq orderId cancelledQuantity }
    ... on OrderRejectedEvent { seq rejectedOrderId reason }
  }
}"""


async def current_seq(client: httpx.AsyncClient) -> int:
    """Every event so far (the book's read barrier covers them all)."""
    seq: int = (await client.get("/orderbook")).json()["seq"]
    return seq


async def order_id(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await send(client, "POST", "/orders", body)
    assert response.status_code == 201, response.text
    placed: str = response.json()["order_id"]
    return placed


async def lifecycle(client: httpx.AsyncClient) -> tuple[str, str]:
    """One order through every change, and a buy that trades with it."""
    ask = await order_id(client, {"side": -1, "price": 60, "quantity": 10})
    bid = await order_id(client, {"side": 1, "price": 61, "quantity": 4})  # 4 at 60
    for change in ({"price": 62}, {"quantity": 8}):
        assert (await send(client, "PUT", f"/orders/{ask}", change)).json()["success"]
    assert (await send(client, "DELETE", f"/orders/{ask}")).json() == {"success": True}
    again = (await send(client, "DELETE", f"/orders/{ask}")).json()
    assert again == {"success": False, "reason": "order_not_alive"}
    market = await send(client, "POST", "/orders", {"side": 1, "type": "market", "quantity": 1})
    assert market.status_code == 409 and "no_liquidity" in market.text, market.text
    return ask, bid


async def take(feed: Feed, count: int) -> list[dict[str, Any]]:
    return [await feed.next() for _ in range(count)]


async def test_every_change_in_order_then_resume_after_any_seq(
    base_url: str, base_url2: str, ahttp: httpx.AsyncClient
) -> None:
    start = await current_seq(ahttp)
    async with ws_feed(base_url, f"/ws/orders?after={start}") as (feed, _):
        ask, bid = await lifecycle(ahttp)
        messages = await take(feed, 8)

    assert [m["seq"] for m in messages] == list(range(start + 1, start + 9))  # every event
    accepted_ask, accepted_bid, trade, modified, resized, cancelled, dead, market = messages
    assert accepted_ask == {
        "type": "accepted", "seq": start + 1, "symbol": "DEFAULT", "order_id": ask, "side": -1,
        "order_price": 60, "quantity": 10, "order_type": "limit", "time_in_force": "GTC",
        "client_order_id": None, "timestamp": accepted_ask["timestamp"],
    }  # fmt: skip
    assert (accepted_bid["type"], accepted_bid["order_id"]) == ("accepted", bid)
    assert {k: v for k, v in trade.items() if k != "timestamp"} == {
        "type": "trade", "seq": start + 3, "symbol": "DEFAULT", "trade_id": str(start + 3),
        "price": 60, "quantity": 4, "aggressor_side": 1, "bid_order_id": bid,
        "ask_order_id": ask, "bid_remaining": 0, "ask_remaining": 6,
    }  # fmt: skip
    assert (modified["type"], modified["order_id"], modified["price"]) == ("modified", ask, 62)
    assert (resized["type"], resized["quantity"], resized["remaining"]) == (
        "quantity_changed",
        8,
        4,
    )
    assert (cancelled["type"], cancelled["cancelled_quantity"]) == ("cancelled", 4)
    assert (dead["type"], dead["order_id"], dead["reason"]) == ("rejected", ask, "order_not_alive")
    assert (market["type"], market["order_id"], market["reason"]) == (
        "rejected",
        None,
        "no_liquidity",
    )

    # From the store, on either replica, after any seq: the same messages.
    for after in (start, trade["seq"], market["seq"] - 1):
        async with ws_feed(base_url2, f"/ws/orders?after={after}") as (again, _):
            resumed = await take(again, start + 8 - after)
        assert resumed == [m for m in messages if m["seq"] > after]


async def test_graphql_order_updates_match_the_websocket(
    base_url: str, ahttp: httpx.AsyncClient
) -> None:
    start = await current_seq(ahttp)
    async with (
        ws_feed(base_url, f"/ws/orders?after={start}") as (plain, _),
        gql_subscription(base_url, ORDER_UPDATES, after=str(start)) as graphql,
    ):
        await lifecycle(ahttp)
        plain_messages, graphql_messages = await take(plain, 8), await take(graphql, 8)

    names = {
        "OrderAcceptedEvent": "accepted",
        "OrderTradeEvent": "trade",
        "OrderModifiedEvent": "modified",
        "OrderQuantityChangedEvent": "quantity_changed",
        "OrderCancelledEvent": "cancelled",
        "OrderRejectedEvent": "rejected",
    }
    assert [names[m["__typename"]] for m in graphql_messages] == [m["type"] for m in plain_messages]
    assert [int(m["seq"]) for m in graphql_messages] == [m["seq"] for m in plain_messages]
    trade = graphql_messages[2]
    assert (trade["price"], trade["bidRemaining"], trade["askRemaining"]) == ("60", 0, 6)
    assert graphql_messages[0]["orderType"] == "LIMIT"
    assert graphql_messages[0]["orderPrice"] == "60"
    assert graphql_messages[6]["rejectedOrderId"] == plain_messages[6]["order_id"]
    assert graphql_messages[7]["rejectedOrderId"] is None  # a market order refused: no order
