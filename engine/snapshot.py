"""Canonical serialisation of the core's state: snapshot, restore and state hash.

The encoding lists resting orders in priority order (bids best first, then asks best
first, FIFO inside a level) and client order ids by order id (which is also the order the
idempotency window forgets them in), so equal states always encode to equal bytes;
`state_hash` is a digest of exactly these bytes.

An order is encoded as the array of its fields (`engine.book.OrderRow`: the bytes a
msgspec Struct of those fields with `array_like` encodes, which is what orders were).
Checkpoints from before orders had owners list seven fields per order: that Struct decoded
them with the owner "", and `restore` still does (`_owners_added`).

`restore` is on the restart path (an engine with a million resting orders must match again
within two seconds of starting): it decodes the rows, rests them in canonical order (so FIFO
priority is the encoded order) in one call (`MatchingEngine.rest`, compiled with the core),
and builds the idempotency window (a dict and its keys' FIFO) in one call each.
"""

from __future__ import annotations

import gc
import hashlib
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from operator import itemgetter

import msgspec

from .book import OrderRow
from .matching import MatchingEngine

FORMAT_VERSION = 1


class CoreSnapshot(msgspec.Struct, array_like=True, frozen=True):
    version: int
    seq: int
    next_order_id: int
    orders: list[OrderRow]  # as they rest in the book
    client_order_ids: list[tuple[str, int]]
    base: int = 0
    # The price band and its reference (defaults: checkpoints from before bands decode).
    last_price: int = 0
    band: tuple[int, int] | None = None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CoreSnapshot)
_first = itemgetter(0)
_second = itemgetter(1)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """A million order rows are a million new tracked tuples: the cyclic collector would
    scan the growing heap again and again while they are built (about a third of a
    restore's time at 1M resting). They are dropped again before the end."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def snapshot(engine: MatchingEngine) -> bytes:
    with _collector_paused():
        return _encoder.encode(_state(engine))


def _state(engine: MatchingEngine) -> CoreSnapshot:
    return CoreSnapshot(
        version=FORMAT_VERSION,
        seq=engine.seq,
        next_order_id=engine.next_order_id,
        orders=engine.bids.rows() + engine.asks.rows(),
        client_order_ids=list(engine.client_order_ids.items()),  # in order-id order already
        base=engine.base,
        last_price=engine.last_price,
        band=engine.band,
    )


def restore(data: bytes) -> MatchingEngine:
    with _collector_paused():
        try:
            state = _decoder.decode(data)
        except msgspec.ValidationError:
            state = _decoder.decode(_owners_added(data))
        return _restore(state)


def _owners_added(data: bytes) -> bytes:
    """A checkpoint from before orders had owners, as one with owners "" (a tuple of eight
    fields does not take seven, as the Struct with a default did); anything else as it is,
    for the decoder to refuse again."""
    fields = msgspec.msgpack.decode(data)
    if not (isinstance(fields, list) and len(fields) > 3 and isinstance(fields[3], list)):
        return data
    fields[3] = [
        [*order, ""] if isinstance(order, list) and len(order) == 7 else order
        for order in fields[3]
    ]
    return _encoder.encode(fields)


def _restore(state: CoreSnapshot) -> MatchingEngine:
    if state.version != FORMAT_VERSION:
        raise ValueError(f"unsupported snapshot version {state.version}")
    engine = MatchingEngine(state.base)
    engine.seq = state.seq
    engine.next_order_id = state.next_order_id
    engine.set_band(state.band)
    engine.last_price = state.last_price
    ids = state.client_order_ids
    by_id = list(map(_second, ids))
    if by_id != sorted(by_id):  # checkpoints of an earlier format listed them by key
        ids = sorted(ids, key=_second)
    engine.client_order_ids = dict(ids)
    engine.client_order_keys = deque(map(_first, ids))
    engine.rest(state.orders)
    return engine


def state_hash(engine: MatchingEngine) -> str:
    return hashlib.blake2b(snapshot(engine), digest_size=16).hexdigest()


def digest_of(core: bytes) -> str:
    """The state hash of a snapshot already encoded (a checkpoint's core)."""
    return hashlib.blake2b(core, digest_size=16).hexdigest()
