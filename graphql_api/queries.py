"""The read requests: one order, lists of orders and trades (a page of a `Window`), one
order's fills, candles and the book, each built from REST's query strings or GraphQL's
arguments with every bad field named at once."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import Instrument
from shared.prices import parse_side

from .parsing import (
    CANDLE_INTERVALS,
    CANDLE_PAGE,
    DEFAULT_PAGE,
    MAX_DEPTH,
    FieldErrors,
    InstrumentLookup,
    number_text,
    order_id_of,
    parse_cursor,
    parse_flag,
    parse_interval,
    parse_limit,
    parse_order,
    parse_order_id,
    parse_time,
)


@dataclass(frozen=True, slots=True)
class GetOrder:
    order_id: int
    instrument: Instrument | None


@dataclass(frozen=True, slots=True)
class Window:
    """Which page of a list: ids strictly between `after` and `before`, times in
    [since, until) (ns), `limit` of them from the oldest end, or with `from_end` from the
    newest end (the page just before `before`, or the newest page), shown newest first
    when `newest_first`."""

    limit: int
    after: int | None = None
    before: int | None = None
    since: int | None = None
    until: int | None = None
    from_end: bool = False
    newest_first: bool = False


@dataclass(frozen=True, slots=True)
class ListOrders:
    limit: int
    after: int | None = None
    alive: bool | None = None
    side: int | None = None
    instrument: Instrument | None = None  # None: every instrument
    window: Window | None = None  # None: the first `limit` after `after`, oldest first


@dataclass(frozen=True, slots=True)
class ListTrades:
    limit: int
    after: int | None = None
    instrument: Instrument | None = None
    window: Window | None = None
    order_id: int | None = None  # that order's fills only


@dataclass(frozen=True, slots=True)
class OrderTrades:
    """One order's fills: visible only to whoever may see the order."""

    order: GetOrder
    trades: ListTrades


@dataclass(frozen=True, slots=True)
class CandleQuery:
    instrument: Instrument
    interval: int  # seconds
    limit: int
    since: int | None = None  # first bucket start, seconds, inclusive
    until: int | None = None  # bucket starts below this, seconds
    newest: bool = False  # the newest `limit` candles (no `since`), else the oldest


@dataclass(frozen=True, slots=True)
class BookQuery:
    instrument: Instrument
    depth: int


