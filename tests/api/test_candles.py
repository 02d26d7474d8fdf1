"""Candles over REST, the GraphQL query and the GraphQL subscription, checked against the
trades they fold (read back through `GET /trades`). Runs over both gateways."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.api.test_graphql import GRAPHQL_TRANSPORT_WS, GRAPHQL_WS, aplace, subscription
from tests.api.test_history import get, graphql, make_trades

pytestmark = pytest.mark.usefixtures("empty_book")

Row = dict[str, Any]
INTERVALS = {"1s": 1, "1m": 60, "5m": 300, "1h": 3600}
GRAPHQL_INTERVALS = {"1s": "ONE_SECOND", "1m": "ONE_MINUTE", "5m": "FIVE_MINUTE", "1h": "ONE_HOUR"}


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def bucket_start(timestamp: str, seconds: int) -> datetime:
    elapsed = (datetime.fromisoformat(timestamp) - EPOCH) // timedelta(seconds=seconds)
    return EPOCH + timedelta(seconds=elapsed * seconds)


def trades_since(http: httpx.Client, since: datetime) -> list[Row]:
    """Every trade of the default instrument stamped at or after `since`, oldest first."""
    rows: list[Row] = []
    after = "0"
    while page := get(
        http, "/trades", since=since.isoformat(), after=after, limit=1000, symbol="DEFAULT"
    ):
        rows += page
        after = page[-1]["trade_id"]
    return rows


def folded(trades: list[Row], interval: str) -> list[Row]:
    """The candles these trades make, computed the plain way."""
    seconds = INTERVALS[interval]
    buckets: dict[datetime, list[Row]] = {}
    for t in sorted(trades, key=lambda t: int(t["trade_id"])):
        buckets.setdefault(bucket_start(t["timestamp"], seconds), []).append(t)
    return [
        {
            "symbol": "DEFAULT",
            "interval": interval,
            "start": start.isoformat(timespec="microseconds"),
            "open": group[0]["trade_price"],
            "high": max(t["trade_price"] for t in group),
            "low": min(t["trade_price"] for t in group),
            "close": group[-1]["trade_price"],
            "volume": sum(t["quantity"] for t in group),
            "trade_count": len(group),
        }
        for start, group in sorted(buckets.items())
    ]


def test_candles_are_the_trades_folded(http: httpx.Client) -> None:
    _, cheap = make_trades(http, 3, price=50)
    _, dear = make_trades(http, 2, price=52.5)
    _, last = make_trades(http, 1, price=51)
    mine = cheap + dear + last
    for interval, seconds in INTERVALS.items():
        start = bucket_start(mine[0]["timestamp"], seconds)
        expected = folded(trades_since(http, start), interval)
        assert expected[-1]["close"] == 51
        got = get(http, "/candles", interval=interval, since=start.isoformat(), limit=1000)
        assert got == expected, interval
        # without `since`: the newest ones, oldest first
        assert get(http, "/candles", interval=interval, limit=1) == expected[-1:]
        # `until` is the last bucket start, inclusive
        first = start.isoformat()
        assert get(http, "/candles", interval=interval, since=first, until=first) == expected[:1]
    one_second = folded(mine, "1s")
    assert sum(c["trade_count"] for c in one_second) >= len(mine)


def test_bad_candle_parameters_are_named_at_once(http: httpx.Client) -> None:
    missing = http.get("/candles")
    assert missing.status_code == 422
    assert [e["field"] for e in missing.json()["errors"]] == ["interval"]
    response = http.get(
        "/candles",
        params={"interval": "2m", "limit": "5000", "since": "soon", "symbol": "NOPE"},
    )
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"interval", "limit", "since", "symbol"}
    backwards = http.get(
        "/candles",
        params={"interval": "1m", "since": "2026-01-02T00:00:00Z", "until": "2026-01-01"},
    )
    assert [e["field"] for e in backwards.json()["errors"]] == ["until"]
    assert http.get("/candles", params={"interval": "5m", "limit": "2"}).status_code == 200


CANDLE_FIELDS = "symbol interval start open high low close volume tradeCount"


def as_graphql(candle: Row) -> Row:
    """A REST candle as the GraphQL query shows it (prices as decimal strings; `start` as a
    datetime, since each API writes it in its own ISO 8601 form)."""
    price = {k: _decimal(candle[k]) for k in ("open", "high", "low", "close")}
    return {
        "symbol": candle["symbol"],
        "interval": GRAPHQL_INTERVALS[candle["interval"]],
        "start": datetime.fromisoformat(candle["start"]),
        **price,
        "volume": candle["volume"],
        "tradeCount": candle["trade_count"],
    }


def parsed(candle: Row) -> Row:
    return {**candle, "start": datetime.fromisoformat(candle["start"])}


def _decimal(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def test_graphql_candles_query_agrees_with_rest(http: httpx.Client) -> None:
    _, trades = make_trades(http, 2, price=53.25)
    query = f"""query($interval: CandleInterval!, $since: DateTime, $limit: Int!) {{
      candles(interval: $interval, since: $since, limit: $limit) {{ {CANDLE_FIELDS} }} }}"""
    for interval, seconds in INTERVALS.items():
        start = bucket_start(trades[0]["timestamp"], seconds).isoformat()
        rest = get(http, "/candles", interval=interval, since=start)
        data = graphql(http, query, interval=GRAPHQL_INTERVALS[interval], since=start, limit=300)
        assert [parsed(c) for c in data["candles"]] == [as_graphql(c) for c in rest], interval
    errors = http.post(
        "/graphql", json={"query": "{ candles(interval: ONE_HOUR, limit: 0) { open } }"}
    ).json()["errors"]
    assert errors[0]["extensions"]["errors"] == [
        {"field": "limit", "message": "must be an integer in 1..1000"}
    ]


@pytest.mark.parametrize("protocol", [GRAPHQL_TRANSPORT_WS, GRAPHQL_WS])
async def test_candle_subscription_follows_the_stored_candle(base_url: str, protocol: str) -> None:
    """The subscription first sends the current candle, then the candle again as trades
    change it: each message is what the candles query returns at that point."""
    query = f"subscription {{ candles(interval: ONE_HOUR) {{ {CANDLE_FIELDS} }} }}"

    async def newest() -> Row:
        stored = (await client.get("/candles", params={"interval": "1h", "limit": 1})).json()
        return as_graphql(stored[0])

    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        await aplace(client, -1, 60, 1)
        await aplace(client, 1, 60, 1)  # at least one candle exists
        async with subscription(base_url, query, protocol) as feed:
            current = parsed(await feed.next())
            assert current == await newest()
            await aplace(client, -1, 61.5, 2)
            await aplace(client, 1, 61.5, 2)
            count, hour = current["tradeCount"] + 1, current["start"]
            moved = parsed(
                await feed.until(lambda c: c["tradeCount"] >= count or parsed(c)["start"] != hour)
            )
            assert moved == await newest()
    assert moved["close"] == "61.5"
    if moved["start"] == hour:  # the hour did not turn during the test
        assert moved["volume"] == current["volume"] + 2
        assert moved["open"] == current["open"]


async def test_candle_subscription_sends_only_candles_that_changed(base_url: str) -> None:
    """With candles in two seconds, subscribing sends the newest only, and a new trade sends
    its own candle, never the unchanged one before."""
    query = f"subscription {{ candles(interval: ONE_SECOND) {{ {CANDLE_FIELDS} }} }}"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        ask = await aplace(client, -1, 62, 1000)
        await aplace(client, 1, 62, 1)
        first = (await client.get("/trades", params={"order": "desc", "limit": 1})).json()[0]
        deadline = asyncio.get_running_loop().time() + 10
        while True:  # a second trade in a later second than the first one
            assert asyncio.get_running_loop().time() < deadline
            await aplace(client, 1, 62, 1)
            second = (await client.get("/trades", params={"order": "desc", "limit": 1})).json()
            if second[0]["timestamp"][:19] != first["timestamp"][:19]:
                break
        async with subscription(base_url, query, GRAPHQL_TRANSPORT_WS) as feed:
            current = parsed(await feed.next())
            assert current["start"] == bucket_start(second[0]["timestamp"], 1)
            await aplace(client, 1, 62, 1)
            last = (await client.get("/trades", params={"order": "desc", "limit": 1})).json()[0]
            target = bucket_start(last["timestamp"], 1)
            seen = [parsed(await feed.next())]
            while seen[-1]["start"] != target or seen[-1]["close"] != "62":
                seen.append(parsed(await feed.next()))
        assert all(c["start"] >= current["start"] for c in seen), seen
        await client.delete(f"/orders/{ask}")
