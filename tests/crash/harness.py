"""Crash harness: steady seeded load while a chaos loop SIGKILLs random services.

The load (`tests/crash/mix.py`) mixes GTC, IOC, FOK and market orders, price and quantity
changes and cancels over two instruments, so every kind of command is in flight when a
process dies.

`python -m tests.crash.harness --kills 100 --rate 300` is the long run; the test in this
folder runs a short one. `--standby` runs a hot standby engine: every engine kill then
kills the leading one, and the standby must take over (`tests/crash/standby.py`; the
takeover times are printed). `--mongodb` archives to MongoDB (`MONGODB_URL`, else the local
wire-protocol test server of `tests/mongo_wire.py`) instead of SQLite. At the end it
checks, for every acknowledged mutation, that the store holds it with the right outcome;
that no event, order or trade is duplicated or missing; that every order's traded quantity
is the sum of its trades; that stored sequence numbers are gap-free; and that the engine's
state hash (and every stored event) equals what a fresh engine produces from the same
commands without crashes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Protocol

from engine.matching import MatchingEngine
from engine.snapshot import state_hash
from shared.commands import Command, decode_command
from shared.config import Settings
from shared.events import (
    NO_LIQUIDITY,
    Accepted,
    Cancelled,
    Event,
    Modified,
    QuantityChanged,
    Rejected,
    Trade,
)
from shared.redis_client import TRANSIENT_ERRORS, Client, connect
from shared.redis_server import free_port
from shared.stack import Stack
from store import Store, open_store
from tests.crash.mix import INSTRUMENTS, INSTRUMENTS_SPEC, Request, next_request
from tests.crash.standby import (
    Takeovers,
    checkpoint_writers,
    divergences,
    engines_in_stop_order,
    kill_leader,
)
from tests.load import FAILURES, Pool
from tests.mongo_wire import wire_server
from tests.redis_replies import entries, read_entries, value


@dataclass(frozen=True)
class Change:
    kind: str  # "cancel" or "modify"
    order_id: int
    price: int | None  # ticks
    quantity: int | None
    success: bool
    reason: str | None


@dataclass
class Ledger:
    """What clients were told: only acknowledged outcomes count."""

    places: dict[str, str] = field(default_factory=dict)  # client_order_id -> order_id
    no_liquidity: int = 0  # market orders refused for want of resting orders
    changes: list[Change] = field(default_factory=list)
    sent: int = 0
    kinds: Counter[str] = field(default_factory=Counter)  # acknowledged, by request kind
    failed: Counter[str] = field(default_factory=Counter)

    @property
    def acknowledged(self) -> int:
        return len(self.places) + self.no_liquidity + len(self.changes)


class CommandTap:
    """Copies every command entry from the stream as it appears (the engine trims it).

    After a Redis outage it drops the tail that the stream no longer holds: a failover loses
    the writes its replica had not received, and those commands never happened."""

    def __init__(self, url: str, stream: str) -> None:
        self.url, self.stream = url, stream
        self.entries: list[tuple[bytes, bytes]] = []
        self.dropped = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last: bytes | str = "0-0"
        client = connect(self.url)
        outage = False
        while not self.stop.is_set():
            try:
                if outage:
                    last = self._resync(client)
                    outage = False
                response = read_entries(client.xread({self.stream: last}, count=1000, block=200))
            except TRANSIENT_ERRORS:
                outage = True
                time.sleep(0.1)
                continue
            for entry_id, fields in response:
                self.entries.append((entry_id, fields[b"c"]))
                last = entry_id

    def _resync(self, client: Client) -> bytes | str:
        """Forget tapped entries the stream lost (always its newest: a replica holds a
        prefix of its master's writes); returns the id to read after."""
        while self.entries:
            newest = self.entries[-1][0]
            if client.xrange(self.stream, newest, newest):
                return newest
            self.entries.pop()
            self.dropped += 1
        return "0-0"

    def commands(self) -> list[Command]:
        return [decode_command(body) for _, body in self.entries]


class RunningStack(Protocol):
    """What the load reads of a stack: the Stack itself, or a picture of one that a load
    process received (tests/cluster/failover.py's StackView)."""

    @property
    def api_ports(self) -> list[int]: ...
    @property
    def redis_url(self) -> str: ...
    @property
    def data_dir(self) -> Path: ...
    def env(self) -> dict[str, str]: ...
    def api_url(self, port: int | None = None) -> str: ...


async def load(
    stack: RunningStack,
    ledger: Ledger,
    rate: float,
    until: asyncio.Event,
    seed: int,
    symbols: tuple[str, ...] = (),
) -> None:
    """The seeded mix of `tests/crash/mix.py` at `rate`/s over the API replicas in turn;
    places spread over `symbols` (none: the default instrument)."""
    rng = random.Random(seed)
    settings = stack_settings(stack)
    clients = [Pool(stack.api_url(p), timeout=15) for p in stack.api_ports]
    pending: set[asyncio.Task[None]] = set()
    n = 0

    def ticks(price: object, order_id: int) -> int:
        instrument = settings.instrument_of(order_id) or settings.default_instrument
        return int(Decimal(str(price)) / instrument.tick_size)

    async def one(client: Pool, request: Request) -> None:
        kind, body = request.kind, request.body or {}
        try:
            status, answer = await client.request(request.method, request.path, request.body)
            if kind.startswith("place"):
                if status in (200, 201):
                    ledger.places[body["client_order_id"]] = answer["order_id"]
                    ledger.kinds[kind] += 1
                    ledger.kinds[f"place:{body['symbol']}"] += 1
                    return
                if status == 409 and answer.get("reason") == NO_LIQUIDITY:
                    ledger.no_liquidity += 1
                    ledger.kinds[f"{kind}:no_liquidity"] += 1
                    return
            elif status == 200:
                oid = int(request.order_id)
                price = body.get("price")
                ledger.changes.append(
                    Change(
                        kind.split(":")[0],
                        oid,
                        None if price is None else ticks(price, oid),
                        body.get("quantity"),
                        answer["success"],
                        answer.get("reason"),
                    )
                )
                ledger.kinds[kind] += 1
                return
            ledger.failed[f"{kind}:{status}"] += 1
        except FAILURES as exc:
            ledger.failed[f"{kind}:{type(exc).__name__}"] += 1

    start = time.monotonic()
    while not until.is_set():
        n += 1
        client = clients[n % len(clients)]
        known = list(ledger.places.values())
        request = next_request(
            rng, n, seed, known, symbols or (settings.default_instrument.symbol,)
        )
        task = asyncio.create_task(one(client, request))
        ledger.sent += 1
        pending.add(task)
        task.add_done_callback(pending.discard)
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
    if pending:
        await asyncio.wait(pending)
    for client in clients:
        client.close()


async def chaos(
    stack: Stack,
    kills: int,
    interval: float,
    seed: int,
    log: list[str],
    takeovers: Takeovers | None = None,
) -> None:
    """`takeovers`: with a standby, an engine kill hits the leading engine and is timed."""
    rng = random.Random(seed + 1)
    services = ["engine", "archiver", "redis", *[f"api-{p}" for p in stack.api_ports]]
    for i in range(kills):
        # Every service is hit at least once, then at random.
        name = services[i] if i < len(services) else rng.choice(services)
        await asyncio.sleep(rng.uniform(0.5, 1.5) * interval)
        if name == "engine" and takeovers is not None:
            killed = await asyncio.to_thread(kill_leader, stack, takeovers)
            await asyncio.sleep(rng.uniform(0.0, 0.5))
            await asyncio.to_thread(stack.start, killed)
            log.append(name)
            continue
        await asyncio.to_thread(stack.kill, name, signal.SIGKILL)
        await asyncio.sleep(rng.uniform(0.0, 0.5))
        await asyncio.to_thread(stack.start, name)
        log.append(name)


@dataclass
class Report:
    sent: int
    acknowledged: int
    lost: int
    duplicated: int
    problems: list[str]
    kills: Counter[str]
    commands: int
    events: int
    engine_hash: str
    reference_hash: str
    failed: Counter[str]
    kinds: Counter[str] = field(default_factory=Counter)  # acknowledged, by request kind
    takeovers: Takeovers = field(default_factory=Takeovers)

    def ok(self) -> bool:
        return not self.problems and self.lost == 0 and self.duplicated == 0

    def summary(self) -> str:
        return (
            f"sent {self.sent}, acknowledged {self.acknowledged}, lost {self.lost}, "
            f"duplicated {self.duplicated}, kills {sum(self.kills.values())} {dict(self.kills)}, "
            f"commands {self.commands}, events {self.events}, "
            f"engine hash {self.engine_hash} vs reference {self.reference_hash}, "
            f"acknowledged by kind {dict(sorted(self.kinds.items()))}, "
            f"unacknowledged {dict(self.failed)}, problems {self.problems[:10]}"
        )


def stack_settings(stack: RunningStack) -> Settings:
    """The settings the stack's services run with (instruments, prefix, store)."""
    env = stack.env()
    return Settings(
        redis_url=stack.redis_url,
        data_dir=stack.data_dir,
        mongodb_url=env.get("MONGODB_URL", ""),
        mongodb_db=env.get("MONGODB_DB", "exchange"),
        instruments_spec=env.get("INSTRUMENTS", "DEFAULT"),
        stream_prefix=env.get("STREAM_PREFIX", "exchange"),
    )


async def verify(
    stack: Stack, ledger: Ledger, taps: dict[str, CommandTap], kills: list[str]
) -> Report:
    """`taps`: symbol -> the tap of its command stream, for every instrument traded."""
    problems: list[str] = []
    settings = stack_settings(stack)
    instruments = [settings.instrument(symbol) for symbol in taps]
    client = connect(stack.redis_url)
    # Let the engines drain their streams, then stop them cleanly so they publish their hash.
    for instrument in instruments:
        stream, tap = settings.command_stream_of(instrument.symbol), taps[instrument.symbol]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            last = entries(client.xrevrange(stream, "+", "-", count=1))
            if not last or (tap.entries and tap.entries[-1][0] == last[0][0]):
                break
            await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)
    for name in engines_in_stop_order(stack):
        stack.kill(name, signal.SIGTERM)
    engine_hashes, reference_hashes = [], []
    expected: dict[str, list[Event]] = {}
    for instrument in instruments:
        tap = taps[instrument.symbol]
        tap.stop.set()
        tap.thread.join()
        key = settings.key(instrument.symbol, "engine:state_hash")
        engine_hashes.append((value(client.get(key)) or b"").decode())
        reference = MatchingEngine(instrument.base)
        events = expected[instrument.symbol] = []
        for command in tap.commands():
            events.extend(reference.apply(command))
        reference_hashes.append(state_hash(reference))
        if engine_hashes[-1] != reference_hashes[-1]:
            problems.append(
                f"{instrument.symbol}: state hash {engine_hashes[-1]} != "
                f"reference {reference_hashes[-1]}"
            )

    # The archiver must reach every instrument's last event.
    store = open_store(settings)
    await store.open()
    try:
        everything: list[Event] = []
        for instrument in instruments:
            events = expected[instrument.symbol]
            target = events[-1].seq if events else instrument.base
            deadline = time.monotonic() + 60
            while await store.progress(instrument.number) < target:
                if time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            stored = [
                e for e in await store.events(instrument.base, 10**9) if instrument.owns(e.seq)
            ]
            everything += stored
            first = instrument.base + 1
            if [e.seq for e in stored] != list(range(first, first + len(stored))):
                problems.append(f"{instrument.symbol}: stored sequence numbers are not gap-free")
            if stored != events:
                index = next(
                    (i for i, (a, b) in enumerate(zip(stored, events, strict=False)) if a != b),
                    None,
                )
                problems.append(
                    f"{instrument.symbol}: stored events differ from a crash-free replay: "
                    f"{len(stored)} vs {len(events)}, first difference at index {index}"
                )
            await check_orders(store, stored, problems, instrument.number)
        lost, duplicated = check_ledger(ledger, everything, problems)
    finally:
        await store.close()
        client.close()
    return Report(
        ledger.sent, ledger.acknowledged, lost, duplicated, problems, Counter(kills),
        sum(len(t.entries) for t in taps.values()), sum(len(e) for e in expected.values()),
        " ".join(engine_hashes), " ".join(reference_hashes), ledger.failed, ledger.kinds,
    )  # fmt: skip


