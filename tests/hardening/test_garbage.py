"""Requests leave no garbage in reference cycles in the API process.

Reference counting frees everything else at once; a cycle waits for the cyclic collector,
whose collections stop every request in flight (`shared/gc_policy.py`). Read through the
replica's own `/metrics` (`python_gc_objects_collected_total`): the objects its collector
found unreachable, here in its youngest generation's collections, where a request's
garbage is found. One runs only once the objects allocated and not freed pass that
generation's threshold, so a window can also collect up to that many left by earlier
requests: each bound below allows for it. (The older generations' collections, every
tenth and hundredth, also sweep what earlier tests left in them: not counted.)
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from shared.gc_policy import GEN0_THRESHOLD
from tests.metrics import samples

PLACE = """mutation Place($input: PlaceOrderInput!) {
  placeOrder(input: $input) { __typename ... on OrderPlaced { orderId } } }"""
ORDER = "query One($id: ID!) { order(id: $id) { orderId orderPrice orderAlive } }"


def collected(http: httpx.Client) -> float:
    found = samples(http.get("/metrics").text, "python_gc_objects_collected_total")
    return sum(value for labels, value in found if labels["generation"] == "0")


def unreachable_per_request(
    http: httpx.Client, requests: int, send: Callable[[int], None]
) -> float:
    """Objects collected per request over `requests` requests, less what earlier ones may
    have left for the first collection."""
    before = collected(http)
    for i in range(requests):
        send(i)
    return max(0.0, collected(http) - before - GEN0_THRESHOLD) / requests


def test_refused_and_answered_rest_requests_leave_no_cycles(http: httpx.Client) -> None:
    """A refused field's error kept its traceback, and the error it was raised while
    handling, either of which held the collecting frame: 10-20 objects in a cycle per
    refused field."""

    def refused(_: int) -> None:
        response = http.post("/orders", json={"side": 3, "price": "x", "quantity": 0})
        assert response.status_code == 422, response.text

    def refused_read(_: int) -> None:
        response = http.get("/orders", params={"since": "yesterday"})
        assert response.status_code == 422, response.text

    def placed_and_cancelled(i: int) -> None:
        response = http.post("/orders", json={"side": 1, "price": 1 + i % 7, "quantity": 1})
        assert response.status_code == 201, response.text
        cancel = http.delete(f"/orders/{response.json()['order_id']}")
        assert cancel.json() == {"success": True}

    assert unreachable_per_request(http, 2000, refused) < 1
    assert unreachable_per_request(http, 2000, refused_read) < 1
    assert unreachable_per_request(http, 1000, placed_and_cancelled) < 1


@pytest.mark.usefixtures("empty_book")
def test_graphql_documents_are_validated_once(http: httpx.Client) -> None:
    """Each validation left about a thousand objects in cycles (graphql-core's visitors,
    two rule classes built per request): a collection every few requests. The same
    document, with new variables, is now parsed and validated once; what its execution
    leaves is a few dozen objects."""
    placed: list[str] = []

    def place(i: int) -> None:
        variables = {"input": {"side": -1, "price": str(5000 + i % 9), "quantity": 1}}
        body = http.post("/graphql", json={"query": PLACE, "variables": variables}).json()
        placed.append(body["data"]["placeOrder"]["orderId"])

    def read(i: int) -> None:
        variables = {"id": placed[i % len(placed)]}
        body = http.post("/graphql", json={"query": ORDER, "variables": variables}).json()
        assert body["data"]["order"]["orderAlive"] is True, body

    assert unreachable_per_request(http, 400, place) < 100
    assert unreachable_per_request(http, 400, read) < 100
    for order_id in placed:
        assert http.delete(f"/orders/{order_id}").json() == {"success": True}
