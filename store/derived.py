"""What the store derives from events besides orders and trades: candles and the time index.

Both are folded from each instrument's events in sequence order, as they are stored, so no
read ever recomputes them from all trades:

- **Candles** (OHLCV per UTC bucket of 1 s, 1 min, 5 min and 1 h, aligned to the epoch):
  a trade falls in the bucket of its `ts`; `open` and `close` are the prices of the bucket's
  first and last trade by sequence number (the engine's order), not by timestamp, which
  several API replicas stamp with clocks that need not agree to the nanosecond. Each candle
  keeps the sequence number of its newest trade (`last_seq`), and a fold applies only to a
  candle that has not seen it, so folding a batch twice counts it once.
- **The time index** maps time to ids: for each whole second, minute, hour and day, the
  lowest and highest trade id, and order id, of the instrument's trades and acceptances
  stamped in it. A time filter (`since`, `until`) becomes a range of ids, which the primary
  key serves in either direction, and the timestamps are then checked exactly within it.
  The timestamps need not rise with the ids: the range covers every trade (order) of the
  window wherever it falls. Folding is a min/max, which repeats harmlessly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shared.events import Accepted, Event, Trade

NS = 1_000_000_000
CANDLE_INTERVALS = (1, 60, 300, 3600)  # seconds
SPANS = (1, 60, 3600, 86400)  # time-index granularities, seconds, each a multiple of the last
TRADES, ORDERS = 0, 1  # the time index's two id spaces: trade ids, order ids


@dataclass(slots=True)
class CandleFold:
    """One bucket's trades from one batch, ready to merge into the stored candle."""

    interval: int
    start: int  # bucket start, seconds since the epoch
    open: int
    high: int
    low: int
    close: int
    volume: int
    count: int
    first_seq: int
    last_seq: int


def bucket_start(ts_ns: int, interval: int) -> int:
    """The start (seconds since the epoch) of the `interval`-second bucket holding `ts_ns`."""
    return ts_ns // (interval * NS) * interval


def candle_folds(trades: Iterable[Trade], one_per_trade: bool = False) -> list[CandleFold]:
    """Per interval and bucket, the batch's trades (ascending seq) folded into one.

    `one_per_trade` keeps a fold per trade: a store without transactions merges them one by
    one, each guarded by the candle's `last_seq`, so a batch cut short by a crash and read
    again with other boundaries still counts every trade exactly once."""
    folds: dict[tuple[int, int], CandleFold] = {}
    out: list[CandleFold] = []
    for t in trades:
        for interval in CANDLE_INTERVALS:
            start = bucket_start(t.ts, interval)
            fold = None if one_per_trade else folds.get((interval, start))
            if fold is None:
                fold = CandleFold(
                    interval, start, t.price, t.price, t.price, t.price, 0, 0, t.seq, t.seq
                )
                folds[interval, start] = fold
                out.append(fold)
            fold.high = max(fold.high, t.price)
            fold.low = min(fold.low, t.price)
            fold.close = t.price
            fold.volume += t.quantity
            fold.count += 1
            fold.last_seq = t.seq
    return out


def time_marks(events: Iterable[Event]) -> dict[tuple[int, int, int], tuple[int, int]]:
    """(kind, span, bucket start) -> the lowest and highest trade id (kind TRADES) or order id
    (ORDERS, from acceptances) stamped in that bucket."""
    marks: dict[tuple[int, int, int], tuple[int, int]] = {}
    for e in events:
        if type(e) is Trade:
            kind, identifier = TRADES, e.seq
        elif type(e) is Accepted:
            kind, identifier = ORDERS, e.order_id
        else:
            continue
        for span in SPANS:
            key = (kind, span, bucket_start(e.ts, span))
            low, high = marks.get(key, (identifier, identifier))
            marks[key] = (min(low, identifier), max(high, identifier))
    return marks


def cover(since_s: int, until_s: int | None) -> list[tuple[int, int, int | None]]:
    """The seconds [since_s, until_s) (None: no end) as few aligned buckets as possible:
    (span, first bucket start, end) ranges, at most 59 + 59 + 23 buckets at each edge, then
    whole days."""
    ranges: list[tuple[int, int, int | None]] = []
    start, level = since_s, 0
    while level + 1 < len(SPANS):  # climb: small buckets up to the next larger boundary
        boundary = -(-start // SPANS[level + 1]) * SPANS[level + 1]
        if until_s is not None and boundary >= until_s:
            break
        if boundary > start:
            ranges.append((SPANS[level], start, boundary))
        start, level = boundary, level + 1
    while True:  # descend: the largest buckets that fit, then smaller ones for the rest
        span = SPANS[level]
        if until_s is None:
            ranges.append((span, start, None))
            return ranges
        end = until_s // span * span
        if end > start:
            ranges.append((span, start, end))
            start = end
        if level == 0:
            return ranges
        level -= 1


def contiguous_after(mark: int, events: Sequence[Event]) -> list[Event]:
    """The events that continue `mark` without a gap (those at or below it dropped): what a
    fold may take from a batch. Batches may overlap what was folded, or arrive ahead of it."""
    out: list[Event] = []
    expected = mark + 1
    for e in events:
        if e.seq < expected:
            continue
        if e.seq != expected:
            break
        out.append(e)
        expected += 1
    return out
