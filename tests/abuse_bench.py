"""Figures for issue 13: `python -m tests.abuse_bench [--url URL] [--seconds 8]`.

Runs each attack of the abuse suite (`tests/hardening/test_abuse.py`) with the real
defaults (10 s header timeout, 30 s body timeout, 64 KiB body and message limits) against a
stack it starts itself (one API process, as `make run`), or against --url. Meanwhile a
well-behaved client in its own process (address 127.0.0.2, one keep-alive connection) sends
`GET /health/live` and a place (then its cancel) every 50 ms. For each phase it prints that
client's p50/p99/max latency and what the attack got: statuses, close codes, how long the
server took to answer or close, and the API's open file descriptors.

The attacks of 300 connections come from two addresses of 150 each, under the default cap
of 256 connections per client address, so that the timeouts end them, not the cap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path

import httpx
import websockets
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from shared.redis_server import free_port
from shared.stack import Stack
from tests.attacks import (
    PROBE_ADDRESS,
    SLOW_BODY_HEAD,
    SLOW_HEADER_DRIP,
    SLOW_HEADER_HEAD,
    Outcome,
    api_fds,
    host_port,
    send_head_and_wait,
    status_of,
    trickle,
    ws_frame_header,
    ws_handshake,
)
from tests.load import ms_at

PROBE_INTERVAL_S = 0.05
SLOW_INTERVAL_S = 5.0  # one header line, or one body byte, every 5 s (as in the issue)
GIVE_UP_S = 45.0


# -- the well-behaved client ---------------------------------------------------------------


Sample = tuple[float, str, int, float]  # (wall time, kind, status, seconds)


def probe(url: str, stop: ProcessEvent, out: Queue[list[Sample]]) -> None:
    """Runs in its own process: its latencies are the server's, not this loop's."""
    samples: list[Sample] = []

    async def run() -> None:
        transport = httpx.AsyncHTTPTransport(local_address=PROBE_ADDRESS)
        async with httpx.AsyncClient(base_url=url, transport=transport, timeout=30) as client:
            while not stop.is_set():
                calls: tuple[tuple[str, Callable[[], Awaitable[httpx.Response]]], ...] = (
                    ("live", lambda: client.get("/health/live")),
                    ("place", lambda: client.post("/orders", json=PLACE)),
                )
                for kind, call in calls:
                    started = time.perf_counter()
                    try:
                        response = await call()
                        status = response.status_code
                    except httpx.HTTPError:
                        response, status = None, 0
                    samples.append((time.time(), kind, status, time.perf_counter() - started))
                    if kind == "place" and status == 201 and response is not None:
                        await client.delete(f"/orders/{response.json()['order_id']}")
                await asyncio.sleep(PROBE_INTERVAL_S)

    asyncio.run(run())
    out.put(samples)


PLACE = {"side": 1, "price": "0.01", "quantity": 1}


def latency(
    samples: list[tuple[float, str, int, float]], kind: str, start: float, end: float
) -> str:
    chosen = [s for s in samples if s[1] == kind and start <= s[0] <= end]
    if not chosen:
        return f"{kind}: no samples"
    seconds = sorted(s[3] for s in chosen)
    bad = sum(1 for s in chosen if s[2] not in (200, 201))
    return (
        f"{kind} p50 {statistics.median(seconds) * 1000:.1f} ms, "
        f"p99 {ms_at(seconds, 0.99):.1f} ms, "
        f"max {seconds[-1] * 1000:.1f} ms ({len(chosen)} requests, {bad} not 2xx)"
    )


def spread(values: list[float]) -> str:
    if not values:
        return "none"
    ordered = sorted(values)
    return (
        f"min {ordered[0]:.3f} s, median {statistics.median(ordered):.3f} s, "
        f"max {ordered[-1]:.3f} s"
    )


def spread_ms(values: list[float]) -> str:
    if not values:
        return "none"
    ordered = sorted(values)
    median = statistics.median(ordered) * 1000
    return (
        f"min {ordered[0] * 1000:.1f} ms, median {median:.1f} ms, max {ordered[-1] * 1000:.1f} ms"
    )


def counted(values: Iterable[object]) -> str:
    counts: dict[str, int] = {}
    for value in values:
        counts[str(value)] = counts.get(str(value), 0) + 1
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


# -- attacks --------------------------------------------------------------------------------


async def big_bodies(url: str, seconds: float, pace: float) -> str:
    """Four clients send 10.5 MB GraphQL bodies (a 10 MB comment and a query), each one
    body every `pace` seconds (0: back to back): the time from the first byte sent to the
    answer's status line."""
    host, port = host_port(url)
    body = b'{"query": "# ' + b"x" * 10_000_000 + b'\\n{ orderBook { seq } }"}'
    head = (
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    )
    times: list[float] = []
    statuses: list[int | None] = []
    deadline = time.monotonic() + seconds

    async def client() -> None:
        while (due := time.monotonic()) < deadline:
            reader, writer = await asyncio.open_connection(host, port)
            started = time.perf_counter()
            writer.write(head + body)
            try:
                line = await asyncio.wait_for(reader.readline(), 30)
                times.append(time.perf_counter() - started)
                statuses.append(status_of(line))
                await writer.drain()
            except (OSError, TimeoutError):
                statuses.append(None)
            writer.close()
            await asyncio.sleep(due + pace - time.monotonic())

    await asyncio.gather(*(client() for _ in range(4)))
    answered = spread_ms(times)
    return (
        f"{len(times)} bodies of 10.5 MB, statuses {counted(statuses)}; answered after {answered}"
    )


