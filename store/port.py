"""The storage port: what the archiver writes and the API reads.

Two adapters implement it (`store.sqlite` embedded, `store.mongo` for MongoDB) and pass one
contract suite (`tests/store/test_contract.py`); this module imports neither. Writes are
idempotent and order-tolerant: every order document remembers the sequence number of the
last event applied to it and ignores older ones, and every event sets absolute values (a
trade carries the remaining quantity of both orders), so re-applying a batch, or two
archivers racing, changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from shared.config import ID_SPACE
from shared.events import Event


@dataclass(frozen=True, slots=True)
class OrderRecord:
    order_id: int
    side: int
    price: int
    quantity: int
    remaining: int
    traded: int
    cancelled: int
    alive: bool
    client_order_id: str | None
    created_ts: int
    updated_ts: int
    tif: int = 0  # shared.commands.GTC/IOC/FOK; price 0 is a market order
    owner: str = ""


@dataclass(frozen=True, slots=True)
class TradeRecord:
    trade_id: int
    price: int
    quantity: int
    bid_order_id: int
    ask_order_id: int
    taker_side: int
    ts: int


@dataclass(frozen=True, slots=True)
class CandleRecord:
    """OHLCV of one instrument's trades in one UTC bucket (prices in ticks)."""

    interval: int  # seconds: one of store.derived.CANDLE_INTERVALS
    start: int  # bucket start, seconds since the epoch (a multiple of `interval`)
    open: int
    high: int
    low: int
    close: int
    volume: int  # sum of the trades' quantities
    count: int  # number of trades
    last_seq: int  # the newest trade folded in: a live feed folds only trades after it


class BookLevels(NamedTuple):
    """One instrument's aggregated book in ticks, and the sequence number it reflects: what
    the store reads and what the engine broadcasts (`ts`: when the engine sent it)."""

    seq: int
    bids: list[tuple[int, int]]  # (price, quantity), best (highest) first
    asks: list[tuple[int, int]]  # best (lowest) first
    ts: int = 0


class RestingOrder(NamedTuple):
    order_id: int
    side: int
    price: int
    remaining: int
    last_seq: int  # the sequence number of the last event applied to it


class RestingOrders(NamedTuple):
    """Every resting order of one instrument and the progress the read reflects: what a
    replica of the book is built from (the API's incremental book feed)."""

    seq: int
    orders: list[RestingOrder]


def id_range(instrument: int | None, after: int | None) -> tuple[int, int]:
    """(exclusive low, inclusive high) ids of an instrument, or of all, after a cursor."""
    if instrument is None:
        return after or 0, 1 << 62
    low = instrument * ID_SPACE
    return max(after or 0, low), low + ID_SPACE


def id_window(instrument: int | None, after: int | None, before: int | None) -> tuple[int, int]:
    """(exclusive low, exclusive high) ids of an instrument, or of all, between two cursors."""
    low, high = id_range(instrument, after)
    return low, high + 1 if before is None else min(high + 1, before)


def narrowed(
    instrument: int, after: int | None, before: int | None, stamped: tuple[int, int]
) -> tuple[int, int] | None:
    """An instrument's `id_window` cut to the ids [first, last] its time index found stamped
    in a time window; None when nothing is left between them."""
    low, high = id_window(instrument, after, before)
    low, high = max(low, stamped[0] - 1), min(high, stamped[1] + 1)
    return (low, high) if low + 1 < high else None


def instrument_number(seq: int) -> int:
    return (seq - 1) // ID_SPACE


class GapError(RuntimeError):
    """A batch does not continue the stored sequence: an event would be skipped."""


class Store(Protocol):
    async def open(self) -> None:
        """Connect, create what is missing (tables, indexes), and derive the candles and
        the time index of events stored before they existed."""

    async def close(self) -> None: ...

    async def apply(self, events: Sequence[Event]) -> None:
        """Persist one instrument's events (ascending seq) and advance its progress, with
        the candles and time index they change (`store.derived`), in one transaction."""

    async def progress(self, instrument: int = 0) -> int:
        """Highest sequence number stored for an instrument (its id base when empty)."""

    async def get_order(self, order_id: int) -> OrderRecord | None: ...

    async def list_orders(
        self,
        *,
        alive: bool | None,
        side: int | None,
        limit: int,
        after: int | None,
        owner: str | None = None,
        instrument: int | None = None,
        before: int | None = None,
        since: int | None = None,
        until: int | None = None,
        descending: bool = False,
    ) -> list[OrderRecord]:
        """Orders of one instrument (by number) or all, with ids strictly between `after`
        and `before` and created in [since, until) (ns). `limit` of them from the oldest end,
        ascending, or with `descending` from the newest end, newest first. Served by the
        primary key in both directions, the time bounds through the time index
        (`store.derived`)."""

    async def list_trades(
        self,
        *,
        limit: int,
        after: int | None,
        order_id: int | None = None,
        instrument: int | None = None,
        before: int | None = None,
        since: int | None = None,
        until: int | None = None,
        descending: bool = False,
    ) -> list[TradeRecord]:
        """Trades, as `list_orders` (time: the trade's `ts`); with `order_id`, that order's
        fills only."""

    async def candles(
        self,
        *,
        instrument: int,
        interval: int,
        limit: int,
        since: int | None = None,
        until: int | None = None,
        newest: bool = False,
    ) -> list[CandleRecord]:
        """Candles whose bucket starts in [since, until) (seconds), ascending start: the
        `limit` oldest of them, or with `newest` the `limit` newest. Buckets without trades
        have no candle."""

    async def book(self, levels: int, instrument: int = 0) -> BookLevels:
        """One instrument's aggregated alive quantity per price (bids descending, asks
        ascending) with the progress it reflects, read in one snapshot: a book is never half
        a batch (never crossed, say). Only a standalone MongoDB (no transactions) cannot:
        there `seq` is read first and is a lower bound."""

    async def resting(self, instrument: int = 0) -> RestingOrders:
        """One instrument's alive orders, read in one snapshot with the progress, as
        `book` is (a standalone MongoDB: `seq` is read first and is a lower bound; each
        order's `last_seq` then tells which later events it already reflects)."""

    async def events(self, after: int, limit: int) -> list[Event]:
        """The stored event log, ascending seq, strictly after `after`."""
