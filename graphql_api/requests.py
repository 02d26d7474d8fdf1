"""The edge: raw client input (REST JSON, query strings, GraphQL arguments) becomes a frozen,
typed request, or an `InvalidInput` naming every bad field at once.

REST and GraphQL build the same requests with the same parsers (`shared.prices`), so both
accept and refuse exactly the same values; GraphQL hands over its typed values (ints, enum
codes, the Price scalar's value) without turning them back into strings. Field names are
REST's; the GraphQL layer renames them in its errors (`limit` is `first` there, say).

`PlaceOrderBody` and `ModifyOrderBody` declare the REST bodies' shape once: the OpenAPI
document is generated from them (`rest/openapi.py`), and `read_body` refuses the fields
they do not declare.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal, TypeVar

import msgspec

from shared.commands import FOK, GTC, IOC, MARKET
from shared.config import Instrument, Settings
from shared.prices import InputError, parse_price, parse_quantity, parse_side

T = TypeVar("T")

MAX_PAGE = 1000
DEFAULT_PAGE = 100
CANDLE_PAGE = 300  # candles per answer by default
MAX_DEPTH = 50
MAX_CLIENT_ORDER_ID = 64
MAX_ORDER_ID_DIGITS = 18
ORDER_ID_PATTERN = r"^[0-9]{1,18}$"
TIME_IN_FORCE = {"GTC": GTC, "IOC": IOC, "FOK": FOK}
TIME_IN_FORCE_NAMES = {code: name for name, code in TIME_IN_FORCE.items()}
ORDERS = ("asc", "desc")
CANDLE_INTERVALS = {"1s": 1, "1m": 60, "5m": 300, "1h": 3600}
CANDLE_INTERVAL_NAMES = {seconds: name for name, seconds in CANDLE_INTERVALS.items()}
TIME_EXAMPLE = "2026-01-31T12:00:00Z"
# Booleans in a query string: the spellings FastAPI accepted before the list reads parsed
# their parameters here.
TRUE_TEXT = frozenset(("true", "1", "yes", "on", "t", "y"))
FALSE_TEXT = frozenset(("false", "0", "no", "off", "f", "n"))
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidInput(Exception):
    """Bad input; `errors` names each bad field (REST's names)."""

    def __init__(self, errors: list[InputError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


# -- typed requests -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    instrument: Instrument
    side: int
    price: int  # ticks; MARKET (0) for a market order
    quantity: int
    tif: int
    client_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class ModifyOrder:
    order_id: int
    instrument: Instrument | None  # None: no instrument hands out such ids
    price: int = 0  # ticks; 0 leaves the price
    quantity: int = 0  # new total; 0 leaves the quantity


@dataclass(frozen=True, slots=True)
class CancelOrder:
    order_id: int
    instrument: Instrument | None


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


# -- REST bodies (their shape, for the OpenAPI document) ------------------------------------

PositivePrice = Annotated[float, msgspec.Meta(gt=0)]
PriceText = Annotated[
    str, msgspec.Meta(pattern=r"^\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,4})?\s*$")
]
Unset = msgspec.UnsetType
UNSET = msgspec.UNSET


class PlaceOrderBody(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /orders`."""

    side: Annotated[Literal[1, -1], msgspec.Meta(description="1 buy, -1 sell")]
    quantity: Annotated[int, msgspec.Meta(ge=1)]
    price: Annotated[
        PositivePrice | PriceText | Unset,
        msgspec.Meta(
            description="decimal units on the tick; required for limit, absent for market"
        ),
    ] = UNSET
    client_order_id: (
        Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CLIENT_ORDER_ID)] | Unset
    ) = UNSET
    symbol: Annotated[
        str | Unset, msgspec.Meta(description="instrument; default: the first configured")
    ] = UNSET
    type: Literal["limit", "market"] = "limit"
    time_in_force: Annotated[
        Literal["GTC", "IOC", "FOK"] | Unset,
        msgspec.Meta(description="default GTC for limit orders, IOC for market orders"),
    ] = UNSET


class ModifyOrderBody(msgspec.Struct, forbid_unknown_fields=True):
    """`PUT /orders/{order_id}`: at least one of the two."""

    price: Annotated[
        PositivePrice | PriceText | Unset, msgspec.Meta(description="new price, on the tick")
    ] = UNSET
    quantity: Annotated[
        Annotated[int, msgspec.Meta(ge=1)] | Unset,
        msgspec.Meta(description="new total quantity; lowering it keeps time priority"),
    ] = UNSET


PLACE_FIELDS = frozenset(PlaceOrderBody.__struct_fields__)
MODIFY_FIELDS = frozenset(ModifyOrderBody.__struct_fields__)


# -- parsing --------------------------------------------------------------------------------


class _Errors:
    """Collects every bad field of one request before refusing it."""

    def __init__(self) -> None:
        self.found: list[InputError] = []

    def take(self, parse: Callable[[], T], default: T) -> T:
        try:
            return parse()
        except InputError as exc:
            self.found.append(exc)
            return default

    def add(self, field: str, message: str) -> None:
        self.found.append(InputError(field, message))

    def check(self) -> None:
        if self.found:
            raise InvalidInput(self.found)


def parse_order_id(value: object, field: str = "order_id") -> int:
    """Order ids are positive integers, sent as strings (or ints)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif (
        isinstance(value, str)
        and value.isascii()
        and value.isdigit()
        and len(value) <= MAX_ORDER_ID_DIGITS
    ):
        number = int(value)
    else:
        raise InputError(field, "must be an order id such as '42'")
    if number < 1:
        raise InputError(field, "must be an order id such as '42'")
    return number


def parse_cursor(value: object, field: str = "after") -> int:
    """A page cursor: an order or trade id, or 0 for the start."""
    if value in (0, "0"):
        return 0
    try:
        return parse_order_id(value, field)
    except InputError:
        raise InputError(field, "must be an id such as '42' (or 0)") from None


def parse_order_type(value: object, field: str = "type") -> bool:
    """Whether the order is a market order ("limit" is the default)."""
    if value is None:
        return False
    if value not in ("limit", "market"):
        raise InputError(field, "must be 'limit' or 'market'")
    return value == "market"


def parse_time_in_force(value: object, field: str = "time_in_force") -> int | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in TIME_IN_FORCE:
        raise InputError(field, "must be 'GTC', 'IOC' or 'FOK'")
    return TIME_IN_FORCE[value]


LAST_TIME_US = (2**63 - 1) // 1000 - 1  # its exclusive bound in ns still fits


def parse_time(value: object, field: str) -> int:
    """An ISO 8601 time (or a GraphQL DateTime) -> microseconds since the epoch, the
    precision of the times the API shows. Without an offset it is UTC. A query string's
    unencoded "+" arrives as a space: " 05:30" at the end is read as "+05:30"."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and len(value) <= 64:
        text = re.sub(r" (\d\d(:?\d\d)?)$", r"+\1", value.strip())
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise InputError(field, f"must be an ISO 8601 time such as {TIME_EXAMPLE!r}") from None
    else:
        raise InputError(field, f"must be an ISO 8601 time such as {TIME_EXAMPLE!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - EPOCH
    if delta.days < 0:
        raise InputError(field, "must not be before 1970-01-01T00:00:00Z")
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    # Stored times are nanoseconds in a signed 64-bit integer (until 2262): a later bound
    # means "no bound", not a 500 from the store.
    return min(micros, LAST_TIME_US)


def parse_order(value: object, field: str = "order") -> bool:
    """Whether the list is shown newest first ("asc" is the default)."""
    if value is None:
        return False
    if value not in ORDERS:
        raise InputError(field, "must be 'asc' or 'desc'")
    return value == "desc"


def parse_interval(value: object, field: str = "interval") -> int:
    """A candle interval: "1s", "1m", "5m", "1h" (REST) or its seconds (GraphQL's enum)."""
    if isinstance(value, int) and value in CANDLE_INTERVAL_NAMES:
        return value
    if isinstance(value, str) and value in CANDLE_INTERVALS:
        return CANDLE_INTERVALS[value]
    raise InputError(field, "must be one of " + ", ".join(CANDLE_INTERVALS))


def _number_text(value: object) -> object:
    """A query string's integer as an int; anything else as it is (and refused later)."""
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]{1,9}", value):
        return int(value)
    return value


def parse_flag(value: object, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in TRUE_TEXT | FALSE_TEXT:
        return value.lower() in TRUE_TEXT
    raise InputError(field, "must be true or false")


class Requests:
    """Builds typed requests for one deployment's instruments and limits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def instrument(self, symbol: object, field: str = "symbol") -> Instrument:
        """The instrument a client named (None: the default)."""
        if symbol is not None and not isinstance(symbol, str):
            raise InvalidInput([InputError(field, "must be a string")])
        try:
            return self.settings.instrument(symbol)
        except KeyError:
            known = ", ".join(i.symbol for i in self.settings.instruments)
            raise InvalidInput([InputError(field, f"unknown symbol; known: {known}")]) from None

    def _instrument(self, symbol: object, errors: _Errors) -> Instrument | None:
        try:
            return self.instrument(symbol)
        except InvalidInput as exc:
            errors.found.extend(exc.errors)
            return None

    def place(
        self,
        *,
        side: object,
        quantity: object,
        price: object = None,
        client_order_id: object = None,
        market: bool = False,
        tif: int | None = None,
        symbol: object = None,
        errors: _Errors | None = None,
        instrument: Instrument | None = None,
    ) -> PlaceOrder:
        """A place from typed values (GraphQL), or from `place_json`'s first pass (which
        passes the instrument it resolved and the errors it found)."""
        if errors is None:
            errors = _Errors()
            instrument = self._instrument(symbol, errors)
        instrument = instrument or self.settings.default_instrument
        if tif is None:
            tif = IOC if market else GTC
        elif market and tif == GTC:
            errors.add("time_in_force", "a market order cannot rest: use 'IOC' or 'FOK'")
        side_value = errors.take(lambda: parse_side(side), 0)
        ticks = MARKET
        if market:
            if price is not None:
                errors.add("price", "must be omitted for a market order")
        elif price is None:
            errors.add("price", "is required for a limit order")
        else:
            ticks = errors.take(
                lambda: parse_price(price, instrument.tick_size, instrument.max_price), 0
            )
        size = errors.take(lambda: parse_quantity(quantity, self.settings.max_quantity), 0)
        if client_order_id is not None and (
            not isinstance(client_order_id, str)
            or not 1 <= len(client_order_id) <= MAX_CLIENT_ORDER_ID
            or not client_order_id.isprintable()
        ):
            errors.add(
                "client_order_id", f"must be a string of 1..{MAX_CLIENT_ORDER_ID} characters"
            )
            client_order_id = None
        errors.check()
        return PlaceOrder(instrument, side_value, ticks, size, tif, client_order_id)

    def place_json(self, body: Mapping[str, object]) -> PlaceOrder:
        """`POST /orders`'s body (already known to hold only declared fields)."""
        errors = _Errors()
        for name in ("side", "quantity"):
            if name not in body:
                errors.add(name, "is required")
        errors.check()
        instrument = self._instrument(body.get("symbol"), errors)
        market = errors.take(lambda: parse_order_type(body.get("type")), False)
        tif = errors.take(lambda: parse_time_in_force(body.get("time_in_force")), None)
        return self.place(
            side=body.get("side"),
            quantity=body.get("quantity"),
            price=body.get("price"),
            client_order_id=body.get("client_order_id"),
            market=market,
            tif=tif,
            errors=errors,
            instrument=instrument,
        )

    def modify(
        self, order_id: object, price: object = None, quantity: object = None
    ) -> ModifyOrder:
        """Change the price and/or the total quantity (at least one)."""
        errors = _Errors()
        oid = errors.take(lambda: parse_order_id(order_id), 0)
        instrument = self.settings.instrument_of(oid)
        if price is None and quantity is None:
            errors.add("price", "price or quantity is required")
        ticks = new_quantity = 0
        if price is not None:
            grid = instrument or self.settings.default_instrument
            ticks = errors.take(lambda: parse_price(price, grid.tick_size, grid.max_price), 0)
        if quantity is not None:
            new_quantity = errors.take(
                lambda: parse_quantity(quantity, self.settings.max_quantity), 0
            )
        errors.check()
        return ModifyOrder(oid, instrument, ticks, new_quantity)

    def cancel(self, order_id: object) -> CancelOrder:
        oid = self._order_id(order_id)
        return CancelOrder(oid, self.settings.instrument_of(oid))

    def get_order(self, order_id: object) -> GetOrder:
        oid = self._order_id(order_id)
        return GetOrder(oid, self.settings.instrument_of(oid))

    @staticmethod
    def _order_id(order_id: object) -> int:
        try:
            return parse_order_id(order_id)
        except InputError as exc:
            raise InvalidInput([exc]) from None

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
        errors = _Errors()
        side_value = (
            None if side is None else errors.take(lambda: parse_side(_number_text(side)), None)
        )
        alive_value = (
            None if alive is None else errors.take(lambda: parse_flag(alive, "alive"), None)
        )
        window = self._window(errors, limit, after, before, since, until, order, last)
        instrument = None if symbol is None else self._instrument(symbol, errors)
        errors.check()
        assert window is not None
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
        errors = _Errors()
        window = self._window(errors, limit, after, before, since, until, order, last)
        instrument = None if symbol is None else self._instrument(symbol, errors)
        errors.check()
        assert window is not None
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
        errors = _Errors()
        oid = errors.take(lambda: parse_order_id(order_id), 0)
        window = self._window(errors, limit, after, before, since, until, order, False)
        errors.check()
        assert window is not None
        trades = ListTrades(window.limit, window.after, None, window, oid)
        return OrderTrades(GetOrder(oid, self.settings.instrument_of(oid)), trades)

    def _window(
        self,
        errors: _Errors,
        limit: object,
        after: object,
        before: object,
        since: object,
        until: object,
        order: object,
        last: bool,
    ) -> Window | None:
        """The page of a list; which end it counts from: Relay's `last` (GraphQL), else the
        cursor given (REST: `before` alone pages back from it, `after` alone forward), else
        the order (`desc`: the newest page)."""
        size_field = "last" if last else "limit"
        size = errors.take(
            lambda: _limit(_number_text(DEFAULT_PAGE if limit is None else limit), size_field), 1
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
        if errors.found:
            return None
        if last:
            from_end = True
        elif (before is None) != (after is None):
            from_end = before is not None
        else:
            from_end = newest_first
        return Window(
            size,
            low,
            high,
            None if first_us is None else first_us * 1000,
            None if last_us is None else (last_us + 1) * 1000,  # inclusive to the microsecond
            from_end,
            newest_first,
        )

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
        errors = _Errors()
        seconds = 0
        if interval is None:
            errors.add("interval", "is required: one of " + ", ".join(CANDLE_INTERVALS))
        else:
            seconds = errors.take(lambda: parse_interval(interval), 0)
        instrument = self._instrument(symbol, errors)
        size = errors.take(lambda: _limit(_number_text(CANDLE_PAGE if limit is None else limit)), 1)
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
        errors = _Errors()
        instrument = self._instrument(symbol, errors)
        levels = 0
        if isinstance(depth, int) and not isinstance(depth, bool) and 1 <= depth <= MAX_DEPTH:
            levels = depth
        else:
            errors.add("depth", f"must be an integer in 1..{MAX_DEPTH}")
        errors.check()
        assert instrument is not None  # an unknown symbol was refused above
        return BookQuery(instrument, levels)


def _limit(limit: object, field: str = "limit") -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InputError(field, f"must be an integer in 1..{MAX_PAGE}")
    return limit
