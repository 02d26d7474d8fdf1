"""The limit order book's data structures.

Why these shapes:
- a level is an `OrderedDict` (a C doubly linked list plus a dict): appending at the tail,
  removing any order by id and taking the head are all O(1), which gives FIFO priority
  with O(1) cancel;
- each side keeps its prices in a `SortedList` (O(log n) only when a level appears or
  disappears) and caches its best price, so the crossing check on every order is a single
  integer comparison. An empty side's best is a sentinel that never crosses: 0 for bids,
  `NO_ASK` for asks (prices are >= 1 tick).
"""

from __future__ import annotations

from collections import OrderedDict

import msgspec
from sortedcontainers import SortedList

NO_BID = 0
NO_ASK = 1 << 62


class Order(msgspec.Struct, array_like=True, gc=False):
    """A resting order. A msgspec Struct: as cheap to build and use as a slotted class, it
    is also what a snapshot encodes as is (no per-order copy, which took most of the time
    of a checkpoint of a large book), and `gc=False` keeps a large book out of the cyclic
    collector's scans (an order refers only to ints and strings, so it is never in a
    cycle)."""

    order_id: int
    side: int
    price: int
    quantity: int
    remaining: int
    ts: int
    client_order_id: str | None
    owner: str = ""


class Level:
    __slots__ = ("orders", "price", "total")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: OrderedDict[int, Order] = OrderedDict()
        self.total = 0


class BookSide:
    __slots__ = ("best", "is_bid", "levels", "prices")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.levels: dict[int, Level] = {}
        self.prices = SortedList()
        self.best = NO_BID if is_bid else NO_ASK

    def add(self, order: Order) -> None:
        """Append an order at the tail of its price level, creating the level if needed."""
        price = order.price
        level = self.levels.get(price)
        if level is None:
            level = self.levels[price] = Level(price)
            self.prices.add(price)
            if (price > self.best) if self.is_bid else (price < self.best):
                self.best = price
        level.orders[order.order_id] = order
        level.total += order.remaining

    def remove(self, order: Order) -> None:
        """Take a resting order out of its level, dropping the level when it empties."""
        level = self.levels[order.price]
        del level.orders[order.order_id]
        level.total -= order.remaining
        if not level.orders:
            self.drop_level(order.price)

    def drop_level(self, price: int) -> None:
        del self.levels[price]
        prices = self.prices
        prices.remove(price)
        if price == self.best:
            if prices:
                self.best = prices[-1] if self.is_bid else prices[0]
            else:
                self.best = NO_BID if self.is_bid else NO_ASK

    def depth(self, n: int) -> list[tuple[int, int]]:
        """Top `n` levels, best first, as (price, aggregated quantity): O(log book + n)."""
        prices = self.prices
        size = len(prices)
        if self.is_bid:
            top = prices.islice(max(0, size - n), size, reverse=True)
        else:
            top = prices.islice(0, min(n, size))
        levels = self.levels
        return [(price, levels[price].total) for price in top]

    def iter_orders(self) -> list[Order]:
        """Every resting order, best level first, FIFO inside a level (canonical order)."""
        ordered = reversed(self.prices) if self.is_bid else iter(self.prices)
        return [order for price in ordered for order in self.levels[price].orders.values()]
