"""Resumable trade feeds (`/ws/trades?after=`, GraphQL `trades(after:)`): trades keep
flowing at full rate while a client drops its connection and comes back with the last
trade id it has, over and over; across every switch from the store's history to the live
stream, it gets every trade exactly once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.api.feed_clients import newest_trade_id, send, stored_trade_ids, ws_feed
from tests.api.test_graphql import GRAPHQL_TRANSPORT_WS, TIMEOUT, Feed, subscription

pytestmark = pytest.mark.usefixtures("empty_book")

PRICE = 500
TRADES_AFTER = "subscription Trades($after: ID) { trades(after: $after) { tradeId } }"


class TradeFlow:
    """One-lot buys against a large resting sell from several clients at once, each
    sending as soon as it is answered: as many trades as the API takes."""

    def __init__(self, client: httpx.AsyncClient, workers: int = 6) -> None:
        self.client = client
        self.workers = workers
        self.made = 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        body = {"side": -1, "price": PRICE, "quantity": 10_000_000}
        ask = (await send(self.client, "POST", "/orders", body)).json()["order_id"]

        async def worker() -> None:
            while not self._stop.is_set():
                response = await send(
                    self.client, "POST", "/orders", {"side": 1, "price": PRICE, "quantity": 1}
                )
                assert response.status_code == 201, response.text
                self.made += 1

        await asyncio.gather(*(worker() for _ in range(self.workers)))
        await send(self.client, "DELETE", f"/orders/{ask}")

    async def until_made(self, count: int) -> None:
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while self.made < count:
            assert asyncio.get_running_loop().time() < deadline, "the trade flow stalled"
            await asyncio.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()


@asynccontextmanager
async def flowing(client: httpx.AsyncClient) -> AsyncIterator[TradeFlow]:
    flow = TradeFlow(client)
    task = asyncio.create_task(flow.run())
    try:
        await flow.until_made(1)
        yield flow
    finally:
        flow.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task


Connect = Callable[[int], AbstractAsyncContextManager[Feed]]  # after -> its feed


def plain(base_url: str) -> Connect:
    @asynccontextmanager
    async def connect(after: int) -> AsyncIterator[Feed]:
        async with ws_feed(base_url, f"/ws/trades?after={after}") as (feed, ws):
            yield feed
            ws.transport.abort()  # gone without a close frame, as a dropped connection

    return connect


def graphql(base_url: str) -> Connect:
    @asynccontextmanager
    async def connect(after: int) -> AsyncIterator[Feed]:
        async with subscription(
            base_url, TRADES_AFTER, GRAPHQL_TRANSPORT_WS, after=str(after)
        ) as feed:
            yield feed

    return connect


async def reconnecting_client(
    ahttp: httpx.AsyncClient, connect: Connect, rounds: int, seed: int
) -> None:
    rng = random.Random(seed)
    start = last = await newest_trade_id(ahttp)
    received: list[int] = []
    missed_while_away = 0
    async with flowing(ahttp) as flow:
        for round_ in range(rounds):
            async with connect(last) as feed:
                for _ in range(rng.randint(1, 300)):
                    message = await feed.next()
                    trade_id = int(message.get("trade_id") or message["tradeId"])
                    received.append(trade_id)
                    last = trade_id
            if round_ % 2 == 0:  # stay away while trades are made; else come back at once
                gone_at = flow.made
                await flow.until_made(gone_at + rng.randint(1, 200))
                missed_while_away += flow.made - gone_at
    # The flow has stopped: the store holds every trade. Come back once more for the rest.
    stored = await stored_trade_ids(ahttp, start)
    async with connect(last) as feed:
        while last < stored[-1]:
            last = int((m := await feed.next()).get("trade_id") or m["tradeId"])
            received.append(last)
    assert missed_while_away > 0
    assert len(stored) >= flow.made  # every flow trade (and nothing else) since `start`
    assert received == stored  # each trade once, in order: no gap, no duplicate


async def test_ws_trades_resume_after_the_last_id_under_full_flow(
    base_url: str, ahttp: httpx.AsyncClient
) -> None:
    await reconnecting_client(ahttp, plain(base_url), rounds=14, seed=1)


async def test_graphql_trades_resume_after_the_last_id_under_full_flow(
    base_url: str, ahttp: httpx.AsyncClient
) -> None:
    await reconnecting_client(ahttp, graphql(base_url), rounds=8, seed=2)


async def test_resume_on_the_other_replica(
    base_url: str, base_url2: str, ahttp: httpx.AsyncClient
) -> None:
    """A client may come back to any replica: the cursor is the trade id, not a session."""
    start = await newest_trade_id(ahttp)
    async with flowing(ahttp) as flow:
        await flow.until_made(50)
        last = start
        for url in (base_url, base_url2, base_url):
            async with plain(url)(last) as feed:
                for _ in range(40):
                    last = int((await feed.next())["trade_id"])
    stored = await stored_trade_ids(ahttp, start)
    received: list[int] = []
    async with plain(base_url2)(start) as feed:
        while not received or received[-1] < stored[-1]:
            received.append(int((await feed.next())["trade_id"]))
    assert received == stored


async def test_cursor_refusals(base_url: str) -> None:
    for query in ("after=abc", "after=-1", "after=1,2", "after=0,5", "after=99999999999999"):
        with pytest.raises(InvalidStatus) as refused:
            async with ws_feed(base_url, f"/ws/trades?{query}"):
                pass
        assert refused.value.response.status_code == 403, query
