"""Several instruments, each sequenced by its own engine process; defaults unchanged."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator

import httpx
import pytest
import websockets
from websockets.typing import Subprotocol

from shared.config import ID_SPACE
from shared.stack import Stack
from tests.conftest import running_stack


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("instruments"),
        engine_groups=("DEFAULT", "ABC"),  # one engine process per instrument
        INSTRUMENTS="DEFAULT,ABC:0.05:5000",
    ) as stack:
        yield stack


@pytest.fixture
def http(multi: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=multi.api_url(), timeout=10) as client:
        yield client


def place(http: httpx.Client, **body: object) -> str:
    response = http.post("/orders", json={"quantity": 1, **body})
    assert response.status_code == 201, response.text
    order_id: str = response.json()["order_id"]
    return order_id


def test_books_are_separate_and_ids_disjoint(http: httpx.Client) -> None:
    default_ask = place(http, side=-1, price=10)
    abc_bid = place(http, side=1, price=10, symbol="ABC")  # same price, other book: no trade
    assert int(default_ask) < ID_SPACE < int(abc_bid) <= 2 * ID_SPACE
    assert http.get(f"/orders/{default_ask}").json()["symbol"] == "DEFAULT"
    order = http.get(f"/orders/{abc_bid}").json()
    assert (order["symbol"], order["order_price"], order["order_alive"]) == ("ABC", 10, True)
    assert http.get("/orderbook").json()["asks"] == [{"price": 10, "quantity": 1}]
    abc_book = http.get("/orderbook", params={"symbol": "ABC"}).json()
    assert abc_book["symbol"] == "ABC" and abc_book["asks"] == []
    assert abc_book["bids"] == [{"price": 10, "quantity": 1}]

    abc_ask = place(http, side=-1, price="9.95", quantity=1, symbol="ABC")
    trades = http.get("/trades", params={"symbol": "ABC"}).json()
    assert [(t["bid_order_id"], t["ask_order_id"], t["trade_price"]) for t in trades] == [
        (abc_bid, abc_ask, 10)
    ]
    assert all(t["symbol"] == "ABC" for t in trades)
    assert all(
        o["symbol"] == "DEFAULT" for o in http.get("/orders", params={"symbol": "DEFAULT"}).json()
    )
    assert http.delete(f"/orders/{default_ask}").json() == {"success": True}


def test_each_instrument_has_its_own_tick_and_limits(http: httpx.Client) -> None:
    off_tick = http.post(
        "/orders", json={"side": 1, "price": "10.01", "quantity": 1, "symbol": "ABC"}
    )
    assert off_tick.status_code == 422 and off_tick.json()["errors"][0]["field"] == "price"
    too_high = http.post(
        "/orders", json={"side": 1, "price": 5000.05, "quantity": 1, "symbol": "ABC"}
    )
    assert too_high.status_code == 422
    assert (
        http.post("/orders", json={"side": 1, "price": "10.01", "quantity": 1}).status_code == 201
    )
    unknown = http.post("/orders", json={"side": 1, "price": 1, "quantity": 1, "symbol": "ZZZ"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "symbol"
    assert http.get("/orderbook", params={"symbol": "ZZZ"}).status_code == 422
    assert http.get("/trades", params={"symbol": "ZZZ"}).status_code == 422
    abc = place(http, side=-1, price="20.05", symbol="ABC")
    assert http.put(f"/orders/{abc}", json={"price": "20.10"}).json() == {"success": True}
    assert http.get(f"/orders/{abc}").json()["order_price"] == 20.1
    bad_tick = http.put(f"/orders/{abc}", json={"price": "20.11"})
    assert bad_tick.status_code == 422
    assert http.delete(f"/orders/{abc}").json() == {"success": True}
    never = 5 * ID_SPACE + 1  # no instrument hands out such ids
    assert http.delete(f"/orders/{never}").json() == {"success": False, "reason": "unknown_order"}


async def test_websockets_by_symbol(multi: Stack, http: httpx.Client) -> None:
    ws = multi.api_url().replace("http", "ws")
    async with (
        websockets.connect(ws + "/ws/trades?symbol=ABC") as trades,
        websockets.connect(ws + "/ws/orderbook?symbol=ABC") as books,
    ):
        book = json.loads(await asyncio.wait_for(books.recv(), 5))
        assert book["symbol"] == "ABC"
        await asyncio.sleep(0.3)  # the subscriptions are registered on accept
        place(http, side=-1, price=30)  # a DEFAULT trade the ABC feed must not show
        place(http, side=1, price=30)
        ask = place(http, side=-1, price=30, symbol="ABC")
        bid = place(http, side=1, price=30, symbol="ABC")
        message = json.loads(await asyncio.wait_for(trades.recv(), 5))
        assert (message["symbol"], message["bid_order_id"], message["ask_order_id"]) == (
            "ABC",
            bid,
            ask,
        )
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with websockets.connect(ws + "/ws/trades?symbol=ZZZ"):
            pass


def test_graphql_by_symbol(http: httpx.Client) -> None:
    query = """mutation { placeOrder(input: {side: 1, price: "40.05", quantity: 2, symbol: "ABC"})
      { __typename ... on OrderPlaced { orderId } } }"""
    placed = http.post("/graphql", json={"query": query}).json()["data"]["placeOrder"]
    book = http.post(
        "/graphql",
        json={"query": '{ orderBook(symbol: "ABC") { symbol bids { price quantity } } }'},
    ).json()["data"]["orderBook"]
    assert book == {"symbol": "ABC", "bids": [{"price": "40.05", "quantity": 2}]}
    order = http.post(
        "/graphql",
        json={"query": f'{{ order(id: "{placed["orderId"]}") {{ symbol orderPrice }} }}'},
    ).json()["data"]["order"]
    assert order == {"symbol": "ABC", "orderPrice": "40.05"}
    http.delete(f"/orders/{placed['orderId']}")


def test_engines_are_independent(multi: Stack, http: httpx.Client) -> None:
    multi.kill("engine-1", signal.SIGKILL)  # the ABC engine
    try:
        default = place(http, side=1, price=1)  # DEFAULT keeps trading
        assert http.delete(f"/orders/{default}").json() == {"success": True}
    finally:
        multi.start("engine-1")
    for _ in range(100):
        response = http.post(
            "/orders", json={"side": 1, "price": 1, "quantity": 1, "symbol": "ABC"}
        )
        if response.status_code == 201:
            break
    assert response.status_code == 201
    assert http.get(f"/orders/{response.json()['order_id']}").json()["symbol"] == "ABC"


async def test_graphql_trades_subscription_by_symbol(multi: Stack) -> None:
    url = multi.api_url().replace("http", "ws") + "/graphql"
    query = 'subscription { trades(symbol: "ABC") { symbol bidOrderId askOrderId } }'
    async with httpx.AsyncClient(base_url=multi.api_url(), timeout=10) as http:

        async def place_async(**body: object) -> str:
            response = await http.post("/orders", json={"quantity": 1, **body})
            assert response.status_code == 201, response.text
            order_id: str = response.json()["order_id"]
            return order_id

        async with websockets.connect(
            url, subprotocols=[Subprotocol("graphql-transport-ws")]
        ) as ws:
            await ws.send(json.dumps({"type": "connection_init"}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
            await asyncio.sleep(0.3)  # let the subscription register
            await place_async(side=-1, price=50)  # a DEFAULT trade: filtered out
            await place_async(side=1, price=50)
            ask = await place_async(side=-1, price=50, symbol="ABC")
            bid = await place_async(side=1, price=50, symbol="ABC")
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert message["payload"]["data"]["trades"] == {
                "symbol": "ABC",
                "bidOrderId": bid,
                "askOrderId": ask,
            }
