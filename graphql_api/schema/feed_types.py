"""The GraphQL types of the private order feed and the incremental book, rendered from the
feed views (`feed_views.py`) as the other types are from theirs. Sequence numbers are IDs
(decimal strings: they outgrow GraphQL's 32-bit Int); compare them as integers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from ..feed_views import (
    AcceptedView,
    BookSnapshotView,
    CancelledView,
    LevelChangeView,
    ModifiedView,
    OrderEventView,
    QuantityChangedView,
    RejectedView,
    TradedView,
)
from .types import LevelNode, OrderType, Price, TimeInForce


def _id(value: int | str) -> strawberry.ID:
    return strawberry.ID(str(value))


@strawberry.type(name="OrderAcceptedEvent")
class AcceptedNode:
    seq: strawberry.ID
    symbol: str
    order_id: strawberry.ID
    side: int
    order_price: Price | None  # null for a market order
    quantity: int
    order_type: OrderType
    time_in_force: TimeInForce
    client_order_id: str | None
    timestamp: datetime


@strawberry.type(name="OrderTradeEvent", description="A fill of the subscriber's order(s)")
class TradedNode:
    seq: strawberry.ID
    symbol: str
    trade_id: strawberry.ID
    price: Price
    quantity: int
    aggressor_side: int
    bid_order_id: strawberry.ID
    ask_order_id: strawberry.ID
    bid_remaining: int | None = strawberry.field(description="null unless the bid is yours")
    ask_remaining: int | None = strawberry.field(description="null unless the ask is yours")
    timestamp: datetime


@strawberry.type(name="OrderModifiedEvent", description="The order's price is now `price`")
class ModifiedNode:
    seq: strawberry.ID
    symbol: str
    order_id: strawberry.ID
    price: Price
    timestamp: datetime


@strawberry.type(name="OrderQuantityChangedEvent")
class QuantityChangedNode:
    seq: strawberry.ID
    symbol: str
    order_id: strawberry.ID
    quantity: int = strawberry.field(description="the new total quantity")
    remaining: int
    timestamp: datetime


@strawberry.type(name="OrderCancelledEvent")
class CancelledNode:
    seq: strawberry.ID
    symbol: str
    order_id: strawberry.ID
    cancelled_quantity: int
    timestamp: datetime


@strawberry.type(name="OrderRejectedEvent", description="A command of yours was refused")
class RejectedNode:
    seq: strawberry.ID
    symbol: str
    # Not `orderId`: a nullable field of that name would conflict with the others' ID!
    # in one selection over the union.
    rejected_order_id: strawberry.ID | None = strawberry.field(
        description="the order the refused command named; null when it named none"
    )
    reason: str
    timestamp: datetime


OrderEventNode = Annotated[
    AcceptedNode | TradedNode | ModifiedNode | QuantityChangedNode | CancelledNode | RejectedNode,
    strawberry.union("OrderEvent"),
]


def order_event_node(
    v: OrderEventView,
) -> AcceptedNode | TradedNode | ModifiedNode | QuantityChangedNode | CancelledNode | RejectedNode:
    match v:
        case AcceptedView():
            return AcceptedNode(
                seq=_id(v.seq), symbol=v.symbol, order_id=_id(v.order_id), side=v.side,
                order_price=None if v.order_price is None else Price(v.order_price),
                quantity=v.quantity,
                order_type=OrderType(v.order_type), time_in_force=TimeInForce[v.time_in_force],
                client_order_id=v.client_order_id, timestamp=v.timestamp,
            )  # fmt: skip
        case TradedView():
            return TradedNode(
                seq=_id(v.seq), symbol=v.symbol, trade_id=_id(v.trade_id), price=Price(v.price),
                quantity=v.quantity, aggressor_side=v.aggressor_side,
                bid_order_id=_id(v.bid_order_id), ask_order_id=_id(v.ask_order_id),
                bid_remaining=v.bid_remaining, ask_remaining=v.ask_remaining,
                timestamp=v.timestamp,
            )  # fmt: skip
        case ModifiedView():
            return ModifiedNode(
                seq=_id(v.seq), symbol=v.symbol, order_id=_id(v.order_id),
                price=Price(v.price), timestamp=v.timestamp,
            )  # fmt: skip
        case QuantityChangedView():
            return QuantityChangedNode(
                seq=_id(v.seq), symbol=v.symbol, order_id=_id(v.order_id),
                quantity=v.quantity, remaining=v.remaining, timestamp=v.timestamp,
            )  # fmt: skip
        case CancelledView():
            return CancelledNode(
                seq=_id(v.seq), symbol=v.symbol, order_id=_id(v.order_id),
                cancelled_quantity=v.cancelled_quantity, timestamp=v.timestamp,
            )  # fmt: skip
        case RejectedView():
            return RejectedNode(
                seq=_id(v.seq), symbol=v.symbol,
                rejected_order_id=None if v.order_id is None else _id(v.order_id),
                reason=v.reason, timestamp=v.timestamp,
            )  # fmt: skip


@strawberry.type(name="OrderBookSnapshot", description="The top `depth` levels at `seq`")
class BookSnapshotNode:
    symbol: str
    seq: strawberry.ID
    depth: int
    bids: list[LevelNode]
    asks: list[LevelNode]
    timestamp: datetime

    @classmethod
    def of(cls, v: BookSnapshotView) -> BookSnapshotNode:
        return cls(
            symbol=v.symbol,
            seq=_id(v.seq),
            depth=v.depth,
            bids=[LevelNode(price=Price(level.price), quantity=level.quantity) for level in v.bids],
            asks=[LevelNode(price=Price(level.price), quantity=level.quantity) for level in v.asks],
            timestamp=v.timestamp,
        )


@strawberry.type(
    name="OrderBookLevelChange",
    description="A level within the window changed: its new total, 0 when it left the window",
)
class LevelChangeNode:
    symbol: str
    seq: strawberry.ID
    side: int
    price: Price
    quantity: int

    @classmethod
    def of(cls, v: LevelChangeView) -> LevelChangeNode:
        return cls(
            symbol=v.symbol, seq=_id(v.seq), side=v.side, price=Price(v.price), quantity=v.quantity
        )


OrderBookUpdateNode = Annotated[
    BookSnapshotNode | LevelChangeNode, strawberry.union("OrderBookUpdate")
]
