"""client_order_id rules over REST and GraphQL: 1 to 64 characters, printable only.

The engine keys an owner's ids as `owner + "\\x1f" + client_order_id` (the unit separator):
only because ids are printable can no owner's key equal another's. The length bounds what
the engine's idempotency window holds per order. Both APIs must refuse a bad id before it
is journaled, name the field, and accept (and store exactly) every id inside the rules.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.command_log import CommandLog

pytestmark = pytest.mark.usefixtures("empty_book")

PLACE = """mutation Place($input: PlaceOrderInput!) {
  placeOrder(input: $input) {
    __typename
    ... on OrderPlaced { orderId duplicate }
    ... on OrderRejected { reason errors { field message } }
  }
}"""


def unique(length: int, filler: str = "x") -> str:
    """An id of exactly `length` characters that no earlier run used (ids are remembered)."""
    head = uuid.uuid4().hex[: min(length, 32)]
    return head + filler * (length - len(head))


# Each takes a one-letter tag of the API under test, so that the one-character id is
# used once per stack.
ACCEPTED: dict[str, Callable[[str], str]] = {
    "1 character": lambda tag: tag,
    "64 characters": lambda tag: unique(64),
    "64 non-ASCII characters (a limit in characters, not bytes)": lambda tag: unique(64, "é"),
    "inner spaces and punctuation": lambda tag: unique(20) + " a-b_c.d:e/f",
    "non-Latin letters": lambda tag: unique(10) + "注文Ωж",
}
REFUSED: dict[str, Callable[[], str]] = {
    "empty": lambda: "",
    "65 characters": lambda: unique(65),
    "65 non-ASCII characters": lambda: unique(65, "é"),
    "far too long": lambda: unique(1000),
    "unit separator (the engine's owner separator)": lambda: unique(8) + "\x1f" + "b",
    "NUL": lambda: unique(8) + "\x00",
    "newline": lambda: unique(8) + "\n",
    "tab": lambda: unique(8) + "\t",
    "escape": lambda: unique(8) + "\x1b[2J",
    "DEL": lambda: unique(8) + "\x7f",
    "C1 control": lambda: unique(8) + "\x85",
    "line separator": lambda: unique(8) + "\u2028",
    "zero-width space": lambda: unique(8) + "\u200b",
    "byte-order mark": lambda: unique(8) + "\ufeff",
}


def _order(http: httpx.Client, order_id: str) -> dict[str, Any]:
    response = http.get(f"/orders/{order_id}")
    assert response.status_code == 200, response.text
    order: dict[str, Any] = response.json()
    return order


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_rest_accepts_and_stores_the_id_exactly(http: httpx.Client, case: str) -> None:
    coid = ACCEPTED[case]("R")
    body = {"side": 1, "price": 10, "quantity": 1, "client_order_id": coid}
    first = http.post("/orders", json=body)
    assert first.status_code == 201, first.text
    order_id = first.json()["order_id"]
    assert _order(http, order_id)["client_order_id"] == coid
    again = http.post("/orders", json=body)  # the same id is recognised as the same order
    assert (again.status_code, again.json()) == (200, {"order_id": order_id, "duplicate": True})


@pytest.mark.parametrize("case", list(REFUSED))
def test_rest_refuses_the_id_naming_the_field(
    http: httpx.Client, commands: CommandLog, case: str
) -> None:
    coid = REFUSED[case]()
    good = {"side": 1, "price": 10, "quantity": 1, "client_order_id": unique(12)}
    assert http.post("/orders", json=good).status_code == 201  # the same body, a good id
    mark = commands.mark()
    response = http.post("/orders", json={**good, "client_order_id": coid})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_request", body
    assert [e["field"] for e in body["errors"]] == ["client_order_id"], body
    assert commands.since(mark) == 0  # refused before the engine saw it


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_graphql_accepts_and_stores_the_id_exactly(http: httpx.Client, case: str) -> None:
    coid = ACCEPTED[case]("G")
    order_input = {"side": 1, "price": "10", "quantity": 1, "clientOrderId": coid}
    first = _place(http, order_input)
    assert first["__typename"] == "OrderPlaced" and first["duplicate"] is False, first
    assert _order(http, first["orderId"])["client_order_id"] == coid
    again = _place(http, order_input)
    assert again == {**first, "duplicate": True}


@pytest.mark.parametrize("case", list(REFUSED))
def test_graphql_refuses_the_id_naming_the_field(
    http: httpx.Client, commands: CommandLog, case: str
) -> None:
    coid = REFUSED[case]()
    good = {"side": 1, "price": "10", "quantity": 1, "clientOrderId": unique(12)}
    assert _place(http, good)["__typename"] == "OrderPlaced"  # the same query, a good id
    mark = commands.mark()
    result = _place(http, {**good, "clientOrderId": coid})
    assert result["__typename"] == "OrderRejected", result
    assert result["reason"] == "invalid_input", result
    assert [e["field"] for e in result["errors"]] == ["clientOrderId"], result
    assert commands.since(mark) == 0  # refused before the engine saw it


def _place(http: httpx.Client, order_input: dict[str, Any]) -> dict[str, Any]:
    response = http.post("/graphql", json={"query": PLACE, "variables": {"input": order_input}})
    assert response.status_code == 200, response.text
    payload = response.json()
    assert "errors" not in payload, payload
    result: dict[str, Any] = payload["data"]["placeOrder"]
    return result