class QueryRequests(InstrumentLookup):
    """Builds the read requests."""

    def get_order(self, order_id: object) -> GetOrder:
        oid = order_id_of(order_id)
        return GetOrder(oid, self.settings.instrument_of(oid))

    def list_orders(
        self,
        *,
        limit: object = None,
        after: object = None,
        alive: object = None,
        side: object = None,
        symbol: object = None,
        before: object = None,
        since: object = None,
        until: object = None,
        order: object = None,
        last: bool = False,
    ) -> ListOrders:
        """GET /orders (query-string text) and GraphQL's `orders` (typed values; `last`: the
        page counts from the newest end, as Relay's `last`)."""
        errors = FieldErrors()
        side_value = (
            None if side is None else errors.take(lambda: parse_side(number_text(side)), None)
        )
        alive_value = (
            None if alive is None else errors.take(lambda: parse_flag(alive, "alive"), None)
        )
        window, instrument = self._listing(
            errors, symbol, limit, after, before, since, until, order, last
        )
        return ListOrders(window.limit, window.after, alive_value, side_value, instrument, window)

    def list_trades(
        self,
        *,
        limit: object = None,
        after: object = None,
        symbol: object = None,
        before: object = None,
        since: object = None,
        until: object = None,
        order: object = None,
        last: bool = False,
        order_id: int | None = None,
    ) -> ListTrades:
        """GET /trades, GraphQL's `trades`; with `order_id` (already parsed), one order's."""
        window, instrument = self._listing(
            FieldErrors(), symbol, limit, after, before, since, until, order, last
        )
        return ListTrades(window.limit, window.after, instrument, window, order_id)

    def order_trades(
        self,
        order_id: object,
        *,
        limit: object = None,
        after: object = None,
        before: object = None,
        since: object = None,
        until: object = None,
        order: object = None,
    ) -> OrderTrades:
        """GET /orders/{id}/trades: the order id and the window are checked together."""
        errors = FieldErrors()
        oid = errors.take(lambda: parse_order_id(order_id), 0)
        window, _ = self._listing(errors, None, limit, after, before, since, until, order, False)
        trades = ListTrades(window.limit, window.after, None, window, oid)
        return OrderTrades(GetOrder(oid, self.settings.instrument_of(oid)), trades)

    def _listing(
        self,
        errors: FieldErrors,
        symbol: object,
        limit: object,
        after: object,
        before: object,
        since: object,
        until: object,
        order: object,
        last: bool,
    ) -> tuple[Window, Instrument | None]:
        """A list's page and instrument filter (None: every instrument), raising every error
        found in them and in the fields the caller checked before (`errors`) at once. Which
        end the page counts from: Relay's `last` (GraphQL), else the cursor given (REST:
        `before` alone pages back from it, `after` alone forward), else the order (`desc`:
        the newest page)."""
        size_field = "last" if last else "limit"
        size = errors.take(
            lambda: parse_limit(number_text(DEFAULT_PAGE if limit is None else limit), size_field),
            1,
        )
        low = None if after is None else errors.take(lambda: parse_cursor(after), None)
        high = None if before is None else errors.take(lambda: parse_cursor(before, "before"), None)
        first_us = None if since is None else errors.take(lambda: parse_time(since, "since"), None)
        last_us = None if until is None else errors.take(lambda: parse_time(until, "until"), None)
        newest_first = errors.take(lambda: parse_order(order), False)
        if low is not None and high is not None and high <= low:
            errors.add("before", "must be greater than after")
        if first_us is not None and last_us is not None and last_us < first_us:
            errors.add("until", "must not be before since")
        instrument = None if symbol is None else self._instrument(symbol, errors)
        errors.check()
        if last:
            from_end = True
        elif (before is None) != (after is None):
            from_end = before is not None
        else:
            from_end = newest_first
        window = Window(
            size,
            low,
            high,
            None if first_us is None else first_us * 1000,
            None if last_us is None else (last_us + 1) * 1000,  # inclusive to the microsecond
            from_end,
            newest_first,
        )
        return window, instrument

    def candles(
        self,
        *,
        interval: object,
        symbol: object = None,
        since: object = None,
        until: object = None,
        limit: object = None,
    ) -> CandleQuery:
        """GET /candles, GraphQL's `candles`: the candles whose bucket starts within
        [since, until], inclusive both, as Binance's klines; without `since`, the newest."""
        errors = FieldErrors()
        seconds = 0
        if interval is None:
            errors.add("interval", "is required: one of " + ", ".join(CANDLE_INTERVALS))
        else:
            seconds = errors.take(lambda: parse_interval(interval), 0)
        instrument = self._instrument(symbol, errors)
        size = errors.take(
            lambda: parse_limit(number_text(CANDLE_PAGE if limit is None else limit)), 1
        )
        first_us = None if since is None else errors.take(lambda: parse_time(since, "since"), None)
        last_us = None if until is None else errors.take(lambda: parse_time(until, "until"), None)
        if first_us is not None and last_us is not None and last_us < first_us:
            errors.add("until", "must not be before since")
        errors.check()
        assert instrument is not None
        return CandleQuery(
            instrument,
            seconds,
            size,
            None if first_us is None else -(-first_us // 1_000_000),
            None if last_us is None else last_us // 1_000_000 + 1,
            newest=first_us is None,
        )

    def book(self, depth: object = 5, symbol: object = None) -> BookQuery:
        errors = FieldErrors()
        instrument = self._instrument(symbol, errors)
        levels = 0
        if isinstance(depth, int) and not isinstance(depth, bool) and 1 <= depth <= MAX_DEPTH:
            levels = depth
        else:
            errors.add("depth", f"must be an integer in 1..{MAX_DEPTH}")
        errors.check()
        assert instrument is not None  # an unknown symbol was refused above
        return BookQuery(instrument, levels)
