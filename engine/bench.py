"""Benchmark of the matching core: `python -m engine.bench [--commands N] [--seed S]`.

Prints throughput (commands/s with events emitted), per-command latency percentiles, peak
RSS, and a scaling run over books of 1k..1M resting orders (with the time a checkpoint
snapshot of each book takes on the engine thread). The command flow is generated
before timing starts: about 60% place, 25% cancel, 15% modify, prices around a drifting mid
so that roughly a quarter of places cross.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import time

from shared.commands import Cancel, Command, Modify, Place
from shared.events import Trade

from .matching import MatchingEngine
from .snapshot import snapshot

MID = 100_000  # ticks


def make_flow(n: int, seed: int, engine: MatchingEngine | None = None) -> list[Command]:
    """A seeded command flow, generated against a shadow engine.

    Cancels and modifies target orders that are really resting at that point (as a
    client tracking its own orders would), so the timed run measures real work, not
    cheap rejections. Pass `engine` to generate a flow that continues from its state.
    """
    rng = random.Random(seed)
    shadow = engine if engine is not None else MatchingEngine()
    live: list[int] = []  # only the flow's own orders: a client cancels what it placed
    flow: list[Command] = []
    mid = MID
    for _ in range(n):
        mid += rng.choice((-1, 0, 0, 1))
        r = rng.random()
        target = 0
        if r >= 0.60:
            while live and target == 0:
                i = rng.randrange(len(live))
                if live[i] in shadow.orders:
                    target = live[i]
                else:  # filled meanwhile: forget it (swap-remove keeps this O(1))
                    live[i] = live[-1]
                    live.pop()
        command: Command
        if target == 0:
            side = 1 if rng.random() < 0.5 else -1
            offset = rng.randint(-2, 20)  # negative offsets cross the spread
            price = mid - offset if side == 1 else mid + offset
            command = Place(side, price, rng.randint(1, 100))
            live.append(shadow.next_order_id)
        elif r < 0.85:
            command = Cancel(target)
        else:
            side = shadow.orders[target].side
            command = Modify(target, mid - side * rng.randint(-2, 20))
        shadow.apply(command)
        flow.append(command)
    return flow


def prefill(engine: MatchingEngine, resting: int, seed: int) -> None:
    """Rest `resting` orders far from the flow's mid so they never trade but stay in the book."""
    rng = random.Random(seed)
    for i in range(resting):
        if i % 2:
            engine.place(1, MID - 2_000 - rng.randint(0, 50_000), rng.randint(1, 100), None, 0)
        else:
            engine.place(-1, MID + 2_000 + rng.randint(0, 50_000), rng.randint(1, 100), None, 0)


def throughput(engine: MatchingEngine, flow: list[Command]) -> tuple[float, int]:
    apply = engine.apply
    events = 0
    gc.collect()
    start = time.perf_counter()
    for command in flow:
        events += len(apply(command))
    elapsed = time.perf_counter() - start
    return len(flow) / elapsed, events


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--scaling-commands", type=int, default=300_000)
    parser.add_argument("--no-scaling", action="store_true")
    args = parser.parse_args()

    flow = make_flow(args.commands, args.seed)
    places = sum(1 for c in flow if type(c) is Place)
    engine = MatchingEngine()
    rate, events = throughput(engine, flow)
    print(f"flow: {len(flow):,} commands, seed {args.seed}, {places / len(flow):.0%} place")
    print(f"throughput: {rate:,.0f} commands/s, {events:,} events, {len(engine.orders):,} resting")

    engine = MatchingEngine()
    crossed = trades = 0
    for command in flow:
        out = engine.apply(command)
        fills = sum(1 for event in out if type(event) is Trade)
        trades += fills
        if type(command) is Place and fills:
            crossed += 1
    print(f"crossing places: {crossed / places:.1%}, trades: {trades:,}")

    lat = latencies(MatchingEngine(), flow)
    print(
        "latency per command (us): "
        f"p50 {pct(lat, 0.50):.2f}  p99 {pct(lat, 0.99):.2f}  p99.9 {pct(lat, 0.999):.2f}"
    )

    if not args.no_scaling:
        for resting in (1_000, 10_000, 100_000, 1_000_000):
            engine = MatchingEngine()
            prefill(engine, resting, args.seed)
            shadow = MatchingEngine()
            prefill(shadow, resting, args.seed)
            rate, _ = throughput(engine, make_flow(args.scaling_commands, args.seed + 1, shadow))
            # A checkpoint snapshots the core on the engine thread: matching waits this long.
            started = time.perf_counter()
            snapshot(engine)
            stall_ms = (time.perf_counter() - started) * 1000
            print(
                f"scaling: {resting:>9,} resting -> {rate:,.0f} commands/s; "
                f"checkpoint snapshot of {len(engine.orders):,} resting orders: {stall_ms:,.0f} ms"
            )
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {rss_mb:,.0f} MiB")


if __name__ == "__main__":
    main()
