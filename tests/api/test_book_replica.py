"""The API's replica of the book (`graphql_api/live/book.py`) against the real matching
engine: random commands of every kind, each command's events applied as one batch; after
each, the replica is the engine's book, and a client that applied every level change of
its window holds exactly the engine's top levels."""

from __future__ import annotations

import random

import pytest

from engine.matching import MatchingEngine
from graphql_api.hub import Hub
from graphql_api.live.book import LevelChange, ReplicaBook
from shared.commands import BUY, FOK, GTC, IOC, MARKET, SELL, Cancel, Command, Modify, Place
from shared.events import Event
from store.port import RestingOrder

DEPTHS = (1, 3, 10)
EVERYTHING = 1_000_000


def random_command(engine: MatchingEngine, rng: random.Random, ts: int) -> Command:
    roll = rng.random()
    live = list(engine.orders)
    if roll < 0.55 or not live:
        side = rng.choice((BUY, SELL))
        tif = rng.choices((GTC, IOC, FOK), (8, 1, 1))[0]
        price = MARKET if tif != GTC and rng.random() < 0.3 else rng.randint(90, 110)
        return Place(side, price, rng.randint(1, 30), None, "", ts, tif)
    if roll < 0.8:
        target = rng.choice(live) if rng.random() < 0.9 else rng.randrange(1, 10_000)
        price = rng.randint(88, 112) if rng.random() < 0.7 else 0
        quantity = rng.randint(1, 40) if price == 0 or rng.random() < 0.3 else 0
        return Modify(target, price, "", ts, quantity)
    target = rng.choice(live) if rng.random() < 0.9 else rng.randrange(1, 10_000)
    return Cancel(target, "", ts)


class Client:
    """What a subscriber of one depth holds: its snapshot plus every change applied."""

    def __init__(self, replica: ReplicaBook, depth: int, hub: Hub[LevelChange]) -> None:
        snapshot = replica.snapshot(depth)
        self.seq = snapshot.seq
        self.sides = {BUY: dict(snapshot.bids), SELL: dict(snapshot.asks)}
        self.depth = depth
        self.hub = hub

    def apply(self, change: LevelChange) -> None:
        assert change.seq > self.seq or change.seq == self.seq, (change, self.seq)
        self.seq = change.seq
        if change.quantity:
            self.sides[change.side][change.price] = change.quantity
        else:
            assert change.price in self.sides[change.side], change  # removes a level it has
            del self.sides[change.side][change.price]

    def book(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        bids = sorted(self.sides[BUY].items(), reverse=True)
        asks = sorted(self.sides[SELL].items())
        assert len(bids) <= self.depth and len(asks) <= self.depth
        return bids, asks


@pytest.mark.parametrize("seed", range(6))
async def test_windows_follow_the_engine(seed: int) -> None:
    rng = random.Random(seed)
    engine = MatchingEngine()
    # Start from a book built before the replica existed, as from the store.
    for ts in range(1, 200):
        engine.apply(random_command(engine, rng, ts))
    replica = ReplicaBook(
        engine.seq,
        [RestingOrder(o.order_id, o.side, o.price, o.remaining, 0) for o in engine.orders.values()],
    )
    assert (replica.bids.top(EVERYTHING), replica.asks.top(EVERYTHING)) == engine.depth(EVERYTHING)
    clients = []
    for depth in DEPTHS:
        hub: Hub[LevelChange] = Hub(maxsize=100_000)
        replica.views[depth] = hub
        clients.append(Client(replica, depth, hub))
    subscriptions = [c.hub.subscribe() for c in clients]
    subscribers = [await s.__aenter__() for s in subscriptions]
    kinds: set[str] = set()
    for ts in range(200, 3_000):
        events: list[Event] = engine.apply(random_command(engine, rng, ts))
        kinds.update(type(e).__name__ for e in events)
        replica.apply(events)
        assert replica.seq == engine.seq
        assert (replica.bids.top(EVERYTHING), replica.asks.top(EVERYTHING)) == engine.depth(
            EVERYTHING
        )
        for client, sub in zip(clients, subscribers, strict=True):
            while not sub.queue.empty():
                change = await sub.get()
                assert events[0].seq <= change.seq <= events[-1].seq
                client.apply(change)
            assert client.book() == engine.depth(client.depth), (ts, client.depth)
    assert kinds >= {"Accepted", "Trade", "Modified", "QuantityChanged", "Cancelled", "Rejected"}
    for s in subscriptions:
        await s.__aexit__(None, None, None)


def test_orders_read_after_the_snapshot_seq_skip_what_they_already_reflect() -> None:
    """A store without snapshots (standalone MongoDB) reads the progress first, then orders
    that may have moved on: their `last_seq` keeps the replica from applying twice."""
    engine = MatchingEngine()
    engine.place(BUY, 100, 10, None, 1)  # seq 1, order 1
    engine.place(SELL, 105, 4, None, 2)  # seq 2, order 2
    seq_read = engine.seq
    later = engine.place(SELL, 100, 3, None, 3)  # order 3 trades 3 of order 1: seq 3, 4
    later += engine.place(BUY, 99, 2, None, 4)  # order 4 rests: seq 5
    # The rows were read after all of that; the progress said 2.
    rows = [
        RestingOrder(1, BUY, 100, 7, 4),
        RestingOrder(2, SELL, 105, 4, 2),
        RestingOrder(4, BUY, 99, 2, 5),
    ]
    replica = ReplicaBook(seq_read, rows)
    assert not replica.consistent
    replica.apply(later[:2])
    replica.apply(later[2:])
    assert replica.consistent
    assert (replica.bids.top(10), replica.asks.top(10)) == engine.depth(10)