def check_ledger(ledger: Ledger, stored: list[Event], problems: list[str]) -> tuple[int, int]:
    accepted: dict[int, Accepted] = {}
    by_coid: Counter[str] = Counter()
    modified: Counter[tuple[int, int]] = Counter()
    modified_any: Counter[int] = Counter()
    resized: Counter[tuple[int, int]] = Counter()
    cancelled: Counter[int] = Counter()
    rejected: Counter[tuple[int, str]] = Counter()
    for e in stored:
        if isinstance(e, Accepted):
            accepted[e.order_id] = e
            if e.client_order_id:
                by_coid[e.client_order_id] += 1
        elif isinstance(e, Modified):
            modified[(e.order_id, e.price)] += 1
            modified_any[e.order_id] += 1
        elif isinstance(e, QuantityChanged):
            resized[(e.order_id, e.quantity)] += 1
        elif isinstance(e, Cancelled):
            cancelled[e.order_id] += 1
        elif isinstance(e, Rejected):
            rejected[(e.order_id, e.reason)] += 1
    lost = 0
    duplicated = sum(n - 1 for n in by_coid.values() if n > 1)
    # An order is cancelled at most once (IOC, FOK and market remainders included).
    duplicated += sum(n - 1 for n in cancelled.values() if n > 1)
    for coid, order_id in ledger.places.items():
        a = accepted.get(int(order_id))
        if a is None or a.client_order_id != coid:
            lost += 1
            problems.append(f"acknowledged place {coid} -> {order_id} not stored")
    refused = rejected[(0, NO_LIQUIDITY)]  # a refused market order gets no order id
    if refused < ledger.no_liquidity:
        lost += ledger.no_liquidity - refused
        problems.append(f"{ledger.no_liquidity} no_liquidity answers, {refused} stored")
    for c in ledger.changes:
        if not c.success:
            key = (c.order_id, c.reason or "")
            if rejected[key] <= 0:
                lost += 1
                problems.append(
                    f"acknowledged rejection of {c.kind} {c.order_id} ({c.reason}) not stored"
                )
            rejected[key] -= 1
        elif c.kind == "cancel":
            if cancelled[c.order_id] <= 0:
                lost += 1
                problems.append(f"acknowledged cancel of {c.order_id} not stored")
            cancelled[c.order_id] -= 1
        elif not _modify_stored(c, modified, modified_any, resized):
            lost += 1
            problems.append(f"acknowledged modify of {c.order_id} to {c.price}/{c.quantity} lost")
    return lost, duplicated


