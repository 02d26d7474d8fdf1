"""A deep book and a command flow over it, for the service benchmarks (stall, restart).

Orders rest on both sides over `SPREAD` ticks around a fixed mid; the flow places, cancels
and re-prices orders in that range without crossing, so the book keeps its size and every
cancel or modify names an order that really rests (the matching core's own benchmark,
`engine.bench`, covers crossing flows).
"""

from __future__ import annotations

import random

from shared.commands import Cancel, Command, Modify, Place

from .matching import MatchingEngine

MID = 100_000
SPREAD = 2_000  # ticks either side of the mid


def _price(rng: random.Random, side: int) -> int:
    return MID - side * (1 + rng.randint(0, SPREAD))


def build(resting: int, client_ids: bool, seed: int) -> MatchingEngine:
    """A book of `resting` orders (each with a client order id when `client_ids`, so that
    the idempotency window is as full as the book)."""
    rng = random.Random(seed)
    engine = MatchingEngine()
    for i in range(resting):
        side = 1 if i % 2 else -1
        coid = f"client-{i:09d}" if client_ids else None
        engine.place(side, _price(rng, side), rng.randint(1, 100), coid, i)
    return engine


def churn(engine: MatchingEngine, n: int, seed: int) -> list[Command]:
    """`n` commands over `engine`'s book as it stands (it is not modified): 40% places,
    30% cancels, 30% price changes, never crossing."""
    rng = random.Random(seed)
    live = list(engine.orders)
    sides = {order_id: order.side for order_id, order in engine.orders.items()}
    next_id = engine.next_order_id
    flow: list[Command] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.4 or not live:
            side = 1 if rng.random() < 0.5 else -1
            flow.append(Place(side, _price(rng, side), rng.randint(1, 100)))
            live.append(next_id)
            sides[next_id] = side
            next_id += 1
            continue
        i = rng.randrange(len(live))
        order_id = live[i]
        if r < 0.7:
            live[i] = live[-1]
            live.pop()
            flow.append(Cancel(order_id))
        else:
            flow.append(Modify(order_id, _price(rng, sides[order_id])))
    return flow
