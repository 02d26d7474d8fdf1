"""Canonical serialisation of the core's state: snapshot, restore and state hash.

The encoding lists resting orders in priority order (bids best first, then asks best
first, FIFO inside a level) and client order ids by order id (which is also the order the
idempotency window forgets them in), so equal states always encode to equal bytes;
`state_hash` is a digest of exactly these bytes.

`restore` is on the restart path (an engine with a million resting orders must match again
within two seconds of starting): it decodes straight into the book's order structs, adds
them to their sides in canonical order (so FIFO priority is the encoded order), and builds
the id maps in one call each.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from operator import attrgetter, itemgetter

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
    # The price band and its reference (defaults: checkpoints from before bands decode).
    last_price: int = 0
    band: tuple[int, int] | None = None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(CoreSnapshot)
_order_id = attrgetter("order_id")
_second = itemgetter(1)


def snapshot(engine: MatchingEngine) -> bytes:
    state = CoreSnapshot(
        version=FORMAT_VERSION,
        seq=engine.seq,
        next_order_id=engine.next_order_id,
        orders=engine.bids.iter_orders() + engine.asks.iter_orders(),
        client_order_ids=list(engine.client_order_ids.items()),  # in order-id order already
        base=engine.base,
        last_price=engine.last_price,
        band=engine.band,
    )
    return _encoder.encode(state)


def restore(data: bytes) -> MatchingEngine:
    state = _decoder.decode(data)
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
    engine.client_order_ids = OrderedDict(ids)
    orders = state.orders
    engine.orders = dict(zip(map(_order_id, orders), orders, strict=True))
    add_bid, add_ask = engine.bids.add, engine.asks.add
    for order in orders:
        (add_bid if order.side > 0 else add_ask)(order)
    return engine


def state_hash(engine: MatchingEngine) -> str:
    return hashlib.blake2b(snapshot(engine), digest_size=16).hexdigest()


def digest_of(core: bytes) -> str:
    """The state hash of a snapshot already encoded (a checkpoint's core)."""
    return hashlib.blake2b(core, digest_size=16).hexdigest()
