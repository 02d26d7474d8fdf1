"""The GraphQL contract against the real stack: gql clients over HTTP (async and sync) for
queries and mutations, and over WebSockets for subscriptions, on both subprotocols
(graphql-transport-ws and the legacy graphql-ws)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.client import AsyncClientSession, SyncClientSession
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport, HTTPXTransport
from gql.transport.websockets import WebsocketsTransport

from tests.conftest import place

pytestmark = pytest.mark.usefixtures("empty_book")

GRAPHQL_TRANSPORT_WS = WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL  # "graphql-transport-ws"
GRAPHQL_WS = WebsocketsTransport.APOLLO_SUBPROTOCOL  # "graphql-ws" (legacy Apollo)
PROTOCOLS = pytest.mark.parametrize("protocol", [GRAPHQL_TRANSPORT_WS, GRAPHQL_WS])
TIMEOUT = 30.0  # the longest a client waits: a deadline for slow machines, not a speed check

ORDER_FIELDS = """
    orderId side orderPrice orderQuantity tradedQuantity remainingQuantity
    cancelledQuantity orderAlive clientOrderId createdAt updatedAt
"""
ORDER = f"query Order($id: ID!) {{ order(id: $id) {{ {ORDER_FIELDS} }} }}"
ORDERS = f"""
query Orders($alive: Boolean, $side: Int, $first: Int!, $after: String) {{
  orders(alive: $alive, side: $side, first: $first, after: $after) {{
    nodes {{ {ORDER_FIELDS} }}
    endCursor
    hasNextPage
  }}
}}"""
TRADE_FIELDS = "tradeId tradePrice quantity bidOrderId askOrderId aggressorSide timestamp"
TRADES = f"""
query Trades($first: Int!, $after: String) {{
  trades(first: $first, after: $after) {{ nodes {{ {TRADE_FIELDS} }} endCursor hasNextPage }}
}}"""
BOOK_FIELDS = "timestamp seq bids { price quantity } asks { price quantity }"
BOOK = f"query Book($depth: Int!) {{ orderBook(depth: $depth) {{ {BOOK_FIELDS} }} }}"
PLACE = """
mutation Place($input: PlaceOrderInput!) {
  placeOrder(input: $input) {
    __typename
    ... on OrderPlaced { orderId duplicate }
    ... on OrderRejected { reason errors { field message } }
  }
}"""
MODIFY = """
mutation Modify($id: ID!, $price: Price!) {
  modifyOrder(id: $id, price: $price) { success reason errors { field message } }
}"""
CANCEL = """
mutation Cancel($id: ID!) {
  cancelOrder(id: $id) { success reason errors { field message } }
}"""
TRADES_SUB = f"subscription {{ trades {{ {TRADE_FIELDS} }} }}"
BOOK_SUB = f"subscription Book($depth: Int!) {{ orderBook(depth: $depth) {{ {BOOK_FIELDS} }} }}"


# -- clients -------------------------------------------------------------------------------


def graphql_url(base_url: str) -> str:
    return f"{base_url}/graphql"


def ws_url(base_url: str, path: str) -> str:
    assert base_url.startswith("http://")
    return "ws://" + base_url.removeprefix("http://") + path


@pytest.fixture
async def gq(base_url: str) -> AsyncIterator[AsyncClientSession]:
    """An async gql session on replica 1 over HTTP."""
    transport = HTTPXAsyncTransport(url=graphql_url(base_url), timeout=TIMEOUT)
    async with Client(transport=transport, execute_timeout=TIMEOUT) as session:
        yield session


@pytest.fixture
def gq2_sync(base_url2: str) -> Iterator[SyncClientSession]:
    """A sync gql session on replica 2 over HTTP."""
    transport = HTTPXTransport(url=graphql_url(base_url2), timeout=TIMEOUT)
    with Client(transport=transport, execute_timeout=TIMEOUT) as session:
        yield session


@pytest.fixture
async def ahttp(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
        yield client


async def run(session: AsyncClientSession, query: str, **variables: Any) -> dict[str, Any]:
    result: dict[str, Any] = await session.execute(
        GraphQLRequest(query, variable_values=variables or None)
    )
    return result


async def gplace(
    session: AsyncClientSession,
    side: int,
    price: str | float,
    quantity: int,
    client_order_id: str | None = None,
) -> str:
    """Place through the placeOrder mutation; the order must be accepted."""
    order_input: dict[str, Any] = {"side": side, "price": price, "quantity": quantity}
    if client_order_id is not None:
        order_input["clientOrderId"] = client_order_id
    result = (await run(session, PLACE, input=order_input))["placeOrder"]
    assert result["__typename"] == "OrderPlaced", result
    assert result["duplicate"] is False
    order_id: str = result["orderId"]
    return order_id


async def gplace_many(
    session: AsyncClientSession, count: int, side: int, price: str, batch: int = 10
) -> list[str]:
    """Place `count` 1-lot orders: a few aliased mutations per request (the API caps aliases
    at 15), requests in parallel."""

    async def some(n: int) -> list[str]:
        fields = " ".join(
            f'p{i}: placeOrder(input: {{side: {side}, price: "{price}", quantity: 1}})'
            " { ... on OrderPlaced { orderId } }"
            for i in range(n)
        )
        result = await run(session, f"mutation {{ {fields} }}")
        return [placed["orderId"] for placed in result.values()]

    sizes = [min(batch, count - start) for start in range(0, count, batch)]
    return [oid for ids in await asyncio.gather(*(some(n) for n in sizes)) for oid in ids]


async def gcancel_many(session: AsyncClientSession, ids: list[str], batch: int = 10) -> None:
    async def some(chunk: list[str]) -> None:
        fields = " ".join(
            f'c{i}: cancelOrder(id: "{order_id}") {{ success }}' for i, order_id in enumerate(chunk)
        )
        result = await run(session, f"mutation {{ {fields} }}")
        assert all(r["success"] for r in result.values())

    await asyncio.gather(*(some(ids[i : i + batch]) for i in range(0, len(ids), batch)))


async def aplace(
    client: httpx.AsyncClient, side: int, price: float | str, quantity: int, **extra: object
) -> str:
    """Place through REST (setup for subscription tests, from the event loop)."""
    response = await client.post(
        "/orders", json={"side": side, "price": price, "quantity": quantity, **extra}
    )
    assert response.status_code in (200, 201), response.text
    order_id: str = response.json()["order_id"]
    return order_id


async def acancel(client: httpx.AsyncClient, order_id: str) -> None:
    response = await client.delete(f"/orders/{order_id}")
    assert response.json() == {"success": True}, response.text


async def last_trade_id(session: AsyncClientSession) -> str | None:
    """The newest trade id so far (the session's book is shared: tests trade before us)."""
    after: str | None = None
    while True:
        page = (await run(session, TRADES, first=1000, after=after))["trades"]
        after = page["endCursor"]
        if not page["hasNextPage"]:
            return after


def when(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    assert moment.tzinfo is not None, value
    return moment


# -- live feeds (subscriptions and plain WebSockets) ---------------------------------------


class Feed:
    """Messages of one live stream, read by a background task into a queue, so the test
    can place orders while the stream is being read."""

    def __init__(self, source: AsyncIterator[dict[str, Any]]) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task = asyncio.create_task(self._pump(source))

    async def _pump(self, source: AsyncIterator[dict[str, Any]]) -> None:
        async for item in source:
            self.queue.put_nowait(item)

    async def next(self, within: float = TIMEOUT) -> dict[str, Any]:
        """The next message, waiting at most `within` seconds."""
        getter = asyncio.ensure_future(self.queue.get())
        done, _ = await asyncio.wait(
            {getter, self.task}, timeout=within, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in done:
            return getter.result()
        getter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await getter
        if self.task.done():
            raise AssertionError(f"the stream ended: {self.task.exception()!r}")
        raise TimeoutError(f"no message within {within} s")

    async def until(
        self, predicate: Callable[[dict[str, Any]], bool], within: float = TIMEOUT
    ) -> dict[str, Any]:
        """The first message that satisfies `predicate`, skipping the others."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError(f"no matching message within {within} s")
            message = await self.next(left)
            if predicate(message):
                return message

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


@asynccontextmanager
async def subscription(
    base_url: str, query: str, protocol: str, **variables: object
) -> AsyncIterator[Feed]:
    """A GraphQL subscription over WebSockets with exactly one subprotocol offered."""
    transport = WebsocketsTransport(
        url=ws_url(base_url, "/graphql"), subprotocols=[protocol], close_timeout=5
    )
    async with Client(transport=transport) as session:
        assert transport.subprotocol == protocol  # the server agreed to this one

        async def results() -> AsyncIterator[dict[str, Any]]:
            request = GraphQLRequest(query, variable_values=variables or None)
            async for data in session.subscribe(request):
                (payload,) = data.values()  # one root field per subscription
                yield payload

        feed = Feed(results())
        try:
            yield feed
        finally:
            await feed.close()


def bid_of(message: dict[str, Any]) -> str:
    """The bid order id of a trade message, GraphQL (camelCase) or WebSocket (snake_case)."""
    value = message.get("bidOrderId", message.get("bid_order_id"))
    assert isinstance(value, str), message
    return value


async def sync_trade_feeds(client: httpx.AsyncClient, feeds: list[Feed], price: int = 777) -> None:
    """Make trade feeds provably live and drained before the test trades.

    A subscription is registered on the server some time after the client sent it, and
    nothing tells the client when. So: cross 1-lot probes against a resting ask until every
    feed has delivered a trade, then trade once more (a marker) and read every feed up to
    the marker. Afterwards each feed's next message is the next trade anyone makes."""
    loop = asyncio.get_running_loop()
    ask = await aplace(client, -1, price, 1_000)
    waiting = list(feeds)
    deadline = loop.time() + TIMEOUT
    while waiting:
        assert loop.time() < deadline, "a subscription never delivered a trade"
        await aplace(client, 1, price, 1)
        still_waiting = []
        for feed in waiting:
            try:
                await feed.next(within=0.5)
            except TimeoutError:
                still_waiting.append(feed)
        waiting = still_waiting
    marker = await aplace(client, 1, price, 1)
    for feed in feeds:
        await feed.until(lambda m: bid_of(m) == marker)
    await acancel(client, ask)


async def place_levels(
    client: httpx.AsyncClient,
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """7 bid levels and 6 ask levels, two orders at each level.

    Returns the expected top 5 of each side as (price string, summed quantity)."""
    bid_prices = ["90", "91", "92", "93", "94", "95.5", "96"]
    ask_prices = ["100.5", "101", "101.5", "102", "102.5", "103"]
    for i, price in enumerate(bid_prices):
        await aplace(client, 1, price, i + 1)
        await aplace(client, 1, price, 10)
    for i, price in enumerate(ask_prices):
        await aplace(client, -1, price, i + 1)
        await aplace(client, -1, price, 20)
    bids = [(price, i + 11) for i, price in enumerate(bid_prices)][::-1][:5]
    asks = [(price, i + 21) for i, price in enumerate(ask_prices)][:5]
    return bids, asks


def levels(side: list[dict[str, Any]]) -> list[tuple[Any, int]]:
    return [(level["price"], level["quantity"]) for level in side]


# -- queries -------------------------------------------------------------------------------


async def test_place_order_then_query_order(gq: AsyncClientSession) -> None:
    order_id = await gplace(gq, 1, "101.5", 10)
    assert order_id.isdigit()

    order = (await run(gq, ORDER, id=order_id))["order"]
    assert order["orderId"] == order_id
    assert order["side"] == 1
    assert order["orderPrice"] == "101.5"  # the Price scalar: a decimal string
    assert order["orderQuantity"] == 10
    assert order["remainingQuantity"] == 10
    assert (order["tradedQuantity"], order["cancelledQuantity"]) == (0, 0)
    assert order["orderAlive"] is True
    assert order["clientOrderId"] is None
    assert when(order["createdAt"]) == when(order["updatedAt"])


async def test_price_accepts_numbers_and_prints_normalised_strings(
    gq: AsyncClientSession,
) -> None:
    as_number = await gplace(gq, -1, 250.25, 1)
    integral = await gplace(gq, -1, "300.00", 1)
    assert (await run(gq, ORDER, id=as_number))["order"]["orderPrice"] == "250.25"
    assert (await run(gq, ORDER, id=integral))["order"]["orderPrice"] == "300"


async def test_order_unknown_or_malformed_id_is_null(gq: AsyncClientSession) -> None:
    assert (await run(gq, ORDER, id="999999999999"))["order"] is None
    assert (await run(gq, ORDER, id="not-an-id"))["order"] is None


async def test_orders_filters_and_pagination(gq: AsyncClientSession) -> None:
    bids = [await gplace(gq, 1, f"{10 + i}", i + 1) for i in range(5)]
    sell = await gplace(gq, -1, "500", 1)
    dead = await gplace(gq, 1, "9", 1)
    assert (await run(gq, CANCEL, id=dead))["cancelOrder"]["success"] is True

    seen: list[str] = []
    pages = []
    after: str | None = None
    while True:
        page = (await run(gq, ORDERS, alive=True, side=1, first=2, after=after))["orders"]
        pages.append(page)
        seen += [node["orderId"] for node in page["nodes"]]
        assert all(node["side"] == 1 and node["orderAlive"] for node in page["nodes"])
        if not page["hasNextPage"]:
            break
        after = page["endCursor"]
    assert seen == bids  # oldest first, only alive bids: not the sell, not the cancelled one
    assert [len(p["nodes"]) for p in pages] == [2, 2, 1]
    assert [p["hasNextPage"] for p in pages] == [True, True, False]
    assert [p["endCursor"] for p in pages] == [bids[1], bids[3], bids[4]]

    asks = (await run(gq, ORDERS, alive=True, side=-1, first=100))["orders"]
    assert [n["orderId"] for n in asks["nodes"]] == [sell]
    assert asks["hasNextPage"] is False

    everything = (await run(gq, ORDERS, first=100, after=str(int(bids[0]) - 1)))["orders"]
    by_id = {n["orderId"]: n for n in everything["nodes"]}
    assert list(by_id) == [*bids, sell, dead]
    assert by_id[dead]["orderAlive"] is False
    assert by_id[dead]["cancelledQuantity"] == 1

    dead_only = (await run(gq, ORDERS, alive=False, first=100, after=bids[0]))["orders"]
    assert [n["orderId"] for n in dead_only["nodes"]] == [dead]

    empty = (await run(gq, ORDERS, alive=True, first=5, after=dead))["orders"]
    assert empty == {"nodes": [], "endCursor": dead, "hasNextPage": False}


async def test_trades_query_pagination_and_rest_agree(
    gq: AsyncClientSession, ahttp: httpx.AsyncClient
) -> None:
    before = await last_trade_id(gq)
    ask = await gplace(gq, -1, "20.5", 3)
    buys = [await gplace(gq, 1, "21", 1) for _ in range(3)]

    first = (await run(gq, TRADES, first=2, after=before))["trades"]
    assert first["hasNextPage"] is True
    assert first["endCursor"] == first["nodes"][-1]["tradeId"]
    second = (await run(gq, TRADES, first=2, after=first["endCursor"]))["trades"]
    assert second["hasNextPage"] is False
    assert second["endCursor"] == second["nodes"][-1]["tradeId"]
    nodes = first["nodes"] + second["nodes"]

    assert [n["bidOrderId"] for n in nodes] == buys
    assert all(n["askOrderId"] == ask for n in nodes)
    assert all(n["tradePrice"] == "20.5" for n in nodes)  # the resting ask's price
    assert all(n["quantity"] == 1 and n["aggressorSide"] == 1 for n in nodes)
    ids = [int(n["tradeId"]) for n in nodes]
    assert ids == sorted(ids) and len(set(ids)) == 3

    params: dict[str, Any] = {"limit": 1000}
    if before is not None:
        params["after"] = before
    rest = (await ahttp.get("/trades", params=params)).json()
    assert [
        (t["trade_id"], t["trade_price"], t["quantity"], t["bid_order_id"], t["ask_order_id"])
        for t in rest
    ] == [(n["tradeId"], 20.5, 1, n["bidOrderId"], ask) for n in nodes]
    assert [when(t["timestamp"]) for t in rest] == [when(n["timestamp"]) for n in nodes]

    tail = (await run(gq, TRADES, first=2, after=second["endCursor"]))["trades"]
    assert tail == {"nodes": [], "endCursor": second["endCursor"], "hasNextPage": False}


async def test_order_book_aggregates_levels_and_respects_depth(gq: AsyncClientSession) -> None:
    for price, quantity in [("99", 3), ("99", 4), ("98.5", 5), ("98", 1), ("97", 2)]:
        await gplace(gq, 1, price, quantity)
    for price, quantity in [("101", 2), ("101", 3), ("101", 1), ("101.25", 4), ("102", 6)]:
        await gplace(gq, -1, price, quantity)

    full = (await run(gq, BOOK, depth=5))["orderBook"]
    assert levels(full["bids"]) == [("99", 7), ("98.5", 5), ("98", 1), ("97", 2)]
    assert levels(full["asks"]) == [("101", 6), ("101.25", 4), ("102", 6)]
    assert isinstance(full["seq"], int) and full["seq"] > 0
    when(full["timestamp"])

    top = (await run(gq, BOOK, depth=2))["orderBook"]
    assert levels(top["bids"]) == [("99", 7), ("98.5", 5)]
    assert levels(top["asks"]) == [("101", 6), ("101.25", 4)]

    one = (await run(gq, BOOK, depth=1))["orderBook"]
    assert (levels(one["bids"]), levels(one["asks"])) == ([("99", 7)], [("101", 6)])


async def test_instruments_give_each_book_its_limits_in_graphql_and_rest(
    gq: AsyncClientSession, ahttp: httpx.AsyncClient
) -> None:
    """What a client needs to check an order before sending it (the playground does)."""
    query = "{ instruments { symbol tickSize maxPrice maxQuantity } }"
    instruments = (await run(gq, query))["instruments"]
    assert instruments[0] == {
        "symbol": "DEFAULT",
        "tickSize": "0.01",
        "maxPrice": "1000000",
        "maxQuantity": 1_000_000_000,
    }
    rest = (await ahttp.get("/instruments")).json()
    assert [i["symbol"] for i in rest] == [i["symbol"] for i in instruments]
    assert rest[0] == {
        "symbol": "DEFAULT",
        "tick_size": 0.01,
        "max_price": 1000000,
        "max_quantity": 1_000_000_000,
    }


async def test_order_book_reflects_partial_fills(gq: AsyncClientSession) -> None:
    await gplace(gq, -1, "50", 4)
    await gplace(gq, -1, "50", 6)
    await gplace(gq, 1, "50", 5)  # takes 4 from the first ask and 1 from the second
    book = (await run(gq, BOOK, depth=5))["orderBook"]
    assert levels(book["asks"]) == [("50", 5)]
    assert book["bids"] == []


@pytest.mark.parametrize(
    ("query", "variables", "word"),
    [
        (BOOK, {"depth": 0}, "depth"),
        (BOOK, {"depth": 51}, "depth"),
        (ORDERS, {"first": 10, "side": 2}, "side"),
        (ORDERS, {"first": 10, "after": "x"}, "after"),
        (TRADES, {"first": 10, "after": "-3"}, "after"),
        (ORDERS, {"first": 0}, "first"),
        (TRADES, {"first": 0}, "first"),
    ],
)
async def test_bad_query_arguments_are_errors_naming_the_argument(
    gq: AsyncClientSession, query: str, variables: dict[str, Any], word: str
) -> None:
    with pytest.raises(TransportQueryError) as caught:
        await run(gq, query, **variables)
    assert word in str(caught.value)


async def test_orders_has_next_page_when_first_exceeds_the_page_cap(
    gq: AsyncClientSession, ahttp: httpx.AsyncClient
) -> None:
    ids = await gplace_many(gq, 1001, side=1, price="1")
    try:
        page = (await run(gq, ORDERS, alive=True, side=1, first=1001))["orders"]
        assert len(page["nodes"]) <= 1000
        missing = set(ids) - {n["orderId"] for n in page["nodes"]}
        assert missing  # the cap left at least one order for a next page
        assert page["hasNextPage"] is True, f"{len(missing)} orders left but hasNextPage false"
    finally:
        await gcancel_many(gq, ids)


# -- mutations -----------------------------------------------------------------------------


async def test_duplicate_client_order_id_returns_the_original_order(
    gq: AsyncClientSession,
) -> None:
    client_order_id = f"gql-{uuid.uuid4().hex}"
    order_input = {"side": -1, "price": "120", "quantity": 4, "clientOrderId": client_order_id}
    first = (await run(gq, PLACE, input=order_input))["placeOrder"]
    assert first == {"__typename": "OrderPlaced", "orderId": first["orderId"], "duplicate": False}

    retry = {**order_input, "price": "121", "quantity": 9}  # a retry is never a second order
    again = (await run(gq, PLACE, input=retry))["placeOrder"]
    assert again == {"__typename": "OrderPlaced", "orderId": first["orderId"], "duplicate": True}

    order = (await run(gq, ORDER, id=first["orderId"]))["order"]
    assert (order["clientOrderId"], order["orderPrice"], order["orderQuantity"]) == (
        client_order_id,
        "120",
        4,
    )
    alive = (await run(gq, ORDERS, alive=True, first=100))["orders"]["nodes"]
    assert [n["orderId"] for n in alive] == [first["orderId"]]


@pytest.mark.parametrize(
    ("order_input", "fields"),
    [
        ({"side": 1, "price": "abc", "quantity": 1}, {"price"}),
        ({"side": 1, "price": "0", "quantity": 1}, {"price"}),
        ({"side": 1, "price": "-5", "quantity": 1}, {"price"}),
        ({"side": 1, "price": "101.005", "quantity": 1}, {"price"}),  # not a tick multiple
        ({"side": 1, "price": "99999999", "quantity": 1}, {"price"}),  # above the maximum
        ({"side": 1, "price": "NaN", "quantity": 1}, {"price"}),
        ({"side": 1, "price": "10", "quantity": 0}, {"quantity"}),
        ({"side": 1, "price": "10", "quantity": -3}, {"quantity"}),
        ({"side": 2, "price": "10", "quantity": 1}, {"side"}),
        ({"side": 0, "price": "10", "quantity": 1}, {"side"}),
        ({"side": 1, "price": "10", "quantity": 1, "clientOrderId": ""}, {"clientOrderId"}),
        ({"side": 3, "price": "x", "quantity": 0}, {"side", "price", "quantity"}),
    ],
)
async def test_place_order_rejected_names_the_field(
    gq: AsyncClientSession, order_input: dict[str, Any], fields: set[str]
) -> None:
    result = (await run(gq, PLACE, input=order_input))["placeOrder"]
    assert result["__typename"] == "OrderRejected", result
    assert result["reason"] == "invalid_input"
    assert {e["field"] for e in result["errors"]} == fields
    assert all(e["message"] for e in result["errors"])
    alive = (await run(gq, ORDERS, alive=True, first=10))["orders"]["nodes"]
    assert alive == []  # nothing reached the book


async def test_modify_order(gq: AsyncClientSession) -> None:
    order_id = await gplace(gq, -1, "105", 3)
    modified = (await run(gq, MODIFY, id=order_id, price="104.25"))["modifyOrder"]
    assert modified == {"success": True, "reason": None, "errors": []}
    order = (await run(gq, ORDER, id=order_id))["order"]
    assert (order["orderPrice"], order["orderAlive"], order["remainingQuantity"]) == (
        "104.25",
        True,
        3,
    )
    book = (await run(gq, BOOK, depth=5))["orderBook"]
    assert levels(book["asks"]) == [("104.25", 3)]

    bad_price = (await run(gq, MODIFY, id=order_id, price="0"))["modifyOrder"]
    assert bad_price["success"] is False
    assert bad_price["reason"] == "invalid_input"
    assert [e["field"] for e in bad_price["errors"]] == ["price"]
    assert (await run(gq, ORDER, id=order_id))["order"]["orderPrice"] == "104.25"

    assert (await run(gq, CANCEL, id=order_id))["cancelOrder"]["success"] is True
    dead = (await run(gq, MODIFY, id=order_id, price="103"))["modifyOrder"]
    assert (dead["success"], dead["reason"]) == (False, "order_not_alive")

    unknown = (await run(gq, MODIFY, id="999999999999", price="103"))["modifyOrder"]
    assert (unknown["success"], unknown["reason"]) == (False, "unknown_order")


async def test_modify_order_that_crosses_trades(gq: AsyncClientSession) -> None:
    ask = await gplace(gq, -1, "60", 2)
    bid = await gplace(gq, 1, "59", 5)
    assert (await run(gq, MODIFY, id=bid, price="60"))["modifyOrder"]["success"] is True
    bid_state = (await run(gq, ORDER, id=bid))["order"]
    assert (bid_state["orderPrice"], bid_state["tradedQuantity"]) == ("60", 2)
    assert bid_state["remainingQuantity"] == 3
    assert (await run(gq, ORDER, id=ask))["order"]["orderAlive"] is False


async def test_change_with_malformed_id_names_the_id_argument(gq: AsyncClientSession) -> None:
    modified = (await run(gq, MODIFY, id="abc", price="10"))["modifyOrder"]
    cancelled = (await run(gq, CANCEL, id="abc"))["cancelOrder"]
    for result in (modified, cancelled):
        assert (result["success"], result["reason"]) == (False, "invalid_input")
        assert [e["field"] for e in result["errors"]] == ["id"]


async def test_cancel_order(gq: AsyncClientSession) -> None:
    ask = await gplace(gq, -1, "70", 10)
    await gplace(gq, 1, "70", 4)  # a partial fill first
    assert (await run(gq, CANCEL, id=ask))["cancelOrder"] == {
        "success": True,
        "reason": None,
        "errors": [],
    }
    order = (await run(gq, ORDER, id=ask))["order"]
    assert order["orderAlive"] is False
    assert (order["tradedQuantity"], order["cancelledQuantity"]) == (4, 6)
    assert order["remainingQuantity"] == 0
    assert when(order["updatedAt"]) >= when(order["createdAt"])
    assert (await run(gq, BOOK, depth=5))["orderBook"]["asks"] == []

    again = (await run(gq, CANCEL, id=ask))["cancelOrder"]
    assert (again["success"], again["reason"]) == (False, "order_not_alive")
    unknown = (await run(gq, CANCEL, id="999999999999"))["cancelOrder"]
    assert (unknown["success"], unknown["reason"]) == (False, "unknown_order")


async def test_trade_made_by_mutations_shows_in_rest(
    gq: AsyncClientSession, ahttp: httpx.AsyncClient
) -> None:
    before = await last_trade_id(gq)
    ask = await gplace(gq, -1, "101.5", 3)
    bid = await gplace(gq, 1, "102", 5)  # trades 3 at the resting 101.5, rests 2
    rest = (await ahttp.get("/trades", params={"after": before} if before else {})).json()
    mine = [t for t in rest if t["bid_order_id"] == bid]
    assert len(mine) == 1
    assert (mine[0]["ask_order_id"], mine[0]["trade_price"], mine[0]["quantity"]) == (
        ask,
        101.5,
        3,
    )
    bid_rest = (await ahttp.get(f"/orders/{bid}")).json()
    assert (bid_rest["traded_quantity"], bid_rest["remaining_quantity"]) == (3, 2)


def test_read_your_writes_across_replicas(http: httpx.Client, gq2_sync: SyncClientSession) -> None:
    """Written through REST on replica 1, read at once through GraphQL on replica 2."""
    for round_ in range(10):
        price = 300 - round_  # below the leftovers of earlier rounds
        ask = place(http, -1, price, 7)
        seen = gq2_sync.execute(GraphQLRequest(ORDER, variable_values={"id": ask}))["order"]
        assert seen is not None, f"round {round_}: replica 2 does not see order {ask} yet"
        assert (seen["orderId"], seen["side"], seen["orderQuantity"]) == (ask, -1, 7)
        assert seen["orderAlive"] is True

        bid = place(http, 1, price, 3)
        after = gq2_sync.execute(GraphQLRequest(ORDER, variable_values={"id": ask}))["order"]
        assert (after["tradedQuantity"], after["remainingQuantity"]) == (3, 4), f"round {round_}"
        bid_seen = gq2_sync.execute(GraphQLRequest(ORDER, variable_values={"id": bid}))["order"]
        assert (bid_seen["tradedQuantity"], bid_seen["orderAlive"]) == (3, False)


# -- subscriptions -------------------------------------------------------------------------


@PROTOCOLS
async def test_trades_subscription_receives_crossing_trade(
    base_url: str, ahttp: httpx.AsyncClient, protocol: str
) -> None:
    async with subscription(base_url, TRADES_SUB, protocol) as feed:
        await sync_trade_feeds(ahttp, [feed])
        ask = await aplace(ahttp, -1, "100.5", 3)
        bid = await aplace(ahttp, 1, 101, 5)  # trades 3 at the resting 100.5
        trade = await feed.next()

    assert trade["bidOrderId"] == bid
    assert trade["askOrderId"] == ask
    assert trade["tradePrice"] == "100.5"
    assert trade["quantity"] == 3
    assert trade["aggressorSide"] == 1
    stored = (await ahttp.get("/trades", params={"after": int(trade["tradeId"]) - 1})).json()
    assert stored[0]["trade_id"] == trade["tradeId"]
    assert (stored[0]["bid_order_id"], stored[0]["ask_order_id"]) == (bid, ask)
    assert when(stored[0]["timestamp"]) == when(trade["timestamp"])


async def test_trades_subscription_on_replica_2_sees_trades_made_on_replica_1(
    base_url2: str, ahttp: httpx.AsyncClient
) -> None:
    async with subscription(base_url2, TRADES_SUB, GRAPHQL_TRANSPORT_WS) as feed:
        await sync_trade_feeds(ahttp, [feed])
        ask = await aplace(ahttp, -1, 40, 2)
        bid = await aplace(ahttp, 1, 40, 2)
        trade = await feed.next()
    assert (trade["bidOrderId"], trade["askOrderId"], trade["quantity"]) == (bid, ask, 2)
    assert trade["tradePrice"] == "40"


@PROTOCOLS
async def test_order_book_subscription_snapshots(
    base_url: str, ahttp: httpx.AsyncClient, protocol: str
) -> None:
    async with subscription(base_url, BOOK_SUB, protocol, depth=5) as feed:
        bids, asks = await place_levels(ahttp)
        # The REST book is read after a read barrier: its seq covers every order above.
        seq = (await ahttp.get("/orderbook")).json()["seq"]
        snapshot = await feed.until(lambda book: book["seq"] >= seq)
        following = await feed.next()

    for book in (snapshot, following):
        assert levels(book["bids"]) == bids  # top 5, descending, quantities summed
        assert levels(book["asks"]) == asks  # top 5, ascending, quantities summed
    # Nothing changed the book since: the next one is a periodic re-broadcast, a fresh
    # snapshot of the same state (same seq, later timestamp), not a repeat of one message.
    assert following["seq"] == snapshot["seq"]
    assert when(following["timestamp"]) > when(snapshot["timestamp"])


async def test_a_float_for_an_int_variable_is_refused_naming_its_path(
    ahttp: httpx.AsyncClient,
) -> None:
    """As REST refuses `"quantity": 2.0` with a 422, GraphQL refuses it (graphql-core alone
    would coerce it to 2 and place the order)."""
    before = (await ahttp.get("/orders", params={"limit": 1000})).json()
    variables = {"input": {"side": 1, "price": "10", "quantity": 2.0}}
    body = (await ahttp.post("/graphql", json={"query": PLACE, "variables": variables})).json()
    assert body.get("data") is None, body
    (error,) = body["errors"]
    assert "input.quantity" in error["message"] and "2.0" in error["message"], error
    assert (await ahttp.get("/orders", params={"limit": 1000})).json() == before
    variables["input"]["quantity"] = 2
    body = (await ahttp.post("/graphql", json={"query": PLACE, "variables": variables})).json()
    placed = body["data"]["placeOrder"]
    assert placed["__typename"] == "OrderPlaced", body
    assert (await ahttp.delete(f"/orders/{placed['orderId']}")).json() == {"success": True}
