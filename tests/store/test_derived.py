"""The time index's covering of a window by aligned buckets (`store.derived.cover`)."""

from __future__ import annotations

import itertools
import random

from store.derived import SPANS, cover


def covered(since_s: int, until_s: int) -> tuple[int, int]:
    """The span of the ranges, checked to be aligned, non-empty and to follow one another."""
    ranges = cover(since_s, until_s)
    for (_, _, end), (_, start, _) in itertools.pairwise(ranges):
        assert end == start
    for span, start, end in ranges:
        assert end is not None
        assert start % span == 0 and end % span == 0 and start < end
    last = ranges[-1][2]
    assert last is not None
    return ranges[0][1], last


def test_cover_is_an_exact_partition_with_few_buckets() -> None:
    rng = random.Random(3)
    day = SPANS[-1]
    for _ in range(3000):
        since = rng.randrange(5 * day)
        until = since + rng.choice((1, 2, 59, 60, 61, 3599, 3600, 3601, day, 3 * day + 7))
        until += rng.randrange(0, 2) * rng.randrange(day)
        assert covered(since, until) == (since, until)
        buckets = sum(
            (end - start) // span for span, start, end in cover(since, until) if end is not None
        )
        assert buckets <= 2 * (59 + 59 + 23) + (until - since) // day


def test_cover_of_aligned_windows_uses_the_largest_buckets() -> None:
    assert cover(0, 86400) == [(86400, 0, 86400)]
    assert cover(3600, 7200) == [(3600, 3600, 7200)]
    assert cover(59, 121) == [(1, 59, 60), (60, 60, 120), (1, 120, 121)]
    assert cover(5, 6) == [(1, 5, 6)]


def test_cover_without_an_end_climbs_to_days() -> None:
    assert cover(86400 + 3661, None) == [
        (1, 90061, 90120),
        (60, 90120, 93600),
        (3600, 93600, 172800),
        (86400, 172800, None),
    ]
    assert cover(0, None) == [(86400, 0, None)]
