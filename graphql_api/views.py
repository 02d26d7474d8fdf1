"""What clients see of orders, trades and books: one view model for REST, WebSockets and
GraphQL.

Three layers, three names: records (`store.port`: what is stored, in ticks), events
(`shared.events`: what the engine says, in ticks) and views (here: what clients see). The
views hold values in the API's units (prices as Decimals in the instrument's decimal units,
never ticks; ids as strings; times as UTC datetimes), built in one place from records and
events. `to_json` renders a view for REST and the plain WebSockets (prices as
JSON numbers, times as ISO 8601); the GraphQL types (`schema/types.py`) are made from the
same views, so the two APIs cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

import msgspec

from shared.config import Instrument, Settings
from shared.events import Trade
from shared.prices import ticks_to_decimal
from store.port import BookLevels, CandleRecord, OrderRecord, TradeRecord

from .requests import CANDLE_INTERVAL_NAMES, ORDER_ID_PATTERN, TIME_IN_FORCE_NAMES


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
class CandleView:
    symbol: str
    interval: str  # "1s", "1m", "5m", "1h"
    start: datetime  # the bucket's first instant (UTC, aligned to the epoch)
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int  # the sum of the trades' quantities
    trade_count: int


@dataclass(frozen=True, slots=True)
class LevelView:
    price: Decimal
    quantity: int


@dataclass(frozen=True, slots=True)
class BookView:
    symbol: str
    timestamp: datetime
    seq: int
    bids: list[LevelView]
    asks: list[LevelView]


@dataclass(frozen=True, slots=True)
class InstrumentView:
    """What a client needs to check an order before sending it."""

    symbol: str
    tick_size: Decimal
    max_price: Decimal
    max_quantity: int


def instrument_views(settings: Settings) -> list[InstrumentView]:
    return [
        InstrumentView(i.symbol, i.tick_size, i.max_price, settings.max_quantity)
        for i in settings.instruments
    ]


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc(ts_ns: int) -> datetime:
    """Truncated to the microsecond with integers (a float's rounding could show a time
    after the real one, which `since` set to that time would then exclude)."""
    return EPOCH + timedelta(microseconds=ts_ns // 1000)


def _instrument_of(settings: Settings, identifier: int) -> Instrument:
    return settings.instrument_of(identifier) or settings.default_instrument


def order_view(settings: Settings, o: OrderRecord) -> OrderView:
    instrument = _instrument_of(settings, o.order_id)
    return OrderView(
        order_id=str(o.order_id),
        symbol=instrument.symbol,
        side=o.side,
        order_price=ticks_to_decimal(o.price, instrument.tick_size) if o.price else None,
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


def trade_view(settings: Settings, t: TradeRecord | Trade) -> TradeView:
    """A stored trade, or a trade event as it happens (its sequence number is its id)."""
    trade_id = t.trade_id if isinstance(t, TradeRecord) else t.seq
    instrument = _instrument_of(settings, trade_id)
    return TradeView(
        trade_id=str(trade_id),
        symbol=instrument.symbol,
        trade_price=ticks_to_decimal(t.price, instrument.tick_size),
        quantity=t.quantity,
        bid_order_id=str(t.bid_order_id),
        ask_order_id=str(t.ask_order_id),
        aggressor_side=t.taker_side,
        timestamp=utc(t.ts),
    )


def candle_view(instrument: Instrument, c: CandleRecord) -> CandleView:
    tick = instrument.tick_size
    return CandleView(
        symbol=instrument.symbol,
        interval=CANDLE_INTERVAL_NAMES[c.interval],
        start=EPOCH + timedelta(seconds=c.start),
        open=ticks_to_decimal(c.open, tick),
        high=ticks_to_decimal(c.high, tick),
        low=ticks_to_decimal(c.low, tick),
        close=ticks_to_decimal(c.close, tick),
        volume=c.volume,
        trade_count=c.count,
    )


def book_view(instrument: Instrument, book: BookLevels, depth: int) -> BookView:
    tick = instrument.tick_size

    def levels(side: list[tuple[int, int]]) -> list[LevelView]:
        return [LevelView(ticks_to_decimal(p, tick), q) for p, q in side[:depth]]

    return BookView(instrument.symbol, utc(book.ts), book.seq, levels(book.bids), levels(book.asks))


# REST names that differ from the view's (GraphQL's) names.
JSON_NAMES = {"order_type": "type"}


def to_json(view: Any) -> Any:  # Any: a view, or any JSON value inside one
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


# The answers to the order mutations: encoded by msgspec on the hot path, and the source of
# their OpenAPI schemas (`rest/openapi.py`).
OrderId = Annotated[str, msgspec.Meta(pattern=ORDER_ID_PATTERN)]


class PlacedView(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    order_id: OrderId
    duplicate: Annotated[
        bool, msgspec.Meta(description="present (true) on 200 only: client_order_id seen before")
    ] = False


class ChangedView(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    success: bool
    reason: Annotated[
        str | None,
        msgspec.Meta(description="why not, when success is false (e.g. unknown_order)"),
    ] = None
