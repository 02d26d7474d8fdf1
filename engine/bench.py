"""Benchmark of the matching core: `python -m engine.bench [--commands N] [--seed S]`.

Two flows, both generated before timing starts against a shadow engine (so cancels and
modifies name orders that really rest at that point, as a client tracking its own orders
would), both 60% place, 25% cancel, 15% modify, with a quarter of places crossing and 5% of
cancels and modifies naming an order that is already gone:

- realistic: the steady state of a liquid book, about 5,000 resting orders over a few
  hundred price levels (a warm-up builds it before timing);
- deep book: 1,000,000 orders resting over 40,000 levels, which cancels and modifies
  target as often as the flow's own orders.

It prints throughput (commands/s with events emitted; the best of `--runs` timed runs),
per-command latency percentiles, peak RSS, and a scaling run over books of 1k..1M resting
orders with the time an inline snapshot of each book takes.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import time
from dataclasses import dataclass

from shared.commands import Cancel, Command, Modify, Place
from shared.events import Rejected, Trade

from .book import NO_ASK, NO_BID
from .matching import MatchingEngine
from .snapshot import snapshot

MID = 100_000  # ticks
STEADY_RESTING = 5_000
DEEP_RESTING = 1_000_000
DEEP_SPREAD = 20_000  # ticks either side of the mid that a deep book's orders rest over
DEAD_SHARE = 0.05
# Passive orders rest this many ticks behind the opposite touch: a uniform draw up to a bound
# that is itself drawn from here, so the book is dense near the touch and thins out over a
# few hundred levels.
DEPTH_BOUNDS = (2, 10, 50, 300)


class FlowGenerator:
    """Draws commands one at a time against `shadow`, applying each to it.

    The book's size is held near `resting` by the size of the crossing orders: a crossing
    order takes `k` times a passive order's size, with `k` growing with the book (about 2
    at the target), so a book above its target is eaten faster than the flow rebuilds it.
    """

    def __init__(self, rng: random.Random, shadow: MatchingEngine, resting: int) -> None:
        self.rng = rng
        self.shadow = shadow
        self.scale = resting  # k = 1 + size / scale
        self.live = list(shadow.orders)  # orders a cancel or modify may name
        self.dead: list[int] = []  # orders that were live once, for the 5% that miss
        self.last = MID  # the last opposite touch seen, for when a side is empty

    def touch(self, side: int) -> int:
        """The opposite side's best price for an order of `side`."""
        best = self.shadow.asks.best if side == 1 else self.shadow.bids.best
        if best in (NO_ASK, NO_BID):
            return self.last + side
        self.last = best
        return best

    def passive_price(self, side: int) -> int:
        behind = 1 + self.rng.randint(0, self.rng.choice(DEPTH_BOUNDS))
        return self.touch(side) - side * behind

    def pick_live(self) -> int:
        rng, live, orders = self.rng, self.live, self.shadow.orders
        while live:
            i = rng.randrange(len(live))
            order_id = live[i]
            if order_id in orders:
                return order_id
            live[i] = live[-1]  # filled meanwhile: forget it (swap-remove keeps this O(1))
            live.pop()
            self.bury(order_id)
        return 0

    def bury(self, order_id: int) -> None:
        dead = self.dead
        if len(dead) < 10_000:
            dead.append(order_id)
        else:
            dead[self.rng.randrange(len(dead))] = order_id

    def next(self) -> Command:
        rng, shadow = self.rng, self.shadow
        r = rng.random()
        target = 0
        if r >= 0.60:
            if self.dead and rng.random() < DEAD_SHARE:
                target = self.dead[rng.randrange(len(self.dead))]
            else:
                target = self.pick_live()
        command: Command
        if target == 0:
            side = 1 if rng.random() < 0.5 else -1
            if rng.random() < 0.25:
                k_scaled = self.scale + len(shadow.orders)
                quantity = rng.randint(1, 100) * k_scaled // self.scale
                command = Place(side, self.touch(side) + side * rng.randint(0, 2), quantity)
            else:
                command = Place(side, self.passive_price(side), rng.randint(1, 100))
            self.live.append(shadow.next_order_id)
        elif r < 0.85:
            command = Cancel(target)
            if target in shadow.orders:
                self.bury(target)
        else:
            order = shadow.orders.get(target)
            if order is None:  # a dead id: any price will do
                command = Modify(target, self.passive_price(1))
            elif rng.random() < 0.25:  # a new size: mostly down (keeps priority), else up
                filled = order.quantity - order.remaining
                command = Modify(target, 0, quantity=filled + rng.randint(1, order.quantity))
            else:
                command = Modify(target, self.passive_price(order.side))
        shadow.apply(command)
        return command