def _modify_stored(
    c: Change,
    modified: Counter[tuple[int, int]],
    modified_any: Counter[int],
    resized: Counter[tuple[int, int]],
) -> bool:
    """Whether a successful modify's events are stored (each claims what it finds). A price
    change always stores Modified at that price; a quantity change stores QuantityChanged,
    or, when the order already had that quantity and no price came with it, a Modified."""
    found = True
    if c.price is not None:
        found = modified[(c.order_id, c.price)] > 0
        modified[(c.order_id, c.price)] -= 1
        modified_any[c.order_id] -= 1
    if c.quantity is not None and resized[(c.order_id, c.quantity)] > 0:
        resized[(c.order_id, c.quantity)] -= 1
    elif c.quantity is not None and c.price is None:
        found = modified_any[c.order_id] > 0
        modified_any[c.order_id] -= 1
    return found


async def check_orders(
    store: Store, stored: list[Event], problems: list[str], instrument: int = 0
) -> None:
    trades = [e for e in stored if isinstance(e, Trade)]
    rows = await store.list_trades(limit=10**9, after=None, instrument=instrument)
    if [t.trade_id for t in rows] != [t.seq for t in trades]:
        problems.append(f"trades table ({len(rows)}) != trade events ({len(trades)})")
    traded: Counter[int] = Counter()
    for t in trades:
        traded[t.bid_order_id] += t.quantity
        traded[t.ask_order_id] += t.quantity
    after = None
    while True:
        page = await store.list_orders(
            alive=None, side=None, limit=5000, after=after, instrument=instrument
        )
        if not page:
            break
        for o in page:
            if o.traded != traded[o.order_id]:
                problems.append(
                    f"order {o.order_id}: traded {o.traded} != trades {traded[o.order_id]}"
                )
            if o.quantity != o.traded + o.remaining + o.cancelled:
                problems.append(f"order {o.order_id}: quantities do not add up")
        after = page[-1].order_id


