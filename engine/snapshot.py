"""Canonical serialisation of the core's state: snapshot, restore and state hash.

The encoding lists resting orders in priority order (bids best first, then asks best
first, FIFO inside a level) and client order ids by order id (which is also the order the
idempotency window forgets them in), so equal states always encode to equal bytes;
`state_hash` is a digest of exactly these bytes.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import msgspec

from .book import Order
from .matching import MatchingEngine

FORMAT_VERSION = 1


class CoreSnapshot(msgspec.Struct, array_like=True, frozen=True):
    version: int
    seq: int
    next_order_id: int
    orders: list[Order]  # encoded as they rest in the book, and decoded straight into it
    client_order_ids: list[tuple[str, int]]
    base: int = 0


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CoreSnapshot)


def snapshot(engine: MatchingEngine) -> bytes:
    state = CoreSnapshot(
        version=FORMAT_VERSION,
        seq=engine.seq,
        next_order_id=engine.next_order_id,
        orders=engine.bids.iter_orders() + engine.asks.iter_orders(),
        client_order_ids=list(engine.client_order_ids.items()),  # in order-id order already
        base=engine.base,
    )
    return _encoder.encode(state)


def restore(data: bytes) -> MatchingEngine:
    state = _decoder.decode(data)
    if state.version != FORMAT_VERSION:
        raise ValueError(f"unsupported snapshot version {state.version}")
    engine = MatchingEngine(state.base)
    engine.seq = state.seq
    engine.next_order_id = state.next_order_id
    # Sorted: checkpoints of an earlier format listed the ids by key.
    engine.client_order_ids = OrderedDict(sorted(state.client_order_ids, key=_by_order_id))
    for order in state.orders:
        (engine.bids if order.side > 0 else engine.asks).add(order)
        engine.orders[order.order_id] = order
    return engine


def _by_order_id(item: tuple[str, int]) -> int:
    return item[1]


def state_hash(engine: MatchingEngine) -> str:
    return hashlib.blake2b(snapshot(engine), digest_size=16).hexdigest()
