"""Backpressure: with the engine behind, places and modifies get a 503, cancels still go in."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from shared.stack import Stack
from tests.conftest import running_stack


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("backpressure"), MAX_BACKLOG="5", REQUEST_TIMEOUT_S="3"
    ) as stack:
        yield stack


async def test_backlog_sheds_places_but_not_cancels(slow: Stack) -> None:
    client = redis.Redis.from_url(slow.redis_url)
    body = {"side": 1, "price": 10, "quantity": 1}
    async with httpx.AsyncClient(base_url=slow.api_url(), timeout=20) as http:
        resting = (await http.post("/orders", json=body)).json()["order_id"]
        slow.kill("engine", signal.SIGKILL)
        # The engine is down: these are journaled but unanswered, so the backlog grows.
        stuck = await asyncio.gather(*(http.post("/orders", json=body) for _ in range(8)))
        assert {r.status_code for r in stuck} == {503}
        await asyncio.sleep(0.5)  # the backlog is sampled every 100 ms

        journaled = client.xlen("exchange:{DEFAULT}:commands")
        started = time.monotonic()
        shed = await http.post("/orders", json=body)
        assert shed.status_code == 503
        assert "behind" in shed.json()["message"]
        assert shed.headers["retry-after"] == "1"
        assert time.monotonic() - started < 1.0  # refused at once, not after a timeout
        modify = await http.put(f"/orders/{resting}", json={"price": 11})
        assert modify.status_code == 503 and "behind" in modify.json()["message"]
        assert client.xlen("exchange:{DEFAULT}:commands") == journaled  # nothing enqueued

        cancel = asyncio.create_task(http.delete(f"/orders/{resting}"))
        await asyncio.sleep(0.3)
        assert client.xlen("exchange:{DEFAULT}:commands") == journaled + 1  # the cancel went in
        slow.start("engine")
        answered = await cancel
        assert answered.status_code == 200 and answered.json() == {"success": True}

        for _ in range(50):  # the backlog drains once the engine has replayed it
            again = await http.post("/orders", json=body)
            if again.status_code == 201:
                break
            await asyncio.sleep(0.1)
        assert again.status_code == 201
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
