"""History benchmark: `python -m tests.bench_history [--trades 1000000] [--dir DIR]`.

Stores `--trades` trades in a SQLite store through the archiver's write path
(`Store.apply`, which also folds the candles and the time index), with events from the real
matching engine stamped 1 ms apart, then times the reads a trading client makes: the
oldest and the newest page of trades, a page deep in the middle paged back with `before`,
the newest page of the last minute (time index), one minute in the middle of the history,
one order's fills,
and the newest 300 one-minute candles. Prints the build rate and each read's median and
worst time over --repeat runs. With `--dir` the store is kept and reused.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sized
from pathlib import Path

from engine.matching import MatchingEngine
from shared.commands import BUY, SELL
from shared.events import Event, Trade
from store.derived import NS
from store.sqlite import SqliteStore

START_NS = 1_767_225_600 * NS  # 2026-01-01T00:00:00Z
STEP_NS = 1_000_000  # one command a millisecond
BATCH = 2_000  # events per store.apply, a busy archiver's batch
PAGE = 100


async def build(store: SqliteStore, trades: int) -> tuple[int, float]:
    """Store `trades` trades (and their acceptances); (events stored, seconds)."""
    engine = MatchingEngine()
    clock = START_NS
    events: list[Event] = []
    stored = made = 0
    started = time.perf_counter()
    maker = 0
    while made < trades:
        clock += STEP_NS
        if maker == 0:  # a resting ask the next buys take, 1 at a time
            events += engine.place(SELL, 10_000 + made % 97, 1_000, None, clock)
            maker = 1_000
            continue
        fills = engine.place(BUY, 20_000, 1, None, clock)
        events += fills
        made += sum(type(e) is Trade for e in fills)
        maker -= 1
        if len(events) >= BATCH:
            await store.apply(events)
            stored += len(events)
            events = []
    await store.apply(events)
    return stored + len(events), time.perf_counter() - started


async def timed(call: Callable[[], Awaitable[Sized]], repeat: int) -> tuple[float, float, Sized]:
    """(median ms, worst ms, the last answer), after one untimed run (cold pages)."""
    times: list[float] = []
    answer = await call()
    for _ in range(repeat):
        started = time.perf_counter()
        answer = await call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times), answer


async def bench(path: Path, trades: int, repeat: int) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        if await store.list_trades(limit=1, after=None):
            print(f"reusing the trades stored in {path}")
        else:
            events, seconds = await build(store, trades)
            print(
                f"stored {trades:,} trades ({events:,} events) in {seconds:.1f} s: "
                f"{events / seconds:,.0f} events/s with candles and time index"
            )
        newest = await store.list_trades(limit=1, after=None, descending=True)
        top = newest[0]
        middle = top.trade_id // 2
        minute = 60 * NS
        busiest = top.ask_order_id  # the last resting ask: up to 1,000 fills
        first = (await store.list_trades(limit=1, after=None))[0]
        halfway = (first.ts + top.ts) // 2
        reads: list[tuple[str, Callable[[], Awaitable[Sized]]]] = [
            ("oldest page", lambda: store.list_trades(limit=PAGE, after=None)),
            (
                "newest page (descending)",
                lambda: store.list_trades(limit=PAGE, after=None, descending=True),
            ),
            (
                "page before the middle id",
                lambda: store.list_trades(limit=PAGE, after=None, before=middle, descending=True),
            ),
            (
                "newest page of the last minute",
                lambda: store.list_trades(
                    limit=PAGE, after=None, since=top.ts - minute, descending=True
                ),
            ),
            (
                "oldest page of a minute halfway back",
                lambda: store.list_trades(
                    limit=PAGE, after=None, since=halfway, until=halfway + minute
                ),
            ),
            (
                "one order's fills (newest 100)",
                lambda: store.list_trades(
                    limit=PAGE, after=None, order_id=busiest, descending=True
                ),
            ),
            (
                "newest 300 one-minute candles",
                lambda: store.candles(instrument=0, interval=60, limit=300, newest=True),
            ),
        ]
        print(f"{top.trade_id:,} events stored; {repeat} runs of each read:")
        for name, call in reads:
            median, worst, answer = await timed(call, repeat)
            print(
                f"  {name:40s} median {median:7.3f} ms  max {worst:7.3f} ms  ({len(answer)} rows)"
            )
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--dir", type=Path, help="keep the store here (and reuse it)")
    args = parser.parse_args()
    if args.dir:
        asyncio.run(bench(args.dir / "exchange.sqlite3", args.trades, args.repeat))
        return
    with tempfile.TemporaryDirectory() as scratch:
        asyncio.run(bench(Path(scratch) / "exchange.sqlite3", args.trades, args.repeat))


if __name__ == "__main__":
    main()
