"""The REST contract against the real stack (httpx, two API replicas)."""

from __future__ import annotations

import httpx
import pytest

from tests.command_log import CommandLog
from tests.conftest import place, recent_trades
from tests.metrics import sample

pytestmark = pytest.mark.usefixtures("empty_book")


def test_place_returns_order_id_and_get_shows_it(http: httpx.Client) -> None:
    response = http.post("/orders", json={"quantity": 10, "price": 101.5, "side": 1})
    assert response.status_code == 201
    order_id = response.json()["order_id"]
    assert isinstance(order_id, str) and order_id.isdigit()

    order = http.get(f"/orders/{order_id}").json()
    assert order["order_id"] == order_id
    assert order["side"] == 1
    assert order["order_price"] == 101.5
    assert order["order_quantity"] == 10
    assert order["traded_quantity"] == 0
    assert order["order_alive"] is True
    assert order["created_at"] and order["updated_at"]


def test_crossing_orders_trade_at_resting_price(http: httpx.Client) -> None:
    ask = place(http, -1, 100, 5)
    bid = place(http, 1, 101, 8)  # crosses: trades 5 at the ask's 100, rests 3 at 101

    trades = recent_trades(http)
    mine = [t for t in trades if t["bid_order_id"] == bid]
    assert len(mine) == 1
    trade = mine[0]
    assert trade["ask_order_id"] == ask
    assert trade["trade_price"] == 100
    assert trade["quantity"] == 5
    assert set(trade) >= {"trade_id", "timestamp"}

    assert http.get(f"/orders/{ask}").json()["order_alive"] is False
    bid_state = http.get(f"/orders/{bid}").json()
    assert (bid_state["traded_quantity"], bid_state["order_alive"]) == (5, True)


def test_sell_aggressor_trades_at_resting_bid_price(http: httpx.Client) -> None:
    bid = place(http, 1, 99.5, 4)
    ask = place(http, -1, 99, 4)
    trade = [t for t in recent_trades(http) if t["ask_order_id"] == ask]
    assert [(t["bid_order_id"], t["trade_price"], t["quantity"]) for t in trade] == [(bid, 99.5, 4)]


def test_modify_price_and_dead_order(http: httpx.Client) -> None:
    order_id = place(http, -1, 105, 3)
    assert http.put(f"/orders/{order_id}", json={"price": 104.25}).json() == {"success": True}
    assert http.get(f"/orders/{order_id}").json()["order_price"] == 104.25

    assert http.delete(f"/orders/{order_id}").json() == {"success": True}
    dead = http.get(f"/orders/{order_id}").json()
    assert dead["order_alive"] is False and dead["traded_quantity"] == 0

    again = http.put(f"/orders/{order_id}", json={"price": 103})
    assert again.status_code == 200
    assert again.json() == {"success": False, "reason": "order_not_alive"}
    assert http.delete(f"/orders/{order_id}").json() == {
        "success": False,
        "reason": "order_not_alive",
    }
    assert http.delete("/orders/999999999").json() == {"success": False, "reason": "unknown_order"}


def test_cancel_after_partial_fill_keeps_traded(http: httpx.Client) -> None:
    ask = place(http, -1, 50, 10)
    place(http, 1, 50, 4)
    assert http.delete(f"/orders/{ask}").json() == {"success": True}
    order = http.get(f"/orders/{ask}").json()
    assert order["traded_quantity"] == 4
    assert order["order_alive"] is False


def test_unknown_order_is_404_with_body(http: httpx.Client) -> None:
    response = http.get("/orders/987654321")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert "987654321" in response.json()["message"]


