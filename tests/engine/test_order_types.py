"""Quantity changes, IOC, FOK and market orders in the matching core."""

from __future__ import annotations

from engine.matching import MatchingEngine
from engine.snapshot import restore, snapshot, state_hash
from shared.commands import BUY, FOK, IOC, MARKET, SELL, Modify, Place
from shared.events import (
    INVALID_QUANTITY,
    NO_LIQUIDITY,
    Accepted,
    Cancelled,
    Event,
    Modified,
    QuantityChanged,
    Rejected,
    Trade,
)


def rest(engine: MatchingEngine, side: int, price: int, quantity: int) -> int:
    events = engine.place(side, price, quantity, None, 0)
    assert isinstance(events[0], Accepted) and len(events) == 1
    return events[0].order_id


def makers(events: list[Event]) -> list[tuple[int, int, int]]:
    """(maker id, price, quantity) of each trade, for a buy taker."""
    return [(t.ask_order_id, t.price, t.quantity) for t in events if isinstance(t, Trade)]


def test_lowering_quantity_keeps_time_priority() -> None:
    e = MatchingEngine()
    a = rest(e, SELL, 100, 10)
    b = rest(e, SELL, 100, 10)
    events = e.modify(a, 0, 5, quantity=6)
    assert events == [QuantityChanged(3, a, 6, 6, 5)]
    assert e.depth(1)[1] == [(100, 16)]
    taker = e.place(BUY, 100, 7, None, 6)
    assert makers(taker) == [(a, 100, 6), (b, 100, 1)]  # a still first


def test_raising_quantity_moves_to_the_tail() -> None:
    e = MatchingEngine()
    a = rest(e, SELL, 100, 10)
    b = rest(e, SELL, 100, 10)
    assert e.modify(a, 0, 0, quantity=12) == [QuantityChanged(3, a, 12, 12, 0)]
    assert makers(e.place(BUY, 100, 11, None, 0)) == [(b, 100, 10), (a, 100, 1)]


def test_quantity_at_or_below_traded_is_rejected_and_changes_nothing() -> None:
    e = MatchingEngine()
    a = rest(e, SELL, 100, 10)
    e.place(BUY, 100, 4, None, 0)  # a traded 4
    before = snapshot(e)
    for quantity in (4, 3):
        events = e.modify(a, 0, 0, quantity=quantity)
        assert isinstance(events[0], Rejected) and events[0].reason == INVALID_QUANTITY
    after = restore(snapshot(e))
    after.seq = restore(before).seq
    assert state_hash(after) == state_hash(restore(before))
    # 5 > traded 4: allowed, leaves 1 open
    assert e.modify(a, 0, 0, quantity=5)[0] == QuantityChanged(e.seq, a, 5, 1, 0)


def test_price_and_quantity_together() -> None:
    e = MatchingEngine()
    a = rest(e, BUY, 99, 5)
    bid_later = rest(e, BUY, 101, 1)
    ask = rest(e, SELL, 102, 3)
    events = e.apply(Modify(a, 102, "", 9, quantity=8))
    assert events[0] == QuantityChanged(4, a, 8, 8, 9)
    assert events[1] == Modified(5, a, 102, 9)
    assert [(t.ask_order_id, t.quantity) for t in events if isinstance(t, Trade)] == [(ask, 3)]
    assert e.depth(5)[0] == [(102, 5), (101, 1)]
    assert bid_later in e.orders


def test_ioc_trades_what_crosses_and_cancels_the_rest() -> None:
    e = MatchingEngine()
    ask = rest(e, SELL, 100, 3)
    rest(e, SELL, 105, 3)
    events = e.apply(Place(BUY, 101, 10, None, "", 0, IOC))
    accepted = events[0]
    assert isinstance(accepted, Accepted) and accepted.tif == IOC
    assert makers(events) == [(ask, 100, 3)]
    assert events[-1] == Cancelled(e.seq, accepted.order_id, 7, 0)
    assert accepted.order_id not in e.orders
    assert e.depth(5) == ([], [(105, 3)])


def test_ioc_that_does_not_cross_is_cancelled_whole() -> None:
    e = MatchingEngine()
    rest(e, SELL, 105, 3)
    events = e.apply(Place(BUY, 100, 4, None, "", 0, IOC))
    accepted, cancelled = events
    assert isinstance(accepted, Accepted) and isinstance(cancelled, Cancelled)
    assert cancelled.quantity == 4
    assert e.depth(5) == ([], [(105, 3)])


def test_fok_fills_completely_or_not_at_all() -> None:
    e = MatchingEngine()
    a = rest(e, SELL, 100, 3)
    b = rest(e, SELL, 101, 3)
    rest(e, SELL, 103, 10)
    killed = e.apply(Place(BUY, 101, 7, None, "", 0, FOK))  # only 6 up to 101
    assert [type(x) for x in killed] == [Accepted, Cancelled]
    assert e.depth(5)[1] == [(100, 3), (101, 3), (103, 10)]
    filled = e.apply(Place(BUY, 101, 6, None, "", 0, FOK))
    assert makers(filled) == [(a, 100, 3), (b, 101, 3)]
    assert not any(isinstance(x, Cancelled) for x in filled)


def test_market_order_walks_the_book_and_cancels_the_rest() -> None:
    e = MatchingEngine()
    bid1 = rest(e, BUY, 100, 2)
    bid2 = rest(e, BUY, 90, 2)
    events = e.apply(Place(SELL, MARKET, 5, None, "", 0, IOC))
    assert [(t.bid_order_id, t.price, t.quantity) for t in events if isinstance(t, Trade)] == [
        (bid1, 100, 2),
        (bid2, 90, 2),
    ]
    assert isinstance(events[-1], Cancelled) and events[-1].quantity == 1
    assert e.depth(5) == ([], [])


def test_market_buy_crosses_any_ask() -> None:
    e = MatchingEngine()
    ask = rest(e, SELL, 10**9, 1)
    assert makers(e.apply(Place(BUY, MARKET, 1, None, "", 0, IOC))) == [(ask, 10**9, 1)]


def test_market_order_on_empty_side_is_rejected_without_an_order() -> None:
    e = MatchingEngine()
    rest(e, BUY, 100, 1)  # same side only
    next_id = e.next_order_id
    events = e.apply(Place(BUY, MARKET, 1, "m1", "", 0, IOC))
    assert events == [Rejected(e.seq, NO_LIQUIDITY, 0, 0)]
    assert e.next_order_id == next_id
    assert "m1" not in e.client_order_ids  # the id can be used again


def test_immediate_orders_respect_client_order_ids() -> None:
    e = MatchingEngine()
    rest(e, SELL, 100, 5)
    first = e.apply(Place(BUY, 100, 1, "x", "", 0, IOC))
    again = e.apply(Place(BUY, 100, 1, "x", "", 0, IOC))
    assert isinstance(first[0], Accepted)
    assert isinstance(again[0], Rejected) and again[0].order_id == first[0].order_id
