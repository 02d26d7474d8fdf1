"""Stateful property test: the engine against a naive reference book, step by step.

The reference keeps each side as a plain list sorted by priority (price, then arrival) and
does everything in O(n); it shares no code with `engine`. Every command goes to both, and
their events must be identical. After every step the engine's state is also checked on its
own: uncrossed book, consistent internal indexes, quantity accounting per order, and a
snapshot -> restore round trip with the same state hash.

What the commands cover:
- GTC limit orders, IOC and FOK limit orders, market orders (price 0) with IOC or FOK,
  including market orders on an empty opposite side (rejected `no_liquidity`, no id used);
- modify with a new price, a new total quantity (lower keeps priority, higher moves to the
  tail, at or below the traded quantity is rejected), both at once, or neither;
- cancel; modify and cancel by another owner (rejected `not_owner`); client order ids
  scoped per owner; restarts from a snapshot;
- engines whose ids and sequence numbers start above a non-zero `base`.
Any rejection must leave the state untouched apart from the sequence number it consumes.

Profile (examples, steps) comes from tests/engine/conftest.py via HYPOTHESIS_PROFILE.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from engine.book import NO_ASK, NO_BID
from engine.matching import MatchingEngine
from engine.snapshot import restore, snapshot, state_hash
from shared.commands import BUY, FOK, GTC, IOC, MARKET, SELL, Cancel, Command, Modify, Place
from shared.events import (
    DUPLICATE_CLIENT_ORDER_ID,
    INVALID_QUANTITY,
    NO_LIQUIDITY,
    NOT_OWNER,
    ORDER_NOT_ALIVE,
    UNKNOWN_ORDER,
    Accepted,
    Cancelled,
    Event,
    Modified,
    QuantityChanged,
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
OWNERS = ("", "a", "b")
BASES = (0, 1 << 40)  # 1 << 40 > 10**12, the largest "unknown" id drawn below
IMMEDIATE_TIFS = st.sampled_from([IOC, FOK])


# -- the reference ---------------------------------------------------------------------------


@dataclass
class RefOrder:
    order_id: int
    side: int
    price: int
    quantity: int
    remaining: int
    arrival: int
    owner: str = ""


class ReferenceBook:
    """Price-time priority the slow, obvious way."""

    def __init__(self, base: int = 0) -> None:
        self.bids: list[RefOrder] = []  # sorted by (-price, arrival): best first
        self.asks: list[RefOrder] = []  # sorted by (price, arrival): best first
        self.seq = base
        self.next_id = base + 1
        self.arrivals = 0
        self.accepted: set[int] = set()
        self.client_ids: dict[tuple[str, str], int] = {}  # (owner, client order id) -> id

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _find(self, order_id: int) -> RefOrder | None:
        for order in self.bids + self.asks:
            if order.order_id == order_id:
                return order
        return None

    def _reject(self, order_id: int, ts: int, owner: str) -> list[Event]:
        reason = ORDER_NOT_ALIVE if order_id in self.accepted else UNKNOWN_ORDER
        return [Rejected(self._next_seq(), reason, order_id, ts, owner)]

    def _rest(self, order: RefOrder) -> None:
        """Put at the tail of its price level (a fresh arrival)."""
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

    @staticmethod
    def _crosses(side: int, limit: int | None, resting_price: int) -> bool:
        """Whether a taker on `side` with `limit` (None: a market order) reaches a price."""
        if limit is None:
            return True
        return resting_price <= limit if side == BUY else resting_price >= limit

    def _available(self, side: int, limit: int | None) -> int:
        opposite = self.asks if side == BUY else self.bids
        return sum(o.remaining for o in opposite if self._crosses(side, limit, o.price))

    def _match(self, taker: RefOrder, limit: int | None, events: list[Event], ts: int) -> None:
        opposite = self.asks if taker.side == BUY else self.bids
        while taker.remaining and opposite:
            maker = opposite[0]
            if not self._crosses(taker.side, limit, maker.price):
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
        self,
        side: int,
        price: int,
        quantity: int,
        client_order_id: str | None,
        ts: int,
        tif: int,
        owner: str,
    ) -> list[Event]:
        key = None if client_order_id is None else (owner, client_order_id)
        # a client order id seen before (from the same owner) wins over everything else
        if key is not None and key in self.client_ids:
            known = self.client_ids[key]
            return [Rejected(self._next_seq(), DUPLICATE_CLIENT_ORDER_ID, known, ts, owner)]
        market = price == MARKET
        opposite = self.asks if side == BUY else self.bids
        if market and not opposite:  # nothing to trade with: no order, no id, no client id
            return [Rejected(self._next_seq(), NO_LIQUIDITY, 0, ts, owner)]
        order_id = self.next_id
        self.next_id += 1
        self.accepted.add(order_id)
        if key is not None:
            self.client_ids[key] = order_id
        events: list[Event] = [
            Accepted(
                self._next_seq(), order_id, side, price, quantity, ts, client_order_id, tif, owner
            )
        ]
        order = RefOrder(order_id, side, price, quantity, quantity, 0, owner)
        if tif == GTC and not market:
            self._match(order, price, events, ts)
            if order.remaining:
                self._rest(order)
            return events
        # IOC, FOK, market: trade now (FOK only if it fills whole), cancel what is left
        limit = None if market else price
        if tif != FOK or self._available(side, limit) >= quantity:
            self._match(order, limit, events, ts)
        if order.remaining:
            events.append(Cancelled(self._next_seq(), order_id, order.remaining, ts))
        return events

    def modify(self, order_id: int, price: int, ts: int, quantity: int, owner: str) -> list[Event]:
        order = self._find(order_id)
        if order is None:
            return self._reject(order_id, ts, owner)
        if order.owner != owner:
            return [Rejected(self._next_seq(), NOT_OWNER, order_id, ts, owner)]
        events: list[Event] = []
        if quantity != 0 and quantity != order.quantity:
            traded = order.quantity - order.remaining
            if quantity <= traded:
                return [Rejected(self._next_seq(), INVALID_QUANTITY, order_id, ts, owner)]
            raised = quantity > order.quantity
            order.quantity = quantity
            order.remaining = quantity - traded
            if raised:  # loses time priority; lowering keeps it
                self._unrest(order)
                self._rest(order)
            events.append(
                QuantityChanged(self._next_seq(), order_id, quantity, order.remaining, ts)
            )
        # A price (even the same one) is confirmed by Modified; a modify that changes nothing
        # at all is also confirmed by Modified at the current price.
        if price != 0 or not events:
            events.append(Modified(self._next_seq(), order_id, price or order.price, ts))
        if price == 0 or price == order.price:
            return events
        self._unrest(order)
        order.price = price
        self._match(order, price, events, ts)
        if order.remaining:
            self._rest(order)
        return events

    def cancel(self, order_id: int, ts: int, owner: str) -> list[Event]:
        order = self._find(order_id)
        if order is None:
            return self._reject(order_id, ts, owner)
        if order.owner != owner:
            return [Rejected(self._next_seq(), NOT_OWNER, order_id, ts, owner)]
        self._unrest(order)
        return [Cancelled(self._next_seq(), order_id, order.remaining, ts)]

    def apply(self, command: Command) -> list[Event]:
        if isinstance(command, Place):
            return self.place(
                command.side,
                command.price,
                command.quantity,
                command.client_order_id,
                command.ts,
                command.tif,
                command.owner,
            )
        if isinstance(command, Modify):
            return self.modify(
                command.order_id, command.price, command.ts, command.quantity, command.owner
            )
        return self.cancel(command.order_id, command.ts, command.owner)

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

UNLIMITED_BUY = 1 << 62  # the limit a market buy is accounted with: any ask crosses it
UNLIMITED_SELL = 0  # ... and a market sell: any bid crosses it


@dataclass
class Account:
    """What the events say about one order."""

    side: int
    price: int  # the limit; UNLIMITED_BUY / UNLIMITED_SELL for a market order
    quantity: int
    immediate: bool  # IOC, FOK or market: never rests
    traded: int = 0
    cancelled: int = 0


class EngineVersusReference(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._start(0)

    def _start(self, base: int) -> None:
        self.base = base
        self.engine = MatchingEngine(base)
        self.ref = ReferenceBook(base)
        self.ts = 0
        self.last_seq = base
        self.accounts: dict[int, Account] = {}
        self.client_ids: dict[tuple[str, str], int] = {}  # from Accepted events only

    @initialize(base=st.sampled_from(BASES))
    def start_empty(self, base: int) -> None:
        self._start(base)
        event(f"base {base}")
        assert self.engine.depth(1) == ([], [])
        assert (self.engine.seq, self.engine.next_order_id) == (base, base + 1)

    # commands

    def _run(self, make: Callable[[int], Command]) -> list[Event]:
        """Runs the command `make` builds for the next timestamp on both engines."""
        self.ts += 1
        command = make(self.ts)
        before = snapshot(self.engine)
        expected = self.ref.apply(command)
        events = self.engine.apply(command)
        assert events == expected, (command, events, expected)
        self._account(events)
        first = events[0]
        outcome = type(first).__name__
        if any(isinstance(e, Trade) for e in events):
            outcome += " + trades"
        if isinstance(first, Rejected):
            outcome += f" ({first.reason})"
            # a rejection changes nothing but the sequence number it uses
            assert len(events) == 1
            unchanged = restore(before)
            unchanged.seq += 1
            assert snapshot(unchanged) == snapshot(self.engine)
        event(f"{type(command).__name__}: {outcome}")
        return events

    def _target(self, data: st.DataObject) -> int:
        alive = self.ref.alive_ids()
        dead = sorted(self.ref.accepted.difference(alive))
        next_id = self.ref.next_id
        # never handed out: below the base (another instrument's or a base-0 book's ids), the
        # base itself, the next ids, and far away
        unknown = sorted({0, -1, 1, self.base, next_id, next_id + 1, 10**12, self.base * 2 + 1})
        unknown = [i for i in unknown if i not in self.ref.accepted]
        pools = [st.sampled_from(p) for p in (alive, alive, alive, dead, unknown) if p]
        return data.draw(st.one_of(pools), label="order_id")

    def _actor(self, data: st.DataObject, order_id: int) -> str:
        """Mostly the order's owner; sometimes anyone (another owner: `not_owner`)."""
        order = self.ref._find(order_id)
        choices: tuple[str, ...] = (order.owner,) * 3 + OWNERS if order is not None else OWNERS
        return data.draw(st.sampled_from(choices), label="owner")

    @rule(
        side=SIDES,
        price=PRICES,
        quantity=QUANTITIES,
        client_order_id=CLIENT_IDS,
        owner=st.sampled_from(OWNERS),
    )
    def place(
        self, side: int, price: int, quantity: int, client_order_id: str | None, owner: str
    ) -> None:
        self._place(side, price, quantity, client_order_id, GTC, owner)

    @rule(
        side=SIDES,
        offset=st.integers(-2, 8),
        quantity=QUANTITIES,
        client_order_id=CLIENT_IDS,
        owner=st.sampled_from(OWNERS),
    )
    def place_near_mid(
        self, side: int, offset: int, quantity: int, client_order_id: str | None, owner: str
    ) -> None:
        """Mostly passive orders around the middle of the range: builds a deeper book."""
        price = MID - offset if side == BUY else MID + 1 + offset
        self._place(side, price, quantity, client_order_id, GTC, owner)

    def _immediate_quantity(self, data: st.DataObject, side: int, limit: int | None) -> int:
        """Often right at what crosses (FOK's edge), otherwise anything."""
        available = self.ref._available(side, limit)
        edge = [q for q in (available - 1, available, available + 1) if q >= 1]
        return data.draw(QUANTITIES | st.sampled_from(edge), label="quantity")

    def _immediate_owner(self, data: st.DataObject, client_order_id: str | None) -> str:
        owner: str = data.draw(st.sampled_from(OWNERS), label="owner")
        return owner

    @rule(side=SIDES, tif=IMMEDIATE_TIFS, client_order_id=CLIENT_IDS, data=st.data())
    def place_immediate(
        self, side: int, tif: int, client_order_id: str | None, data: st.DataObject
    ) -> None:
        """IOC / FOK: a third are market orders, the rest limits mostly near the far touch."""
        bids, asks = self.ref.depth()
        touch = (asks if side == BUY else bids)[:2]
        near = sorted(
            {q for p, _ in touch for q in (p - 1, p, p + 1) if MIN_PRICE <= q <= MAX_PRICE}
        )
        limits = PRICES | st.sampled_from(near) if near else PRICES
        price = data.draw(st.just(MARKET) | limits, label="price")
        quantity = self._immediate_quantity(data, side, None if price == MARKET else price)
        owner = self._immediate_owner(data, client_order_id)
        self._place(side, price, quantity, client_order_id, tif, owner)

    def _place(
        self,
        side: int,
        price: int,
        quantity: int,
        client_order_id: str | None,
        tif: int,
        owner: str,
    ) -> None:
        engine = self.engine
        next_id = engine.next_order_id
        known_ids = len(engine.client_order_ids)
        opposite_empty = not (engine.asks if side == BUY else engine.bids).levels
        events = self._run(
            lambda ts: Place(side, price, quantity, client_order_id, ts=ts, tif=tif, owner=owner)
        )
        first = events[0]
        kind = {GTC: "GTC", IOC: "IOC", FOK: "FOK"}[tif] + (" market" if price == MARKET else "")
        if isinstance(first, Rejected):
            assert engine.next_order_id == next_id  # no id used
            assert len(engine.client_order_ids) == known_ids  # the client order id is free
            if first.reason == DUPLICATE_CLIENT_ORDER_ID:
                assert client_order_id is not None
                assert first.order_id == self.client_ids[(owner, client_order_id)]
            else:
                assert first.reason == NO_LIQUIDITY
                assert price == MARKET and opposite_empty
                assert first.order_id == 0
                event(f"{kind}: no liquidity")
            return
        assert isinstance(first, Accepted)
        assert first.order_id == next_id > self.base
        assert (first.side, first.price, first.quantity) == (side, price, quantity)
        assert (first.tif, first.owner, first.client_order_id) == (tif, owner, client_order_id)
        if tif == GTC and price != MARKET:
            return
        # immediate: never rests, and the remainder (if any) is cancelled in the same batch
        account = self.accounts[first.order_id]
        assert first.order_id not in engine.orders
        assert account.traded + account.cancelled == quantity
        assert isinstance(events[-1], Cancelled) == (account.traded < quantity)
        if tif == FOK:
            assert account.traded in (0, quantity), "FOK filled partially"
            event(f"{kind}: {'filled' if account.traded else 'killed'}")
        else:
            filled = "filled" if account.traded == quantity else "partial"
            event(f"{kind}: {filled if account.traded else 'nothing traded'}")

    @rule(data=st.data())
    def modify(self, data: st.DataObject) -> None:
        order_id = self._target(data)
        owner = self._actor(data, order_id)
        # a third of the time no new price (0); else often at or next to a touch or its own
        bids, asks = self.ref.depth()
        near = [p for side in (bids, asks) for p, _ in side[:1]]
        own = self.ref._find(order_id)
        if own is not None:
            near.append(own.price)
        near = sorted({q for p in near for q in (p - 1, p, p + 1) if MIN_PRICE <= q <= MAX_PRICE})
        prices = st.just(0) | PRICES
        price = data.draw(prices | st.sampled_from(near) if near else prices, label="price")
        # a third of the time no new quantity (0); else often around the traded or total one
        quantities = st.just(0) | QUANTITIES
        if own is not None:
            traded = own.quantity - own.remaining
            edges = {traded - 1, traded, traded + 1, own.quantity - 1, own.quantity + 2}
            quantities |= st.sampled_from(sorted(q for q in edges if q >= 1))
        quantity = data.draw(quantities, label="quantity")
        self._modify(order_id, price, quantity, owner)

    def _modify(self, order_id: int, price: int, quantity: int, owner: str) -> None:
        order = self.engine.orders.get(order_id)
        before = None if order is None else (order.quantity, order.remaining)
        events = self._run(
            lambda ts: Modify(order_id, price, ts=ts, quantity=quantity, owner=owner)
        )
        first = events[0]
        if order is None:
            assert isinstance(first, Rejected)
            assert first.reason in (UNKNOWN_ORDER, ORDER_NOT_ALIVE)
            return
        if order.owner != owner:
            assert first == Rejected(self.engine.seq, NOT_OWNER, order_id, self.ts, owner)
            return
        assert before is not None
        total, remaining = before
        traded = total - remaining
        resized = quantity != 0 and quantity != total
        rest = events
        if resized:
            if quantity <= traded:
                assert first == Rejected(
                    self.engine.seq, INVALID_QUANTITY, order_id, self.ts, owner
                )
                return
            assert isinstance(first, QuantityChanged)
            assert (first.quantity, first.remaining) == (quantity, quantity - traded)
            event(f"Modify: quantity {'raised' if quantity > total else 'lowered'}")
            rest = events[1:]
        if price or not resized:  # a price, or nothing at all, is confirmed by Modified
            assert isinstance(rest[0], Modified)
            assert rest[0].price == (price or order.price)
            assert all(isinstance(e, Trade) for e in rest[1:])
            if price and resized:
                event("Modify: price and quantity")
            elif not price and not resized:
                event("Modify: nothing to change")
        else:
            assert not rest  # a quantity change alone

    @precondition(lambda self: self.ref.bids and self.ref.asks)
    @rule(data=st.data())
    def modify_across(self, data: st.DataObject) -> None:
        """The owner reprices a resting order at or through the opposite touch, sometimes
        with a new quantity too: QuantityChanged, then Modified, then trades."""
        order = data.draw(st.sampled_from(self.ref.bids + self.ref.asks), label="order")
        bids, asks = self.ref.depth()
        touch = asks[0][0] if order.side == BUY else bids[0][0]
        through = data.draw(st.integers(0, 2), label="through")
        price = touch + through if order.side == BUY else touch - through
        price = min(MAX_PRICE, max(MIN_PRICE, price))
        traded = order.quantity - order.remaining
        quantity = data.draw(
            st.sampled_from([0, 0, traded, traded + 1, order.quantity + 3]), label="quantity"
        )
        self._modify(order.order_id, price, quantity, order.owner)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        order_id = self._target(data)
        owner = self._actor(data, order_id)
        order = self.engine.orders.get(order_id)
        before = order.remaining if order is not None else None
        events = self._run(lambda ts: Cancel(order_id, ts=ts, owner=owner))
        assert len(events) == 1
        if order is None:
            assert isinstance(events[0], Rejected)
        elif order.owner != owner:
            assert events[0] == Rejected(self.engine.seq, NOT_OWNER, order_id, self.ts, owner)
            assert self.engine.orders[order_id] is order
        else:
            assert before is not None  # (the order was found)
            if before != self.accounts[order_id].quantity:
                event("Cancel: after a partial fill")
            assert events[0] == Cancelled(self.engine.seq, order_id, before, self.ts)
            assert order_id not in self.engine.orders

    @rule()
    def restart_from_snapshot(self) -> None:
        """The service restarts from a snapshot: carry on with the restored copy."""
        data = snapshot(self.engine)
        self.engine = restore(data)
        assert snapshot(self.engine) == data
        assert self.engine.base == self.base

    # bookkeeping from events only

    def _account(self, events: list[Event]) -> None:
        for e in events:
            assert e.seq == self.last_seq + 1, "sequence gap"
            self.last_seq = e.seq
            assert e.ts == self.ts
            if isinstance(e, Accepted):
                assert e.order_id not in self.accounts
                immediate = e.tif != GTC or e.price == MARKET
                limit = e.price
                if e.price == MARKET:
                    limit = UNLIMITED_BUY if e.side == BUY else UNLIMITED_SELL
                self.accounts[e.order_id] = Account(e.side, limit, e.quantity, immediate)
                if e.client_order_id is not None:
                    key = (e.owner, e.client_order_id)
                    assert key not in self.client_ids, "accepted a duplicate client order id"
                    self.client_ids[key] = e.order_id
            elif isinstance(e, Modified):
                assert not self.accounts[e.order_id].immediate
                self.accounts[e.order_id].price = e.price
            elif isinstance(e, QuantityChanged):
                account = self.accounts[e.order_id]
                assert not account.immediate
                assert e.quantity > account.traded
                assert e.remaining == e.quantity - account.traded
                account.quantity = e.quantity
            elif isinstance(e, Cancelled):
                account = self.accounts[e.order_id]
                assert e.quantity > 0
                assert account.cancelled == 0, "cancelled twice"
                assert e.quantity == account.quantity - account.traded  # all that was open
                account.cancelled += e.quantity
            elif isinstance(e, Trade):
                bid = self.accounts[e.bid_order_id]
                ask = self.accounts[e.ask_order_id]
                assert (bid.side, ask.side) == (BUY, SELL)
                assert e.quantity > 0
                assert bid.price >= ask.price  # the two limits cross
                maker, taker = (ask, bid) if e.taker_side == BUY else (bid, ask)
                assert not maker.immediate  # only GTC orders rest
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
        for order in self.ref.bids + self.ref.asks:
            mine = engine.orders[order.order_id]
            assert (mine.quantity, mine.remaining, mine.owner) == (
                order.quantity,
                order.remaining,
                order.owner,
            )

    @invariant()
    def client_order_ids_are_remembered(self) -> None:
        """Exactly the accepted orders that carried a client order id hold one."""
        held = sorted(self.engine.client_order_ids.values())
        assert held == sorted(self.ref.client_ids.values()) == sorted(self.client_ids.values())

    @invariant()
    def ids_start_above_the_base(self) -> None:
        engine = self.engine
        assert engine.base == self.base
        assert engine.seq >= self.base and engine.next_order_id > self.base
        assert all(order_id > self.base for order_id in self.accounts)

    @invariant()
    def book_never_crossed(self) -> None:
        bids, asks = self.engine.bids, self.engine.asks
        bid_prices = sorted(p for p, level in bids.levels.items() if level.total)
        ask_prices = sorted(p for p, level in asks.levels.items() if level.total)
        if bid_prices and ask_prices:
            assert bids.best < asks.best
        assert bids.best == (bid_prices[-1] if bid_prices else NO_BID)
        assert asks.best == (ask_prices[0] if ask_prices else NO_ASK)

    @invariant()
    def indexes_are_consistent(self) -> None:
        engine = self.engine
        resting = {}
        for book, side in ((engine.bids, BUY), (engine.asks, SELL)):
            heap = book.heap
            assert sorted(heap) == sorted(book.key * price for price in book.levels)
            assert all(heap[(i - 1) // 2] <= heap[i] for i in range(1, len(heap)))
            if heap:  # the top of the heap is the best level, and it is live
                assert book.levels[heap[0] * book.key].total
            assert book.live_levels == sum(1 for level in book.levels.values() if level.total)
            for price, level in book.levels.items():
                assert level.price == price
                live = [order for order in level.queue if order.remaining]
                assert level.dead == len(level.queue) - len(live)
                assert level.total or not level.queue, "an emptied level keeps dead orders"
                assert level.total == sum(o.remaining for o in live)
                for order in live:
                    assert order.order_id not in resting, "an order queued twice"
                    assert (order.side, order.price) == (side, price)
                    assert 0 < order.remaining <= order.quantity
                    resting[order.order_id] = order
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
                assert not account.immediate
                assert order.price == account.price
                assert order.quantity == account.quantity
                assert account.cancelled == 0

    @invariant()
    def snapshot_restore_keeps_the_hash(self) -> None:
        assert state_hash(restore(snapshot(self.engine))) == state_hash(self.engine)


TestEngineVersusReference = EngineVersusReference.TestCase
TestEngineVersusReference.settings = settings(settings.get_profile(PROFILE))


# -- regressions -------------------------------------------------------------------------------


def test_immediate_orders_without_client_order_id_are_not_duplicates() -> None:
    """IOC / FOK / market orders without a client order id are never duplicates.

    Regression: the engine once keyed a named owner's missing client order id as the string
    "<owner>\\x1fNone", so that owner's later immediate orders were "duplicates"."""
    engine = MatchingEngine()
    engine.apply(Place(SELL, 10, 5, None, "", 1, GTC, "b"))
    first = engine.apply(Place(BUY, 10, 1, None, "", 2, IOC, "a"))
    assert isinstance(first[0], Accepted) and first[0].order_id == 2
    again = engine.apply(Place(BUY, 10, 1, None, "", 3, IOC, "a"))
    assert isinstance(again[0], Accepted), again
    assert again[0].order_id == 3
    named_none = engine.apply(Place(BUY, 9, 1, "None", "", 4, GTC, "a"))
    assert isinstance(named_none[0], Accepted), named_none
    assert sorted(engine.client_order_ids.values()) == [named_none[0].order_id]
