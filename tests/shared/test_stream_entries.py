"""The shapes an XREAD reply comes in (`shared/stream_entries.py`): raw from a connection
read directly, or parsed by redis-py, under RESP2 or RESP3. Every reader of a stream (the
engine, the archiver, the API's reply reader) takes its entries through these."""

from __future__ import annotations

from typing import Any

import pytest

from shared.stream_entries import read_entries, stream_id, streams_of

RAW = [[b"1-0", [b"c", b"x"]], [b"1-1", [b"c", b"y"]]]  # as hiredis hands a raw reply
PARSED = [(b"1-0", {b"c": b"x"}), (b"1-1", {b"c": b"y"})]  # as redis-py parses it

SHAPES: dict[str, tuple[Any, Any]] = {
    "raw RESP2": ([[b"s", RAW]], RAW),
    "raw RESP3": ({b"s": RAW}, RAW),
    "redis-py RESP2": ([[b"s", PARSED]], PARSED),
    "redis-py RESP3 (?protocol=3)": ({b"s": [PARSED]}, PARSED),
    "one raw entry": ([[b"s", RAW[:1]]], RAW[:1]),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_gives_the_stream_and_its_entries(shape: str) -> None:
    response, entries = SHAPES[shape]
    assert list(streams_of(response)) == [(b"s", entries)]
    assert read_entries(response) == entries


@pytest.mark.parametrize("empty", [None, [], {}])
def test_a_read_that_timed_out_has_no_entries(empty: Any) -> None:
    assert list(streams_of(empty)) == []
    assert read_entries(empty) == []


def test_ids_order_by_their_numbers() -> None:
    assert stream_id(b"1-10") > stream_id(b"1-9") > stream_id("0-99")
    with pytest.raises(ValueError):
        stream_id(b"foo")
