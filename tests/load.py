"""Load benchmark: `python -m tests.load [--url URL] [--clients 24] [--seconds 20] [--rate R]`.

Concurrent REST clients send a seeded crossing flow (about 60% place, 25% cancel, 15%
modify) for a fixed time and it prints mutations/s, p50/p99 latency, errors, and the engine
and archiver lag. Without --url it starts its own stack (as `make run` does) with
--replicas API processes. The client runs in --procs processes so it is not the bottleneck.

`--instruments 8 --engines 2` spreads the places over 8 instruments owned by 2 engine
processes and prints each engine's share; `--cluster` runs the stack on a local Redis
Cluster of 3 masters and 3 replicas (shared/redis_cluster.py) instead of one server.
`--book-subscriber 10` keeps one `/ws/book?depth=10` client connected to the first
replica during the run (in its own process; its CPU is printed apart from the stack's):
run with and without it, back to back, for what the incremental book costs per mutation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import queue as queue_module
import random
import socket
import tempfile
import time
import urllib.request
from collections import deque
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any, TypedDict, cast
from urllib.parse import urlsplit

import msgspec
import redis
import uvloop

from shared.config import Settings
from shared.redis_client import Client
from shared.redis_client import connect as redis_connect
from shared.redis_cluster import LocalCluster
from shared.redis_server import free_port
from shared.stack import Stack
from tests.metrics import samples
from tests.redis_replies import entries, value

# --graphql: the same flow as GraphQL mutations, each document fixed and its values in
# variables, as a client library sends them.
GRAPHQL_PLACE = (
    b'{"query":"mutation P($i: PlaceOrderInput!) { placeOrder(input: $i) '
    b'{ __typename ... on OrderPlaced { orderId } } }","variables":{"i":%s}}'
)
GRAPHQL_CANCEL = (
    b'{"query":"mutation C($id: ID!) { cancelOrder(id: $id) { success } }","variables":{"id":"%s"}}'
)
GRAPHQL_MODIFY = (
    b'{"query":"mutation M($id: ID!, $p: Price!) { modifyOrder(id: $id, price: $p) { success } }",'
    b'"variables":{"id":"%s","p":%d}}'
)

# Instruments of --instruments, in this order: on a fresh 3-master cluster their hash tags
# fall on shards 1, 0, 2, 1, 0, 1, 2, 0.
SYMBOLS = ("DEFAULT", "AAA", "BBB", "CCC", "DDD", "EEE", "GGG", "BTC")


Outcome = tuple[int, bytes] | Exception  # (status, body), or why there is none


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request in flight.

    The load generator shares the two cores with the stack it measures, so it speaks just
    enough HTTP/1.1 (Content-Length bodies, no chunking) to cost a fraction of a full
    client's CPU per request; every figure it prints is then mostly the stack's. A request
    is either awaited (`request`, for the harnesses' `Pool`) or answered through a callback
    (`send`, for the load loop: no future and no task step per request).
    """

    def __init__(self, host: str, prefix: str) -> None:
        self.host = host.encode()
        self.prefix = prefix
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.on_done: Callable[[Outcome], None] | None = None
        self.sent_at = 0.0  # when the request in flight went out (time.monotonic)
        self.transport: asyncio.Transport | None = None
        self.usable = True  # false once closed, or once the server said `connection: close`

    @property
    def busy(self) -> bool:
        return self.waiter is not None or self.on_done is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transport has asyncio.Transport's methods but is no subclass of it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # unasked (a 408 before the server closes an idle one)
            self.fail(ConnectionError("data on an idle connection"))
            return
        buffer = self.buffer
        buffer += data
        head_end = buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(buffer[:head_end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            self.fail(ValueError(f"response without content-length: {head[:200]!r}"))
            return
        line_end = head.find(b"\r\n", at + 2)
        total = head_end + 4 + int(head[at + 17 : line_end if line_end > 0 else None])
        if len(buffer) < total:
            return
        body = bytes(buffer[head_end + 4 : total])
        del buffer[:total]
        at = head.find(b"\r\nconnection:")
        if at >= 0:
            line_end = head.find(b"\r\n", at + 2)
            if head[at + 13 : line_end if line_end > 0 else None].strip() == b"close":
                self.usable = False
        self._finish((int(head[9:12]), body))

    def _finish(self, outcome: Outcome) -> None:
        waiter, self.waiter = self.waiter, None
        on_done, self.on_done = self.on_done, None
        if waiter is not None and not waiter.done():
            if isinstance(outcome, Exception):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)
        if on_done is not None:
            on_done(outcome)

    def fail(self, exc: Exception) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.close()
        self._finish(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError(str(exc or "connection closed")))

    def _write(self, method: bytes, path: str, body: bytes) -> None:
        if self.transport is None or not self.usable or self.transport.is_closing():
            raise ConnectionError("connection closed")
        self.sent_at = time.monotonic()
        target = (self.prefix + path).encode()
        head = b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (method, target, self.host)
        if body:
            head += b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
        self.transport.write(head + b"\r\n" + body)

    def request(
        self, method: bytes, path: str, body: bytes = b""
    ) -> asyncio.Future[tuple[int, bytes]]:
        self._write(method, path, body)
        self.waiter = asyncio.get_running_loop().create_future()
        return self.waiter

    def send(
        self, method: bytes, path: str, body: bytes, on_done: Callable[[Outcome], None]
    ) -> None:
        """Send a request; `on_done` gets its outcome, from the event loop's callback."""
        self._write(method, path, body)
        self.on_done = on_done

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.close()


async def connect(url: str) -> Connection:
    parsed = urlsplit(url)
    if parsed.scheme != "http":
        raise SystemExit(f"--url must be http:// (this client speaks no TLS): {url}")
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    prefix = parsed.path.rstrip("/")
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: Connection(f"{host}:{port}", prefix), host, port
    )
    return protocol


