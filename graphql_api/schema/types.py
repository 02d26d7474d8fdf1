"""The GraphQL types: rendered from the views (`views.py`), so GraphQL and REST show the same
values. The Python classes are named for their role (`OrderNode`); the schema keeps its
public names (`Order`)."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, NewType

import strawberry
from strawberry.types import Info

from shared.commands import FOK, GTC, IOC

from ..requests import CANDLE_INTERVALS
from ..views import BookView, CandleView, InstrumentView, OrderView, TradeView

Price = NewType("Price", Decimal)
PRICE_SCALAR = strawberry.scalar(
    name="Price",
    description='A price in decimal units as a string, e.g. "101.25" (numbers accepted on input)',
    serialize=lambda value: str(value),
    parse_value=lambda value: value,
)


@strawberry.enum(name="TimeInForce")
class TimeInForce(enum.Enum):
    """Values are the engine's codes: GraphQL hands them over as they are."""

    GTC = GTC
    IOC = IOC
    FOK = FOK


@strawberry.enum(name="OrderType")
class OrderType(enum.Enum):
    LIMIT = "limit"
    MARKET = "market"


@strawberry.type(name="Order")
class OrderNode:
    order_id: strawberry.ID
    symbol: str
    side: int
    order_type: OrderType
    time_in_force: TimeInForce
    order_price: Price | None  # null for a market order
    order_quantity: int
    traded_quantity: int
    remaining_quantity: int
    cancelled_quantity: int
    order_alive: bool
    client_order_id: str | None
    created_at: datetime
    updated_at: datetime

    @strawberry.field
    async def trades(
        self,
        info: Info[dict[str, Any], None],  # Any: Strawberry adds its own context entries
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> TradeConnection:
        from .resolvers import order_trades  # the resolvers import this module

        return await order_trades(info, self.order_id, first, after, last, before)

    @classmethod
    def of(cls, v: OrderView) -> OrderNode:
        return cls(
            order_id=strawberry.ID(v.order_id),
            symbol=v.symbol,
            side=v.side,
            order_type=OrderType(v.order_type),
            time_in_force=TimeInForce[v.time_in_force],
            order_price=None if v.order_price is None else Price(v.order_price),
            order_quantity=v.order_quantity,
            traded_quantity=v.traded_quantity,
            remaining_quantity=v.remaining_quantity,
            cancelled_quantity=v.cancelled_quantity,
            order_alive=v.order_alive,
            client_order_id=v.client_order_id,
            created_at=v.created_at,
            updated_at=v.updated_at,
        )


@strawberry.type(name="Trade")
class TradeNode:
    trade_id: strawberry.ID
    symbol: str
    trade_price: Price
    quantity: int
    bid_order_id: strawberry.ID
    ask_order_id: strawberry.ID
    aggressor_side: int
    timestamp: datetime

    @classmethod
    def of(cls, v: TradeView) -> TradeNode:
        return cls(
            trade_id=strawberry.ID(v.trade_id),
            symbol=v.symbol,
            trade_price=Price(v.trade_price),
            quantity=v.quantity,
            bid_order_id=strawberry.ID(v.bid_order_id),
            ask_order_id=strawberry.ID(v.ask_order_id),
            aggressor_side=v.aggressor_side,
            timestamp=v.timestamp,
        )


@strawberry.type(name="Level")
class LevelNode:
    price: Price
    quantity: int


@strawberry.type(name="OrderBook")
class OrderBookNode:
    symbol: str
    timestamp: datetime
    # Kept as it was published: a GraphQL Int is 32-bit, and every instrument after the
    # first numbers its events from a base of its number times 2^40.
    seq: int = strawberry.field(
        description=(
            "The sequence number the book reflects, as an Int, which GraphQL makes 32-bit: "
            "only up to 2147483647, the first instrument's first 2^31 events. Beyond, and for "
            "every other instrument (numbered from its number times 2^40), asking for it is "
            "an error that takes the whole `orderBook` with it. Use `sequence`."
        ),
        deprecation_reason="an Int overflows for every instrument but the first: use `sequence`",
    )
    bids: list[LevelNode]
    asks: list[LevelNode]
    # An ID (a string on the wire): every client has it without a custom scalar's mapping,
    # JavaScript keeps it exact beyond 2^53, and it is the type of the feeds' `seq`, so a
    # client compares the two as they come.
    sequence: strawberry.ID = strawberry.field(
        description=(
            "The sequence number the book reflects, in full: the `seq` of the last event it "
            "includes, comparable with the feeds' `seq` (as integers)"
        )
    )

    @classmethod
    def of(cls, v: BookView) -> OrderBookNode:
        return cls(
            symbol=v.symbol,
            timestamp=v.timestamp,
            seq=v.seq,
            sequence=strawberry.ID(str(v.seq)),
            bids=[LevelNode(price=Price(level.price), quantity=level.quantity) for level in v.bids],
            asks=[LevelNode(price=Price(level.price), quantity=level.quantity) for level in v.asks],
        )


@strawberry.type(name="Instrument", description="A book and the limits its orders must respect")
class InstrumentNode:
    symbol: str
    tick_size: Price = strawberry.field(description="every price is a multiple of it")
    max_price: Price
    max_quantity: int

    @classmethod
    def of(cls, v: InstrumentView) -> InstrumentNode:
        return cls(
            symbol=v.symbol,
            tick_size=Price(v.tick_size),
            max_price=Price(v.max_price),
            max_quantity=v.max_quantity,
        )


@strawberry.type
class PageInfo:
    """Relay's page info. `hasPreviousPage` is known when paging with `last`, and
    `hasNextPage` with `first`; the other is false, as the Relay specification allows."""

    start_cursor: str | None
    end_cursor: str | None
    has_previous_page: bool
    has_next_page: bool


@strawberry.type
class OrderEdge:
    cursor: str
    node: OrderNode


@strawberry.type
class TradeEdge:
    cursor: str
    node: TradeNode


@strawberry.type(description="Relay connection; `endCursor`, `hasNextPage`: as in `pageInfo`")
class OrderConnection:
    nodes: list[OrderNode]
    end_cursor: str | None
    has_next_page: bool
    page_info: PageInfo

    @strawberry.field
    def edges(self) -> list[OrderEdge]:
        return [OrderEdge(cursor=str(n.order_id), node=n) for n in self.nodes]


@strawberry.type(description="Relay connection; `endCursor`, `hasNextPage`: as in `pageInfo`")
class TradeConnection:
    nodes: list[TradeNode]
    end_cursor: str | None
    has_next_page: bool
    page_info: PageInfo

    @strawberry.field
    def edges(self) -> list[TradeEdge]:
        return [TradeEdge(cursor=str(n.trade_id), node=n) for n in self.nodes]


@strawberry.enum(name="CandleInterval")
class CandleInterval(enum.Enum):
    """Values are the bucket lengths in seconds, as the store keeps them."""

    ONE_SECOND = 1
    ONE_MINUTE = 60
    FIVE_MINUTE = 300
    ONE_HOUR = 3600


@strawberry.type(name="Candle", description="OHLCV of one UTC bucket's trades")
class CandleNode:
    symbol: str
    interval: CandleInterval
    start: datetime = strawberry.field(description="the bucket's first instant")
    open: Price
    high: Price
    low: Price
    close: Price
    volume: int = strawberry.field(description="the sum of the trades' quantities")
    trade_count: int

    @classmethod
    def of(cls, v: CandleView) -> CandleNode:
        return cls(
            symbol=v.symbol,
            interval=CandleInterval(CANDLE_INTERVALS[v.interval]),
            start=v.start,
            open=Price(v.open),
            high=Price(v.high),
            low=Price(v.low),
            close=Price(v.close),
            volume=v.volume,
            trade_count=v.trade_count,
        )


@strawberry.type
class FieldError:
    field: str
    message: str


@strawberry.type
class OrderPlaced:
    order_id: strawberry.ID
    duplicate: bool = strawberry.field(
        description="true when client_order_id was used before: this is the original order"
    )


@strawberry.type
class OrderRejected:
    reason: str
    errors: list[FieldError]


PlaceOrderResult = Annotated[OrderPlaced | OrderRejected, strawberry.union("PlaceOrderResult")]


@strawberry.type
class ChangeResult:
    success: bool
    reason: str | None = None
    errors: list[FieldError] = strawberry.field(default_factory=list)


@strawberry.input
class PlaceOrderInput:
    side: int = strawberry.field(description="1 buy, -1 sell")
    quantity: int
    price: Price | None = strawberry.field(
        default=None, description="required for LIMIT orders, omitted for MARKET"
    )
    client_order_id: str | None = None
    type: OrderType = OrderType.LIMIT
    time_in_force: TimeInForce | None = strawberry.field(
        default=None, description="default GTC for LIMIT, IOC for MARKET"
    )
    symbol: str | None = strawberry.field(
        default=None, description="instrument; default: the first configured"
    )