async def big_frames(url: str, seconds: float, pace: float) -> str:
    """Three GraphQL WebSocket clients send 15 MB subscribe messages, each on a new
    connection, one every `pace` seconds: the close code and the time from the send to the
    close."""
    ws_url = url.replace("http", "ws") + "/graphql"
    query = "subscription { trades { tradeId } }" + " " * 15_000_000
    message = json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}})
    codes: list[int | str | None] = []
    times: list[float] = []
    deadline = time.monotonic() + seconds

    async def client() -> None:
        while (due := time.monotonic()) < deadline:
            async with websockets.connect(
                ws_url,
                subprotocols=[Subprotocol("graphql-transport-ws")],
                max_size=None,
            ) as ws:
                await ws.send(json.dumps({"type": "connection_init"}))
                await ws.recv()
                started = time.perf_counter()
                try:
                    await ws.send(message)
                    await asyncio.wait_for(ws.recv(), 10)
                    codes.append("answered")  # the message was read and parsed
                except ConnectionClosed as closed:
                    codes.append(closed.rcvd.code if closed.rcvd else None)
                except TimeoutError:
                    codes.append("accepted, open after 10 s")  # the subscription runs
                times.append(time.perf_counter() - started)
            await asyncio.sleep(due + pace - time.monotonic())

    await asyncio.gather(*(client() for _ in range(3)))
    closed = spread_ms(times)
    return f"{len(codes)} messages of 15 MB, close codes {counted(codes)}; closed after {closed}"


async def slow_and_silent(url: str, pid: int | None, count: int) -> str:
    """`count` slow-header, `count` slow-body and `count` silent connections at once."""
    addresses = {
        "slow header": ("127.0.0.3", "127.0.0.13"),
        "slow body": ("127.0.0.4", "127.0.0.14"),
        "silent": ("127.0.0.5", "127.0.0.15"),
    }
    before = api_fds(pid) if pid else None
    kinds: dict[str, list[Awaitable[Outcome]]] = {}
    for kind, (head, drip) in {
        "slow header": (SLOW_HEADER_HEAD, SLOW_HEADER_DRIP),
        "slow body": (SLOW_BODY_HEAD, b" "),
        "silent": (b"", b""),
    }.items():
        kinds[kind] = [
            trickle(url, addresses[kind][n % 2], head, drip, SLOW_INTERVAL_S, GIVE_UP_S)
            for n in range(count)
        ]
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while pid:
            peak = max(peak, api_fds(pid))
            await asyncio.sleep(0.5)

    watcher = asyncio.ensure_future(watch())
    gathered = await asyncio.gather(*(asyncio.gather(*attacks) for attacks in kinds.values()))
    results = dict(zip(kinds, gathered, strict=True))
    watcher.cancel()
    lines = []
    for kind, outcomes in results.items():
        closed = [o.closed_after for o in outcomes if o.closed_after is not None]
        lines.append(
            f"    {kind}: {len(closed)} of {len(outcomes)} closed by the server within "
            f"{GIVE_UP_S:.0f} s ({spread(closed)}); answers "
            f"{counted([status_of(o.answer) if o.answer else '-' for o in outcomes])}"
        )
    if pid:
        await asyncio.sleep(1)
        lines.append(
            f"    API file descriptors: {before} before, peak {peak}, {api_fds(pid)} after"
        )
    return "\n" + "\n".join(lines)


async def json_and_utf8(url: str) -> str:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        repeated = await client.post(
            "/orders",
            content=b'{"side": 1, "price": 5, "quantity": 1, "side": -1}',
            headers={"content-type": "application/json"},
        )
        graphql = await client.post(
            "/graphql",
            content=b'{"query": "{ orderBook { seq } }", '
            b'"query": "{ trades { nodes { tradeId } } }"}',
            headers={"content-type": "application/json"},
        )
    return (
        f"repeated key: REST {repeated.status_code} {repeated.text[:80]}; "
        f"GraphQL {graphql.status_code} {graphql.text[:80]}"
    )


def readiness(stack: Stack, rounds: int = 3) -> str:
    """kill -9 the engine: time until /health/ready answers 503; restart it: time until
    200 (from the restart, the engine's start-up and recovery included)."""
    lines = []
    with httpx.Client(base_url=stack.api_url(), timeout=10) as client:
        for _ in range(rounds):
            stack.kill("engine", signal.SIGKILL)
            killed = time.perf_counter()
            while client.get("/health/ready").status_code == 200:
                time.sleep(0.005)
            down = time.perf_counter() - killed
            stack.start("engine")
            started = time.perf_counter()
            while client.get("/health/ready").status_code != 200:
                time.sleep(0.005)
            ready_at = time.time()
            up = time.perf_counter() - started
            recovered = ready_at - last_event_time(stack, "engine", "recovery_done")
            lines.append(
                f"503 {down:.3f} s after the kill, 200 {up:.3f} s after the restart "
                f"({recovered:.3f} s after the engine's recovery_done)"
            )
    return "; ".join(lines)


