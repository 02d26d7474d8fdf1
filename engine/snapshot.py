"""Canonical serialisation of the core's state: snapshot, restore and state hash.

The encoding lists resting orders in priority order (bids best first, then asks best
first, FIFO inside a level) and client order ids by order id (which is also the order the
idempotency window forgets them in), so equal states always encode to equal bytes;
`state_hash` is a digest of exactly these bytes.

`restore` is on the restart path (an engine with a million resting orders must match again
within two seconds of starting), so it builds each price level in one go from the run of
orders the canonical order already groups together, instead of adding orders one by one.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from itertools import groupby
from operator import attrgetter, itemgetter

import msgspec
from sortedcontainers import SortedList

from .book import BookSide, Level, Order
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
_price = attrgetter("price")
_order_id = attrgetter("order_id")
_remaining = attrgetter("remaining")


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
    ids = state.client_order_ids
    if any(ids[i][1] > ids[i + 1][1] for i in range(len(ids) - 1)):
        ids = sorted(ids, key=itemgetter(1))  # checkpoints of an earlier format: by key
    engine.client_order_ids = OrderedDict(ids)
    orders = state.orders
    engine.orders = dict(zip(map(_order_id, orders), orders, strict=True))
    asks_from = next((i for i, order in enumerate(orders) if order.side < 0), len(orders))
    _load(engine.bids, orders[:asks_from])
    _load(engine.asks, orders[asks_from:])
    return engine


def _load(side: BookSide, orders: list[Order]) -> None:
    """Fill an empty side from its orders in canonical order (best level first, FIFO)."""
    levels = side.levels
    for price, run in groupby(orders, _price):
        queue = list(run)
        level = levels[price] = Level(price)
        level.orders = OrderedDict(zip(map(_order_id, queue), queue, strict=True))
        level.total = sum(map(_remaining, queue))
    if levels:
        side.prices = SortedList(levels)
        side.best = next(iter(levels))  # the canonical order lists the best level first


def state_hash(engine: MatchingEngine) -> str:
    return hashlib.blake2b(snapshot(engine), digest_size=16).hexdigest()


def digest_of(core: bytes) -> str:
    """The state hash of a snapshot already encoded (a checkpoint's core)."""
    return hashlib.blake2b(core, digest_size=16).hexdigest()
