"""The plain WebSocket routes (/ws/trades, /ws/orderbook) against the real stack, with the
`websockets` client; and the same trade seen on a WebSocket and a GraphQL subscription."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.api.test_graphql import (
    GRAPHQL_TRANSPORT_WS,
    GRAPHQL_WS,
    TIMEOUT,
    TRADES_SUB,
    Feed,
    aplace,
    place_levels,
    subscription,
    sync_trade_feeds,
    when,
    ws_url,
)

pytestmark = pytest.mark.usefixtures("empty_book")

TRADE_KEYS = {"trade_id", "trade_price", "quantity", "bid_order_id", "ask_order_id", "timestamp"}


@pytest.fixture
async def ahttp(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
        yield client


async def _messages(ws: ClientConnection) -> AsyncIterator[dict[str, Any]]:
    async for raw in ws:
        message = json.loads(raw)
        assert isinstance(message, dict), raw
        yield message


@asynccontextmanager
async def ws_feed(base_url: str, path: str) -> AsyncIterator[tuple[Feed, ClientConnection]]:
    async with connect(ws_url(base_url, path), open_timeout=TIMEOUT, close_timeout=5) as ws:
        feed = Feed(_messages(ws))
        try:
            yield feed, ws
        finally:
            await feed.close()


def stored_levels(side: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """WebSocket levels (prices as JSON numbers) in the GraphQL string form of the helpers."""
    out = []
    for level in side:
        assert isinstance(level["price"], int | float), level
        assert set(level) == {"price", "quantity"}, level
        out.append((f"{level['price']:g}", level["quantity"]))
    return out


async def trades_after(client: httpx.AsyncClient, trade_id: str) -> list[dict[str, Any]]:
    response = await client.get("/trades", params={"after": int(trade_id) - 1, "limit": 1000})
    trades: list[dict[str, Any]] = response.json()
    return trades


async def test_ws_trades_one_message_per_trade_at_resting_prices(
    base_url: str, ahttp: httpx.AsyncClient
) -> None:
    async with ws_feed(base_url, "/ws/trades") as (feed, _):
        await sync_trade_feeds(ahttp, [feed])
        ask_100 = await aplace(ahttp, -1, 100, 3)
        ask_101 = await aplace(ahttp, -1, 101, 2)
        await aplace(ahttp, -1, 102, 4)  # beyond the buy's limit: stays in the book
        buy = await aplace(ahttp, 1, 101.5, 5)  # sweeps 100 and 101
        first = await feed.next()
        second = await feed.next()
        # One more trade: the next message must be it, so the sweep sent exactly two.
        marker = await aplace(ahttp, 1, 102, 1)
        third = await feed.next()

    for message in (first, second, third):
        assert set(message) >= TRADE_KEYS, message
        when(message["timestamp"])
    assert [(m["bid_order_id"], m["ask_order_id"]) for m in (first, second)] == [
        (buy, ask_100),
        (buy, ask_101),
    ]
    assert [(m["trade_price"], m["quantity"]) for m in (first, second)] == [(100, 3), (101, 2)]
    assert first["aggressor_side"] == second["aggressor_side"] == 1
    assert (third["bid_order_id"], third["trade_price"], third["quantity"]) == (marker, 102, 1)
    assert int(first["trade_id"]) < int(second["trade_id"]) < int(third["trade_id"])

    stored = await trades_after(ahttp, first["trade_id"])
    assert [t["trade_id"] for t in stored] == [m["trade_id"] for m in (first, second, third)]
    assert [when(t["timestamp"]) for t in stored] == [
        when(m["timestamp"]) for m in (first, second, third)
    ]


async def test_ws_orderbook_snapshots(base_url: str, ahttp: httpx.AsyncClient) -> None:
    async with ws_feed(base_url, "/ws/orderbook") as (feed, ws):
        await ws.send("the server reads and ignores what clients send")
        bids, asks = await place_levels(ahttp)
        seq = (await ahttp.get("/orderbook")).json()["seq"]  # covers every order above
        snapshots = [await feed.until(lambda book: book["seq"] >= seq)]
        snapshots += [await feed.next(), await feed.next()]

    for book in snapshots:
        assert set(book) >= {"timestamp", "bids", "asks"}, book
        assert stored_levels(book["bids"]) == bids  # top 5, descending, summed
        assert stored_levels(book["asks"]) == asks  # top 5, ascending, summed
    # Nothing changed the book after the first: the others are periodic re-broadcasts, each
    # a fresh snapshot (later timestamp, same seq), not a repeat of one message.
    assert len({book["seq"] for book in snapshots}) == 1, snapshots
    moments = [when(book["timestamp"]) for book in snapshots]
    assert all(a < b for a, b in itertools.pairwise(moments)), moments


async def test_ws_orderbook_empty_book_and_depth_cap(
    base_url: str, ahttp: httpx.AsyncClient
) -> None:
    async with ws_feed(base_url, "/ws/orderbook") as (feed, _):
        seq = (await ahttp.get("/orderbook")).json()["seq"]
        empty = await feed.until(lambda book: book["seq"] >= seq)
        for i in range(8):
            await aplace(ahttp, 1, 10 + i, 1)
        seq = (await ahttp.get("/orderbook")).json()["seq"]
        full = await feed.until(lambda book: book["seq"] >= seq)
    assert (empty["bids"], empty["asks"]) == ([], [])
    assert [level["price"] for level in full["bids"]] == [17, 16, 15, 14, 13]
    assert full["asks"] == []


@pytest.mark.parametrize("protocol", [GRAPHQL_TRANSPORT_WS, GRAPHQL_WS])
async def test_trade_reaches_websocket_and_graphql_subscription(
    base_url: str, ahttp: httpx.AsyncClient, protocol: str
) -> None:
    async with (
        ws_feed(base_url, "/ws/trades") as (ws, _),
        subscription(base_url, TRADES_SUB, protocol) as sub,
    ):
        await sync_trade_feeds(ahttp, [ws, sub])
        ask = await aplace(ahttp, -1, 88.25, 6)
        bid = await aplace(ahttp, 1, 89, 6)
        plain, graphql = await asyncio.gather(ws.next(), sub.next())

    assert (plain["bid_order_id"], plain["ask_order_id"]) == (bid, ask)
    assert (graphql["bidOrderId"], graphql["askOrderId"]) == (bid, ask)
    assert plain["trade_id"] == graphql["tradeId"]
    assert (plain["trade_price"], graphql["tradePrice"]) == (88.25, "88.25")
    assert plain["quantity"] == graphql["quantity"] == 6
    assert when(plain["timestamp"]) == when(graphql["timestamp"])


async def test_abrupt_disconnect_does_not_break_the_server(
    base_url: str, ahttp: httpx.AsyncClient
) -> None:
    # Clients that vanish without a close frame, while live data is flowing to them.
    for _ in range(3):
        async with (
            ws_feed(base_url, "/ws/trades") as (trades, trades_ws),
            ws_feed(base_url, "/ws/orderbook") as (books, books_ws),
        ):
            await sync_trade_feeds(ahttp, [trades])
            await books.next()
            trades_ws.transport.abort()
            books_ws.transport.abort()
            # Trades right away, to be sent to the dead sockets.
            await aplace(ahttp, -1, 55, 2)
            await aplace(ahttp, 1, 55, 2)

    assert (await ahttp.get("/health/live")).json() == {"live": True}, "the API died"
    assert (await ahttp.get("/health/ready")).status_code == 200

    async with (
        ws_feed(base_url, "/ws/trades") as (trades, _),
        ws_feed(base_url, "/ws/orderbook") as (books, _),
    ):
        await sync_trade_feeds(ahttp, [trades])
        ask = await aplace(ahttp, -1, 56, 1)
        bid = await aplace(ahttp, 1, 56, 1)
        trade = await trades.next()
        book = await books.next()
    assert (trade["bid_order_id"], trade["ask_order_id"], trade["trade_price"]) == (bid, ask, 56)
    assert set(book) >= {"timestamp", "bids", "asks"}