def test_list_orders_filters_and_cursor(http: httpx.Client) -> None:
    ids = [place(http, 1, 10 + i, 1) for i in range(5)]
    sell = place(http, -1, 500, 1)
    alive_bids = http.get("/orders", params={"alive": "true", "side": 1}).json()
    assert [o["order_id"] for o in alive_bids] == ids  # oldest first, newest last
    assert all(o["side"] == 1 for o in alive_bids)

    first = http.get("/orders", params={"alive": "true", "limit": 2}).json()
    assert [o["order_id"] for o in first] == ids[:2]
    rest = http.get("/orders", params={"alive": "true", "after": first[-1]["order_id"]}).json()
    assert [o["order_id"] for o in rest] == [*ids[2:], sell]

    http.delete(f"/orders/{ids[0]}")
    dead = http.get("/orders", params={"alive": "false", "after": str(int(ids[0]) - 1)}).json()
    assert ids[0] in [o["order_id"] for o in dead]


def test_trades_cursor_pagination(http: httpx.Client) -> None:
    place(http, -1, 20, 3)
    place(http, 1, 20, 1)
    place(http, 1, 20, 1)
    place(http, 1, 20, 1)
    recent = recent_trades(http)[-3:]
    page = http.get("/trades", params={"after": recent[0]["trade_id"], "limit": 1}).json()
    assert [t["trade_id"] for t in page] == [recent[1]["trade_id"]]


def test_client_order_id_is_idempotent(http: httpx.Client) -> None:
    body = {"side": 1, "price": 10, "quantity": 2, "client_order_id": "rest-idem-1"}
    first = http.post("/orders", json=body)
    second = http.post("/orders", json=body)
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["order_id"] == first.json()["order_id"]
    assert second.json()["duplicate"] is True
    mine = [
        o
        for o in http.get("/orders", params={"alive": "true"}).json()
        if o["client_order_id"] == "rest-idem-1"
    ]
    assert len(mine) == 1


def test_read_your_writes_across_replicas(http: httpx.Client, base_url2: str) -> None:
    with httpx.Client(base_url=base_url2, timeout=10) as other:
        for i in range(20):
            ask = place(http, -1, 30 + i, 2)
            # Immediately after the acknowledgement, the other replica must see it.
            seen = other.get(f"/orders/{ask}")
            assert seen.status_code == 200, seen.text
            assert seen.json()["order_alive"] is True
            bid = other.post("/orders", json={"side": 1, "price": 30 + i, "quantity": 2}).json()
            after = http.get(f"/orders/{ask}").json()
            assert after["traded_quantity"] == 2 and after["order_alive"] is False
            assert http.get(f"/orders/{bid['order_id']}").json()["traded_quantity"] == 2


def test_orderbook_route_aggregates(http: httpx.Client) -> None:
    place(http, 1, 99, 1)
    place(http, 1, 99, 2)
    place(http, 1, 98, 5)
    place(http, -1, 101, 4)
    book = http.get("/orderbook", params={"depth": 5}).json()
    assert book["bids"] == [{"price": 99, "quantity": 3}, {"price": 98, "quantity": 5}]
    assert book["asks"] == [{"price": 101, "quantity": 4}]


