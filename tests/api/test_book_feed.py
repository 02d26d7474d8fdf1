"""The incremental book (`/ws/book?depth=N`, GraphQL `orderBookUpdates(depth:)`): random
commands of every kind; at many points, with nothing in flight, each client's book (its
snapshot plus every level change up to a `seq`) is exactly what `GET /orderbook` returns
for that `seq`."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.api.conftest import Api
from tests.api.feed_clients import send, ws_feed
from tests.api.test_graphql import GRAPHQL_TRANSPORT_WS, Feed, subscription

pytestmark = pytest.mark.usefixtures("empty_book")

BOOK_UPDATES = """
subscription Book($depth: Int!) {
  orderBookUpdates(depth: $depth) {
    __typename
    ... on OrderBookSnapshot { seq depth bids { price quantity } asks { price quantity } }
    ... on OrderBookLevelChange { seq side price quantity }
  }
}"""
PRICES = [Decimal(95) + Decimal("0.5") * i for i in range(21)]
WORKERS = 8
CHECK_EVERY = 100
Levels = list[tuple[Decimal, int]]


class BookClient:
    """A client of the feed: holds what the snapshot and the changes so far say."""

    def __init__(self, name: str, depth: int, feed: Feed) -> None:
        self.name, self.depth, self.feed = name, depth, feed
        self.seq = -1
        self.sides: dict[int, dict[Decimal, int]] = {1: {}, -1: {}}
        self.held: dict[str, Any] | None = None  # a change read past the point checked

    async def start(self) -> None:
        snapshot = await self.feed.next()
        assert snapshot.get("type", snapshot.get("__typename")) in ("snapshot", "OrderBookSnapshot")
        assert snapshot["depth"] == self.depth
        self.seq = int(snapshot["seq"])
        for side, key in ((1, "bids"), (-1, "asks")):
            self.sides[side] = {Decimal(str(lv["price"])): lv["quantity"] for lv in snapshot[key]}

    def apply(self, change: dict[str, Any]) -> None:
        assert change.get("type", change.get("__typename")) in ("level", "OrderBookLevelChange")
        seq = int(change["seq"])
        assert seq >= self.seq, (self.name, seq, self.seq)
        self.seq = seq
        levels = self.sides[change["side"]]
        price = Decimal(str(change["price"]))
        if change["quantity"]:
            levels[price] = change["quantity"]
        else:
            assert price in levels, (self.name, change)  # only what it holds leaves
            del levels[price]

    async def book_at(self, seq: int) -> tuple[Levels, Levels]:
        """Apply every change up to `seq`; the first one after it proves there are no more."""
        while True:
            change = self.held or await self.feed.next()
            self.held = None
            if int(change["seq"]) > seq:
                self.held = change
                break
            self.apply(change)
        bids = sorted(self.sides[1].items(), reverse=True)
        asks = sorted(self.sides[-1].items())
        assert len(bids) <= self.depth and len(asks) <= self.depth, self.name
        return bids, asks


def levels(side: list[dict[str, Any]]) -> Levels:
    return [(Decimal(str(lv["price"])), lv["quantity"]) for lv in side]


def random_command(rng: random.Random, live: list[str]) -> tuple[str, str, dict[str, Any] | None]:
    roll = rng.random()
    if roll < 0.6 or not live:
        body: dict[str, Any] = {"side": rng.choice((1, -1)), "quantity": rng.randint(1, 25)}
        kind = rng.random()
        if kind < 0.08:
            body["type"] = "market"
        else:
            body["price"] = str(rng.choice(PRICES))
            if kind < 0.2:
                body["time_in_force"] = rng.choice(("IOC", "FOK"))
        return "POST", "/orders", body
    order_id = rng.choice(live) if rng.random() < 0.9 else str(rng.randint(1, 10**6))
    if roll < 0.8:
        change: dict[str, Any] = {}
        if rng.random() < 0.75:
            change["price"] = str(rng.choice(PRICES))
        if rng.random() < 0.4 or not change:
            change["quantity"] = rng.randint(1, 40)
        return "PUT", f"/orders/{order_id}", change
    return "DELETE", f"/orders/{order_id}", None


async def run_commands(
    client: httpx.AsyncClient, rng: random.Random, count: int, live: list[str]
) -> None:
    commands = [random_command(rng, live) for _ in range(count)]

    async def worker(mine: list[tuple[str, str, dict[str, Any] | None]]) -> None:
        for method, path, body in mine:
            response = await send(client, method, path, body)
            assert response.status_code < 500, response.text
            if method == "POST" and response.status_code == 201:
                live.append(response.json()["order_id"])
                if len(live) > 300:
                    live.pop(rng.randrange(len(live)))

    await asyncio.gather(*(worker(commands[k::WORKERS]) for k in range(WORKERS)))


async def sentinel(client: httpx.AsyncClient) -> None:
    """A bid joining the best bid (or a new best bid): a change in every window, so every
    client's next message is past the point being checked."""
    top = (await client.get("/orderbook", params={"depth": 1})).json()
    if top["bids"]:
        price = Decimal(str(top["bids"][0]["price"]))
    elif top["asks"]:
        price = Decimal(str(top["asks"][0]["price"])) - Decimal("0.5")
    else:
        price = Decimal(100)
    body = {"side": 1, "price": str(price), "quantity": 1}
    assert (await send(client, "POST", "/orders", body)).status_code == 201


@asynccontextmanager
async def clients(base_url: str, base_url2: str) -> AsyncIterator[list[BookClient]]:
    async with AsyncExitStack() as stack:
        made = []
        for depth, url in ((1, base_url), (3, base_url2), (10, base_url)):
            feed, _ = await stack.enter_async_context(ws_feed(url, f"/ws/book?depth={depth}"))
            made.append(BookClient(f"ws depth {depth}", depth, feed))
        gql = await stack.enter_async_context(
            subscription(base_url2, BOOK_UPDATES, GRAPHQL_TRANSPORT_WS, depth=5)
        )
        made.append(BookClient("graphql depth 5", 5, gql))
        for client in made:
            await client.start()
        yield made


async def test_clients_applying_changes_hold_the_rest_book_at_each_seq(
    api: Api, base_url: str, base_url2: str, ahttp: httpx.AsyncClient
) -> None:
    # 10,000 in-process in `make test`; `make test-fast` (the inner loop) sets fewer.
    total = (
        int(os.environ.get("BOOK_FEED_COMMANDS", 10_000)) if api.gateway == "inprocess" else 2_000
    )
    rng = random.Random(14)
    live: list[str] = []
    await run_commands(ahttp, rng, 300, live)  # a book that exists before the feeds
    checked = 0
    async with clients(base_url, base_url2) as books:
        for _ in range(total // CHECK_EVERY):
            await run_commands(ahttp, rng, CHECK_EVERY, live)
            rest = {
                depth: (await ahttp.get("/orderbook", params={"depth": depth})).json()
                for depth in {c.depth for c in books}
            }
            seq = rest[1]["seq"]
            assert all(book["seq"] == seq for book in rest.values())  # nothing in flight
            await sentinel(ahttp)
            for client in books:
                want = rest[client.depth]
                got = await client.book_at(seq)
                assert got == (levels(want["bids"]), levels(want["asks"])), (client.name, seq)
            checked += 1
    assert checked == total // CHECK_EVERY
