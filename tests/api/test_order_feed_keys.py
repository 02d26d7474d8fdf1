"""The private order feed with API keys on: each owner gets the events of its own orders
and its own refused commands, nobody else's, live (attributed by the replica's router,
including orders placed before the router started) and resumed from the store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from graphql_api.security import hash_key
from tests.api.conftest import ThreadServer, inprocess_settings
from tests.api.feed_clients import gql_subscription, send, ws_feed
from tests.api.test_graphql import TIMEOUT, Feed, ws_url
from tests.conftest import running_stack

ALICE, BOB = "alice-feed-key", "bob-feed-key"
KEYS = f"alice:{hash_key(ALICE)},bob:{hash_key(BOB)}"
ORDER_UPDATES = """
subscription { orderUpdates {
  __typename
  ... on OrderAcceptedEvent { seq orderId }
  ... on OrderTradeEvent { seq bidOrderId askOrderId bidRemaining askRemaining }
} }"""


@pytest.fixture(
    scope="module", params=["inprocess", pytest.param("redis", marks=pytest.mark.stack)]
)
def keyed_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("keys")
    if request.param == "redis":
        with running_stack(tmp, AUTH_MODE="api_key", API_KEYS=KEYS) as stack:
            yield stack.api_url()
        return
    with ThreadServer(
        replace(inprocess_settings(tmp), auth_mode="api_key", api_keys=KEYS)
    ) as server:
        yield server.url


@asynccontextmanager
async def clients(url: str) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT, headers={"X-API-Key": ALICE}) as a,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT, headers={"X-API-Key": BOB}) as b,
    ):
        yield a, b


async def place(client: httpx.AsyncClient, side: int, price: int, quantity: int) -> str:
    body = {"side": side, "price": price, "quantity": quantity}
    response = await send(client, "POST", "/orders", body)
    assert response.status_code == 201, response.text
    order_id: str = response.json()["order_id"]
    return order_id


@asynccontextmanager
async def bob_feed(url: str, after: int | None = None) -> AsyncIterator[Feed]:
    """Bob's feed, his key sent as the first message (as a browser must)."""
    path = "/ws/orders" if after is None else f"/ws/orders?after={after}"
    async with ws_feed(url, path) as (feed, ws):
        await ws.send(f'{{"api_key": "{BOB}"}}')
        yield feed


def about(order_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("order_id") == order_id


def cancelled(order_id: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["type"] == "cancelled" and m["order_id"] == order_id


async def until_live(client: httpx.AsyncClient, feed: Feed, price: int) -> None:
    """A live-only feed is registered some time after it connects: place (and cancel)
    probes until one shows, then the next messages are live."""
    while True:
        probe = await place(client, 1, price, 1)
        try:
            message = await feed.until(about(probe), within=0.5)
        except TimeoutError:
            message = None
        await send(client, "DELETE", f"/orders/{probe}")
        await feed.until(cancelled(probe))
        if message is not None:
            return


def kinds(messages: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(m["type"], m.get("order_id")) for m in messages]


async def test_each_owner_gets_its_own_orders_only_live_and_resumed(keyed_url: str) -> None:
    async with clients(keyed_url) as (alice, bob):
        early = await place(alice, -1, 70, 5)  # before any feed: the router reads its owner
        async with (
            ws_feed(keyed_url, "/ws/orders", {"X-API-Key": ALICE}) as (alice_feed, _),
            bob_feed(keyed_url) as bob_feed_,
        ):
            await until_live(alice, alice_feed, 10)
            await until_live(bob, bob_feed_, 11)
            bought = await place(bob, 1, 70, 3)  # 3 of alice's early ask
            refused = (await send(bob, "DELETE", f"/orders/{early}")).json()
            assert refused == {"success": False, "reason": "not_owner"}
            assert (await send(alice, "DELETE", f"/orders/{early}")).json()["success"]
            marker_a = await place(alice, 1, 12, 1)
            marker_b = await place(bob, 1, 13, 1)
            got_alice = [await alice_feed.next() for _ in range(3)]
            got_bob = [await bob_feed_.next() for _ in range(4)]

        assert kinds(got_alice) == [("trade", None), ("cancelled", early), ("accepted", marker_a)]
        trade = got_alice[0]
        assert (trade["bid_order_id"], trade["ask_order_id"]) == (bought, early)
        assert (trade["ask_remaining"], trade["bid_remaining"]) == (2, None)  # not bob's
        assert kinds(got_bob) == [
            ("accepted", bought),
            ("trade", None),
            ("rejected", early),
            ("accepted", marker_b),
        ]
        assert (got_bob[1]["bid_remaining"], got_bob[1]["ask_remaining"]) == (0, None)
        assert got_bob[1]["seq"] == trade["seq"]
        assert got_bob[2]["reason"] == "not_owner"

        # Resumed from the store, on the same sequence numbers: the same messages.
        alice_from = f"/ws/orders?after={trade['seq'] - 1}"
        async with (
            ws_feed(keyed_url, alice_from, {"X-API-Key": ALICE}) as (again, _),
            bob_feed(keyed_url, got_bob[0]["seq"] - 1) as bob_again,
        ):
            assert [await again.next() for _ in got_alice] == got_alice
            assert [await bob_again.next() for _ in got_bob] == got_bob


async def test_a_feed_needs_a_valid_key(keyed_url: str) -> None:
    for headers, first in (({}, "{}"), ({"X-API-Key": "nope"}, None), ({}, '{"api_key": 5}')):
        async with connect(
            ws_url(keyed_url, "/ws/orders"), additional_headers=headers, open_timeout=TIMEOUT
        ) as ws:
            if first is not None:
                await ws.send(first)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1008
        assert closed.value.rcvd.reason.startswith("unauthenticated"), closed.value.rcvd


async def test_graphql_order_updates_with_the_key_in_connection_init(keyed_url: str) -> None:
    async with clients(keyed_url) as (alice, bob):
        seq: int = (await alice.get("/orderbook")).json()["seq"]
        query = ORDER_UPDATES.replace("orderUpdates {", f'orderUpdates(after: "{seq}") {{')
        async with gql_subscription(keyed_url, query, {"apiKey": ALICE}) as feed:
            ask = await place(alice, -1, 80, 4)
            await place(bob, 1, 80, 1)
            accepted, trade = await feed.next(), await feed.next()
            await send(alice, "DELETE", f"/orders/{ask}")
    assert (accepted["__typename"], accepted["orderId"]) == ("OrderAcceptedEvent", ask)
    assert (trade["__typename"], trade["askOrderId"]) == ("OrderTradeEvent", ask)
    assert (trade["askRemaining"], trade["bidRemaining"]) == (3, None)
    assert int(trade["seq"]) > int(accepted["seq"]) > seq
