"""Parsing of client prices and quantities into the engine's integer units.

All validation happens here, at the edge, so the engine core can trust its inputs and keep
its hot path free of checks. Prices go through `Decimal` built from the shortest repr of a
float (so 101.1 means 101.1, not its binary neighbour) and must be an exact multiple of
the tick.
"""

from __future__ import annotations

import functools
import math
import re
from decimal import Decimal, DecimalException, Inexact, Rounded, localcontext
from typing import Any

# Plain decimal notation only: no underscores, NaN or Infinity spelled out.
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")


class InputError(ValueError):
    """Bad client input; `field` names what was wrong so the API can say so."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _to_decimal(value: Any, field: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise InputError(field, "must be a number or a decimal string")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(field, "must be a finite number")
        return Decimal(repr(value))
    if isinstance(value, Decimal):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lower().lstrip("+-") in ("nan", "snan", "inf", "infinity"):
            raise InputError(field, "must be a finite number")
        if len(text) > 40 or not _DECIMAL_TEXT.fullmatch(text):
            raise InputError(field, "must be a decimal string such as '101.25'")
        return Decimal(text)
    raise InputError(field, "must be a number or a decimal string")


@functools.cache  # one entry per instrument's tick
def _ticks_per_unit(tick: Decimal) -> int:
    """How many ticks make 1, when that is a whole number (0.01 -> 100); else 0."""
    if tick <= 0 or tick > 1:
        return 0
    units = 1 / tick
    return int(units) if units == units.to_integral_value() and units * tick == 1 else 0


def parse_price(value: Any, tick: Decimal, max_price: Decimal, field: str = "price") -> int:
    """Client price (JSON number, decimal string or Decimal) -> integer ticks."""
    if type(value) is int and 0 < value <= max_price:
        # A whole price on a grid whose ticks divide 1 is always on it: no Decimal needed.
        per_unit = _ticks_per_unit(tick)
        if per_unit:
            return value * per_unit
    price = _to_decimal(value, field)
    if not price.is_finite():
        raise InputError(field, "must be a finite number")
    if price <= 0:
        raise InputError(field, "must be greater than 0")
    if price > max_price:
        raise InputError(field, f"must not exceed {max_price}")
    # Exact arithmetic: any rounding or underflow means the price is not on the tick grid
    # (the default context would round a 30-digit price onto it).
    with localcontext() as ctx:
        ctx.prec = 60
        ctx.traps[Inexact] = ctx.traps[Rounded] = True
        try:
            ticks = price / tick
        except DecimalException:
            ticks = Decimal("0.5")
    if ticks != ticks.to_integral_value() or ticks < 1:
        raise InputError(field, f"must be a multiple of the tick size {tick}")
    return int(ticks)


def parse_quantity(value: Any, max_quantity: int, field: str = "quantity") -> int:
    """Client quantity -> int in 1..max_quantity. Floats, bools and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(field, "must be an integer")
    if value < 1:
        raise InputError(field, "must be at least 1")
    if value > max_quantity:
        raise InputError(field, f"must not exceed {max_quantity}")
    return value


def parse_side(value: Any, field: str = "side") -> int:
    if isinstance(value, bool) or value not in (1, -1) or not isinstance(value, int):
        raise InputError(field, "must be 1 (buy) or -1 (sell)")
    return int(value)


def ticks_to_decimal(ticks: int, tick: Decimal) -> Decimal:
    """Integer ticks -> price in the instrument's decimal units, normalised (101.5, not 101.50)."""
    value = ticks * tick
    return value.quantize(Decimal(1)) if value == value.to_integral_value() else value.normalize()
