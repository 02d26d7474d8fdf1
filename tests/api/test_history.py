"""History newest first (REST and GraphQL): `before`, `order=desc`, `since`/`until`, one
order's fills, Relay's `last`/`before` and `Order.trades`. Runs over both gateways."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import place

pytestmark = pytest.mark.usefixtures("empty_book")

Row = dict[str, Any]


def newest_trade_id(http: httpx.Client) -> str:
    newest = http.get("/trades", params={"order": "desc", "limit": 1}).json()
    return newest[0]["trade_id"] if newest else "0"


def make_trades(http: httpx.Client, count: int, price: float = 30) -> tuple[str, list[Row]]:
    """`count` trades of 1 against one resting ask: (the ask's id, the trades, oldest first)."""
    mark = newest_trade_id(http)
    ask = place(http, -1, price, count)
    for _ in range(count):
        place(http, 1, price, 1)
    trades = http.get("/trades", params={"after": mark, "limit": 1000}).json()
    assert [t["ask_order_id"] for t in trades] == [ask] * count
    return ask, trades


def ids(rows: list[Row], key: str = "trade_id") -> list[str]:
    return [row[key] for row in rows]


def get(http: httpx.Client, path: str, **params: str | int) -> list[Row]:
    response = http.get(path, params=params)
    assert response.status_code == 200, response.text
    rows: list[Row] = response.json()
    return rows


def test_newest_first_and_paging_back(http: httpx.Client) -> None:
    mark = newest_trade_id(http)
    _, trades = make_trades(http, 5)
    t = ids(trades)
    assert ids(get(http, "/trades", order="desc", limit=3)) == t[:1:-1]  # the newest page
    # back from the newest, two at a time, down to where this test started (with both
    # cursors, order=desc takes the page next to `before`)
    walked: list[str] = []
    before = "999999999999999"
    while page := get(http, "/trades", order="desc", limit=2, after=mark, before=before):
        walked += ids(page)
        before = page[-1]["trade_id"]
    assert walked == t[::-1]
    # the page lies next to the cursor given; `order` only sorts it
    assert ids(get(http, "/trades", before=t[2], after=mark)) == t[:2]
    assert ids(get(http, "/trades", before=t[3], limit=2)) == t[1:3]  # before alone: back
    assert ids(get(http, "/trades", after=t[0], limit=2, order="desc")) == [t[2], t[1]]
    assert ids(get(http, "/trades", after=mark, before=t[4], limit=2, order="desc")) == [t[3], t[2]]
    assert ids(get(http, "/trades", after=mark, before=t[4], limit=2)) == t[:2]
    assert get(http, "/trades", after=t[4]) == []


def test_time_window_is_inclusive_to_the_microsecond(http: httpx.Client) -> None:
    _, trades = make_trades(http, 4, price=31)
    t = ids(trades)
    stamps = [row["timestamp"] for row in trades]
    assert len(set(stamps)) == 4, stamps  # one client's orders, each after the previous answer
    window = get(http, "/trades", since=stamps[1], until=stamps[2])
    assert ids(window) == t[1:3]
    assert ids(get(http, "/trades", since=stamps[2], until=stamps[2])) == [t[2]]
    assert ids(get(http, "/trades", since=stamps[3])) == [t[3]]
    just_after = (datetime.fromisoformat(stamps[1]) + timedelta(microseconds=1)).isoformat()
    assert ids(get(http, "/trades", since=just_after, until=stamps[2])) == [t[2]]
    # newest first within a window; a "Z" time; an offset written as the query string's "+"
    assert ids(get(http, "/trades", until=stamps[2], since=stamps[0], order="desc")) == t[2::-1]
    z = stamps[3].replace("+00:00", "Z")
    assert ids(get(http, "/trades", since=z)) == [t[3]]
    raw = http.get(f"/trades?since={stamps[3]}")  # "+00:00" unencoded: arrives as " 00:00"
    assert ids(raw.json()) == [t[3]]
    shifted = datetime.fromisoformat(stamps[3]).astimezone(
        datetime.fromisoformat("2000-01-01T00:00:00+05:30").tzinfo
    )
    assert ids(get(http, "/trades", since=shifted.isoformat())) == [t[3]]


def test_orders_newest_first_and_by_creation_time(http: httpx.Client) -> None:
    made = [place(http, 1, 10 + i, 1) for i in range(4)]
    newest = get(http, "/orders", order="desc", limit=4)
    assert ids(newest, "order_id") == made[::-1]
    assert ids(get(http, "/orders", before=made[2], limit=1), "order_id") == [made[1]]
    created = [http.get(f"/orders/{oid}").json()["created_at"] for oid in made]
    window = get(http, "/orders", since=created[1], until=created[2], side=1, alive="true")
    assert ids(window, "order_id") == made[1:3]
    assert ids(get(http, "/orders", since=created[3], alive="1"), "order_id") == [made[3]]


def test_one_orders_fills(http: httpx.Client) -> None:
    ask, trades = make_trades(http, 3, price=32)
    fills = get(http, f"/orders/{ask}/trades")
    assert fills == trades
    assert get(http, f"/orders/{ask}/trades", order="desc", limit=2) == trades[:0:-1]
    assert get(http, f"/orders/{ask}/trades", after=trades[0]["trade_id"]) == trades[1:]
    taker = trades[1]["bid_order_id"]
    assert get(http, f"/orders/{taker}/trades") == [trades[1]]
    resting = place(http, 1, 5, 1)
    assert get(http, f"/orders/{resting}/trades") == []
    missing = http.get("/orders/999999999/trades")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    bad = http.get("/orders/abc/trades", params={"limit": 0})
    assert bad.status_code == 422


def test_every_bad_list_parameter_is_named_at_once(http: httpx.Client) -> None:
    response = http.get(
        "/trades",
        params={"limit": "0", "order": "sideways", "since": "yesterday", "before": "x1"},
    )
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"limit", "order", "since", "before"}
    response = http.get(
        "/orders",
        params={"alive": "maybe", "side": "2", "after": "7", "before": "7", "symbol": "NOPE"},
    )
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"alive", "side", "before", "symbol"}
    response = http.get(
        "/trades", params={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["until"]
    for value in ("1969-12-31T23:59:59Z", "2026-13-01", "", "1" * 65):
        refused = http.get("/trades", params={"since": value})
        assert refused.status_code == 422, value
        assert [e["field"] for e in refused.json()["errors"]] == ["since"], value
    # the same values, well formed, are accepted
    assert http.get("/trades", params={"limit": "1", "order": "desc"}).status_code == 200
    assert http.get("/orders", params={"alive": "false", "side": "-1"}).status_code == 200


# -- GraphQL -----------------------------------------------------------------------------------


def graphql(http: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    """`data` of a query that must succeed."""
    response = http.post("/graphql", json={"query": query, "variables": variables})
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def graphql_errors(http: httpx.Client, query: str, **variables: Any) -> list[dict[str, Any]]:
    body = http.post("/graphql", json={"query": query, "variables": variables}).json()
    assert "errors" in body, body
    errors: list[dict[str, Any]] = body["errors"]
    return errors


PAGE = "pageInfo { startCursor endCursor hasPreviousPage hasNextPage }"
TRADES_LAST = f"""
query($last: Int, $before: String, $after: String, $since: DateTime, $until: DateTime) {{
  trades(last: $last, before: $before, after: $after, since: $since, until: $until) {{
    nodes {{ tradeId }} edges {{ cursor node {{ tradeId }} }} {PAGE}
  }}
}}"""


def node_ids(connection: dict[str, Any], key: str = "tradeId") -> list[str]:
    return [node[key] for node in connection["nodes"]]


def test_graphql_last_and_before_page_back_from_the_newest(http: httpx.Client) -> None:
    mark = newest_trade_id(http)
    _, trades = make_trades(http, 5, price=33)
    t = ids(trades)
    newest = graphql(http, TRADES_LAST, last=2)["trades"]
    assert node_ids(newest) == t[3:]  # Relay: the last two, still oldest first
    assert [e["cursor"] for e in newest["edges"]] == t[3:]
    assert [e["node"]["tradeId"] for e in newest["edges"]] == t[3:]
    assert newest["pageInfo"] == {
        "startCursor": t[3],
        "endCursor": t[4],
        "hasPreviousPage": True,
        "hasNextPage": False,
    }
    back = graphql(http, TRADES_LAST, last=2, before=t[3])["trades"]
    assert node_ids(back) == t[1:3]
    oldest = graphql(http, TRADES_LAST, last=5, before=t[1], after=mark)["trades"]
    assert node_ids(oldest) == t[:1]
    assert oldest["pageInfo"]["hasPreviousPage"] is False
    stamps = [row["timestamp"] for row in trades]
    window = graphql(http, TRADES_LAST, last=10, since=stamps[1], until=stamps[3])["trades"]
    assert node_ids(window) == t[1:4]
    first = "query($a: String) { trades(first: 2, after: $a) { nodes { tradeId } " + PAGE + " } }"
    forward = graphql(http, first, a=mark)["trades"]
    assert node_ids(forward) == t[:2]
    assert forward["pageInfo"]["hasNextPage"] is True
    assert forward["pageInfo"]["hasPreviousPage"] is False


def test_graphql_orders_last_and_time_window(http: httpx.Client) -> None:
    made = [place(http, -1, 900 + i, 1) for i in range(3)]
    query = """query($last: Int, $since: DateTime) {
      orders(last: $last, since: $since, side: -1, alive: true) {
        nodes { orderId createdAt } pageInfo { hasPreviousPage } } }"""
    newest = graphql(http, query, last=2)["orders"]
    assert node_ids(newest, "orderId") == made[1:]
    assert newest["pageInfo"]["hasPreviousPage"] is True
    since = newest["nodes"][1]["createdAt"]
    assert node_ids(graphql(http, query, last=9, since=since)["orders"], "orderId") == made[2:]


def test_graphql_order_trades(http: httpx.Client) -> None:
    ask, trades = make_trades(http, 3, price=34)
    query = """query($id: ID!, $last: Int) {
      order(id: $id) { orderId trades(last: $last) { nodes { tradeId quantity } } } }"""
    order = graphql(http, query, id=ask)["order"]
    assert node_ids(order["trades"]) == ids(trades)
    assert all(node["quantity"] == 1 for node in order["trades"]["nodes"])
    assert node_ids(graphql(http, query, id=ask, last=1)["order"]["trades"]) == ids(trades)[2:]
    nested = """query($a: String) {
      orders(first: 1, after: $a) { nodes { orderId trades { nodes { tradeId } } } } }"""
    listed = graphql(http, nested, a=str(int(ask) - 1))["orders"]["nodes"]
    assert listed[0]["orderId"] == ask
    assert node_ids(listed[0]["trades"]) == ids(trades)


def test_graphql_bad_history_arguments_are_named(http: httpx.Client) -> None:
    errors = graphql_errors(http, "{ trades(first: 2, last: 2) { nodes { tradeId } } }")
    assert errors[0]["extensions"]["errors"] == [
        {"field": "first", "message": "cannot be combined with last"}
    ]
    errors = graphql_errors(
        http,
        'query($s: DateTime, $u: DateTime) { trades(last: 0, since: $s, until: $u, before: "x") '
        "{ nodes { tradeId } } }",
        s="2026-01-02T00:00:00Z",
        u="2026-01-01T00:00:00Z",
    )
    fields = {e["field"] for e in errors[0]["extensions"]["errors"]}
    assert fields == {"last", "before", "until"}


def test_a_bound_past_2262_means_no_bound(http: httpx.Client) -> None:
    """Stored times are 64-bit nanoseconds: a later `until` (schemathesis found year 3592)
    lists everything up to now instead of failing in the store."""
    _, trades = make_trades(http, 2)
    far = "3592-05-28T14:36:32-04:21"
    newest = get(http, "/trades", until=far, order="desc", limit=2)
    assert ids(newest) == ids(trades)[::-1]
    assert get(http, "/trades", since=far) == []
    assert get(http, "/orders", until=far, order="desc", limit=1)
