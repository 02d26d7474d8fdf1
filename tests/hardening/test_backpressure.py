"""Backpressure: with the engine behind, places and modifies get a 503, cancels still go in."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest
import redis

from shared.stack import Stack
from tests.command_log import CommandLog
from tests.conftest import running_stack
from tests.metrics import sample


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("backpressure"), MAX_BACKLOG="5", REQUEST_TIMEOUT_S="3"
    ) as stack:
        yield stack


async def backlog(http: httpx.AsyncClient) -> float:
    """The replica's own figure of the default engine's backlog, from /metrics."""
    text = (await http.get("/metrics")).text
    found = sample(text, "exchange_engine_backlog_commands", symbol="DEFAULT")
    assert found is not None, "the backlog gauge is missing from /metrics"
    return found


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.05)


async def test_backlog_sheds_places_but_not_cancels(slow: Stack) -> None:
    client = redis.Redis.from_url(slow.redis_url)
    commands = CommandLog(client)
    body = {"side": 1, "price": 10, "quantity": 1}
    async with httpx.AsyncClient(base_url=slow.api_url(), timeout=20) as http:
        resting = (await http.post("/orders", json=body)).json()["order_id"]
        slow.kill("engine", signal.SIGKILL)
        # The engine is down: these are journaled but unanswered, so the backlog grows.
        stuck = await asyncio.gather(*(http.post("/orders", json=body) for _ in range(8)))
        assert {r.status_code for r in stuck} == {503}
        assert {r.json()["error"] for r in stuck} == {"unavailable"}

        async def over_threshold() -> bool:  # MAX_BACKLOG is 5
            return await backlog(http) > 5

        await eventually(over_threshold, "the replica sees the backlog")
        mark = commands.mark()
        shed = await http.post("/orders", json=body)
        assert shed.status_code == 503
        # Refused before journaling: "behind", not the timeout's "did not answer in time".
        assert "behind" in shed.json()["message"], shed.text
        assert shed.headers["retry-after"] == "1"
        modify = await http.put(f"/orders/{resting}", json={"price": 11})
        assert modify.status_code == 503 and "behind" in modify.json()["message"], modify.text
        assert commands.since(mark) == 0  # nothing enqueued

        cancel = asyncio.create_task(http.delete(f"/orders/{resting}"))

        async def cancel_journaled() -> bool:
            return await asyncio.to_thread(commands.since, mark) == 1

        await eventually(cancel_journaled, "the cancel is journaled despite the backlog")
        slow.start("engine")
        answered = await cancel
        # Answered once the engine is back; on a slow machine the request may time out first
        # (503, "may still be applied"): either way the journaled cancel is applied.
        if answered.status_code != 503:
            assert answered.status_code == 200 and answered.json() == {"success": True}

        async def cancelled() -> bool:
            order = await http.get(f"/orders/{resting}")
            return order.status_code == 200 and order.json()["order_alive"] is False

        await eventually(cancelled, "the cancel is applied", within=30)

        statuses: list[int] = []

        async def placed_again() -> bool:  # the backlog drains once the engine replayed it
            statuses.append((await http.post("/orders", json=body)).status_code)
            return statuses[-1] == 201

        await eventually(placed_again, "places are accepted again", within=30)
        assert set(statuses) <= {201, 503}, statuses
    client.close()


ORDER = {"side": 1, "price": 10, "quantity": 1}


def test_a_lost_reply_stream_is_recreated(slow: Stack) -> None:
    """If Redis loses a replica's reply stream (the engine never creates one), the replica
    notices (a request times out) and creates it again; later requests are answered."""
    client = redis.Redis.from_url(slow.redis_url)
    with httpx.Client(base_url=slow.api_url(), timeout=15) as http:
        assert http.post("/orders", json=ORDER).status_code == 201
        (stream,) = client.keys("exchange:{DEFAULT}:replies:*")
        client.delete(stream)
        statuses = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            statuses.append(http.post("/orders", json=ORDER).status_code)
            if statuses[-1] == 201:
                break
        assert statuses[-1] == 201, statuses
        assert set(statuses) <= {201, 503}, statuses  # 503: "may still be applied"
        assert client.exists(stream)
    log = (slow.data_dir / "logs" / f"api-{slow.api_ports[0]}.log").read_text()
    assert "reply_stream_recreated" in log
