"""The matching core: commands in, events out, nothing else.

No I/O, clock, randomness or floats: the same command sequence always yields the same
events and the same `state_hash()`. The service loop (`engine.service`) owns the only
instance and feeds it one command at a time.

Inputs are trusted: `shared.prices` validated them at the API edge, so the hot path does
no checks beyond the business rules (unknown, dead or duplicate orders).

Compiled with mypyc when a compiler is present (see `engine.book`), so the hot path is
written for it too: a command's fields are read at once (`astuple`: a Struct's attributes
are slow to reach from compiled code), values only passed on to events are left untyped
(`Any`: not unboxed and boxed again), and the classes it builds or checks are module
constants (`Final`: not looked up per use).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

from msgspec.structs import astuple

from shared.commands import BUY, FOK, GTC, MARKET, Cancel, Command, Modify, Place
from shared.events import (
    DUPLICATE_CLIENT_ORDER_ID,
    INVALID_QUANTITY,
    NO_LIQUIDITY,
    NOT_OWNER,
    ORDER_NOT_ALIVE,
    PRICE_OUT_OF_BAND,
    UNKNOWN_ORDER,
    Accepted,
    Cancelled,
    Event,
    Modified,
    QuantityChanged,
    Rejected,
    Trade,
)

from .book import NO_ASK, BookSide, Order, OrderRow

_astuple: Final = astuple
_Place: Final = Place
_Modify: Final = Modify
_Cancel: Final = Cancel
_Accepted: Final = Accepted
_Cancelled: Final = Cancelled
_Modified: Final = Modified
_QuantityChanged: Final = QuantityChanged
_Rejected: Final = Rejected
_Trade: Final = Trade


def _client_key(owner: str, client_order_id: str) -> str:
    """Client order ids are unique per owner (the API allows only printable ids, so the
    unit separator cannot collide)."""
    return f"{owner}\x1f{client_order_id}" if owner else client_order_id


# Idempotency window: the newest client order ids per instrument that a retry is checked
# against. Bounded so the book's memory is (about 130 MB at most); a retry comes within
# seconds of its timeout, and a million places take minutes even at peak load.
CLIENT_ORDER_ID_WINDOW: Final = 1_000_000

MARKET_BUY_LIMIT: Final = NO_ASK - 1  # a market buy crosses every ask; a market sell uses 1 tick
BPS: Final = 10_000  # a band's width is in basis points of its reference price

# An instrument's price band: (half-width in basis points, reference price in ticks before
# the first trade, 0 for none). Off (None) by default.
Band = tuple[int, int]


class MatchingEngine:
    """One instrument's book with price-time priority; trades print at the resting price."""

    __slots__ = (
        "asks",
        "band",
        "base",
        "bids",
        "client_id_window",
        "client_order_ids",
        "client_order_keys",
        "last_price",
        "next_order_id",
        "orders",
        "seq",
    )

    def __init__(self, base: int = 0) -> None:
        """`base` offsets order ids and sequence numbers, so that books of different
        instruments hand out disjoint ids (see `shared.config.Instrument.base`)."""
        self.base = base
        self.bids = BookSide(is_bid=True)
        self.asks = BookSide(is_bid=False)
        self.orders: dict[int, Order] = {}  # resting (alive) orders only
        self.next_order_id = base + 1
        self.seq = base  # last sequence number handed out
        # Client key -> order id, oldest first (ids are handed out in increasing order, and
        # a key is never re-inserted), and the same keys in a FIFO, which forgets the oldest
        # in O(1) (finding a dict's first key is not: its iteration skips the holes left by
        # earlier deletions until the next resize). Not an OrderedDict: a restore builds
        # these two for a million keys in half the time (0.21-0.24 s against 0.43-0.52).
        self.client_order_ids: dict[str, int] = {}
        self.client_order_keys: deque[str] = deque()
        self.client_id_window = CLIENT_ORDER_ID_WINDOW
        # The price band (None: off) and its reference once there is a trade (the last
        # trade's price; 0 before the first, or while there is no band). Both are state: a
        # snapshot carries them. See `_out_of_band`.
        self.band: Band | None = None
        self.last_price = 0

    def set_band(self, band: Band | None) -> None:
        """Turn the price band on, change it or turn it off. Without a band, the hot path
        pays one test per command and one per taker for it."""
        self.band = band
        if band is None:
            self.last_price = 0  # a band turned on later starts from its configured price

    # -- commands ---------------------------------------------------------------------------

    def apply(self, command: Command) -> list[Event]:
        """One command in, its events out. A GTC limit place and a cancel, nine commands
        in ten, are handled here rather than in methods of their own: a call costs about
        a tenth of such a command."""
        if self.band is not None and (refused := self._out_of_band(self.band, command)):
            return refused
        if type(command) is _Place:
            side: int
            price: int
            quantity: int
            tif: int
            client_order_id: Any
            ts: Any
            owner: Any
            side, price, quantity, client_order_id, _, ts, tif, owner = _astuple(command)
            if tif or price == MARKET:
                return self._place_immediate(side, price, quantity, client_order_id, ts, tif, owner)
            order_id: Any = self.next_order_id
            if client_order_id is not None:
                key = _client_key(owner, client_order_id)
                known = self.client_order_ids.get(key)
                if known is not None:
                    self.seq += 1
                    return [_Rejected(self.seq, DUPLICATE_CLIENT_ORDER_ID, known, ts, owner)]
                self._remember(key, order_id)
            self.next_order_id = order_id + 1
            seq = self.seq = self.seq + 1
            events: list[Event] = [
                _Accepted(seq, order_id, side, price, quantity, ts, client_order_id, GTC, owner)
            ]
            remaining = quantity
            if side == BUY:
                if price >= self.asks.best:
                    remaining = self._match(self.asks, side, price, quantity, order_id, events, ts)
                    if not remaining:
                        return events
                book = self.bids
            else:
                if price <= self.bids.best:
                    remaining = self._match(self.bids, side, price, quantity, order_id, events, ts)
                    if not remaining:
                        return events
                book = self.asks
            order = Order(order_id, side, price, quantity, remaining, ts, client_order_id, owner)
            self.orders[order_id] = order
            level = book.levels.get(price)
            if level is not None and level.total:  # the common case, inlined: a live level
                level.queue.append(order)
                level.total += remaining
            else:
                book.add(order)
            return events
        if type(command) is not _Cancel:
            return self._modify(command)  # type: ignore[arg-type]
        order_id, _, ts, owner = _astuple(command)
        target = self.orders.pop(order_id, None)
        if target is None:
            return self._reject(order_id, ts, owner)
        if target.owner != owner:
            self.orders[order_id] = target
            self.seq += 1
            return [_Rejected(self.seq, NOT_OWNER, order_id, ts, owner)]
        remaining = target.remaining
        (self.bids if target.side == BUY else self.asks).remove(target)
        seq = self.seq = self.seq + 1
        return [_Cancelled(seq, order_id, remaining, ts)]

    def place(
        self,
        side: int,
        price: int,
        quantity: int,
        client_order_id: str | None,
        ts: int,
        tif: int = GTC,
        owner: str = "",
    ) -> list[Event]:
        return self.apply(_Place(side, price, quantity, client_order_id, "", ts, tif, owner))

    def modify(
        self, order_id: int, price: int, ts: int, quantity: int = 0, owner: str = ""
    ) -> list[Event]:
        """Change the price and/or total quantity; 0 leaves that one unchanged.

        Lowering the quantity keeps time priority; raising it or changing the price moves
        the order to the tail of its level, and a new price may trade at once.
        """
        return self.apply(_Modify(order_id, price, "", ts, quantity, owner))

    def cancel(self, order_id: int, ts: int, owner: str = "") -> list[Event]:
        return self.apply(_Cancel(order_id, "", ts, owner))

    def _place_immediate(
        self,
        side: int,
        price: int,
        quantity: int,
        client_order_id: Any,
        ts: Any,
        tif: int,
        owner: Any,
    ) -> list[Event]:
        """IOC, FOK and market orders: trade now, never rest; the remainder is cancelled.
        Takes the fields `apply` has already read off the command."""
        opposite = self.asks if side == BUY else self.bids
        key = None if client_order_id is None else _client_key(owner, client_order_id)
        if key is not None and key in self.client_order_ids:
            self.seq += 1
            known = self.client_order_ids[key]
            return [_Rejected(self.seq, DUPLICATE_CLIENT_ORDER_ID, known, ts, owner)]
        if price == MARKET and opposite.best == opposite.empty:
            self.seq += 1
            return [_Rejected(self.seq, NO_LIQUIDITY, 0, ts, owner)]
        order_id = self.next_order_id
        self.next_order_id = order_id + 1
        if key is not None:
            self._remember(key, order_id)
        self.seq += 1
        events: list[Event] = [
            _Accepted(self.seq, order_id, side, price, quantity, ts, client_order_id, tif, owner)
        ]
        limit = price if price != MARKET else (MARKET_BUY_LIMIT if side == BUY else 1)
        remaining = quantity
        crosses = (limit >= opposite.best) if side == BUY else (limit <= opposite.best)
        if crosses and (tif != FOK or self._available(opposite, side, limit, quantity)):
            remaining = self._match(opposite, side, limit, quantity, order_id, events, ts)
        if remaining:
            self.seq += 1
            events.append(_Cancelled(self.seq, order_id, remaining, ts))
        return events

    @staticmethod
    def _available(book: BookSide, side: int, limit: int, quantity: int) -> bool:
        """Whether `quantity` rests at prices that cross `limit` (FOK's all-or-nothing
        check); stops at the first level that completes it or does not cross."""
        total = 0
        for level in book.best_first():
            price = level.price
            if (price > limit) if side == BUY else (price < limit):
                return False
            total += level.total
            if total >= quantity:
                return True
        return False

    def _modify(self, command: Modify) -> list[Event]:
        """A new total quantity (if given and different) first, then a new price.

        A lower quantity keeps the order's place in its queue; a higher one or a new price
        moves it to the tail of its (new) level, as a new object: the old one stays dead
        in its queue. At a new price it may trade at once."""
        price: int
        new_quantity: int
        order_id: Any
        ts: Any
        owner: Any
        order_id, price, _, ts, new_quantity, owner = _astuple(command)
        order = self.orders.get(order_id)
        if order is None:
            return self._reject(order_id, ts, owner)
        if order.owner != owner:
            self.seq += 1
            return [_Rejected(self.seq, NOT_OWNER, order_id, ts, owner)]
        quantity = old_quantity = order.quantity
        remaining = order.remaining
        events: list[Event] = []
        if new_quantity and new_quantity != old_quantity:
            quantity = new_quantity
            if quantity <= old_quantity - remaining:
                self.seq += 1
                return [_Rejected(self.seq, INVALID_QUANTITY, order_id, ts, owner)]
            remaining += quantity - old_quantity
            self.seq += 1
            events.append(_QuantityChanged(self.seq, order_id, quantity, remaining, ts))
        side = order.side
        own = self.bids if side == BUY else self.asks
        if price and price != order.price:
            self.seq += 1
            events.append(_Modified(self.seq, order_id, price, ts))
        else:
            if price or not events:  # same price: a success (priority kept unless raised)
                self.seq += 1
                events.append(_Modified(self.seq, order_id, order.price, ts))
            if quantity <= old_quantity:  # reduced (or unchanged): in place
                own.levels[order.price].total -= old_quantity - quantity
                order.remaining = remaining
                order.quantity = quantity
                return events
            price = order.price  # raised: to the tail of its level
        own.remove(order)  # out of its level, as a cancel takes it
        if side == BUY:
            if price >= self.asks.best:
                remaining = self._match(self.asks, side, price, remaining, order_id, events, ts)
        elif price <= self.bids.best:
            remaining = self._match(self.bids, side, price, remaining, order_id, events, ts)
        if not remaining:
            del self.orders[order_id]
            return events
        order = Order(
            order_id, side, price, quantity, remaining, order.ts, order.client_order_id, order.owner
        )
        self.orders[order_id] = order
        into = own.levels.get(price)
        if into is not None and into.total:  # BookSide.add's common case, inlined
            into.queue.append(order)
            into.total += remaining
        else:
            own.add(order)
        return events

    # -- queries ----------------------------------------------------------------------------

    def depth(self, n: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Top `n` aggregated levels per side: bids descending, asks ascending."""
        return self.bids.depth(n), self.asks.depth(n)

    # -- internals --------------------------------------------------------------------------

    def _remember(self, key: str, order_id: int) -> None:
        """Record a client order id, forgetting the oldest beyond the window."""
        ids = self.client_order_ids
        ids[key] = order_id
        keys = self.client_order_keys
        keys.append(key)
        while len(ids) > self.client_id_window:
            del ids[keys.popleft()]

    def _reject(self, order_id: int, ts: int, owner: str) -> list[Event]:
        # Ids are handed out in sequence, so a lower id that is not resting was filled or
        # cancelled: no need to remember dead orders to tell the two apart.
        reason = ORDER_NOT_ALIVE if self.base < order_id < self.next_order_id else UNKNOWN_ORDER
        self.seq += 1
        return [_Rejected(self.seq, reason, order_id, ts, owner)]

    def _match(
        self,
        book: BookSide,
        side: int,
        limit: int,
        remaining: int,
        taker_id: int,
        events: list[Event],
        ts: int,
    ) -> int:
        """Fill a taker of `side` against `book` while prices cross `limit`, best level
        first, FIFO within; returns the quantity left unfilled. The caller has checked that
        the best price crosses."""
        is_buy = side == BUY
        levels = book.levels
        resting = self.orders
        seq = self.seq
        while True:
            best = book.best
            level = levels[best]
            queue = level.queue
            total = level.total
            while True:
                maker = queue.popleft()
                left = maker.remaining
                if left > remaining:  # the taker ends inside this maker, which stays first
                    queue.appendleft(maker)
                    left -= remaining
                    maker.remaining = left
                    level.total = total - remaining
                    seq += 1
                    if is_buy:
                        events.append(
                            _Trade(
                                seq, best, remaining, taker_id, maker.order_id, side, 0, left, ts
                            )
                        )
                    else:
                        events.append(
                            _Trade(
                                seq, best, remaining, maker.order_id, taker_id, side, left, 0, ts
                            )
                        )
                    self.seq = seq
                    if self.band is not None:
                        self.last_price = best  # the band's reference
                    return 0
                if not left:  # cancelled or moved while queued
                    level.dead -= 1
                    continue
                # the maker is filled: it leaves the book (its object is dropped as it is)
                remaining -= left
                total -= left
                seq += 1
                maker_id = maker.order_id
                if is_buy:
                    events.append(
                        _Trade(seq, best, left, taker_id, maker_id, side, remaining, 0, ts)
                    )
                else:
                    events.append(
                        _Trade(seq, best, left, maker_id, taker_id, side, 0, remaining, ts)
                    )
                del resting[maker_id]
                if not total or not remaining:
                    break
            level.total = total
            if not total:
                book.level_emptied(level)
            if not remaining or ((book.best > limit) if is_buy else (book.best < limit)):
                self.seq = seq
                if self.band is not None:
                    self.last_price = best
                return remaining

    # -- the price band ---------------------------------------------------------------------
    # Around a reference (the price of the last trade, or the configured one before the
    # first), `band[0]` basis points either way, in integer ticks. A limit price outside it
    # (place or modify) is refused with `price_out_of_band`, and so is a market order that
    # would trade outside it, whole, before it trades. A refused place uses no order id and
    # leaves its client order id free. `_match` keeps the reference.

    def _out_of_band(self, band: Band, command: Command) -> list[Event] | None:
        """The refusal of a command that the band does not allow, else None."""
        edges = self._edges(band)
        if edges is None:
            return None
        low, high = edges
        if type(command) is _Place:
            p: Place = command
            if self._known_client_order_id(p):
                return None  # a retry of an accepted place gets the original order
            price = p.price
            if price == MARKET:
                edge = high if p.side == BUY else low
                opposite = self.asks if p.side == BUY else self.bids
                outside = self._reaches_past(opposite, p.side, p.quantity, edge)
            else:
                outside = not low <= price <= high
            if outside:
                self.seq += 1
                return [_Rejected(self.seq, PRICE_OUT_OF_BAND, 0, p.ts)]
        elif type(command) is _Modify:
            m: Modify = command
            price = m.price
            order = self.orders.get(m.order_id)
            if (
                price
                and order is not None
                and order.owner == m.owner  # else the base rules answer first
                and price != order.price
                and not low <= price <= high
            ):
                self.seq += 1
                return [_Rejected(self.seq, PRICE_OUT_OF_BAND, m.order_id, m.ts)]
        return None

    def _edges(self, band: Band) -> tuple[int, int] | None:
        """The lowest and highest price allowed now (None: no reference yet, no band). The
        half-width is rounded down to whole ticks."""
        width_bps, configured = band
        reference = self.last_price or configured
        if not reference:
            return None
        width = reference * width_bps // BPS
        return reference - width, reference + width

    def _known_client_order_id(self, p: Place) -> bool:
        if p.client_order_id is None:
            return False
        return _client_key(p.owner, p.client_order_id) in self.client_order_ids

    @staticmethod
    def _reaches_past(book: BookSide, side: int, quantity: int, edge: int) -> bool:
        """Whether a market order of `quantity` would trade beyond `edge`: the quantity
        resting up to the edge does not fill it, and more rests beyond."""
        total = 0
        for level in book.best_first():
            if (level.price > edge) if side == BUY else (level.price < edge):
                return True
            total += level.total
            if total >= quantity:
                return False
        return False

    # -- restore ----------------------------------------------------------------------------

    def rest(self, rows: list[OrderRow]) -> None:
        """Rest orders as a snapshot lists them (`OrderRow`s, in priority order)."""
        orders = self.orders
        bids, asks = self.bids, self.asks
        order_id: Any  # the decoded int object is the key (compiled: not unboxed, boxed again)
        for row in rows:
            order_id, side, price, quantity, remaining, ts, client_order_id, owner = row
            order = Order(order_id, side, price, quantity, remaining, ts, client_order_id, owner)
            orders[order_id] = order
            (bids if side > 0 else asks).add(order)


def engine_for(base: int, band: Band | None) -> MatchingEngine:
    """The core of an instrument (`shared.config.Instrument.base` and `.band`)."""
    engine = MatchingEngine(base)
    engine.set_band(band)
    return engine
