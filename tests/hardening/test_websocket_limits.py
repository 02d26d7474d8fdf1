"""WebSocket limits on a stack of this module's own: a subscriber that falls a whole queue
behind is dropped (plain WebSocket: close 1013 after what was queued; GraphQL: the
subscription completes), and a GraphQL connection may hold at most MAX_SUBSCRIPTIONS
subscriptions at once.

A subscriber is too slow when its queue fills before the server can send it on. One order
that trades with more resting orders than the queue holds makes that certain for every
subscriber, whatever its own speed: the trades of one command are fanned out at once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from shared.stack import Stack
from tests.conftest import running_stack

MAX_SUBSCRIPTIONS = 3
QUEUE = 1000  # trades a subscriber may be behind (the API's trade fan-out queue)
BURST = QUEUE + 50
TIMEOUT = 15.0
TRADES_SUB = "subscription { trades { tradeId bidOrderId } }"


@pytest.fixture(scope="module")
def ws_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("websocket-limits"),
        RATE_LIMIT_PER_S="0",
        MAX_SUBSCRIPTIONS=str(MAX_SUBSCRIPTIONS),
    ) as stack:
        yield stack


@pytest.fixture
async def http(ws_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ws_stack.api_url(), timeout=TIMEOUT) as client:
        yield client


def ws_url(stack: Stack, path: str) -> str:
    return stack.api_url().replace("http://", "ws://") + path


async def place(http: httpx.AsyncClient, side: int, quantity: int, **extra: object) -> str:
    body = {"side": side, "quantity": quantity, **extra}
    if extra.get("type") != "market":
        body.setdefault("price", "7")
    response = await http.post("/orders", json=body)
    assert response.status_code == 201, response.text
    order_id: str = response.json()["order_id"]
    return order_id


async def place_asks(http: httpx.AsyncClient, count: int) -> list[str]:
    """`count` resting 1-lot asks at 7, fifteen aliased mutations a request."""

    async def some(n: int) -> list[str]:
        fields = " ".join(
            f'a{i}: placeOrder(input: {{side: -1, price: "7", quantity: 1}}) '
            "{ ... on OrderPlaced { orderId } }"
            for i in range(n)
        )
        response = await http.post("/graphql", json={"query": f"mutation {{ {fields} }}"})
        return [placed["orderId"] for placed in response.json()["data"].values()]

    sizes = [min(15, count - start) for start in range(0, count, 15)]
    ids: list[str] = []
    for start in range(0, len(sizes), 10):  # ten requests at a time
        for chunk in await asyncio.gather(*(some(n) for n in sizes[start : start + 10])):
            ids += chunk
    assert len(ids) == count
    return ids


async def until_live(http: httpx.AsyncClient, receive: Callable[[], Awaitable[str | None]]) -> None:
    """Cross 1-lot probes until `receive` (the next trade's bid order id, or None after a
    short wait) sees one: a subscription registers some time after the client sent it."""
    for _ in range(50):
        await place(http, -1, 1)
        bid = await place(http, 1, 1)
        seen = await receive()
        while seen is not None and seen != bid:  # an older probe's trade
            seen = await receive()
        if seen == bid:
            return
    raise AssertionError("the subscription never delivered a trade")


async def next_json(ws: ClientConnection, within: float = TIMEOUT) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), within))
    return message


async def test_a_subscriber_a_whole_queue_behind_is_dropped(
    ws_stack: Stack, http: httpx.AsyncClient
) -> None:
    async with (
        connect(ws_url(ws_stack, "/ws/trades"), open_timeout=TIMEOUT) as plain,
        connect(
            ws_url(ws_stack, "/graphql"),
            subprotocols=[Subprotocol("graphql-transport-ws")],
            open_timeout=TIMEOUT,
        ) as gql,
    ):
        await gql.send(json.dumps({"type": "connection_init"}))
        assert (await next_json(gql))["type"] == "connection_ack"
        payload = {"query": TRADES_SUB}
        await gql.send(json.dumps({"id": "t", "type": "subscribe", "payload": payload}))

        async def plain_bid() -> str | None:
            try:
                return str((await next_json(plain, 0.5))["bid_order_id"])
            except TimeoutError:
                return None

        async def gql_bid() -> str | None:
            try:
                return str((await next_json(gql, 0.5))["payload"]["data"]["trades"]["bidOrderId"])
            except TimeoutError:
                return None

        await until_live(http, plain_bid)
        await until_live(http, gql_bid)
        # A marker trade read on both: neither has a probe's trade left unread.
        await place(http, -1, 1)
        marker = await place(http, 1, 1)
        while await plain_bid() != marker:
            pass
        while await gql_bid() != marker:
            pass

        asks = sorted(await place_asks(http, BURST), key=int)  # time priority: by id
        sweep = await place(http, 1, BURST, type="market")  # BURST trades in one command

        received: list[dict[str, Any]] = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                received.append(await next_json(plain))
        assert closed.value.rcvd is not None, "closed without a close frame"
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1013, "too slow: dropped")
        # What was queued before the drop arrives first, in order, then the close.
        assert 0 < len(received) < BURST, len(received)
        assert [(t["bid_order_id"], t["ask_order_id"]) for t in received] == [
            (sweep, ask) for ask in asks[: len(received)]
        ]

        messages: list[dict[str, Any]] = []
        while not messages or messages[-1]["type"] != "complete":
            messages.append(await next_json(gql))
        assert messages[-1] == {"id": "t", "type": "complete"}, messages[-1]
        trades = [m["payload"]["data"]["trades"] for m in messages[:-1]]
        assert 0 < len(trades) < BURST, len(trades)
        assert [t["bidOrderId"] for t in trades] == [sweep] * len(trades)

    # The server goes on serving new subscribers.
    async with connect(ws_url(ws_stack, "/ws/trades"), open_timeout=TIMEOUT) as fresh:

        async def fresh_bid() -> str | None:
            try:
                return str((await next_json(fresh, 0.5))["bid_order_id"])
            except TimeoutError:
                return None

        await until_live(http, fresh_bid)


async def probe_round(
    http: httpx.AsyncClient, ws: ClientConnection
) -> tuple[set[str], list[dict[str, Any]]]:
    """One probe trade; the ids of the subscriptions it reached, and every other message
    that came meanwhile (until the connection is quiet for half a second)."""
    await place(http, -1, 1)
    bid = await place(http, 1, 1)
    reached: set[str] = set()
    others: list[dict[str, Any]] = []
    try:
        while True:
            message = await next_json(ws, 0.5)
            if message["type"] in ("next", "data"):
                if message["payload"]["data"]["trades"]["bidOrderId"] == bid:
                    reached.add(message["id"])
            elif message["type"] != "ka":  # graphql-ws keep-alives
                others.append(message)
    except TimeoutError:
        pass
    return reached, others


@pytest.mark.parametrize(
    ("protocol", "start", "stop"),
    [("graphql-transport-ws", "subscribe", "complete"), ("graphql-ws", "start", "stop")],
)
async def test_subscriptions_per_connection_are_capped(
    ws_stack: Stack, http: httpx.AsyncClient, protocol: str, start: str, stop: str
) -> None:
    async with connect(
        ws_url(ws_stack, "/graphql"),
        subprotocols=[Subprotocol(protocol)],
        open_timeout=TIMEOUT,
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert (await next_json(ws))["type"] == "connection_ack"
        subscribe = {"type": start, "payload": {"query": TRADES_SUB}}
        allowed = {f"s{n}" for n in range(MAX_SUBSCRIPTIONS)}
        for sub_id in sorted(allowed):
            await ws.send(json.dumps({**subscribe, "id": sub_id}))
        await ws.send(json.dumps({**subscribe, "id": "over"}))

        # The one over the cap is refused by id; the others each get every trade.
        refused: list[dict[str, Any]] = []
        for _ in range(50):
            reached, others = await probe_round(http, ws)
            refused += others
            if reached == allowed:
                break
        assert reached == allowed, reached
        assert [(m["type"], m["id"]) for m in refused] == [("error", "over")], refused
        assert "Subscription limit reached" in json.dumps(refused[0]["payload"]), refused

        # Ending one frees its place.
        await ws.send(json.dumps({"id": "s0", "type": stop}))
        await ws.send(json.dumps({**subscribe, "id": "again"}))
        for _ in range(50):
            reached, others = await probe_round(http, ws)
            assert all(m["type"] == "complete" for m in others), others
            if "again" in reached:
                break
        assert reached == allowed - {"s0"} | {"again"}, reached
