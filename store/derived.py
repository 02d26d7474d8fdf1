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

    Trades are folded per second first, one dictionary step each, and the seconds are then
    merged into the longer intervals: a batch spans a few seconds, so that is most of the
    work saved. `one_per_trade` keeps a fold per trade and interval: a store without
    transactions merges them one by one, each guarded by the candle's `last_seq`, so a batch
    cut short by a crash and read again with other boundaries still counts every trade
    exactly once."""
    if one_per_trade:
        return [
            CandleFold(
                interval, bucket_start(t.ts, interval), t.price, t.price, t.price, t.price,
                t.quantity, 1, t.seq, t.seq,
            )
            for t in trades
            for interval in CANDLE_INTERVALS
        ]  # fmt: skip
    seconds: dict[int, CandleFold] = {}
    for t in trades:
        start = t.ts // NS
        fold = seconds.get(start)
        if fold is None:
            seconds[start] = CandleFold(
                1, start, t.price, t.price, t.price, t.price, t.quantity, 1, t.seq, t.seq
            )
            continue
        if t.price > fold.high:
            fold.high = t.price
        elif t.price < fold.low:
            fold.low = t.price
        fold.close = t.price
        fold.volume += t.quantity
        fold.count += 1
        fold.last_seq = t.seq
    out = list(seconds.values())
    for interval in CANDLE_INTERVALS[1:]:
        merged: dict[int, CandleFold] = {}
        for f in seconds.values():
            start = f.start // interval * interval
            m = merged.get(start)
            if m is None:
                merged[start] = CandleFold(
                    interval, start, f.open, f.high, f.low, f.close, f.volume, f.count,
                    f.first_seq, f.last_seq,
                )  # fmt: skip
                continue
            m.high = max(m.high, f.high)
            m.low = min(m.low, f.low)
            if f.first_seq < m.first_seq:  # a second whose trades came earlier (late stamps)
                m.open, m.first_seq = f.open, f.first_seq
            if f.last_seq > m.last_seq:
                m.close, m.last_seq = f.close, f.last_seq
            m.volume += f.volume
            m.count += f.count
        out += merged.values()
    return out


def time_marks(events: Iterable[Event]) -> dict[tuple[int, int, int], tuple[int, int]]:
    """(kind, span, bucket start) -> the lowest and highest trade id (kind TRADES) or order id
    (ORDERS, from acceptances) stamped in that bucket: per second first, then rolled up."""
    marks: dict[tuple[int, int, int], tuple[int, int]] = {}
    for e in events:
        if type(e) is Trade:
            key, identifier = (TRADES, 1, e.ts // NS), e.seq
        elif type(e) is Accepted:
            key, identifier = (ORDERS, 1, e.ts // NS), e.order_id
        else:
            continue
        found = marks.get(key)
        if found is None:
            marks[key] = (identifier, identifier)
        else:
            marks[key] = (min(found[0], identifier), max(found[1], identifier))
    for (kind, _, second), (low, high) in list(marks.items()):
        for span in SPANS[1:]:
            key = (kind, span, second // span * span)
            found = marks.get(key)
            marks[key] = (low, high) if found is None else (min(found[0], low), max(found[1], high))
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


def cover_ns(since: int | None, until: int | None) -> list[tuple[int, int, int | None]]:
    """`cover` for a [since, until) window in ns: the buckets of every second stamped in it
    (a bucket holds whole seconds, so the edges round outwards); [] for an empty window."""
    first_s = 0 if since is None else since // NS
    end_s = None if until is None else -(-until // NS)
    if end_s is not None and end_s <= first_s:
        return []
    return cover(first_s, end_s)


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