def test_openapi_is_served(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    assert {"/orders", "/orders/{order_id}", "/trades"} <= set(spec["paths"])
    documented = set(spec["paths"]["/orders"]["post"]["responses"])
    assert {"201", "400", "409", "413", "415", "422", "429", "503"} <= documented
    assert http.get("/docs").status_code == 200


def test_metrics_count_mutations(http: httpx.Client) -> None:
    def accepted_places() -> float:
        text = http.get("/metrics").text
        found = sample(text, "exchange_api_mutations_total", command="place", outcome="accepted")
        return found or 0.0

    before = accepted_places()
    place(http, 1, 3, 1)
    place(http, 1, 3, 1)
    assert accepted_places() == before + 2
    assert "exchange_engine_backlog_commands" in http.get("/metrics").text


BAD_PLACE_BODIES = [
    ({"price": 10, "quantity": 1}, "side"),
    ({"side": 1, "quantity": 1}, "price"),
    ({"side": 1, "price": 10}, "quantity"),
    ({"side": 2, "price": 10, "quantity": 1}, "side"),
    ({"side": "1", "price": 10, "quantity": 1}, "side"),
    ({"side": True, "price": 10, "quantity": 1}, "side"),
    ({"side": 1, "price": -1, "quantity": 1}, "price"),
    ({"side": 1, "price": 0, "quantity": 1}, "price"),
    ({"side": 1, "price": 10.005, "quantity": 1}, "price"),
    ({"side": 1, "price": "abc", "quantity": 1}, "price"),
    ({"side": 1, "price": None, "quantity": 1}, "price"),
    ({"side": 1, "price": [10], "quantity": 1}, "price"),
    ({"side": 1, "price": 1e12, "quantity": 1}, "price"),
    ({"side": 1, "price": 10, "quantity": 1.5}, "quantity"),
    ({"side": 1, "price": 10, "quantity": 10.0}, "quantity"),
    ({"side": 1, "price": 10, "quantity": 0}, "quantity"),
    ({"side": 1, "price": 10, "quantity": -3}, "quantity"),
    ({"side": 1, "price": 10, "quantity": "5"}, "quantity"),
    ({"side": 1, "price": 10, "quantity": 10**12}, "quantity"),
    ({"side": 1, "price": 10, "quantity": 1, "client_order_id": 7}, "client_order_id"),
    ({"side": 1, "price": 10, "quantity": 1, "client_order_id": ""}, "client_order_id"),
    ({"side": 1, "price": 10, "quantity": 1, "qty": 1}, "qty"),
]


@pytest.mark.parametrize(("body", "field"), BAD_PLACE_BODIES)
def test_bad_place_is_422_naming_the_field_and_enqueues_nothing(
    http: httpx.Client, commands: CommandLog, body: dict[str, object], field: str
) -> None:
    before = commands.mark()
    response = http.post("/orders", json=body)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert commands.since(before) == 0


RAW_BAD_BODIES = [
    (b'{"side": 1, "price": NaN, "quantity": 1}', 422, "price"),
    (b'{"side": 1, "price": Infinity, "quantity": 1}', 422, "price"),
    (b'{"side": 1, "price": 1e400, "quantity": 1}', 422, "price"),
    (b'{"side": 1, "price": 1e-400, "quantity": 1}', 422, "price"),
    (b'{"side": 1, "price": -0.0, "quantity": 1}', 422, "price"),
    (b"[1, 2]", 422, "body"),
    (b"{not json", 400, None),
    (b"", 400, None),
]


@pytest.mark.parametrize(("raw", "status", "field"), RAW_BAD_BODIES)
def test_malformed_bodies(
    http: httpx.Client, commands: CommandLog, raw: bytes, status: int, field: str | None
) -> None:
    before = commands.mark()
    response = http.post("/orders", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    if field:
        assert response.json()["field" if field == "body" else "errors"] and field in response.text
    assert commands.since(before) == 0


def test_wrong_content_type_and_oversized_body(http: httpx.Client, commands: CommandLog) -> None:
    before = commands.mark()
    text = http.post("/orders", content=b"side=1", headers={"content-type": "text/plain"})
    assert text.status_code == 415
    big = http.post(
        "/orders",
        content=b'{"side": 1, "price": 1, "quantity": 1, "client_order_id": "'
        + b"x" * 70000
        + b'"}',
        headers={"content-type": "application/json"},
    )
    assert big.status_code == 413
    assert commands.since(before) == 0


def test_bad_modify_and_ids(http: httpx.Client, commands: CommandLog) -> None:
    order_id = place(http, 1, 10, 1)
    before = commands.mark()
    bad_price = http.put(f"/orders/{order_id}", json={"price": "ten"})
    assert bad_price.status_code == 422 and bad_price.json()["errors"][0]["field"] == "price"
    missing = http.put(f"/orders/{order_id}", json={})
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "price"
    for bad_id in ("abc", "-1", "1.5", "0x10"):
        assert http.get(f"/orders/{bad_id}").status_code == 422
        assert http.delete(f"/orders/{bad_id}").status_code == 422
    params = http.get("/orders", params={"limit": 0})
    assert params.status_code == 422 and params.json()["errors"][0]["field"] == "limit"
    assert http.get("/orders", params={"side": 2}).json()["errors"][0]["field"] == "side"
    assert commands.since(before) == 0
    assert http.get(f"/orders/{order_id}").json()["order_price"] == 10
