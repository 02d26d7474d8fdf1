"""Stateful property test: the engine against a naive reference book, step by step.

The reference keeps each side as a plain list sorted by priority (price, then arrival) and
does everything in O(n); it shares no code with `engine`. Every command goes to both, and
their events must be identical. After every step the engine's state is also checked on its
own: uncrossed book, consistent internal indexes, quantity accounting per order, and a
snapshot -> restore round trip with the same state hash.

Profile (examples, steps) comes from tests/engine/conftest.py via HYPOTHESIS_PROFILE.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from engine.book import NO_ASK, NO_BID
from engine.matching import MatchingEngine
from engine.snapshot import restore, snapshot, state_hash
from shared.commands import BUY, SELL, Cancel, Command, Modify, Place
from shared.events import (
    DUPLICATE_CLIENT_ORDER_ID,
    ORDER_NOT_ALIVE,
    UNKNOWN_ORDER,
    Accepted,
    Cancelled,
    Event,
    Modified,
    Rejected,
    Trade,
)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

# a long fuzz run must not be cut by the suite-wide pytest timeout
pytestmark = pytest.mark.timeout(0 if PROFILE == "fuzz" else 240)

MIN_PRICE, MAX_PRICE = 1, 20
MID = 10
PRICES = st.integers(MIN_PRICE, MAX_PRICE)
QUANTITIES = st.integers(1, 10)
SIDES = st.sampled_from([BUY, SELL])
CLIENT_IDS = st.sampled_from((None,) * 16 + ("a", "b", "c", "d", "e", "f"))


# -- the reference ---------------------------------------------------------------------------


@dataclass
class RefOrder:
    order_id: int
    side: int
    price: int
    quantity: int
    remaining: int
    arrival: int


class ReferenceBook:
    """Price-time priority the slow, obvious way."""

    def __init__(self) -> None:
        self.bids: list[RefOrder] = []  # sorted by (-price, arrival): best first
        self.asks: list[RefOrder] = []  # sorted by (price, arrival): best first
        self.seq = 0
        self.next_id = 1
        self.arrivals = 0
        self.accepted: set[int] = set()
        self.client_ids: dict[str, int] = {}

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _find(self, order_id: int) -> RefOrder | None:
        for order in self.bids + self.asks:
            if order.order_id == order_id:
                return order
        return None

    def _reject(self, order_id: int, ts: int) -> list[Event]:
        reason = ORDER_NOT_ALIVE if order_id in self.accepted else UNKNOWN_ORDER
        return [Rejected(self._next_seq(), reason, order_id, ts)]

    def _rest(self, order: RefOrder) -> None:
        self.arrivals += 1
        order.arrival = self.arrivals
        if order.side == BUY:
            self.bids.append(order)
            self.bids.sort(key=lambda o: (-o.price, o.arrival))
        else:
            self.asks.append(order)
            self.asks.sort(key=lambda o: (o.price, o.arrival))

    def _unrest(self, order: RefOrder) -> None:
        (self.bids if order.side == BUY else self.asks).remove(order)

    def _match(self, taker: RefOrder, events: list[Event], ts: int) -> None:
        opposite = self.asks if taker.side == BUY else self.bids
        while taker.remaining and opposite:
            maker = opposite[0]
            crosses = (
                maker.price <= taker.price if taker.side == BUY else maker.price >= taker.price
            )
            if not crosses:
                break
            fill = min(taker.remaining, maker.remaining)
            taker.remaining -= fill
            maker.remaining -= fill
            bid, ask = (taker, maker) if taker.side == BUY else (maker, taker)
            events.append(
                Trade(
                    self._next_seq(),
                    maker.price,
                    fill,
                    bid.order_id,
                    ask.order_id,
                    taker.side,
                    bid.remaining,
                    ask.remaining,
                    ts,
                )
            )
            if maker.remaining == 0:
                opposite.pop(0)

    def place(
        self, side: int, price: int, quantity: int, client_order_id: str | None, ts: int
    ) -> list[Event]:
        if client_order_id is not None and client_order_id in self.client_ids:
            original = self.client_ids[client_order_id]
            return [Rejected(self._next_seq(), DUPLICATE_CLIENT_ORDER_ID, original, ts)]
        order_id = self.next_id
        self.next_id += 1
        self.accepted.add(order_id)
        if client_order_id is not None:
            self.client_ids[client_order_id] = order_id
        events: list[Event] = [
            Accepted(self._next_seq(), order_id, side, price, quantity, ts, client_order_id)
        ]
        order = RefOrder(order_id, side, price, quantity, quantity, 0)
        self._match(order, events, ts)
        if order.remaining:
            self._rest(order)
        return events

    def modify(self, order_id: int, price: int, ts: int) -> list[Event]:
        order = self._find(order_id)
        if order is None:
            return self._reject(order_id, ts)
        events: list[Event] = [Modified(self._next_seq(), order_id, price, ts)]
        if price == order.price:
            return events
        self._unrest(order)
        order.price = price
        self._match(order, events, ts)
        if order.remaining:
            self._rest(order)
        return events

    def cancel(self, order_id: int, ts: int) -> list[Event]:
        order = self._find(order_id)
        if order is None:
            return self._reject(order_id, ts)
        self._unrest(order)
        return [Cancelled(self._next_seq(), order_id, order.remaining, ts)]

    def apply(self, command: Command) -> list[Event]:
        if isinstance(command, Place):
            return self.place(
                command.side, command.price, command.quantity, command.client_order_id, command.ts
            )
        if isinstance(command, Modify):
            return self.modify(command.order_id, command.price, command.ts)
        return self.cancel(command.order_id, command.ts)

    def depth(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        def levels(orders: list[RefOrder]) -> list[tuple[int, int]]:
            out: list[tuple[int, int]] = []
            for order in orders:
                if out and out[-1][0] == order.price:
                    out[-1] = (order.price, out[-1][1] + order.remaining)
                else:
                    out.append((order.price, order.remaining))
            return out

        return levels(self.bids), levels(self.asks)

    def alive_ids(self) -> list[int]:
        return sorted(o.order_id for o in self.bids + self.asks)


# -- the machine -----------------------------------------------------------------------------


@dataclass
class Account:
    """What the events say about one order."""

    side: int
    price: int
    quantity: int
    traded: int = 0
    cancelled: int = 0


class EngineVersusReference(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = MatchingEngine()
        self.ref = ReferenceBook()
        self.ts = 0
        self.last_seq = 0
        self.accounts: dict[int, Account] = {}

    @initialize()
    def start_empty(self) -> None:
        assert self.engine.depth(1) == ([], [])

    # commands

    def _run(self, make: type[Command], *args: object) -> list[Event]:
        self.ts += 1
        command = make(*args, "", self.ts)  # type: ignore[call-arg]
        expected = self.ref.apply(command)
        events = self.engine.apply(command)
        assert events == expected, (command, events, expected)
        self._account(events)
        outcome = type(events[0]).__name__
        if len(events) > 1:
            outcome += " + trades"
        if isinstance(events[0], Rejected):
            outcome += f" ({events[0].reason})"
        event(f"{make.__name__}: {outcome}")
        return events

    def _target(self, data: st.DataObject) -> int:
        alive = self.ref.alive_ids()
        dead = sorted(self.ref.accepted.difference(alive))
        unknown = [0, -1, self.ref.next_id, self.ref.next_id + 1, 10**12]
        pools = [st.sampled_from(p) for p in (alive, alive, alive, dead, unknown) if p]
        return data.draw(st.one_of(pools), label="order_id")

    @rule(side=SIDES, price=PRICES, quantity=QUANTITIES, client_order_id=CLIENT_IDS)
    def place(self, side: int, price: int, quantity: int, client_order_id: str | None) -> None:
        self._place(side, price, quantity, client_order_id)

    @rule(
        side=SIDES,
        offset=st.integers(-2, 8),
        quantity=QUANTITIES,
        client_order_id=CLIENT_IDS,
    )
    def place_near_mid(
        self, side: int, offset: int, quantity: int, client_order_id: str | None
    ) -> None:
        """Mostly passive orders around the middle of the range: builds a deeper book."""
        price = MID - offset if side == BUY else MID + 1 + offset
        self._place(side, price, quantity, client_order_id)

    def _place(self, side: int, price: int, quantity: int, client_order_id: str | None) -> None:
        events = self._run(Place, side, price, quantity, client_order_id)
        first = events[0]
        if isinstance(first, Rejected):
            assert first.reason == DUPLICATE_CLIENT_ORDER_ID
            assert client_order_id is not None
            assert first.order_id == self.engine.client_order_ids[client_order_id]
            assert len(events) == 1
        else:
            assert isinstance(first, Accepted)
            assert (first.side, first.price, first.quantity) == (side, price, quantity)

    @rule(data=st.data())
    def modify(self, data: st.DataObject) -> None:
        order_id = self._target(data)
        # half the time a price at or next to a touch (or the order's own), to cross often
        bids, asks = self.ref.depth()
        near = [p for side in (bids, asks) for p, _ in side[:1]]
        own = self.ref._find(order_id)
        if own is not None:
            near.append(own.price)
        near = sorted({q for p in near for q in (p - 1, p, p + 1) if MIN_PRICE <= q <= MAX_PRICE})
        price = data.draw(PRICES | st.sampled_from(near) if near else PRICES, label="price")
        alive = order_id in self.engine.orders
        events = self._run(Modify, order_id, price)
        assert isinstance(events[0], Modified if alive else Rejected)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        order_id = self._target(data)
        alive = order_id in self.engine.orders
        before = self.engine.orders[order_id].remaining if alive else None
        events = self._run(Cancel, order_id)
        assert len(events) == 1
        if alive:
            if before != self.accounts[order_id].quantity:
                event("Cancel: after a partial fill")
            assert events[0] == Cancelled(self.engine.seq, order_id, before, self.ts)
            assert order_id not in self.engine.orders
        else:
            assert isinstance(events[0], Rejected)

    @rule()
    def restart_from_snapshot(self) -> None:
        """The service restarts from a snapshot: carry on with the restored copy."""
        data = snapshot(self.engine)
        self.engine = restore(data)
        assert snapshot(self.engine) == data

    # bookkeeping from events only

    def _account(self, events: list[Event]) -> None:
        for e in events:
            assert e.seq == self.last_seq + 1, "sequence gap"
            self.last_seq = e.seq
            assert e.ts == self.ts
            if isinstance(e, Accepted):
                assert e.order_id not in self.accounts
                self.accounts[e.order_id] = Account(e.side, e.price, e.quantity)
            elif isinstance(e, Modified):
                self.accounts[e.order_id].price = e.price
            elif isinstance(e, Cancelled):
                account = self.accounts[e.order_id]
                assert e.quantity > 0
                account.cancelled += e.quantity
            elif isinstance(e, Trade):
                bid = self.accounts[e.bid_order_id]
                ask = self.accounts[e.ask_order_id]
                assert (bid.side, ask.side) == (BUY, SELL)
                assert e.quantity > 0
                assert bid.price >= ask.price  # the two limits cross
                maker, taker = (ask, bid) if e.taker_side == BUY else (bid, ask)
                assert e.price == maker.price  # prints at the resting price
                # and never through the taker's own limit
                assert (e.price <= taker.price) if taker is bid else (e.price >= taker.price)
                bid.traded += e.quantity
                ask.traded += e.quantity
                # both sides add up: each side's reported remaining is its own arithmetic
                assert e.bid_remaining == bid.quantity - bid.traded
                assert e.ask_remaining == ask.quantity - ask.traded
                assert e.bid_remaining >= 0
                assert e.ask_remaining >= 0

    # invariants

    @invariant()
    def same_book_as_reference(self) -> None:
        engine = self.engine
        assert engine.depth(MAX_PRICE + 1) == self.ref.depth()
        assert sorted(engine.orders) == self.ref.alive_ids()
        assert engine.seq == self.ref.seq == self.last_seq
        assert engine.next_order_id == self.ref.next_id
        priority = [o.order_id for o in engine.bids.iter_orders() + engine.asks.iter_orders()]
        assert priority == [o.order_id for o in self.ref.bids + self.ref.asks]

    @invariant()
    def book_never_crossed(self) -> None:
        bids, asks = self.engine.bids, self.engine.asks
        if bids.prices and asks.prices:
            assert bids.best < asks.best
        assert bids.best == (bids.prices[-1] if bids.prices else NO_BID)
        assert asks.best == (asks.prices[0] if asks.prices else NO_ASK)

    @invariant()
    def indexes_are_consistent(self) -> None:
        engine = self.engine
        resting = {}
        for book, side in ((engine.bids, BUY), (engine.asks, SELL)):
            assert list(book.prices) == sorted(book.levels)
            for price, level in book.levels.items():
                assert level.price == price
                assert level.orders, "empty level left behind"
                assert level.total == sum(o.remaining for o in level.orders.values())
                for order_id, order in level.orders.items():
                    assert order.order_id == order_id
                    assert (order.side, order.price) == (side, price)
                    assert 0 < order.remaining <= order.quantity
                    resting[order_id] = order
        assert resting.keys() == engine.orders.keys()
        assert all(engine.orders[i] is o for i, o in resting.items())

    @invariant()
    def quantities_add_up(self) -> None:
        orders = self.engine.orders
        for order_id, account in self.accounts.items():
            order = orders.get(order_id)
            remaining = order.remaining if order is not None else 0
            assert account.quantity == account.traded + remaining + account.cancelled
            if order is not None:
                assert order.price == account.price
                assert order.quantity == account.quantity
                assert account.cancelled == 0

    @invariant()
    def snapshot_restore_keeps_the_hash(self) -> None:
        assert state_hash(restore(snapshot(self.engine))) == state_hash(self.engine)


TestEngineVersusReference = EngineVersusReference.TestCase
TestEngineVersusReference.settings = settings(settings.get_profile(PROFILE))