async def run(
    kills: int,
    rate: float,
    seed: int,
    data_dir: Path,
    interval: float = 1.5,
    mongodb_url: str = "",
    standby: bool = False,
) -> Report:
    """`mongodb_url`: archive to that MongoDB (a fresh database) instead of SQLite.
    `standby`: run a hot standby engine; engine kills hit the leader."""
    env = {
        "SNAPSHOT_EVERY": "300",
        "SNAPSHOT_INTERVAL_S": "2",
        "REQUEST_TIMEOUT_S": "10",
        "INSTRUMENTS": INSTRUMENTS_SPEC,
    }
    if mongodb_url:
        env |= {"MONGODB_URL": mongodb_url, "MONGODB_DB": f"crash_{seed}_{int(time.time())}"}
    stack = Stack(
        data_dir,
        [free_port(), free_port()],
        env=env,
        log_dir=data_dir / "logs",
        standby=standby,
    )
    try:
        stack.start_all()
        stack.wait_ready()
        settings = stack_settings(stack)
        symbols = tuple(INSTRUMENTS)
        taps = {s: CommandTap(stack.redis_url, settings.command_stream_of(s)) for s in symbols}
        for tap in taps.values():
            tap.thread.start()
        ledger = Ledger()
        killed: list[str] = []
        until = asyncio.Event()
        load_task = asyncio.create_task(load(stack, ledger, rate, until, seed, symbols))
        takeovers = Takeovers() if standby else None
        await chaos(stack, kills, interval, seed, killed, takeovers)
        await asyncio.sleep(2.0)  # let the last restart settle under load
        until.set()
        await load_task
        with contextlib.suppress(TimeoutError):
            await asyncio.to_thread(stack.wait_ready, 30)
        report = await verify(stack, ledger, taps, killed)
        report.takeovers = takeovers or Takeovers()
        if standby:
            report.takeovers.writers = checkpoint_writers(stack)
            report.problems += divergences(stack)
        return report
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--rate", type=float, default=300.0, help="mutations per second")
    parser.add_argument("--interval", type=float, default=1.5, help="mean seconds between kills")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--mongodb",
        action="store_true",
        help="archive to MongoDB: MONGODB_URL, else a local wire-protocol test server",
    )
    parser.add_argument(
        "--standby", action="store_true", help="run a hot standby; engine kills hit the leader"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="crash-") as tmp, contextlib.ExitStack() as servers:
        url = servers.enter_context(wire_server(Path(tmp) / "mongo")) if args.mongodb else ""
        started = time.monotonic()
        report = asyncio.run(
            run(args.kills, args.rate, args.seed, Path(tmp), args.interval, url, args.standby)
        )
        print(report.summary())
        if args.standby:
            print(report.takeovers.summary())
        print(f"elapsed {time.monotonic() - started:.0f} s; {'PASS' if report.ok() else 'FAIL'}")
        raise SystemExit(0 if report.ok() else 1)


if __name__ == "__main__":
    main()