@dataclass
class Flow:
    """Commands to apply before timing (`warmup`) and the timed ones (`timed`)."""

    warmup: list[Command]
    timed: list[Command]
    prefill: int = 0  # orders resting before the warm-up (see `prefill`)

    def start(self, seed: int) -> MatchingEngine:
        """A fresh engine in the state the timed commands start from."""
        engine = MatchingEngine()
        prefill(engine, self.prefill, seed)
        for command in self.warmup:
            engine.apply(command)
        return engine


def make_flow(n: int, seed: int, engine: MatchingEngine | None = None) -> list[Command]:
    """`n` commands of the realistic flow, continuing from `engine` (which they are applied
    to; an empty book if None). The book is held near its starting size, or near
    `STEADY_RESTING` orders if it starts smaller."""
    shadow = engine if engine is not None else MatchingEngine()
    gen = FlowGenerator(random.Random(seed), shadow, max(STEADY_RESTING, len(shadow.orders)))
    return [gen.next() for _ in range(n)]


def steady_flow(n: int, seed: int, resting: int = STEADY_RESTING) -> Flow:
    """The realistic flow: a warm-up from an empty book to its steady state, then `n`."""
    shadow = MatchingEngine()
    gen = FlowGenerator(random.Random(seed), shadow, resting)
    warmup = [gen.next() for _ in range(resting * 40)]
    return Flow(warmup, [gen.next() for _ in range(n)])


def deep_flow(n: int, seed: int, resting: int = DEEP_RESTING) -> Flow:
    """`resting` orders rest at once (untimed), then `n` commands, whose cancels and
    modifies name any of them."""
    shadow = MatchingEngine()
    prefill(shadow, resting, seed)
    gen = FlowGenerator(random.Random(seed + 1), shadow, resting)
    return Flow([], [gen.next() for _ in range(n)], prefill=resting)


def prefill(engine: MatchingEngine, resting: int, seed: int) -> None:
    """Rest `resting` orders spread evenly over `DEEP_SPREAD` ticks either side of the mid."""
    rng = random.Random(seed)
    place = engine.place
    for i in range(resting):
        behind = 1 + rng.randint(0, DEEP_SPREAD)
        if i % 2:
            place(1, MID - behind, rng.randint(1, 100), None, 0)
        else:
            place(-1, MID + behind, rng.randint(1, 100), None, 0)


SLICE = 1_000  # commands per timed slice (see `Rate`)


@dataclass
class Rate:
    """Throughput of one timed run. `whole` is commands over the run's wall time, the figure
    that counts on an idle machine. `median_slice` is the rate of the median slice of
    `SLICE` commands (about a millisecond each): on a machine shared with other busy
    processes, preemptions fall into a minority of slices, so it is less hostage to the
    scheduler than `whole` (on an idle machine the two agree; cache and CPU contention
    still slow every slice)."""

    whole: float
    median_slice: float
    events: int

    def __str__(self) -> str:
        return (
            f"{self.whole:,.0f} commands/s over the whole run, {self.median_slice:,.0f} in "
            f"the median slice of {SLICE:,}; {self.events:,} events"
        )


