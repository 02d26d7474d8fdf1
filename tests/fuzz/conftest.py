"""Shared helpers of the fuzz and abuse tests: the "still serving" probe and a terminal
summary of what the schemathesis runs covered."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.command_log import CommandLog

__all__ = ["JSON", "CommandLog", "assert_still_serving"]

JSON = {"content-type": "application/json"}

# Lines for the terminal summary, filled by tests/fuzz/test_schemathesis.py.
FUZZ_SUMMARY: list[str] = []


def assert_still_serving(base_url: str, base_url2: str) -> None:
    """Both replicas are ready, and a fresh client can place an order on one replica and
    read it back on the other (then cancels it, leaving the book as it found it)."""
    for url in (base_url, base_url2):
        with httpx.Client(base_url=url, timeout=10) as client:
            ready = client.get("/health/ready")
            assert ready.status_code == 200, (url, ready.status_code, ready.text)
            assert ready.json()["ready"] is True, ready.text
    with (
        httpx.Client(base_url=base_url2, timeout=10) as writer,
        httpx.Client(base_url=base_url, timeout=10) as reader,
    ):
        placed = writer.post("/orders", json={"side": 1, "price": "1.23", "quantity": 7})
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["order_id"]
        seen = reader.get(f"/orders/{order_id}")
        assert seen.status_code == 200, seen.text
        order = seen.json()
        assert (order["order_id"], order["order_price"], order["order_quantity"]) == (
            order_id,
            1.23,
            7,
        )
        assert order["order_alive"] is True, order
        assert writer.delete(f"/orders/{order_id}").json() == {"success": True}


@pytest.fixture
def still_serving(base_url: str, base_url2: str) -> Callable[[], None]:
    return lambda: assert_still_serving(base_url, base_url2)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FUZZ_SUMMARY:
        terminalreporter.section("schemathesis")
        for line in FUZZ_SUMMARY:
            terminalreporter.write_line(line)
