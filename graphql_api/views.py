"""JSON shapes of the REST and WebSocket contract, built from store records and events.

Prices leave as JSON numbers in the instrument's decimal units (never ticks).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from archiver.store import OrderRecord, TradeRecord
from shared.events import Trade

from .exchange import TIME_IN_FORCE_NAMES, BookView, Exchange, iso


def number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def order_json(ex: Exchange, o: OrderRecord) -> dict[str, Any]:
    instrument = ex.instrument_of(o.order_id)
    return {
        "order_id": str(o.order_id),
        "symbol": instrument.symbol,
        "side": o.side,
        "order_price": number(ex.price(o.price, instrument)) if o.price else None,
        "type": "limit" if o.price else "market",
        "time_in_force": TIME_IN_FORCE_NAMES[o.tif],
        "order_quantity": o.quantity,
        "traded_quantity": o.traded,
        "remaining_quantity": o.remaining,
        "cancelled_quantity": o.cancelled,
        "order_alive": o.alive,
        "client_order_id": o.client_order_id,
        "created_at": iso(o.created_ts),
        "updated_at": iso(o.updated_ts),
    }


def trade_json(ex: Exchange, t: TradeRecord | Trade) -> dict[str, Any]:
    trade_id = t.trade_id if isinstance(t, TradeRecord) else t.seq
    instrument = ex.instrument_of(trade_id)
    return {
        "trade_id": str(trade_id),
        "symbol": instrument.symbol,
        "trade_price": number(ex.price(t.price, instrument)),
        "quantity": t.quantity,
        "bid_order_id": str(t.bid_order_id),
        "ask_order_id": str(t.ask_order_id),
        "aggressor_side": t.taker_side,
        "timestamp": iso(t.ts),
    }


def book_json(ex: Exchange, book: BookView, depth: int) -> dict[str, Any]:
    instrument = ex.instrument(book.symbol)

    def levels(side: list[tuple[int, int]]) -> list[dict[str, Any]]:
        return [{"price": number(ex.price(p, instrument)), "quantity": q} for p, q in side[:depth]]

    return {
        "symbol": book.symbol,
        "timestamp": iso(book.ts),
        "seq": book.seq,
        "bids": levels(book.bids),
        "asks": levels(book.asks),
    }