def throughput(engine: MatchingEngine, flow: list[Command]) -> Rate:
    apply = engine.apply
    clock = time.perf_counter
    chunks = [flow[i : i + SLICE] for i in range(0, len(flow), SLICE)]
    times = [0.0] * len(chunks)
    events = 0
    gc.collect()
    start = last = clock()
    for i, chunk in enumerate(chunks):
        for command in chunk:
            events += len(apply(command))
        now = clock()
        times[i] = now - last
        last = now
    full = [t for chunk, t in zip(chunks, times, strict=True) if len(chunk) == SLICE]
    median = sorted(full)[len(full) // 2] if full else last - start
    return Rate(len(flow) / (last - start), SLICE / median, events)


def latencies(engine: MatchingEngine, flow: list[Command]) -> list[int]:
    apply = engine.apply
    clock = time.perf_counter_ns
    samples = [0] * len(flow)
    for i, command in enumerate(flow):
        t0 = clock()
        apply(command)
        samples[i] = clock() - t0
    samples.sort()
    return samples


def pct(samples: list[int], p: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * p))] / 1000


def describe(flow: Flow, seed: int) -> str:
    """What the timed commands did: crossing places, trades, misses, the book's shape."""
    engine = flow.start(seed)
    places = crossed = trades = misses = targeted = 0
    for command in flow.timed:
        out = engine.apply(command)
        fills = sum(1 for event in out if type(event) is Trade)
        trades += fills
        if type(command) is Place:
            places += 1
            crossed += fills > 0
        else:
            targeted += 1
            misses += type(out[0]) is Rejected
    levels = len(engine.bids.levels) + len(engine.asks.levels)
    return (
        f"{places / len(flow.timed):.0%} place, {crossed / places:.1%} of places crossing, "
        f"{trades:,} trades, {misses / targeted:.1%} of cancels/modifies rejected; "
        f"ends with {len(engine.orders):,} resting over {levels:,} levels"
    )


def timed_runs(flow: Flow, seed: int, runs: int) -> str:
    """The flow's timed commands `runs` times, each on a fresh engine in the same start
    state: the best run, and the whole-run rates of all (on a shared machine other
    processes only ever slow a run down)."""
    rates = [throughput(flow.start(seed), flow.timed) for _ in range(runs)]
    best = max(rates, key=lambda rate: rate.whole)
    every = ", ".join(f"{rate.whole:,.0f}" for rate in rates)
    return f"best of {runs}: {best} (whole-run rates: {every})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--deep-commands", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each flow")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--scaling-commands", type=int, default=300_000)
    parser.add_argument("--no-deep", action="store_true")
    parser.add_argument("--no-scaling", action="store_true")
    args = parser.parse_args()

    flow = steady_flow(args.commands, args.seed)
    print(f"realistic flow: {len(flow.timed):,} commands, seed {args.seed}")
    print(f"  {describe(flow, args.seed)}")
    print(f"  throughput, {timed_runs(flow, args.seed, args.runs)}")
    lat = latencies(flow.start(args.seed), flow.timed)
    print(
        "  latency per command (us): "
        f"p50 {pct(lat, 0.50):.2f}  p99 {pct(lat, 0.99):.2f}  p99.9 {pct(lat, 0.999):.2f}"
    )

    if not args.no_deep:
        flow = deep_flow(args.deep_commands, args.seed)
        print(f"deep book: {DEEP_RESTING:,} resting, {len(flow.timed):,} commands")
        print(f"  {describe(flow, args.seed)}")
        print(f"  throughput, {timed_runs(flow, args.seed, args.runs)}")

    if not args.no_scaling:
        for resting in (1_000, 10_000, 100_000, 1_000_000):
            flow = deep_flow(args.scaling_commands, args.seed, resting)
            engine = flow.start(args.seed)
            rate = throughput(engine, flow.timed)
            # How long encoding the whole book takes on the calling thread (what a checkpoint
            # cost the engine thread before checkpoints moved to a forked child).
            started = time.perf_counter()
            snapshot(engine)
            stall_ms = (time.perf_counter() - started) * 1000
            print(
                f"scaling: {resting:>9,} resting -> {rate.whole:,.0f} commands/s "
                f"({rate.median_slice:,.0f} median slice); "
                f"inline snapshot of {len(engine.orders):,} resting orders: {stall_ms:,.0f} ms"
            )
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {rss_mb:,.0f} MiB")


if __name__ == "__main__":
    main()