async def decision_times(url: str, samples: int = 20) -> str:
    """How long the server takes to refuse when it need not read the body: a declared
    10.5 MB GraphQL body of which only the headers and 1 KB are sent (until the 413's first
    byte), and a 15 MB WebSocket frame of which only the header and 1 KB are sent (until
    the close frame's first byte). Sequential, with nothing else running."""
    head = (
        b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 10500000\r\n\r\n"
    )
    http_times: list[float] = []
    http_statuses: list[int | None] = []
    for _ in range(samples):
        answer, first = await send_head_and_wait(url, head, b'{"query": "' + b" " * 1024, 5)
        http_statuses.append(status_of(answer))
        if answer:
            http_times.append(first)
    host, port = host_port(url)
    ws_times: list[float] = []
    ws_codes: list[int | str] = []
    for _ in range(samples):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(ws_handshake("/ws/trades"))
        await reader.readuntil(b"\r\n\r\n")
        started = time.perf_counter()
        writer.write(ws_frame_header(15_000_000) + b"x" * 1024)
        try:
            frame = await asyncio.wait_for(reader.read(4), 5)
            ws_times.append(time.perf_counter() - started)
            code = int.from_bytes(frame[2:4], "big") if frame[:1] == b"\x88" else "no close"
            ws_codes.append(code)
        except TimeoutError:
            ws_codes.append("no answer within 5 s")
        writer.close()
    return (
        f"\n    declared 10.5 MB GraphQL body, 1 KB sent: statuses {counted(http_statuses)}, "
        f"answered after {spread_ms(http_times)}"
        f"\n    15 MB WebSocket frame, 1 KB sent: {counted(ws_codes)}, "
        f"closed after {spread_ms(ws_times)}"
    )


def last_event_time(stack: Stack, service: str, event: str) -> float:
    """When `service` last logged `event` (its JSON line's timestamp), as a Unix time."""
    assert stack.log_dir is not None
    stamp = ""
    for line in (stack.log_dir / f"{service}.log").read_text().splitlines():
        if f'"{event}"' in line:
            stamp = json.loads(line)["timestamp"]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="an API already running (no engine kill then)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the timed phases")
    parser.add_argument("--slow", type=int, default=300, help="connections per slow attack")
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min)", flush=True)
    stack: Stack | None = None
    url = args.url
    if url is None:
        data = Path(tempfile.mkdtemp(prefix="abuse-bench-"))
        stack = Stack(data, [free_port()], env={"LOG_LEVEL": "info"}, log_dir=data / "logs")
        stack.start_all()
        stack.wait_ready()
        url = stack.api_url()
    pid = stack.processes[f"api-{stack.api_ports[0]}"].pid if stack else None
    context = multiprocessing.get_context("spawn")
    stop, out = context.Event(), context.Queue()
    prober = context.Process(target=probe, args=(url, stop, out), daemon=True)
    prober.start()
    phases: list[tuple[str, float, float, str]] = []

    def phase(name: str, attack: Callable[[], str]) -> None:
        start = time.time()
        result = attack()
        phases.append((name, start, time.time(), result))
        print(f"{name}: done", flush=True)

    def baseline() -> str:
        time.sleep(args.seconds)
        return ""

    try:
        time.sleep(2)  # the probe's connection is up
        phase("baseline, no attack", baseline)
        phase(
            "time to refuse without reading (20 of each, one at a time)",
            lambda: asyncio.run(decision_times(url)),
        )
        phase(
            "10 MB GraphQL bodies, 4 at once every second",
            lambda: asyncio.run(big_bodies(url, args.seconds, 1.0)),
        )
        phase(
            "10 MB GraphQL bodies, 4 clients back to back (a flood over loopback)",
            lambda: asyncio.run(big_bodies(url, args.seconds, 0.0)),
        )
        phase(
            "15 MB WebSocket messages, 3 at once every second",
            lambda: asyncio.run(big_frames(url, args.seconds, 1.0)),
        )
        phase(
            f"{args.slow} slow-header + {args.slow} slow-body + {args.slow} silent connections",
            lambda: asyncio.run(slow_and_silent(url, pid, args.slow)),
        )
        phase("repeated key", lambda: asyncio.run(json_and_utf8(url)))
        if stack is not None:
            phase("readiness after kill -9 of the engine", lambda: readiness(stack))
        stop.set()
        samples = out.get(timeout=60)
        prober.join(timeout=10)
    finally:
        if stack is not None:
            stack.stop()
    print()
    for name, start, end, result in phases:
        print(f"{name} ({end - start:.1f} s)")
        print(f"  well-behaved client: {latency(samples, 'live', start, end)}")
        print(f"                       {latency(samples, 'place', start, end)}")
        if result:
            print(f"  attack: {result}")
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
