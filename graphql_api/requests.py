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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec

from shared.commands import GTC, IOC, MARKET
from shared.config import Instrument
from shared.prices import parse_price, parse_quantity, parse_side

from .parsing import (
    CANDLE_INTERVAL_NAMES,
    CANDLE_INTERVALS,
    CANDLE_PAGE,
    DEFAULT_PAGE,
    MAX_CLIENT_ORDER_ID,
    MAX_DEPTH,
    MAX_PAGE,
    ORDER_ID_PATTERN,
    ORDERS,
    TIME_IN_FORCE_NAMES,
    FieldErrors,
    InvalidInput,
    order_id_of,
    parse_cursor,
    parse_order_id,
    parse_order_type,
    parse_time_in_force,
)
from .queries import (
    BookQuery,
    CandleQuery,
    GetOrder,
    ListOrders,
    ListTrades,
    OrderTrades,
    QueryRequests,
    Window,
)

# The names other modules import from here: the read requests live in `queries.py`, the
# parsers in `parsing.py`.
__all__ = [
    "CANDLE_INTERVALS",
    "CANDLE_INTERVAL_NAMES",
    "CANDLE_PAGE",
    "DEFAULT_PAGE",
    "MAX_DEPTH",
    "MAX_PAGE",
    "ORDERS",
    "ORDER_ID_PATTERN",
    "TIME_IN_FORCE_NAMES",
    "BookQuery",
    "CancelOrder",
    "CandleQuery",
    "GetOrder",
    "InvalidInput",
    "ListOrders",
    "ListTrades",
    "ModifyOrder",
    "ModifyOrderBody",
    "OrderTrades",
    "PlaceOrder",
    "PlaceOrderBody",
    "Requests",
    "Window",
    "parse_cursor",
    "parse_order_id",
]


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


class Requests(QueryRequests):
    """Builds typed requests (orders here, reads in `QueryRequests`) for one deployment's
    instruments and limits."""

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
        errors: FieldErrors | None = None,
        instrument: Instrument | None = None,
    ) -> PlaceOrder:
        """A place from typed values (GraphQL), or from `place_json`'s first pass (which
        passes the instrument it resolved and the errors it found)."""
        if errors is None:
            errors = FieldErrors()
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
        errors = FieldErrors()
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
        errors = FieldErrors()
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
        oid = order_id_of(order_id)
        return CancelOrder(oid, self.settings.instrument_of(oid))
