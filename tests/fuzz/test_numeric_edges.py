"""A numeric edge matrix for price and quantity (and side) over REST (POST /orders,
PUT /orders/{id}) and GraphQL (placeOrder, modifyOrder), against the real stack.

Values travel as raw JSON text, so NaN, Infinity and 1e400 reach the server exactly as a bad
client would send them. Every case must be refused: a 4xx over REST (422 naming the field, or
400 when the body is not JSON the server can read), a typed rejection or a GraphQL error over
GraphQL; never a 5xx. And nothing may reach the engine: no entry is appended to the Redis
command stream (`commands`, see conftest), and an order the request tried to modify keeps its
price and quantity.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import place
from tests.fuzz.conftest import JSON, CommandLog

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


def _graphql(http: httpx.Client, query: str, raw_variables: str | None = None) -> httpx.Response:
    body = '{"query": ' + json.dumps(query)
    if raw_variables is not None:
        body += ', "variables": ' + raw_variables
    return http.post("/graphql", content=(body + "}").encode(), headers=JSON)


def _assert_graphql_refused(response: httpx.Response, mutation: str, field: str) -> None:
    """Refused means a typed rejection naming the field, or a GraphQL error and no result."""
    assert response.status_code < 500, (response.status_code, response.text)
    if response.status_code >= 400:  # refused before GraphQL ran (e.g. an unreadable body)
        return
    payload: dict[str, Any] = response.json()
    result = (payload.get("data") or {}).get(mutation)
    if result is None:
        assert payload.get("errors"), payload
        return
    if mutation == "placeOrder":
        assert result["__typename"] == "OrderRejected", payload
        assert result["reason"] == "invalid_input", payload
    else:
        assert (result["success"], result["reason"]) == (False, "invalid_input"), payload
    assert field in [e["field"] for e in result["errors"]], payload


def _graphql_cases(cases: list[tuple[str, int]], xfails: dict[str, str]) -> list[Any]:
    return [
        pytest.param(raw, id=name, marks=[pytest.mark.xfail(strict=True, reason=xfails[raw])])
        if raw in xfails
        else pytest.param(raw, id=name)
        for (raw, _), name in zip(cases, _ids(cases), strict=True)
    ]


@pytest.mark.parametrize("raw", _graphql_cases(PRICES, {}))
def test_graphql_place_price_variable(http: httpx.Client, commands: CommandLog, raw: str) -> None:
    before = commands.mark()
    variables = '{"input": {"side": 1, "quantity": 1, "price": ' + raw + "}}"
    _assert_graphql_refused(_graphql(http, PLACE, variables), "placeOrder", "price")
    assert commands.since(before) == 0


@pytest.mark.parametrize(
    "raw",
    _graphql_cases(QUANTITIES, {}),
)
def test_graphql_place_quantity_variable(
    http: httpx.Client, commands: CommandLog, raw: str
) -> None:
    before = commands.mark()
    variables = '{"input": {"side": 1, "price": "10", "quantity": ' + raw + "}}"
    _assert_graphql_refused(_graphql(http, PLACE, variables), "placeOrder", "quantity")
    assert commands.since(before) == 0


@pytest.mark.parametrize("raw", _graphql_cases(SIDES, {}))
def test_graphql_place_side_variable(http: httpx.Client, commands: CommandLog, raw: str) -> None:
    before = commands.mark()
    variables = '{"input": {"price": "10", "quantity": 1, "side": ' + raw + "}}"
    _assert_graphql_refused(_graphql(http, PLACE, variables), "placeOrder", "side")
    assert commands.since(before) == 0


@pytest.mark.parametrize("raw", _graphql_cases(PRICES, {}))
def test_graphql_modify_price_variable(
    http: httpx.Client, commands: CommandLog, resting: str, raw: str
) -> None:
    before = commands.mark()
    variables = f'{{"id": "{resting}", "price": {raw}}}'
    _assert_graphql_refused(_graphql(http, MODIFY, variables), "modifyOrder", "price")
    assert commands.since(before) == 0
    _assert_unchanged(http, resting)


@pytest.mark.parametrize(
    "raw",
    _graphql_cases(QUANTITIES, {}),
)
def test_graphql_modify_quantity_variable(
    http: httpx.Client, commands: CommandLog, resting: str, raw: str
) -> None:
    before = commands.mark()
    variables = f'{{"id": "{resting}", "quantity": {raw}}}'
    field = "price" if raw == "null" else "quantity"  # as REST: "price or quantity is required"
    _assert_graphql_refused(_graphql(http, MODIFY, variables), "modifyOrder", field)
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


def _literal_ids(values: list[str]) -> list[str]:
    return _ids([(v, 0) for v in values])


@pytest.mark.parametrize("literal", PRICE_LITERALS, ids=_literal_ids(PRICE_LITERALS))
def test_graphql_place_price_literal(
    http: httpx.Client, commands: CommandLog, literal: str
) -> None:
    before = commands.mark()
    query = PLACE.replace("($input: PlaceOrderInput!)", "").replace(
        "input: $input", f"input: {{side: 1, quantity: 1, price: {literal}}}"
    )
    _assert_graphql_refused(_graphql(http, query), "placeOrder", "price")
    assert commands.since(before) == 0


@pytest.mark.parametrize("literal", QUANTITY_LITERALS, ids=_literal_ids(QUANTITY_LITERALS))
def test_graphql_place_quantity_literal(
    http: httpx.Client, commands: CommandLog, literal: str
) -> None:
    before = commands.mark()
    query = PLACE.replace("($input: PlaceOrderInput!)", "").replace(
        "input: $input", f'input: {{side: 1, price: "10", quantity: {literal}}}'
    )
    _assert_graphql_refused(_graphql(http, query), "placeOrder", "quantity")
    assert commands.since(before) == 0


@pytest.mark.parametrize("literal", PRICE_LITERALS, ids=_literal_ids(PRICE_LITERALS))
def test_graphql_modify_price_literal(
    http: httpx.Client, commands: CommandLog, resting: str, literal: str
) -> None:
    before = commands.mark()
    query = f'mutation {{ modifyOrder(id: "{resting}", price: {literal}) {{ success reason errors {{ field message }} }} }}'  # noqa: E501
    _assert_graphql_refused(_graphql(http, query), "modifyOrder", "price")
    assert commands.since(before) == 0
    _assert_unchanged(http, resting)


@pytest.mark.parametrize("literal", QUANTITY_LITERALS, ids=_literal_ids(QUANTITY_LITERALS))
def test_graphql_modify_quantity_literal(
    http: httpx.Client, commands: CommandLog, resting: str, literal: str
) -> None:
    before = commands.mark()
    query = f'mutation {{ modifyOrder(id: "{resting}", quantity: {literal}) {{ success reason errors {{ field message }} }} }}'  # noqa: E501
    field = "price" if literal == "null" else "quantity"
    _assert_graphql_refused(_graphql(http, query), "modifyOrder", field)
    assert commands.since(before) == 0
    _assert_unchanged(http, resting)
