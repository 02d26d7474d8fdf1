"""Edge validation of client prices, quantities and sides (`shared.prices`)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.prices import InputError, parse_price, parse_quantity, parse_side, ticks_to_decimal

TICK = Decimal("0.01")
MAX_PRICE = Decimal("1000000")
MAX_QTY = 1_000_000_000


def price(value: object, tick: Decimal = TICK, max_price: Decimal = MAX_PRICE) -> int:
    return parse_price(value, tick, max_price)


# -- parse_price: accepted ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ticks"),
    [
        (1, 100),
        (101, 10100),
        (1_000_000, 100_000_000),  # exactly the maximum is allowed
        (101.5, 10150),
        (101.1, 10110),  # shortest repr: 101.1, not its binary neighbour
        (0.01, 1),  # one tick
        (0.1, 10),
        (0.3, 30),
        (1.15, 115),  # binary 1.149999... would not be a tick multiple
        ("101.25", 10125),
        ("101.50", 10150),
        ("0.01", 1),
        ("  42.1  ", 4210),  # surrounding whitespace is stripped
        ("1e2", 10000),
        ("1000000.00", 100_000_000),
        (Decimal("99.99"), 9999),
        (Decimal("5"), 500),
    ],
)
def test_parse_price_valid(value: object, ticks: int) -> None:
    result = price(value)
    assert result == ticks
    assert type(result) is int


def test_parse_price_float_sum_uses_shortest_repr() -> None:
    # 0.1 + 0.2 == 0.30000000000000004: its shortest repr has 17 decimals, not a tick multiple
    with pytest.raises(InputError) as info:
        price(0.1 + 0.2)
    assert info.value.field == "price"
    for value in (0.1 * 3, 1.1 + 2.2, 0.7 + 0.1):  # 0.30000000000000004, 3.3000000000000003, ...
        assert len(repr(value)) > 10
        with pytest.raises(InputError):
            price(value)
    # floats whose shortest repr is a tick multiple are taken at their printed value
    assert price(0.5 + 0.25) == 75
    assert price(100.0 + 1.5) == 10150
    assert price(1.1 + 1.1) == 220  # 2.2 exactly in shortest repr


def test_parse_price_other_tick_sizes() -> None:
    assert parse_price(101.5, Decimal("0.5"), MAX_PRICE) == 203
    assert parse_price("7", Decimal("1"), MAX_PRICE) == 7
    assert parse_price("0.0025", Decimal("0.0005"), MAX_PRICE) == 5
    with pytest.raises(InputError):
        parse_price(101.25, Decimal("0.5"), MAX_PRICE)
    with pytest.raises(InputError):
        parse_price("7.5", Decimal("1"), MAX_PRICE)


# -- parse_price: refused ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        float("-inf"),
        1e400,  # overflows to inf
        -1e400,
        1e-400,  # underflows to 0.0
        0,
        0.0,
        -0.0,
        -1,
        -0.01,
        -101.5,
        "0",
        "0.00",
        "-0",
        "-0.0",
        "-101.5",
        "NaN",
        "nan",
        "sNaN",
        "inf",
        "-inf",
        "Infinity",
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("-Infinity"),
        Decimal("0"),
        Decimal("-0"),
        Decimal("-5"),
        101.005,  # more decimals than the tick
        2.675,
        0.001,
        0.005,
        "101.005",
        "101.001",
        "0.001",
        "0.009",
        Decimal("101.005"),
        1_000_000.01,  # above max
        1_000_001,
        1e7,
        1e300,
        "1000000.01",
        "1e7",
        "9" * 40,
        Decimal("1000000.01"),
        True,  # bools are not numbers here
        False,
        None,
        [],
        [101],
        {},
        {"price": 101},
        (101,),
        b"101",
        object(),
        "",
        "   ",
        "abc",
        "101,5",
        "1 01",
        "0x10",
        "1" * 41,  # longer than the 40 characters accepted
        "1/2",
    ],
)
def test_parse_price_invalid(value: object) -> None:
    with pytest.raises(InputError) as info:
        price(value)
    assert info.value.field == "price"
    assert isinstance(info.value, ValueError)
    assert info.value.message
    assert str(info.value).startswith("price: ")


def test_parse_price_custom_field_name() -> None:
    with pytest.raises(InputError) as info:
        parse_price("abc", TICK, MAX_PRICE, field="new_price")
    assert info.value.field == "new_price"
    assert str(info.value).startswith("new_price: ")


def test_parse_price_messages_say_what_is_wrong() -> None:
    cases = {
        "nan": "finite",
        "-1": "greater than 0",
        "0": "greater than 0",
        "1000000.01": "exceed",
        "101.005": "tick",
        "abc": "decimal string",
    }
    for value, words in cases.items():
        with pytest.raises(InputError) as info:
            price(value)
        assert words in info.value.message, (value, info.value.message)
    with pytest.raises(InputError) as info:
        price(float("inf"))
    assert "finite" in info.value.message
    with pytest.raises(InputError) as info:
        price(None)
    assert "number" in info.value.message


@pytest.mark.parametrize(
    "value",
    [
        "1.00000000000000000000000000001",  # accepted as 100 ticks (1.00)
        "999999.999999999999999999999999",  # accepted as 100000000 ticks (1000000.00)
    ],
)
def test_parse_price_refuses_sub_tick_digits_beyond_decimal_precision(value: str) -> None:
    with pytest.raises(InputError):
        price(value)


@pytest.mark.parametrize("value", ["1e-2000000", "1e-1000030", Decimal("1e-2000000")])
def test_parse_price_refuses_underflowing_exponents(value: object) -> None:
    with pytest.raises(InputError):
        price(value)


def test_parse_price_refuses_underscores() -> None:
    with pytest.raises(InputError):
        price("1_000")


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=100_000_000))
def test_ticks_round_trip_through_decimal_string_and_float(ticks: int) -> None:
    text = str(ticks_to_decimal(ticks, TICK))
    assert price(text) == ticks
    assert price(Decimal(text)) == ticks
    assert price(float(text)) == ticks  # shortest repr of the float is the decimal text


# -- parse_quantity ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 2, 10, 999, MAX_QTY])
def test_parse_quantity_valid(value: int) -> None:
    result = parse_quantity(value, MAX_QTY)
    assert result == value
    assert type(result) is int


@pytest.mark.parametrize(
    "value",
    [
        10.0,
        1.0,
        10.5,
        float("nan"),
        float("inf"),
        True,
        False,
        "10",
        "1",
        "",
        "abc",
        None,
        [],
        [10],
        {},
        Decimal("10"),
        0,
        -0,
        -1,
        -10,
        MAX_QTY + 1,
        10**30,
    ],
)
def test_parse_quantity_invalid(value: object) -> None:
    with pytest.raises(InputError) as info:
        parse_quantity(value, MAX_QTY)
    assert info.value.field == "quantity"


def test_parse_quantity_custom_field_and_limit() -> None:
    assert parse_quantity(5, 5) == 5
    with pytest.raises(InputError) as info:
        parse_quantity(6, 5, field="qty")
    assert info.value.field == "qty"
    assert "exceed" in info.value.message


# -- parse_side --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, -1])
def test_parse_side_valid(value: int) -> None:
    result = parse_side(value)
    assert result == value
    assert type(result) is int


@pytest.mark.parametrize(
    "value",
    [0, 2, -2, True, False, 1.0, -1.0, "1", "-1", "buy", None, [], {}, Decimal(1)],
)
def test_parse_side_invalid(value: object) -> None:
    with pytest.raises(InputError) as info:
        parse_side(value)
    assert info.value.field == "side"


def test_parse_side_custom_field() -> None:
    with pytest.raises(InputError) as info:
        parse_side(0, field="direction")
    assert info.value.field == "direction"


# -- ticks_to_decimal --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ticks", "tick", "text"),
    [
        (10150, "0.01", "101.5"),  # normalised: no trailing zero
        (10125, "0.01", "101.25"),
        (10000, "0.01", "100"),  # an integral price prints without decimals or exponent
        (100_000_000, "0.01", "1000000"),
        (1, "0.01", "0.01"),
        (10, "0.01", "0.1"),
        (1000, "0.1", "100"),
        (3, "0.5", "1.5"),
        (4, "0.5", "2"),
        (7, "1", "7"),
        (5, "0.0005", "0.0025"),
    ],
)
def test_ticks_to_decimal(ticks: int, tick: str, text: str) -> None:
    value = ticks_to_decimal(ticks, Decimal(tick))
    assert isinstance(value, Decimal)
    assert str(value) == text
    assert value == ticks * Decimal(tick)
