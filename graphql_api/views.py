"""What clients see of orders, trades and books: one view model for REST, WebSockets and
GraphQL.

The views hold values in the API's units (prices as Decimals in the instrument's decimal
units, never ticks; ids as strings; times as UTC datetimes), built in one place from store
records and events. `to_json` renders a view for REST and the plain WebSockets (prices as
JSON numbers, times as ISO 8601); the GraphQL types in `schema.py` are made from the same
views, so the two APIs cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from archiver.store import OrderRecord, TradeRecord
from shared.events import Trade

from .exchange import TIME_IN_FORCE_NAMES, BookView, Exchange


@dataclass(frozen=True, slots=True)
class OrderView:
    order_id: str
    symbol: str
    side: int
    order_price: Decimal | None  # None for a market order
    order_type: str  # "limit" or "market"
    time_in_force: str
    order_quantity: int
    traded_quantity: int
    remaining_quantity: int
    cancelled_quantity: int
    order_alive: bool
    client_order_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class TradeView:
    trade_id: str
    symbol: str
    trade_price: Decimal
    quantity: int
    bid_order_id: str
    ask_order_id: str
    aggressor_side: int
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class LevelView:
    price: Decimal
    quantity: int


@dataclass(frozen=True, slots=True)
class BookLevelsView:
    symbol: str
    timestamp: datetime
    seq: int
    bids: list[LevelView]
    asks: list[LevelView]


def utc(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns / 1e9, UTC)


def order_view(ex: Exchange, o: OrderRecord) -> OrderView:
    instrument = ex.instrument_of(o.order_id)
    return OrderView(
        order_id=str(o.order_id),
        symbol=instrument.symbol,
        side=o.side,
        order_price=ex.price(o.price, instrument) if o.price else None,
        order_type="limit" if o.price else "market",
        time_in_force=TIME_IN_FORCE_NAMES[o.tif],
        order_quantity=o.quantity,
        traded_quantity=o.traded,
        remaining_quantity=o.remaining,
        cancelled_quantity=o.cancelled,
        order_alive=o.alive,
        client_order_id=o.client_order_id,
        created_at=utc(o.created_ts),
        updated_at=utc(o.updated_ts),
    )


def trade_view(ex: Exchange, t: TradeRecord | Trade) -> TradeView:
    """A stored trade, or a trade event as it happens (its sequence number is its id)."""
    trade_id = t.trade_id if isinstance(t, TradeRecord) else t.seq
    instrument = ex.instrument_of(trade_id)
    return TradeView(
        trade_id=str(trade_id),
        symbol=instrument.symbol,
        trade_price=ex.price(t.price, instrument),
        quantity=t.quantity,
        bid_order_id=str(t.bid_order_id),
        ask_order_id=str(t.ask_order_id),
        aggressor_side=t.taker_side,
        timestamp=utc(t.ts),
    )


def book_view(ex: Exchange, book: BookView, depth: int) -> BookLevelsView:
    instrument = ex.instrument(book.symbol)

    def levels(side: list[tuple[int, int]]) -> list[LevelView]:
        return [LevelView(ex.price(p, instrument), q) for p, q in side[:depth]]

    return BookLevelsView(book.symbol, utc(book.ts), book.seq, levels(book.bids), levels(book.asks))


# REST names that differ from the view's (GraphQL's) names.
JSON_NAMES = {"order_type": "type"}


def to_json(view: Any) -> Any:
    """A view as JSON: Decimals as numbers, datetimes as ISO 8601 with microseconds."""
    if isinstance(view, Decimal):
        return int(view) if view == view.to_integral_value() else float(view)
    if isinstance(view, datetime):
        return view.isoformat(timespec="microseconds")
    if isinstance(view, list):
        return [to_json(item) for item in view]
    if hasattr(view, "__dataclass_fields__"):
        return {
            JSON_NAMES.get(f.name, f.name): to_json(getattr(view, f.name)) for f in fields(view)
        }
    return view