REQUEST_TIMEOUT_S = 10.0
FAILURES = (ConnectionError, OSError, RuntimeError, ValueError, TimeoutError)


IDLE_S = 2.0  # a pooled connection idle longer is dropped, not reused


class Pool:
    """Keep-alive connections to one API base URL, up to `size` requests in flight (more
    wait for a free connection): the lean client for callers that send many requests at
    once (the crash and failover harnesses), at a fraction of a full HTTP client's CPU per
    request."""

    def __init__(self, url: str, timeout: float = REQUEST_TIMEOUT_S, size: int = 100) -> None:
        self.url, self.timeout = url, timeout
        self.idle: list[tuple[float, Connection]] = []  # (idle since, connection)
        self.free = asyncio.Semaphore(size)

    async def request(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        """(status, parsed JSON body or None: any JSON value, Any as json.loads answers
        it); raises one of FAILURES."""
        async with self.free:
            now = time.monotonic()
            # Older ones may be closing: the server closes a keep-alive one idle for 5 s.
            while self.idle and (now - self.idle[-1][0] > IDLE_S or not self.idle[-1][1].usable):
                self.idle.pop()[1].close()
            conn = self.idle.pop()[1] if self.idle else await asyncio.wait_for(connect(self.url), 5)
            data = json.dumps(body).encode() if body is not None else b""
            try:
                sent = conn.request(method.encode(), path, data)
                status, payload = await asyncio.wait_for(sent, self.timeout)
            except BaseException:
                conn.close()
                raise
            if conn.usable:
                self.idle.append((time.monotonic(), conn))
        return status, json.loads(payload) if payload else None

    def close(self) -> None:
        for _, conn in self.idle:
            conn.close()
        self.idle.clear()


class ClientReport(TypedDict):
    """What one load process measured, sent back over a queue."""

    latencies: list[float]
    starts: list[float]  # when each request was due, in the order of latencies
    late: list[float]  # how long after it was due the pacer handed out each request (open loop)
    answered: int
    by_instrument: dict[int, int]
    errors: dict[str, int]
    cpu: float


class BookReport(TypedDict):
    messages: int
    cpu: float


class Run:
    """What one load process measures, shared by its workers."""

    def __init__(self, seconds: float, clients: int, rate: float, graphql: bool = False) -> None:
        self.clients = clients
        self.workers: list[Worker] = []
        self.latencies: list[float] = []
        self.starts: list[float] = []  # when each request was due (time.perf_counter)
        self.late: list[float] = []  # when the pacer handed each out, after it was due
        self.errors: dict[str, int] = {}
        self.answered = 0
        self.by_instrument: dict[int, int] = {}  # answered mutations per instrument number
        self.deadline = time.perf_counter() + seconds
        self.step = 1 / rate if rate > 0 else 0.0  # the open loop's schedule
        self.first = time.perf_counter()
        self.handed = 0  # requests of that schedule handed out so far
        self.paced = False  # every request of the open loop has been handed out
        self.finished = 0  # workers done: nothing in flight, and nothing more will be due
        self.all_idle: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.graphql = graphql  # the mutations as GraphQL documents (--graphql)

    def error(self, key: str) -> None:
        self.errors[key] = self.errors.get(key, 0) + 1

    def dispatch(self) -> float:
        """Hand out every request of the open loop's schedule due by now (request n is due
        at n/rate, to client n mod clients); when the next one is due.

        Called on the pacer's timer and after every answer, so a request goes out within
        an answer's gap of when it is due (a fraction of a millisecond at thousands per
        second), and within a timer tick at worst; never before."""
        now = time.perf_counter()
        while True:
            due = self.first + self.handed * self.step
            if due >= self.deadline:
                if not self.paced:
                    self.paced = True
                    for worker in self.workers:  # the others finish when answered
                        if not worker.connecting and not worker.backlog and not worker.busy:
                            worker.finish()
                return due
            if due > now:
                return due
            self.late.append(now - due)
            self.workers[self.handed % self.clients].due(due)
            self.handed += 1


def graphql_outcome(payload: bytes, placed: bool) -> tuple[int, bytes]:
    """A GraphQL answer as the REST one it stands for: 200 (201 and `{"order_id": ..}` for a
    place) when it carries data, else 422 for an order refused and 500 for an error."""
    body = msgspec.json.decode(payload)
    data = body.get("data") or {}
    if body.get("errors") or not data:
        return 500, payload
    if not placed:
        return 200, payload
    answer = data["placeOrder"]
    if answer["__typename"] != "OrderPlaced":
        return 422, payload
    return 201, b'{"order_id":"%s"}' % answer["orderId"].encode()


class Worker:
    """One client: a keep-alive connection and its own seeded flow of about 60% places,
    25% cancels and 15% modifies of its own orders.

    It is driven by callbacks, not by a task: `due` (the pacer's, in the open loop) queues
    a request, and each answer sends the next one from the connection's callback. So a
    request costs the client no timer, future or task step of its own, only its write and
    its answer's read (about half the CPU of a worker task that awaited each one).
    """

    def __init__(
        self, k: int, url: str, seed: int, run: Run, symbols: tuple[str, ...], closed: bool
    ) -> None:
        self.url, self.run, self.symbols, self.closed = url, run, symbols, closed
        self.rng = random.Random(seed * 1000 + k)
        self.conn: Connection | None = None
        self.mine: list[str] = []  # this client's live order ids, oldest first
        self.backlog: deque[float] = deque()  # due times of requests not yet sent
        self.started = 0.0  # when the request in flight was due
        self.oid = ""  # the order the request in flight is about ("": a place)
        self.connecting = False
        self.task: asyncio.Future[None] | None = None  # the reconnect under way
        self.finished = False

    @property
    def busy(self) -> bool:
        return self.conn is not None and self.conn.busy

    def due(self, at: float) -> None:
        """A request is due at `at` (open loop): sent now if none is in flight."""
        self.backlog.append(at)
        self.next()

    def next(self) -> None:
        """Send the next request, if one is due and none is in flight; otherwise, once no
        more will be due, count this worker finished."""
        if self.busy:
            return
        now = time.perf_counter()
        if self.closed and now < self.run.deadline:
            self.backlog.append(now)
        if not self.backlog:
            if self.closed or self.run.paced:
                self.finish()
            return
        conn = self.conn
        if conn is None or not conn.usable:
            if not self.connecting:
                self.connecting = True
                self.task = asyncio.ensure_future(self.reconnect())  # rare: a task is fine
            return
        self.started = self.backlog.popleft()
        rng, mine = self.rng, self.mine
        r = rng.random()
        mid = 1000 + rng.randint(-5, 5)
        try:
            if r < 0.6 or not mine:
                self.oid = ""
                side = rng.choice((1, -1))
                price = mid - side * rng.randint(-2, 10)
                quantity = rng.randint(1, 50)
                body = b'{"side":%d,"price":%d,"quantity":%d' % (side, price, quantity)
                if self.symbols:
                    body += (
                        b',"symbol":"%s"' % self.symbols[rng.randrange(len(self.symbols))].encode()
                    )
                if self.run.graphql:
                    conn.send(b"POST", "/graphql", GRAPHQL_PLACE % (body + b"}"), self.answered)
                else:
                    conn.send(b"POST", "/orders", body + b"}", self.answered)
            elif r < 0.85:
                oid = self.oid = mine.pop(rng.randrange(len(mine)))
                if self.run.graphql:
                    conn.send(b"POST", "/graphql", GRAPHQL_CANCEL % oid.encode(), self.answered)
                else:
                    conn.send(b"DELETE", f"/orders/{oid}", b"", self.answered)
            else:
                oid = self.oid = mine[rng.randrange(len(mine))]
                price = mid + rng.randint(-8, 8)
                if self.run.graphql:
                    body = GRAPHQL_MODIFY % (oid.encode(), price)
                    conn.send(b"POST", "/graphql", body, self.answered)
                else:
                    conn.send(b"PUT", f"/orders/{oid}", b'{"price":%d}' % price, self.answered)
        except FAILURES as exc:
            conn.close()
            self.answered(exc)

    def answered(self, outcome: Outcome) -> None:
        run = self.run
        run.latencies.append(time.perf_counter() - self.started)
        run.starts.append(self.started)
        if isinstance(outcome, Exception):
            run.error(type(outcome).__name__)
        else:
            status, payload = outcome
            if status < 300 and run.graphql:
                status, payload = graphql_outcome(payload, placed=not self.oid)
            if status < 300:
                run.answered += 1
                oid = self.oid
                if not oid:
                    oid = msgspec.json.decode(payload)["order_id"]
                    self.mine.append(oid)
                    if len(self.mine) > 200:
                        self.mine.pop(0)
                number = (int(oid) - 1) >> 40
                run.by_instrument[number] = run.by_instrument.get(number, 0) + 1
            else:
                run.error(str(status))
        self.next()
        if run.step and not run.paced:
            run.dispatch()

    async def reconnect(self) -> None:
        while True:
            if not self.backlog and (self.run.paced or time.perf_counter() >= self.run.deadline):
                self.connecting = False
                self.finish()
                return
            try:
                self.conn = await asyncio.wait_for(connect(self.url), REQUEST_TIMEOUT_S)
                break
            except (OSError, TimeoutError) as exc:
                self.run.error(f"connect: {type(exc).__name__}")
                if self.backlog:
                    self.backlog.popleft()  # that request is lost, counted as an error
                await asyncio.sleep(0.1)
        self.connecting = False
        self.next()

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        run = self.run
        run.finished += 1
        if run.finished == run.clients and not run.all_idle.done():
            run.all_idle.set_result(None)


async def client_loop(
    urls: list[str],
    seconds: float,
    seed: int,
    clients: int,
    rate: float = 0.0,
    symbols: tuple[str, ...] = (),
    graphql: bool = False,
) -> ClientReport:
    """Latencies of every request sent, its outcome counts, and this process's CPU time.

    With `rate` (requests/s for this process) the load is open-loop: the requests are due on
    a fixed schedule (client k at k/rate, then every clients/rate), and a request's latency
    runs from when it was due, not from when it went out, so a stall shows in the
    percentiles instead of silently slowing the clients down (coordinated omission). A
    client whose previous request is still unanswered sends the due one when it is. Without
    `rate`, each client sends as soon as it is answered.
    """
    cpu_before = time.process_time()
    run = Run(seconds, clients, rate, graphql)
    workers = run.workers = [
        Worker(k, urls[k % len(urls)], seed, run, symbols, closed=rate <= 0) for k in range(clients)
    ]

    async def sweep() -> None:
        """Fail the requests overdue by REQUEST_TIMEOUT_S: one timer for every client rather
        than a timer per request."""
        while True:
            await asyncio.sleep(0.25)
            overdue = time.monotonic() - REQUEST_TIMEOUT_S
            for worker in workers:
                conn = worker.conn
                if conn is not None and conn.busy and conn.sent_at < overdue:
                    conn.fail(TimeoutError("no answer within the request timeout"))

    async def pace() -> None:
        """The open loop's timer: one for all the clients, rather than one per request."""
        while not run.paced:
            due = run.dispatch()
            # At least a tick: uvloop runs a shorter sleep at once, which would spin.
            await asyncio.sleep(max(due - time.perf_counter(), 0.001))

    sweeper = asyncio.create_task(sweep())
    for worker in workers:
        worker.connecting = True
        worker.task = asyncio.ensure_future(worker.reconnect())
    pacer = asyncio.create_task(pace()) if rate > 0 else None
    await run.all_idle
    if pacer is not None:
        await pacer
    sweeper.cancel()
    for worker in workers:
        if worker.conn is not None:
            worker.conn.close()
    return {
        "latencies": run.latencies,
        "starts": run.starts,
        "late": run.late,
        "answered": run.answered,
        "by_instrument": run.by_instrument,
        "errors": run.errors,
        "cpu": time.process_time() - cpu_before,
    }


SLOW_MS = 5.0
WINDOW_S = 0.1


def tail_summary(results: list[ClientReport]) -> str:
    """Where the requests slower than SLOW_MS fall in time: spread over the run (the stack
    is slow throughout) or bunched into a few 100 ms windows (something stops everything
    now and then: a collection, a fork, a burst of writes), with the worst windows' offsets
    from the start, to set beside the services' logs."""
    pairs = [(t, lat) for r in results for t, lat in zip(r["starts"], r["latencies"], strict=True)]
    if not pairs:
        return "tail: no requests"
    first = min(t for t, _ in pairs)
    windows: dict[int, list[float]] = {}
    for t, lat in pairs:
        windows.setdefault(int((t - first) / WINDOW_S), []).append(lat * 1000)
    slow = {w: [x for x in lats if x > SLOW_MS] for w, lats in windows.items()}
    slow = {w: xs for w, xs in slow.items() if xs}
    count = sum(len(xs) for xs in slow.values())
    worst = sorted(slow, key=lambda w: -max(slow[w]))[:5]
    shown = ", ".join(
        f"{w * WINDOW_S:.1f} s (max {max(slow[w]):.0f} ms, {len(slow[w])} slow)" for w in worst
    )
    return (
        f"tail: {count:,} requests over {SLOW_MS:g} ms ({100 * count / len(pairs):.1f}%), in "
        f"{len(slow)} of {len(windows)} {WINDOW_S * 1000:.0f} ms windows; worst at {shown or '-'}"
    )


def proc_main(
    urls: list[str],
    seconds: float,
    seed: int,
    clients: int,
    rate: float,
    symbols: tuple[str, ...],
    out: Queue[ClientReport],
    graphql: bool = False,
) -> None:
    out.put(uvloop.run(client_loop(urls, seconds, seed, clients, rate, symbols, graphql)))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context_switches(pid: int) -> tuple[int, int]:
    """Context switches of every thread of a process so far (Linux /proc; 0 elsewhere):
    voluntary (waits ended by a wake-up) and not (preempted while it could run).

    In the open loop each request costs every process a few wake-ups, and their count per
    mutation shows what batching saves better than CPU time does. Preemptions are where
    processes queue for the two cores: each one delays whatever that process was doing.
    """
    voluntary = preempted = 0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 0, 0
    for task in tasks:
        try:
            status = (task / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("voluntary_ctxt_switches"):
                voluntary += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches"):
                preempted += int(line.split()[1])
    return voluntary, preempted


def redis_calls(client: Client) -> dict[str, tuple[int, int]]:
    """(calls, µs spent executing them) per command so far, from INFO commandstats (a
    single server only). A script's calls count both for EVALSHA and for each command it
    runs."""
    if not isinstance(client, redis.Redis):
        return {}
    stats = cast(dict[str, dict[str, int]], client.info("commandstats"))
    return {
        name.removeprefix("cmdstat_"): (entry["calls"], entry["usec"])
        for name, entry in stats.items()
    }


def cpu_times() -> list[int]:
    """The machine's CPU time so far by kind (/proc/stat's first line, in ticks; Linux)."""
    try:
        with open("/proc/stat") as stat:
            return [int(x) for x in stat.readline().split()[1:]]
    except OSError:
        return []


class _Gauged:
    __slots__ = ("price", "quantity")

    def __init__(self, price: int, quantity: int) -> None:
        self.price, self.quantity = price, quantity


def speed_gauge(rounds: int = 5) -> float:
    """Milliseconds a fixed pure-Python loop takes (the least of `rounds`): the speed of the
    cores at the time, set beside a run's figures. This VM's slow hours show no steal: its
    cores run the same code slower (the stack's CPU per mutation rose by half), and without
    this a slower hour reads like slower code."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        book: dict[int, _Gauged] = {}
        for i in range(20_000):  # an order's worth of the services' kind of work
            order = book[i] = _Gauged(1000 + i % 17, i & 63)
            body = b'{"price":%d,"quantity":%d}' % (order.price, order.quantity)
            book.pop(i - len(body) % 8, None)
        best = min(best, time.perf_counter() - started)
    return best * 1000


def wake_gauge(rounds: int = 1000, gap_s: float = 0.0005) -> tuple[float, float, float]:
    """Microseconds of CPU a process spends to answer one message over a local socket:
    from a process on the same core, from one on the other core, and from one on the other
    core when it sleeps between messages (each then wakes it, and its core, from idle), as
    the services do in the open loop. On this VM (nested virtualization, guest halt-polling
    off) the second costs several times the first and the third several times more: that,
    not the code, is most of what the open loop adds to the CPU per mutation over the
    closed loop (one core for the whole stack cut it by a quarter, but cannot carry the
    load), so each run prints it beside its figures. One core twice with fewer than two."""
    cores = sorted(os.sched_getaffinity(0))
    here, there = cores[0], cores[-1]
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the answering side: it never returns into the caller's code
        try:
            ours.close()
            while (asked := theirs.recv(1)) and asked != b"q":
                if asked == b"t":  # its own CPU time so far, a line
                    theirs.sendall(b"%.9f\n" % time.process_time())
                elif asked == b"m":  # move to the core in the next line
                    os.sched_setaffinity(0, {int(theirs.recv(16).decode())})
                    theirs.sendall(b"x")
                else:
                    theirs.sendall(b"x")
        except BaseException:
            os._exit(1)  # the parent sees its socket close, and fails with OSError
        os._exit(0)
    theirs.close()
    replies = ours.makefile("rb")

    def answer(request: bytes) -> bytes:
        ours.sendall(request)
        reply = replies.read(1) if request != b"t" else replies.readline()
        if not reply:
            raise OSError("the wake gauge's child died")
        return reply

    def answer_cost(core: int, gap: float) -> float:
        ours.sendall(b"m")
        answer(b"%-16d" % core)
        started = float(answer(b"t"))
        for _ in range(rounds):
            answer(b"x")
            if gap:
                time.sleep(gap)
        return (float(answer(b"t")) - started) / rounds * 1e6

    try:
        os.sched_setaffinity(0, {here})
        try:
            return answer_cost(here, 0.0), answer_cost(there, 0.0), answer_cost(there, gap_s)
        finally:
            os.sched_setaffinity(0, cores)  # the load clients, forked later, inherit it
    finally:
        with contextlib.suppress(OSError):
            ours.sendall(b"q")
        replies.close()
        ours.close()
        os.waitpid(pid, 0)


def ms_at(seconds: list[float], q: float) -> float:
    """The `q` quantile, in ms, of sorted durations in seconds."""
    return seconds[min(len(seconds) - 1, int(len(seconds) * q))] * 1000


def steal_summary(before: list[int], after: list[int]) -> str:
    """Time the hypervisor gave this machine's CPUs to other guests (steal) and their idle
    time during the run: a run with much steal measured a slower machine, not the code."""
    if len(before) < 8 or len(after) < 8:
        return "machine: no /proc/stat"
    delta = [a - b for a, b in zip(after, before, strict=False)]
    total = sum(delta[:8]) or 1
    steal, idle = 100 * delta[7] / total, 100 * delta[3] / total
    return f"machine during the run: steal {steal:.1f}%, idle {idle:.1f}%"


def scrape(urls: list[str]) -> list[str]:
    """Each API replica's /metrics."""
    texts = []
    for url in urls:
        with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=10) as response:
            texts.append(response.read().decode())
    return texts


def round_trips(texts: list[str]) -> dict[float, int]:
    """The API replicas' engine round-trip histogram: upper bound in seconds -> requests at
    most that long, summed over replicas and commands."""
    counts: dict[float, int] = {}
    for text in texts:
        for labels, count in samples(text, "exchange_api_engine_round_trip_seconds_bucket"):
            le = float(labels["le"])  # "+Inf" included
            counts[le] = counts.get(le, 0) + int(count)
    return counts


def garbage(texts: list[str]) -> tuple[float, float]:
    """The API replicas' cyclic garbage collections so far, and the objects they freed
    (`shared/gc_policy.py`: a request that leaves no reference cycle brings none nearer)."""
    runs = sum(value for text in texts for _, value in samples(text, "python_gc_collections_total"))
    freed = sum(
        value for text in texts for _, value in samples(text, "python_gc_objects_collected_total")
    )
    return runs, freed


def round_trip_summary(before: dict[float, int], after: dict[float, int]) -> str:
    """How much of the latency is the journal's: the share of the run's requests whose
    engine round trip (as the API measured it, queueing included) fits each bound."""
    delta = {le: n - before.get(le, 0) for le, n in after.items()}
    total = delta.get(float("inf"), 0)
    if not total:
        return "engine round trip (API's view): none measured"
    shares = ", ".join(
        f"<={le * 1000:g} ms {100 * n / total:.2f}%"
        for le, n in sorted(delta.items())
        if 0.0005 <= le <= 0.02
    )
    return f"engine round trip (API's view): {shares}"


def lag(client: Client, settings: Settings) -> tuple[int, int]:
    """(commands not yet answered by the engines, events not yet archived), over every
    instrument."""
    engine_lag = archiver_lag = 0
    for instrument in settings.instruments:
        commands = settings.command_stream_of(instrument.symbol)
        last_cmd = entries(client.xrevrange(commands, "+", "-", count=1))
        last_evt = entries(
            client.xrevrange(settings.event_stream_of(instrument.symbol), "+", "-", count=1)
        )
        if last_cmd and last_evt:
            answered = last_evt[0][1][b"c"]
            engine_lag += len(entries(client.xrange(commands, b"(" + answered, "+", count=100000)))
        top = int(last_evt[0][0].split(b"-")[0]) if last_evt else instrument.base
        progress = value(client.get(settings.key(instrument.symbol, "archiver:progress")))
        archiver_lag += top - int(progress or instrument.base)
    return engine_lag, archiver_lag


async def book_client(url: str, depth: int, seconds: float, ready: ProcessEvent) -> BookReport:
    """One incremental-book subscriber: its snapshot, then every level change (counted, not
    parsed: the subscriber shares the machine with the stack it measures)."""
    from websockets.asyncio.client import connect as ws_connect

    ws_url = url.replace("http://", "ws://") + f"/ws/book?depth={depth}"
    cpu_before = time.process_time()
    messages = 0
    async with ws_connect(ws_url, max_size=None, open_timeout=60) as ws:
        json.loads(await ws.recv())  # the snapshot: the replica is built
        ready.set()
        deadline = time.perf_counter() + seconds
        while (left := deadline - time.perf_counter()) > 0:
            try:
                await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                break
            messages += 1
    return {"messages": messages, "cpu": time.process_time() - cpu_before}


def book_client_main(
    url: str, depth: int, seconds: float, ready: ProcessEvent, out: Queue[BookReport]
) -> None:
    out.put(uvloop.run(book_client(url, depth, seconds, ready)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", action="append", help="API base URL (repeat for replicas)")
    parser.add_argument("--redis-url", help="for lag figures when --url is given")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--clients", type=int, default=24, help="concurrent clients per process")
    parser.add_argument("--procs", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="open loop: mutations/s in all, on a fixed schedule (default: closed loop)",
    )
    parser.add_argument(
        "--instruments", type=int, default=1, help=f"places spread over up to {len(SYMBOLS)}"
    )
    parser.add_argument("--engines", type=int, default=1, help="engine processes (own stack)")
    parser.add_argument("--cluster", action="store_true", help="on a local 3+3 Redis Cluster")
    parser.add_argument(
        "--graphql", action="store_true", help="the mutations as GraphQL documents on /graphql"
    )
    parser.add_argument(
        "--book-subscriber",
        type=int,
        default=0,
        metavar="DEPTH",
        help="one /ws/book?depth=DEPTH subscriber on the first replica during the run",
    )
    args = parser.parse_args()

    stack = cluster = None
    tmp = tempfile.TemporaryDirectory(prefix="load-")
    symbols = SYMBOLS[: args.instruments]
    groups = tuple(",".join(symbols[k :: args.engines]) for k in range(args.engines))
    settings = Settings(instruments_spec=",".join(symbols))
    try:
        if args.url:
            urls, redis_url = args.url, args.redis_url
        else:
            if args.cluster:
                cluster = LocalCluster(Path(tmp.name) / "cluster")
                cluster.start()
            stack = Stack(
                Path(tmp.name),
                [free_port() for _ in range(args.replicas)],
                redis_url=cluster.url if cluster else "",
                # One load generator is one client address: the per-client limit would cap it.
                env={"RATE_LIMIT_PER_S": "0", "INSTRUMENTS": settings.instruments_spec},
                log_dir=Path(tmp.name) / "logs",
                engine_groups=groups if args.engines > 1 else ("",),
            )
            stack.start_all()
            stack.wait_ready()
            urls, redis_url = [stack.api_url(p) for p in stack.api_ports], stack.redis_url
        rclient = redis_connect(redis_url) if redis_url else None
        queue: Queue[ClientReport] = multiprocessing.Queue()
        procs = [
            multiprocessing.Process(
                target=proc_main,
                args=(
                    urls,
                    args.seconds,
                    args.seed + i,
                    args.clients,
                    args.rate / args.procs,
                    symbols if args.instruments > 1 else (),
                    queue,
                    args.graphql,
                ),
            )
            for i in range(args.procs)
        ]
        services = dict(stack.processes) if stack is not None else {}
        for node in cluster.nodes if cluster else ():
            if node.process is not None:
                services[f"redis-{node.port}"] = node.process
        book_queue: Queue[BookReport] = multiprocessing.Queue()
        book_proc = None
        if args.book_subscriber:
            ready = multiprocessing.Event()
            book_proc = multiprocessing.Process(
                target=book_client_main,
                args=(urls[0], args.book_subscriber, args.seconds, ready, book_queue),
            )
            book_proc.start()
            if not ready.wait(60):
                raise SystemExit("the book subscriber got no snapshot")
        try:
            wake_costs = ", ".join(f"{cost:.0f}" for cost in wake_gauge())
        except (OSError, ValueError, AttributeError) as exc:  # not Linux, or no such core
            wake_costs = f"not measured ({exc!r})"
        cpu_before = {name: cpu_seconds(proc.pid) for name, proc in services.items()}
        switches_before = {name: context_switches(proc.pid) for name, proc in services.items()}
        calls_before = redis_calls(rclient) if rclient is not None else {}
        metrics_before = scrape(urls)
        gauge_before = speed_gauge()
        machine_before = cpu_times()
        started = time.monotonic()
        for p in procs:
            p.start()
        max_lag = (0, 0)
        # Until every client process has reported (not until they exit: one that put its
        # report on the queue exits only once it is read, so waiting for that took 30 s more).
        results: list[ClientReport] = []
        while len(results) < len(procs):
            try:
                results.append(queue.get(timeout=0.5))
            except queue_module.Empty:
                if time.monotonic() - started > args.seconds + 30:
                    raise SystemExit("a client process did not report within 30 s") from None
            if rclient is not None:
                now = lag(rclient, settings)
                max_lag = (max(max_lag[0], now[0]), max(max_lag[1], now[1]))
        cpu = {name: cpu_seconds(proc.pid) - cpu_before[name] for name, proc in services.items()}
        switches = {}
        for name, proc in services.items():
            (voluntary, preempted), before = context_switches(proc.pid), switches_before[name]
            switches[name] = (voluntary - before[0], preempted - before[1])
        calls_after = redis_calls(rclient) if rclient is not None else {}
        metrics_after = scrape(urls)
        machine_after = cpu_times()
        gauge_after = speed_gauge()
        stack_cpu = sum(cpu.values())
        cpu["client"] = sum(r["cpu"] for r in results)
        book = None
        if book_proc is not None:
            book = book_queue.get(timeout=60)
            book_proc.join()
            cpu["book-client"] = book["cpu"]
        for p in procs:
            p.join()
        latencies: list[float] = sorted(x for r in results for x in r["latencies"])
        errors: dict[str, int] = {}
        for r in results:
            for kind, times in r["errors"].items():
                errors[kind] = errors.get(kind, 0) + times
        answered = sum(r["answered"] for r in results)  # 2xx only: errors are not throughput
        mode = f"open loop at {args.rate:,.0f}/s" if args.rate else "closed loop"
        if args.graphql:
            mode += ", GraphQL"
        print(
            f"clients {args.clients * args.procs} over {len(urls)} API replica(s), "
            f"{args.seconds:.0f} s, {mode}"
        )
        print(f"mutations: {answered:,} -> {answered / args.seconds:,.0f}/s")
        print(
            f"latency ms: p50 {ms_at(latencies, 0.5):.2f}  p99 {ms_at(latencies, 0.99):.2f}"
            f"  max {latencies[-1] * 1000:.1f}"
        )
        late = sorted(x for r in results for x in r["late"])
        if late:
            print(
                f"handed out late ms (the client's own pacing): p50 {ms_at(late, 0.5):.2f}"
                f"  p99 {ms_at(late, 0.99):.2f}  max {late[-1] * 1000:.1f}"
            )
        print(f"errors: {sum(errors.values())} {errors}")
        print(tail_summary(results))
        print(round_trip_summary(round_trips(metrics_before), round_trips(metrics_after)))
        (runs, freed), (runs_before, freed_before) = garbage(metrics_after), garbage(metrics_before)
        print(
            f"API garbage collections: {runs - runs_before:.0f} "
            f"({(freed - freed_before) / max(answered, 1):.1f} objects freed per mutation)"
        )
        print(steal_summary(machine_before, machine_after))
        print(
            f"machine speed: gauge {gauge_before:.1f} ms before the run, {gauge_after:.1f} after"
            " (tests.load.speed_gauge, idle stack; lower is faster)"
        )
        print(
            "machine wake-up cost (µs of CPU to answer a message from the same core, the other"
            f" core, the other core after a sleep): {wake_costs} (tests.load.wake_gauge)"
        )
        per = ", ".join(
            f"{name} {seconds / max(answered, 1) * 1e6:.0f}" for name, seconds in cpu.items()
        )
        print(f"CPU per mutation (µs): {per}")
        print(
            f"stack CPU per mutation (µs, every service): {stack_cpu / max(answered, 1) * 1e6:.0f}"
        )
        print(
            "wake-ups per mutation: "
            + ", ".join(f"{name} {n / max(answered, 1):.2f}" for name, (n, _) in switches.items())
        )
        print(
            "preemptions per 1,000 mutations: "
            + ", ".join(
                f"{name} {1000 * n / max(answered, 1):.1f}" for name, (_, n) in switches.items()
            )
        )
        if calls_after:
            calls = {
                name: (
                    n - calls_before.get(name, (0, 0))[0],
                    us - calls_before.get(name, (0, 0))[1],
                )
                for name, (n, us) in calls_after.items()
            }
            print(
                "redis calls per mutation (µs executing): "
                + ", ".join(
                    f"{name} {n / max(answered, 1):.2f} ({us / max(answered, 1):.1f})"
                    for name, (n, us) in sorted(calls.items(), key=lambda kv: -kv[1][0])
                    if n >= answered / 100
                )
            )
        if book is not None:
            print(
                f"book subscriber (depth {args.book_subscriber}): {book['messages']:,} messages, "
                f"{book['messages'] / max(answered, 1):.2f} per mutation"
            )
        if rclient is not None:
            print(
                f"lag (max during run): engine {max_lag[0]} commands, archiver {max_lag[1]} events"
            )
            end = lag(rclient, settings)
            print(f"lag (at end): engine {end[0]}, archiver {end[1]}")
        if args.instruments > 1:
            by: dict[int, int] = {}
            for r in results:
                for number, count in r["by_instrument"].items():
                    by[number] = by.get(number, 0) + count
            for k, group in enumerate(groups):
                numbers = [settings.instrument(symbol).number for symbol in group.split(",")]
                mine = sum(by.get(n, 0) for n in numbers)
                print(
                    f"engine {k} ({group}): {mine:,} mutations, {mine / args.seconds:,.0f}/s, "
                    f"{mine / max(answered, 1):.0%}"
                )
    finally:
        if stack is not None:
            stack.stop()
        if cluster is not None:
            cluster.stop()
        tmp.cleanup()


if __name__ == "__main__":
    main()
