"""A numeric edge matrix for price and quantity (and side) over REST (POST /orders,
PUT /orders/{id}) and GraphQL (placeOrder, modifyOrder), against the real stack.

Values travel as raw JSON text, so NaN, Infinity and 1e400 reach the server exactly as a bad
client would send them. Every case must be refused in exactly the expected way: over REST a
422 naming the field, or a 400 when the body is not JSON the server can read; over GraphQL a
typed rejection (`invalid_input`) naming only that field, or a GraphQL error that names it (the
variable path in the message, or the location of the literal in the query), or a 400 for an
unreadable body. Each GraphQL query is first sent with a good value and must succeed, so a
refusal is the value's doing, not a broken query's. And nothing may reach the engine: no
entry is appended to the Redis command stream (`commands`), and an order the request tried to
modify keeps its price and quantity.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.command_log import CommandLog
from tests.conftest import place
from tests.fuzz.conftest import JSON

pytestmark = pytest.mark.usefixtures("empty_book")

HUGE_INT = "1" + "0" * 5000  # beyond Python's 4300-digit int parsing limit

# (raw JSON value, expected REST status). 422 names the field; 400 is invalid_json.
PRICES: list[tuple[str, int]] = [
    ("NaN", 422),
    ("Infinity", 422),
    ("-Infinity", 422),
    ("-0", 422),
    ("-0.0", 422),
    ("0", 422),
    ("0.0", 422),
    ("-1", 422),
    ("-0.01", 422),
    ("-100.5", 422),
    ("1e400", 422),
    ("-1e400", 422),
    ("1e-400", 422),
    ("5e-324", 422),
    ("1e308", 422),
    ("0.001", 422),
    ("10.001", 422),
    ("10.005", 422),
    ("100.123456789", 422),
    ("1000000.01", 422),
    (str(10**30), 422),
    (str(2**63), 422),
    (str(2**64 + 1), 422),
    (HUGE_INT, 400),
    ('"abc"', 422),
    ('""', 422),
    ('" "', 422),
    ('"NaN"', 422),
    ('"Infinity"', 422),
    ('"-inf"', 422),
    ('"sNaN"', 422),
    ('"1e400"', 422),
    ('"1e-400"', 422),
    ('"-0"', 422),
    ('"0x10"', 422),
    ('"1_000"', 422),
    ('"1,5"', 422),
    ('"\\uff11\\uff10"', 422),  # fullwidth digits one, zero
    ('"10.001"', 422),
    ('"' + "1" * 41 + '"', 422),
    ("true", 422),
    ("false", 422),
    ("null", 422),
    ("[]", 422),
    ("[10]", 422),
    ("{}", 422),
    ('{"value": 10}', 422),
]
QUANTITIES: list[tuple[str, int]] = [
    ("NaN", 422),
    ("Infinity", 422),
    ("-Infinity", 422),
    ("-0", 422),
    ("-0.0", 422),
    ("0", 422),
    ("-1", 422),
    ("1e400", 422),
    ("1e-400", 422),
    ("1.5", 422),
    ("0.5", 422),
    ("1.0", 422),
    ("1e3", 422),
    ("1000000001", 422),
    (str(10**30), 422),
    (str(2**63), 422),
    (str(2**64 + 1), 422),
    (HUGE_INT, 400),
    ('"1"', 422),
    ('"abc"', 422),
    ("true", 422),
    ("false", 422),
    ("null", 422),
    ("[]", 422),
    ("[1]", 422),
    ("{}", 422),
]
SIDES: list[tuple[str, int]] = [
    ("NaN", 422),
    ("Infinity", 422),
    ("0", 422),
    ("2", 422),
    ("-2", 422),
    ("1.0", 422),
    ("-1.0", 422),
    ("1e400", 422),
    (str(10**30), 422),
    ('"1"', 422),
    ("true", 422),
    ("null", 422),
    ("[1]", 422),
    ("{}", 422),
]


def _ids(cases: list[tuple[str, int]]) -> list[str]:
    return [raw if len(raw) <= 24 else f"{raw[:10]}...({len(raw)} chars)" for raw, _ in cases]


def _raw_body(**fields: str) -> bytes:
    """A JSON object whose values are raw JSON text (NaN and 1e400 stay as written)."""
    return ("{" + ", ".join(f'"{k}": {v}' for k, v in fields.items()) + "}").encode()


def _assert_refused(response: httpx.Response, status: int, field: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    if status == 400:
        assert body["error"] == "invalid_json", body
    else:
        assert body["error"] == "invalid_request", body
        assert field in [e["field"] for e in body["errors"]], body


@pytest.fixture
def resting(http: httpx.Client) -> str:
    """A resting sell the modify cases aim at (placed after the book was emptied)."""
    return place(http, -1, "500.5", 10)


def _assert_unchanged(http: httpx.Client, order_id: str) -> None:
    order = http.get(f"/orders/{order_id}").json()
    assert (order["order_price"], order["order_quantity"], order["order_alive"]) == (
        500.5,
        10,
        True,
    ), order


# -- REST -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "status"), PRICES, ids=_ids(PRICES))
def test_rest_place_price(http: httpx.Client, commands: CommandLog, raw: str, status: int) -> None:
    before = commands.mark()
    response = http.post(
        "/orders", content=_raw_body(side="1", price=raw, quantity="1"), headers=JSON
    )
    _assert_refused(response, status, "price")
    assert commands.since(before) == 0


@pytest.mark.parametrize(("raw", "status"), QUANTITIES, ids=_ids(QUANTITIES))
def test_rest_place_quantity(
    http: httpx.Client, commands: CommandLog, raw: str, status: int
) -> None:
    before = commands.mark()
    response = http.post(
        "/orders", content=_raw_body(side="1", price="10", quantity=raw), headers=JSON
    )
    _assert_refused(response, status, "quantity")
    assert commands.since(before) == 0


@pytest.mark.parametrize(("raw", "status"), SIDES, ids=_ids(SIDES))
def test_rest_place_side(http: httpx.Client, commands: CommandLog, raw: str, status: int) -> None:
    before = commands.mark()
    response = http.post(
        "/orders", content=_raw_body(side=raw, price="10", quantity="1"), headers=JSON
    )
    _assert_refused(response, status, "side")
    assert commands.since(before) == 0


@pytest.mark.parametrize(("raw", "status"), PRICES, ids=_ids(PRICES))
def test_rest_modify_price(
    http: httpx.Client, commands: CommandLog, resting: str, raw: str, status: int
) -> None:
    before = commands.mark()
    response = http.put(f"/orders/{resting}", content=_raw_body(price=raw), headers=JSON)
    _assert_refused(response, status, "price")
    assert commands.since(before) == 0
    _assert_unchanged(http, resting)


@pytest.mark.parametrize(("raw", "status"), QUANTITIES, ids=_ids(QUANTITIES))
def test_rest_modify_quantity(
    http: httpx.Client, commands: CommandLog, resting: str, raw: str, status: int
) -> None:
    before = commands.mark()
    response = http.put(f"/orders/{resting}", content=_raw_body(quantity=raw), headers=JSON)
    # {"quantity": null} changes nothing, which the API reports as "price or quantity is required"
    _assert_refused(response, status, "price" if raw == "null" else "quantity")
    assert commands.since(before) == 0
    _assert_unchanged(http, resting)


# -- GraphQL ----------------------------------------------------------------------------------

PLACE = """mutation Place($input: PlaceOrderInput!) {
  placeOrder(input: $input) {
    __typename
    ... on OrderPlaced { orderId }
    ... on OrderRejected { reason errors { field message } }
  }
}"""
MODIFY = """mutation Modify($id: ID!, $price: Price, $quantity: Int) {
  modifyOrder(id: $id, price: $price, quantity: $quantity) {
    success reason errors { field message }
  }
}"""
# The outcomes a GraphQL client can see.
REJECTED = "typed rejection"  # the resolver ran: OrderRejected / success false, invalid_input
ERROR = "GraphQL error"  # refused before the resolver: data null, one error naming the field
UNREADABLE = "400"  # the body is not JSON the server can read

# `Price` takes any JSON value to the shared parser, so every price is a typed rejection.
# `Int` (quantity, side) lets only 32-bit integers through to our parser; graphql-core
# refuses every other value itself.
INT_REACHING_THE_PARSER = {"-0", "0", "-1", "2", "-2", "1000000001"}


def _price_outcome(raw: str) -> str:
    return UNREADABLE if raw == HUGE_INT else REJECTED


def _int_outcome(raw: str) -> str:
    if raw == HUGE_INT:
        return UNREADABLE
    return REJECTED if raw in INT_REACHING_THE_PARSER else ERROR


def _graphql(http: httpx.Client, query: str, raw_variables: str | None = None) -> httpx.Response:
    body = '{"query": ' + json.dumps(query)
    if raw_variables is not None:
        body += ', "variables": ' + raw_variables
    return http.post("/graphql", content=(body + "}").encode(), headers=JSON)


def _result(response: httpx.Response, mutation: str) -> dict[str, Any]:
    assert response.status_code == 200, (response.status_code, response.text)
    payload: dict[str, Any] = response.json()
    assert "errors" not in payload, payload
    result: dict[str, Any] = payload["data"][mutation]
    return result


def _assert_accepted(response: httpx.Response, mutation: str) -> None:
    """The good value: the query itself is valid and does what it says."""
    result = _result(response, mutation)
    if mutation == "placeOrder":
        assert result["__typename"] == "OrderPlaced", result
    else:
        assert result == {"success": True, "reason": None, "errors": []}, result


def _assert_graphql_refused(
    response: httpx.Response,
    mutation: str,
    field: str,
    outcome: str,
    names_field: Callable[[dict[str, Any]], bool],
) -> None:
    """Refused exactly as `outcome` says, naming `field`; `names_field` judges a GraphQL
    error (its message or its location)."""
    if outcome == UNREADABLE:
        assert response.status_code == 400, (response.status_code, response.text)
        return
    if outcome == REJECTED:
        result = _result(response, mutation)
        if mutation == "placeOrder":
            assert result["__typename"] == "OrderRejected", result
            assert result["reason"] == "invalid_input", result
        else:
            assert (result["success"], result["reason"]) == (False, "invalid_input"), result
        assert [e["field"] for e in result["errors"]] == [field], result
        assert all(e["message"] for e in result["errors"]), result
        return
    assert response.status_code == 200, (response.status_code, response.text)
    payload = response.json()
    assert payload.get("data") is None, payload
    (error,) = payload["errors"]
    assert error["message"] != "Unexpected error.", f"an internal error (masked): {error}"
    assert names_field(error), f"the error does not name {field}: {error}"


def _names_input_field(field: str) -> Callable[[dict[str, Any]], bool]:
    """An error about `$input` that gives the path to `field` ("at 'input.quantity'" or
    "at .quantity:")."""
    path = re.compile(rf"\bat '?(?:input)?\.{field}\b")
    return lambda error: "'$input'" in error["message"] and bool(path.search(error["message"]))


def _names_variable(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda error: f"'${name}'" in error["message"]


def _located_at(query: str, argument: str) -> Callable[[dict[str, Any]], bool]:
    """An error located at `argument`'s value in the query text (GraphQL's own way of
    naming the field a literal was written for)."""
    index = query.index(argument) + len(argument)
    line = query.count("\n", 0, index) + 1
    column = index - (query.rfind("\n", 0, index) + 1) + 1
    return lambda error: error.get("locations") == [{"line": line, "column": column}]


def _cases(
    cases: list[tuple[str, int]], xfails: dict[str, str] | None = None
) -> list[pytest.ParameterSet]:
    xfails = xfails or {}
    return [
        pytest.param(raw, id=name, marks=[pytest.mark.xfail(strict=True, reason=xfails[raw])])
        if raw in xfails
        else pytest.param(raw, id=name)
        for (raw, _), name in zip(cases, _ids(cases), strict=True)
    ]


def _place_variables(price: str = '"10"', quantity: str = "1", side: str = "1") -> str:
    return f'{{"input": {{"side": {side}, "price": {price}, "quantity": {quantity}}}}}'


@pytest.mark.parametrize("raw", _cases(PRICES))
def test_graphql_place_price_variable(http: httpx.Client, commands: CommandLog, raw: str) -> None:
    _assert_accepted(_graphql(http, PLACE, _place_variables(price='"10"')), "placeOrder")
    before = commands.mark()
    response = _graphql(http, PLACE, _place_variables(price=raw))
    outcome = _price_outcome(raw)
    _assert_graphql_refused(response, "placeOrder", "price", outcome, _names_input_field("price"))
    assert commands.since(before) == 0


@pytest.mark.parametrize("raw", _cases(QUANTITIES))
def test_graphql_place_quantity_variable(
    http: httpx.Client, commands: CommandLog, raw: str
) -> None:
    _assert_accepted(_graphql(http, PLACE, _place_variables(quantity="1")), "placeOrder")
    before = commands.mark()
    response = _graphql(http, PLACE, _place_variables(quantity=raw))
    outcome = ERROR if raw == "null" else _int_outcome(raw)  # quantity is Int!
    names = _names_input_field("quantity")
    _assert_graphql_refused(response, "placeOrder", "quantity", outcome, names)
    assert commands.since(before) == 0


@pytest.mark.parametrize("raw", _cases(SIDES))
def test_graphql_place_side_variable(http: httpx.Client, commands: CommandLog, raw: str) -> None:
    _assert_accepted(_graphql(http, PLACE, _place_variables(side="1")), "placeOrder")
    before = commands.mark()
    response = _graphql(http, PLACE, _place_variables(side=raw))
    outcome = ERROR if raw == "null" else _int_outcome(raw)  # side is Int!
    _assert_graphql_refused(response, "placeOrder", "side", outcome, _names_input_field("side"))
    assert commands.since(before) == 0


@pytest.mark.parametrize("raw", _cases(PRICES))
def test_graphql_modify_price_variable(
    http: httpx.Client, commands: CommandLog, resting: str, raw: str
) -> None:
    # The good value is the order's own price: a successful modify that changes nothing.
    _assert_accepted(
        _graphql(http, MODIFY, f'{{"id": "{resting}", "price": "500.5"}}'), "modifyOrder"
    )
    before = commands.mark()
    response = _graphql(http, MODIFY, f'{{"id": "{resting}", "price": {raw}}}')
    # {"price": null} changes nothing, which the API reports as "price or quantity is required"
    outcome = _price_outcome(raw)
    _assert_graphql_refused(response, "modifyOrder", "price", outcome, _names_variable("price"))
    assert commands.since(before) == 0
    _assert_unchanged(http, resting)


@pytest.mark.parametrize("raw", _cases(QUANTITIES))
def test_graphql_modify_quantity_variable(
    http: httpx.Client, commands: CommandLog, resting: str, raw: str
) -> None:
    _assert_accepted(
        _graphql(http, MODIFY, f'{{"id": "{resting}", "quantity": 10}}'), "modifyOrder"
    )
    before = commands.mark()
    response = _graphql(http, MODIFY, f'{{"id": "{resting}", "quantity": {raw}}}')
    # $quantity is optional: null reaches the resolver as "nothing to change", as over REST
    field, outcome = ("price", REJECTED) if raw == "null" else ("quantity", _int_outcome(raw))
    names = _names_variable("quantity")
    _assert_graphql_refused(response, "modifyOrder", field, outcome, names)
    assert commands.since(before) == 0
    _assert_unchanged(http, resting)


# GraphQL literals written in the query text (the scalar's parse_literal path, not variables).
PRICE_LITERALS = [
    "NaN",
    "Infinity",
    '"NaN"',
    '"-Infinity"',
    "1e400",
    "-1e400",
    "1e-400",
    "-0",
    "0",
    "-0.0",
    "-1",
    "10.001",
    str(10**30),
    HUGE_INT,
    '"abc"',
    '""',
    '"1e400"',
    "true",
    "null",
    "[10]",
    "{value: 10}",
]
QUANTITY_LITERALS = [
    "NaN",
    "1e400",
    "-0",
    "0",
    "-1",
    "1.5",
    "1.0",
    str(2**31),
    str(10**30),
    HUGE_INT,
    '"1"',
    "true",
    "null",
    "[1]",
    "{value: 1}",
]
QUANTITY_LITERALS_REACHING_THE_PARSER = {"-0", "0", "-1"}


# graphql-core reports these without naming the field: without a location, or as an
# internal error (masked).
def _literal_cases(
    values: list[str], xfails: dict[str, str] | None = None
) -> list[pytest.ParameterSet]:
    return _cases([(v, 0) for v in values], xfails)


def _place_literal(price: str = '"10"', quantity: str = "1") -> tuple[str, str]:
    """placeOrder with its input written in the query; returns (query, the quantity's or the
    price's argument text up to its value)."""
    text = f"input: {{side: 1, price: {price}, quantity: {quantity}}}"
    return PLACE.replace("($input: PlaceOrderInput!)", "").replace("input: $input", text), text


def _modify_literal(resting: str, argument: str) -> str:
    return (
        f'mutation {{ modifyOrder(id: "{resting}", {argument}) '
        "{ success reason errors { field message } } }"
    )


@pytest.mark.parametrize("literal", _literal_cases(PRICE_LITERALS))
def test_graphql_place_price_literal(
    http: httpx.Client, commands: CommandLog, literal: str
) -> None:
    _assert_accepted(_graphql(http, _place_literal(price='"10"')[0]), "placeOrder")
    before = commands.mark()
    query, _ = _place_literal(price=literal)
    _assert_graphql_refused(
        _graphql(http, query), "placeOrder", "price", REJECTED, _located_at(query, "price: ")
    )
    assert commands.since(before) == 0


@pytest.mark.parametrize("literal", _literal_cases(QUANTITY_LITERALS))
def test_graphql_place_quantity_literal(
    http: httpx.Client, commands: CommandLog, literal: str
) -> None:
    _assert_accepted(_graphql(http, _place_literal(quantity="1")[0]), "placeOrder")
    before = commands.mark()
    query, _ = _place_literal(quantity=literal)
    outcome = REJECTED if literal in QUANTITY_LITERALS_REACHING_THE_PARSER else ERROR
    names = _located_at(query, "quantity: ")
    _assert_graphql_refused(_graphql(http, query), "placeOrder", "quantity", outcome, names)
    assert commands.since(before) == 0


@pytest.mark.parametrize("literal", _literal_cases(PRICE_LITERALS))
def test_graphql_modify_price_literal(
    http: httpx.Client, commands: CommandLog, resting: str, literal: str
) -> None:
    _assert_accepted(_graphql(http, _modify_literal(resting, 'price: "500.5"')), "modifyOrder")
    before = commands.mark()
    query = _modify_literal(resting, f"price: {literal}")
    field = "price"  # null too: "price or quantity is required" names price
    names = _located_at(query, "price: ")
    _assert_graphql_refused(_graphql(http, query), "modifyOrder", field, REJECTED, names)
    assert commands.since(before) == 0
    _assert_unchanged(http, resting)


@pytest.mark.parametrize("literal", _literal_cases(QUANTITY_LITERALS))
def test_graphql_modify_quantity_literal(
    http: httpx.Client, commands: CommandLog, resting: str, literal: str
) -> None:
    _assert_accepted(_graphql(http, _modify_literal(resting, "quantity: 10")), "modifyOrder")
    before = commands.mark()
    query = _modify_literal(resting, f"quantity: {literal}")
    if literal == "null":  # an optional argument: "price or quantity is required"
        field, outcome = "price", REJECTED
    else:
        field = "quantity"
        outcome = REJECTED if literal in QUANTITY_LITERALS_REACHING_THE_PARSER else ERROR
    names = _located_at(query, "quantity: ")
    _assert_graphql_refused(_graphql(http, query), "modifyOrder", field, outcome, names)
    assert commands.since(before) == 0
    _assert_unchanged(http, resting)
