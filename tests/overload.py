"""Overload run: `python -m tests.overload`. Shows the rate limit and backpressure at work.

Starts a stack with a per-client limit and a small engine-backlog threshold, drives it with
the load generator of `tests.load` from several client addresses' worth of connections
(one address here, so the rate limit applies to all of them together), and pauses the
engine (SIGSTOP) for a few seconds in the middle so that its backlog passes the threshold.
Prints the responses by status per phase: 429s from the rate limit, 503s from backpressure
while cancels keep being accepted, and recovery once the engine resumes.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
import time
from collections import Counter
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import aiohttp

from shared.redis_server import free_port
from shared.stack import Stack


async def drive(url: str, seconds: float, clients: int, log: list[tuple[float, str, int]]) -> None:
    start = time.monotonic()
    async with aiohttp.ClientSession(url) as session:

        async def worker(k: int) -> None:
            mine: list[str] = []
            n = 0
            while time.monotonic() - start < seconds:
                n += 1
                if n % 4 == 0 and mine:
                    kind = "cancel"
                    request = session.delete(f"/orders/{mine.pop()}")
                else:
                    kind = "place"
                    body = {"side": 1 if k % 2 else -1, "price": 100 + n % 7, "quantity": 1}
                    request = session.post("/orders", json=body)
                async with request as response:
                    payload = await response.json()
                    if response.status == 201:
                        mine.append(payload["order_id"])
                    log.append((time.monotonic() - start, kind, response.status))

        await asyncio.gather(*(worker(k) for k in range(clients)))


async def rest_orders(url: str, count: int) -> list[str]:
    async with aiohttp.ClientSession(url) as session:
        ids = []
        for _ in range(count):
            async with session.post("/orders", json={"side": 1, "price": 1, "quantity": 1}) as r:
                ids.append((await r.json())["order_id"])
        return ids


async def probe(
    url: str, seconds: float, resting: list[str], out: list[tuple[float, str, int, float]]
) -> None:
    """Every 200 ms from a separate client: a place, and a cancel of an order rested before
    the load began; records when each was sent, its status and its latency."""
    start = time.monotonic()
    # Another source address on the loopback: its own rate-limit bucket.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(url, connector=connector) as session:

        async def timed(
            kind: str, request: AbstractAsyncContextManager[aiohttp.ClientResponse]
        ) -> None:
            sent = time.monotonic()
            async with request as response:
                await response.read()
                out.append((sent - start, kind, response.status, (time.monotonic() - sent) * 1e3))

        tasks = []
        while time.monotonic() - start < seconds:
            tasks.append(
                asyncio.create_task(
                    timed(
                        "place",
                        session.post("/orders", json={"side": 1, "price": 1, "quantity": 1}),
                    )
                )
            )
            if resting:
                tasks.append(
                    asyncio.create_task(timed("cancel", session.delete(f"/orders/{resting.pop()}")))
                )
            await asyncio.sleep(0.2)
        await asyncio.gather(*tasks)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="overload-") as tmp:
        env = {"RATE_LIMIT_PER_S": "800", "RATE_LIMIT_BURST": "400", "MAX_BACKLOG": "10"}
        stack = Stack(Path(tmp), [free_port()], env=env, log_dir=Path(tmp) / "logs")
        stack.start_all()
        stack.wait_ready()
        log: list[tuple[float, str, int]] = []
        try:

            async def scenario() -> None:
                resting = await rest_orders(stack.api_url(), 40)
                task = asyncio.create_task(drive(stack.api_url(), 12.0, 32, log))
                probe_task = asyncio.create_task(probe(stack.api_url(), 12.0, resting, probes))
                await asyncio.sleep(4)
                stack.processes["engine"].send_signal(signal.SIGSTOP)  # the engine stalls
                await asyncio.sleep(3)
                stack.processes["engine"].send_signal(signal.SIGCONT)
                await task
                await probe_task

            probes: list[tuple[float, str, int, float]] = []
            asyncio.run(scenario())
        finally:
            stack.stop()
    phases = [("0-4 s, engine running", 0, 4), ("4-7 s, engine paused", 4, 7)]
    phases.append(("7-12 s, engine resumed", 7, 12))
    print("limits: 800 requests/s per client (burst 400), engine backlog threshold 10")
    for name, lo, hi in phases:
        counts = Counter((kind, status) for t, kind, status in log if lo <= t < hi)
        seconds = hi - lo
        rendered = ", ".join(
            f"{k} {s}: {n / seconds:,.0f}/s" for (k, s), n in sorted(counts.items())
        )
        print(f"{name}: {rendered}")
        sent = [(kind, status, ms) for t, kind, status, ms in probes if lo <= t < hi]
        for kind in ("place", "cancel"):
            mine = [(status, ms) for k, status, ms in sent if k == kind]
            if mine:
                by_status = dict(Counter(status for status, _ in mine))
                slowest = max(ms for _, ms in mine)
                print(f"    probe {kind}s sent: {by_status}, slowest answer {slowest:,.0f} ms")


if __name__ == "__main__":
    main()
