"""Benchmark of the matching core: `python -m engine.bench [--commands N] [--seed S]`.

Prints throughput (commands/s with events emitted), per-command latency percentiles, peak
RSS, and a scaling run over books of 1k..1M resting orders. The command flow is generated
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

from .matching import MatchingEngine

MID = 100_000  # ticks


def make_flow(n: int, seed: int, first_order_id: int = 1) -> list[Command]:
    """A seeded command flow; ids of cancels/modifies point at recent places (some dead)."""
    rng = random.Random(seed)
    flow: list[Command] = []
    live: list[int] = []
    next_id = first_order_id
    mid = MID
    for _ in range(n):
        mid += rng.choice((-1, 0, 0, 1))
        r = rng.random()
        if r < 0.60 or not live:
            side = 1 if rng.random() < 0.5 else -1
            # offset > 0 rests away from mid; negative offsets cross the spread.
            offset = rng.randint(-4, 16)
            price = mid - offset if side == 1 else mid + offset
            flow.append(Place(side, price, rng.randint(1, 100)))
            live.append(next_id)
            next_id += 1
            if len(live) > 5000:
                live.pop(0)
        elif r < 0.85:
            flow.append(Cancel(live.pop(rng.randrange(len(live)))))
        else:
            order_id = live[rng.randrange(len(live))]
            side_hint = rng.choice((-1, 1))
            flow.append(Modify(order_id, mid + side_hint * rng.randint(1, 16)))
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
    crossed = 0
    for command in flow:
        out = engine.apply(command)
        if type(command) is Place and len(out) > 1:
            crossed += 1
    trades = engine.seq - len(flow)
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
            shifted = make_flow(args.scaling_commands, args.seed + 1, engine.next_order_id)
            rate, _ = throughput(engine, shifted)
            print(f"scaling: {resting:>9,} resting -> {rate:,.0f} commands/s")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {rss_mb:,.0f} MiB")


if __name__ == "__main__":
    main()
