"""GraphQL's `OrderBook.sequence` carries the book's sequence number in full for every
instrument; the older `OrderBook.seq`, a 32-bit GraphQL Int, cannot for any instrument but
the first (each numbers its events from its number times 2^40)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.config import ID_SPACE
from tests.api.conftest import ThreadServer, inprocess_settings

INT_MAX = 2**31 - 1  # GraphQL's Int


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    data: Path = tmp_path_factory.mktemp("two-instruments")
    settings = replace(inprocess_settings(data), instruments_spec="DEFAULT,ABC")
    with ThreadServer(settings) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def book(http: httpx.Client, fields: str, symbol: str) -> dict[str, Any]:
    query = f"query B($s: String) {{ orderBook(symbol: $s) {{ {fields} }} }}"
    answer: dict[str, Any] = http.post(
        "/graphql", json={"query": query, "variables": {"s": symbol}}
    ).json()
    return answer


def rest_seq(http: httpx.Client, symbol: str) -> int:
    seq: int = http.get("/orderbook", params={"symbol": symbol}).json()["seq"]
    return seq


def test_sequence_is_exact_on_the_second_instrument(http: httpx.Client) -> None:
    placed = http.post("/orders", json={"side": 1, "price": 10, "quantity": 2, "symbol": "ABC"})
    assert placed.status_code == 201, placed.text
    expected = rest_seq(http, "ABC")
    assert ID_SPACE < expected <= 2 * ID_SPACE  # the second instrument's range, past Int

    answer = book(http, "symbol sequence bids { price quantity }", "ABC")
    assert "errors" not in answer, answer
    assert answer["data"]["orderBook"] == {
        "symbol": "ABC",
        "sequence": str(expected),
        "bids": [{"price": "10", "quantity": 2}],
    }

    old = book(http, "seq", "ABC")  # what the Int field cannot carry
    assert expected > INT_MAX
    assert old["data"] is None
    assert "Int cannot represent" in old["errors"][0]["message"]


def test_seq_and_sequence_agree_on_the_first_instrument(http: httpx.Client) -> None:
    placed = http.post("/orders", json={"side": -1, "price": 11, "quantity": 1})
    assert placed.status_code == 201, placed.text
    answer = book(http, "seq sequence", "DEFAULT")
    assert "errors" not in answer, answer
    expected = rest_seq(http, "DEFAULT")
    assert answer["data"]["orderBook"] == {"seq": expected, "sequence": str(expected)}
