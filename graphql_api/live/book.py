"""A replica of one instrument's book in the API, kept from the engine's events, and the
level changes it makes visible to subscribers of a given depth.

The engine publishes events, not book changes (and stays untouched): the replica keeps
each resting order's side, price and remaining quantity, so that a cancel, a modify or a
trade against it says which level changed and by how much. It starts from the store's
resting orders (`Store.resting`) at a known sequence number and applies every later event.

Between two batches (one command's events each) the replica is the book at `seq`, which is
what the store shows at that sequence number: an aggressive order that rests after
trading is added once its last trade is known, never while it is still matching.

Subscribers see a window: the best `depth` levels of each side. A level change inside the
window is sent; a new level that pushes the last one out also sends that one with
quantity 0; a level that leaves the window also sends the level that enters from below.
So a client that applies every change holds exactly the top `depth` levels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from sortedcontainers import SortedList

from shared.commands import BUY, GTC, MARKET
from shared.events import Accepted, Cancelled, Event, Modified, QuantityChanged, Trade
from store.port import BookLevels, RestingOrder

from ..hub import Hub


class LevelChange(NamedTuple):
    seq: int  # the event that caused it
    side: int  # 1 bid, -1 ask
    price: int  # ticks
    quantity: int  # the level's new total; 0: gone from the window


class Side:
    """One side's aggregated levels: price -> total, and the prices in order."""

    __slots__ = ("is_bid", "levels", "prices")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels: dict[int, int] = {}
        self.prices: SortedList = SortedList()

    def change(self, price: int, delta: int) -> tuple[int, int]:
        """Add `delta` to the level at `price`; (old total, new total)."""
        old = self.levels.get(price, 0)
        new = old + delta
        if new:
            self.levels[price] = new
            if not old:
                self.prices.add(price)
        else:
            del self.levels[price]
            self.prices.remove(price)
        return old, new

    def rank(self, price: int) -> int:
        """How many levels are better than `price` (its index once present)."""
        if self.is_bid:
            return len(self.prices) - int(self.prices.bisect_right(price))
        return int(self.prices.bisect_left(price))

    def at(self, rank: int) -> int:
        return int(self.prices[-1 - rank] if self.is_bid else self.prices[rank])

    def top(self, depth: int) -> list[tuple[int, int]]:
        prices = self.prices[::-1][:depth] if self.is_bid else self.prices[:depth]
        return [(p, self.levels[p]) for p in prices]


class _Taker:
    """An order still matching (placed, or moved to a new price): it rests, if it does,
    only after its last trade."""

    __slots__ = ("order_id", "price", "remaining", "rests", "seq", "side")

    def __init__(
        self, order_id: int, side: int, price: int, remaining: int, rests: bool, seq: int
    ) -> None:
        self.order_id, self.side, self.price = order_id, side, price
        self.remaining, self.rests, self.seq = remaining, rests, seq


