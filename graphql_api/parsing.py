"""Parsing of client input shared by every typed request: the error collector that names
every bad field at once, the parsers of ids, cursors, times and flags, and the instrument
lookup. `requests.py` (orders) and `queries.py` (reads) build on it."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from shared.commands import FOK, GTC, IOC
from shared.config import Instrument, Settings
from shared.prices import InputError

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


class FieldErrors:
    """Collects every bad field of one request before refusing it."""

    def __init__(self) -> None:
        self.found: list[InputError] = []

    def take(self, parse: Callable[[], T], default: T) -> T:
        try:
            return parse()
        except InputError as exc:
            # Kept without its traceback, nor the error it was raised while handling (its
            # own traceback's frames lead back here): either holds this frame, which holds
            # `self`, which holds the error, a cycle per refused field that only the cyclic
            # collector frees (10-20 objects, a collection every few hundred refusals).
            exc.__context__ = None
            self.found.append(exc.with_traceback(None))
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


def number_text(value: object) -> object:
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


def parse_limit(limit: object, field: str = "limit") -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InputError(field, f"must be an integer in 1..{MAX_PAGE}")
    return limit


def order_id_of(value: object) -> int:
    """An order id on its own (a path parameter, say): refused as a request of one field."""
    try:
        return parse_order_id(value)
    except InputError as exc:
        raise InvalidInput([exc]) from None


class InstrumentLookup:
    """The instruments of one deployment, as clients name them."""

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

    def _instrument(self, symbol: object, errors: FieldErrors) -> Instrument | None:
        try:
            return self.instrument(symbol)
        except InvalidInput as exc:
            errors.found.extend(exc.errors)
            return None
