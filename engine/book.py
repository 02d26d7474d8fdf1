"""The limit order book's data structures.

Why these shapes (each chosen for the cost of one command on a large book, where a
command's time goes mostly to cache misses):
- a level is a `deque` of orders in arrival order. A cancelled order is not searched for in
  it: it is marked dead (`remaining = 0`, which no resting order has otherwise) and left
  where it is; matching drops dead orders when they reach the head, and a level whose
  dead orders outnumber its live ones is compacted (amortised O(1) per cancel). A cancel
  thus touches the order and its level's counters, nothing else. An order that moves
  (a new price, or a larger size) is re-created, so that its old entry stays dead;
- each side keeps its level prices in a binary heap (bids negated), and caches its best
  price, so the crossing check on every order is a single integer comparison. A level that
  empties away from the best stays in the heap and in `levels`, empty, until it reaches
  the top or is reused; the heap is rebuilt when such levels outnumber the live ones. An
  empty side's best is a sentinel that never crosses: 0 for bids, `NO_ASK` for asks
  (prices are >= 1 tick).

This module and `engine.matching` are compiled with mypyc when a compiler is present
(`make core`, see `tools/build_core.py`); otherwise they run as they are, the same code. The
classes here are written for the compiler: plain classes become native ones (attributes
read at a fixed offset, ints unboxed), and constants are `Final` (inlined).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from heapq import heapify, heappop, heappush
from typing import Final, TypeVar

_T = TypeVar("_T")

try:
    from mypy_extensions import mypyc_attr
except ImportError:  # not installed: then nothing is compiled, and the decorator is moot

    def mypyc_attr(*args: object, **kwargs: object) -> Callable[[_T], _T]:  # type: ignore[misc]
        return lambda cls: cls


NO_BID: Final = 0
NO_ASK: Final = 1 << 62

# An order as a snapshot encodes it: the fields of `Order`, in its constructor's order.
OrderRow = tuple[int, int, int, int, int, int, str | None, str]


@mypyc_attr(acyclic=True)
class Order:
    """A resting order. A plain class rather than a msgspec Struct: compiled, its fields are
    read at a fixed offset (a Struct's go through a generic attribute lookup, slower than
    the interpreter's). `acyclic`: compiled orders stay out of the cyclic collector's scans
    (an order refers only to ints and strings, so it is never in a cycle), which a large
    book would otherwise pay for at every full collection. Interpreted, the module uses
    its twin `engine.order_struct.Order` instead (see `COMPILED` below)."""

    __slots__ = (
        "client_order_id",
        "order_id",
        "owner",
        "price",
        "quantity",
        "remaining",
        "side",
        "ts",
    )

    def __init__(
        self,
        order_id: int,
        side: int,
        price: int,
        quantity: int,
        remaining: int,  # 0 once the order has left the book (see the module docstring)
        ts: int,
        client_order_id: str | None,
        owner: str = "",
    ) -> None:
        self.order_id = order_id
        self.side = side
        self.price = price
        self.quantity = quantity
        self.remaining = remaining
        self.ts = ts
        self.client_order_id = client_order_id
        self.owner = owner

    def row(self) -> OrderRow:
        return (
            self.order_id,
            self.side,
            self.price,
            self.quantity,
            self.remaining,
            self.ts,
            self.client_order_id,
            self.owner,
        )


# Which `Order` this module runs with: the native class above when compiled, else the same
# order as a msgspec Struct, which the interpreter builds faster (`engine.order_struct`).
COMPILED: Final = not __file__.endswith(".py")
if not COMPILED:
    from .order_struct import Order  # type: ignore[assignment]


@mypyc_attr(acyclic=True)
class Level:
    """The orders at one price, in arrival order. `total` is the remaining quantity of the
    live ones (so the level is live while it is not 0); `dead` counts the dead orders
    still in `queue`."""

    __slots__ = ("dead", "price", "queue", "total")

    def __init__(self, price: int) -> None:
        self.price = price
        self.queue: deque[Order] = deque()
        self.total = 0
        self.dead = 0

    def compact(self) -> None:
        queue = self.queue
        live = [order for order in queue if order.remaining]
        queue.clear()
        queue.extend(live)
        self.dead = 0


# A level is compacted once its dead orders are more than this and more than its live ones.
# Most dead orders never need it (matching drops them at the head, an emptied level drops
# them all): at 32 rather than 8 the realistic flow compacts 2.5 times less often, for 1%
# fewer instructions per command; a queue stays within twice its live orders plus 32.
COMPACT_AFTER: Final = 32


SPARE_LEVELS: Final = 16  # emptied levels a side keeps for reuse


class BookSide:
    __slots__ = ("best", "empty", "heap", "is_bid", "key", "levels", "live_levels", "spare")

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self.key = -1 if is_bid else 1  # heap key = key * price: the best price on top
        self.empty = NO_BID if is_bid else NO_ASK
        self.best = self.empty
        self.levels: dict[int, Level] = {}  # every price in `heap`, live or empty
        self.heap: list[int] = []
        self.live_levels = 0
        # Levels popped off the top once emptied, for reuse: the best level empties and a
        # new one appears about once every 13 commands of the realistic flow.
        self.spare: list[Level] = []

    def add(self, order: Order) -> None:
        """Append an order at the tail of its price level, creating the level if needed."""
        price = order.price
        level = self.levels.get(price)
        if level is None:
            if self.spare:
                level = self.spare.pop()
                level.price = price
            else:
                level = Level(price)
            self.levels[price] = level
            heappush(self.heap, self.key * price)
        if not level.total:
            self.live_levels += 1
            if (price > self.best) if self.is_bid else (price < self.best):
                self.best = price
        level.queue.append(order)
        level.total += order.remaining

    def remove(self, order: Order) -> None:
        """Take a resting order out of the book (a cancel, a modify that moves it): it is
        marked dead where it stands, and its level is compacted once its dead orders are
        more than `COMPACT_AFTER` and more than its live ones."""
        level = self.levels[order.price]
        level.total -= order.remaining
        order.remaining = 0
        if not level.total:
            self.level_emptied(level)
        else:
            dead = level.dead = level.dead + 1
            if dead > COMPACT_AFTER and 2 * dead > len(level.queue):
                level.compact()

    def level_emptied(self, level: Level) -> None:
        """`level` has no live order left: forget its orders, and find the next best
        price if it was the best."""
        level.queue.clear()
        level.dead = 0
        self.live_levels -= 1
        if level.price == self.best:
            heap, levels, key = self.heap, self.levels, self.key
            while heap:
                top = levels[heap[0] * key]
                if top.total:
                    self.best = top.price
                    return
                heappop(heap)
                del levels[top.price]
                if len(self.spare) < SPARE_LEVELS:
                    self.spare.append(top)
            self.best = self.empty
        elif len(self.levels) > 2 * self.live_levels + 64:
            self.drop_empty_levels()

    def drop_empty_levels(self) -> None:
        """Forget the empty levels and rebuild the heap (in place: callers may hold them)."""
        levels = self.levels
        for price in [p for p, level in levels.items() if not level.total]:
            del levels[price]
        self.heap[:] = [self.key * price for price in levels]
        heapify(self.heap)

    def best_first(self) -> Iterator[Level]:
        """Live levels, best first: a best-first walk of the heap, O(log n) per level."""
        heap, levels, key = self.heap, self.levels, self.key
        size = len(heap)
        frontier = [(heap[0], 0)] if heap else []
        while frontier:
            _, i = heappop(frontier)
            level = levels[heap[i] * key]
            if level.total:
                yield level
            for child in (2 * i + 1, 2 * i + 2):
                if child < size:
                    heappush(frontier, (heap[child], child))

    def depth(self, n: int) -> list[tuple[int, int]]:
        """Top `n` levels, best first, as (price, aggregated quantity)."""
        top: list[tuple[int, int]] = []
        if n <= 0:
            return top
        for level in self.best_first():
            top.append((level.price, level.total))
            if len(top) == n:
                break
        return top

    def rows(self) -> list[OrderRow]:
        """`iter_orders` as a snapshot encodes them."""
        return [order.row() for order in self.iter_orders()]

    def iter_orders(self) -> list[Order]:
        """Every resting order, best level first, FIFO inside a level (canonical order)."""
        live = sorted((p for p, level in self.levels.items() if level.total), reverse=self.is_bid)
        levels = self.levels
        return [order for price in live for order in levels[price].queue if order.remaining]