class ReplicaBook:
    def __init__(self, seq: int, resting: Iterable[RestingOrder]) -> None:
        self.seq = seq
        self.bids = Side(is_bid=True)
        self.asks = Side(is_bid=False)
        self.orders: dict[int, list[int]] = {}  # order id -> [side, price, remaining]
        # Orders read after `seq` had already moved on (a store without snapshots): the
        # events they already reflect are skipped, by their last event's sequence number.
        self.ahead: dict[int, int] = {}
        for o in resting:
            self.orders[o.order_id] = [o.side, o.price, o.remaining]
            (self.bids if o.side == BUY else self.asks).change(o.price, o.remaining)
            if o.last_seq > seq:
                self.ahead[o.order_id] = o.last_seq
        # Every depth someone watches -> where its window's changes go.
        self.views: dict[int, Hub[LevelChange]] = {}
        self._taker: _Taker | None = None

    @property
    def consistent(self) -> bool:
        """Whether the replica is the book at `seq` (it is once past every order read)."""
        return not self.ahead

    def snapshot(self, depth: int) -> BookLevels:
        return BookLevels(self.seq, self.bids.top(depth), self.asks.top(depth))

    # -- events ------------------------------------------------------------------------------

    def apply(self, batch: Sequence[Event]) -> None:
        """One batch of this instrument's events, in sequence order."""
        for event in batch:
            if event.seq <= self.seq:
                continue
            kind = type(event)
            if kind is Trade:
                self._trade(event)  # type: ignore[arg-type]
                continue
            self._rest_taker()
            order_id: int = event.order_id  # type: ignore[union-attr]
            if self.ahead and self.ahead.get(order_id, 0) >= event.seq:
                continue
            if kind is Accepted:
                e: Accepted = event  # type: ignore[assignment]
                rests = e.tif == GTC and e.price != MARKET
                self._taker = _Taker(order_id, e.side, e.price, e.quantity, rests, e.seq)
            elif kind is Cancelled:
                self._remove(order_id, event.seq)
            elif kind is Modified:
                self._modified(event)  # type: ignore[arg-type]
            elif kind is QuantityChanged:
                q: QuantityChanged = event  # type: ignore[assignment]
                order = self.orders.get(order_id)
                if order is not None:
                    delta, order[2] = q.remaining - order[2], q.remaining
                    self._change(order[0], order[1], delta, q.seq)
        self._rest_taker()
        if batch:
            self.seq = max(self.seq, batch[-1].seq)
            if self.ahead and self.seq >= max(self.ahead.values()):
                self.ahead.clear()

    def _trade(self, t: Trade) -> None:
        taker = self._taker
        for order_id, left in (
            (t.bid_order_id, t.bid_remaining),
            (t.ask_order_id, t.ask_remaining),
        ):
            if taker is not None and order_id == taker.order_id:
                taker.remaining, taker.seq = left, t.seq
                continue
            if self.ahead and self.ahead.get(order_id, 0) >= t.seq:
                continue
            order = self.orders.get(order_id)
            if order is None:
                continue  # died before the replica's start (a store without snapshots)
            delta, order[2] = left - order[2], left
            if not left:
                del self.orders[order_id]
            self._change(order[0], order[1], delta, t.seq)

    def _modified(self, m: Modified) -> None:
        order = self.orders.get(m.order_id)
        if order is None or order[1] == m.price:
            return  # same price: the level total is unchanged (priority may be)
        side, price, remaining = order
        del self.orders[m.order_id]
        self._change(side, price, -remaining, m.seq)
        # At its new price it may trade at once: it rests after its last trade.
        self._taker = _Taker(m.order_id, side, m.price, remaining, True, m.seq)

    def _remove(self, order_id: int, seq: int) -> None:
        taker = self._taker
        if taker is not None and taker.order_id == order_id:
            self._taker = None  # an IOC, FOK or market remainder: it never rested
            return
        order = self.orders.pop(order_id, None)
        if order is not None:
            self._change(order[0], order[1], -order[2], seq)

    def _rest_taker(self) -> None:
        taker = self._taker
        if taker is None:
            return
        self._taker = None
        if taker.rests and taker.remaining:
            self.orders[taker.order_id] = [taker.side, taker.price, taker.remaining]
            self._change(taker.side, taker.price, taker.remaining, taker.seq)

    # -- windows -----------------------------------------------------------------------------

    def _change(self, side: int, price: int, delta: int, seq: int) -> None:
        if not delta:
            return
        book = self.bids if side == BUY else self.asks
        old, new = book.change(price, delta)
        if not self.views:
            return
        rank = book.rank(price)
        for depth, hub in self.views.items():
            if rank >= depth:
                continue
            publish = hub.publish
            publish(LevelChange(seq, side, price, new))
            if not old:  # a new level: the one it pushed out of the window leaves it
                if len(book.prices) > depth:
                    publish(LevelChange(seq, side, book.at(depth), 0))
            elif not new and len(book.prices) >= depth:  # a level left: one enters from below
                entering = book.at(depth - 1)
                publish(LevelChange(seq, side, entering, book.levels[entering]))
