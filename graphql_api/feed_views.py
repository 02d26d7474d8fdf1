"""What clients see of the private order feed and the incremental book: one view per
message, for the plain WebSockets (`to_message`) and GraphQL (`schema/feed_types.py`).

Each message names its `type` and carries the `seq` of the event it comes from, which is
the resume cursor of the order feed and orders the book's changes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from shared.commands import MARKET
from shared.config import Instrument, Settings
from shared.events import Accepted, Cancelled, Modified, QuantityChanged, Rejected, Trade
from shared.prices import ticks_to_decimal
from store.port import BookLevels, TradeRecord

from .live import LevelChange, OrderUpdate
from .live.orders import ASK, BID
from .requests import TIME_IN_FORCE_NAMES
from .views import LevelView, to_json, utc


@dataclass(frozen=True, slots=True)
class AcceptedView:
    type: str
    seq: int
    symbol: str
    order_id: str
    side: int
    order_price: Decimal | None  # None for a market order (as an order's `order_price`)
    quantity: int
    order_type: str  # "limit" or "market"
    time_in_force: str
    client_order_id: str | None
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class TradedView:
    """A fill of one or both of the subscriber's orders; the remaining quantity is given for
    the subscriber's own orders only (None for the other side's)."""

    type: str
    seq: int
    symbol: str
    trade_id: str
    price: Decimal
    quantity: int
    aggressor_side: int
    bid_order_id: str
    ask_order_id: str
    bid_remaining: int | None
    ask_remaining: int | None
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class ModifiedView:
    type: str
    seq: int
    symbol: str
    order_id: str
    price: Decimal
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class QuantityChangedView:
    type: str
    seq: int
    symbol: str
    order_id: str
    quantity: int  # the new total
    remaining: int
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class CancelledView:
    type: str
    seq: int
    symbol: str
    order_id: str
    cancelled_quantity: int
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class RejectedView:
    type: str
    seq: int
    symbol: str
    order_id: str | None  # the order the command named; None when it named none
    reason: str
    timestamp: datetime


OrderEventView = (
    AcceptedView | TradedView | ModifiedView | QuantityChangedView | CancelledView | RejectedView
)


def order_event_view(settings: Settings, update: OrderUpdate) -> OrderEventView:
    e = update.event
    instrument = settings.instrument_of(e.seq) or settings.default_instrument
    tick = instrument.tick_size
    symbol, when = instrument.symbol, utc(e.ts)
    match e:
        case Accepted():
            price = None if e.price == MARKET else ticks_to_decimal(e.price, tick)
            order_type = "market" if e.price == MARKET else "limit"
            tif = TIME_IN_FORCE_NAMES[e.tif]
            return AcceptedView(
                "accepted", e.seq, symbol, str(e.order_id), e.side, price, e.quantity,
                order_type, tif, e.client_order_id, when,
            )  # fmt: skip
        case Trade():
            return TradedView(
                "trade", e.seq, symbol, str(e.seq), ticks_to_decimal(e.price, tick), e.quantity,
                e.taker_side, str(e.bid_order_id), str(e.ask_order_id),
                e.bid_remaining if update.mine & BID else None,
                e.ask_remaining if update.mine & ASK else None, when,
            )  # fmt: skip
        case Modified():
            price = ticks_to_decimal(e.price, tick)
            return ModifiedView("modified", e.seq, symbol, str(e.order_id), price, when)
        case QuantityChanged():
            return QuantityChangedView(
                "quantity_changed", e.seq, symbol, str(e.order_id), e.quantity, e.remaining, when
            )
        case Cancelled():
            return CancelledView("cancelled", e.seq, symbol, str(e.order_id), e.quantity, when)
        case Rejected():
            order_id = str(e.order_id) if e.order_id else None
            return RejectedView("rejected", e.seq, symbol, order_id, e.reason, when)
    raise AssertionError(f"not an event: {e!r}")


def to_message(view: Any) -> dict[str, Any]:  # Any: a view; a JSON object
    """A feed view as a JSON object, fields under their own names."""
    return {f.name: to_json(getattr(view, f.name)) for f in fields(view)}


# -- the incremental book ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BookSnapshotView:
    type: str
    symbol: str
    seq: int
    depth: int
    bids: list[LevelView]
    asks: list[LevelView]
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class LevelChangeView:
    type: str
    symbol: str
    seq: int
    side: int
    price: Decimal
    quantity: int  # the level's new total; 0: gone from the window


def book_snapshot_view(instrument: Instrument, book: BookLevels, depth: int) -> BookSnapshotView:
    tick = instrument.tick_size

    def levels(side: list[tuple[int, int]]) -> list[LevelView]:
        return [LevelView(ticks_to_decimal(p, tick), q) for p, q in side]

    return BookSnapshotView(
        "snapshot", instrument.symbol, book.seq, depth, levels(book.bids), levels(book.asks),
        utc(time.time_ns()),
    )  # fmt: skip


def level_change_view(instrument: Instrument, change: LevelChange) -> LevelChangeView:
    price = ticks_to_decimal(change.price, instrument.tick_size)
    return LevelChangeView(
        "level", instrument.symbol, change.seq, change.side, price, change.quantity
    )


@lru_cache(maxsize=65_536)
def _price_json(ticks: int, tick: Decimal) -> str:
    value = ticks_to_decimal(ticks, tick)
    return str(to_json(value))


def level_change_text(instrument: Instrument, change: LevelChange) -> str:
    """`to_message(level_change_view(...))` as JSON text, written directly: the book feed
    sends one per level change, the most frequent message of any feed."""
    return (
        f'{{"type":"level","symbol":"{instrument.symbol}","seq":{change.seq},'
        f'"side":{change.side},"price":{_price_json(change.price, instrument.tick_size)},'
        f'"quantity":{change.quantity}}}'
    )


def trade_text(settings: Settings, t: Trade | TradeRecord) -> str:
    """`to_json(trade_view(settings, t))` as JSON text, written directly: a client catching
    up on trades gets up to a whole page of them at once (a test holds the two equal)."""
    trade_id = t.seq if type(t) is Trade else t.trade_id  # type: ignore[union-attr]
    instrument = settings.instrument_of(trade_id) or settings.default_instrument
    price = _price_json(t.price, instrument.tick_size)
    when = utc(t.ts).isoformat(timespec="microseconds")
    return (
        f'{{"trade_id":"{trade_id}","symbol":"{instrument.symbol}","trade_price":{price},'
        f'"quantity":{t.quantity},"bid_order_id":"{t.bid_order_id}",'
        f'"ask_order_id":"{t.ask_order_id}","aggressor_side":{t.taker_side},'
        f'"timestamp":"{when}"}}'
    )
