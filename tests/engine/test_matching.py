"""Unit tests of the matching core's business rules (`engine.matching`, `engine.snapshot`)."""

from __future__ import annotations

import pytest

from engine.book import COMPACT_AFTER, NO_ASK, NO_BID
from engine.matching import MatchingEngine
from engine.snapshot import CoreSnapshot, restore, snapshot, state_hash
from shared.commands import BUY, FOK, SELL, Cancel, Command, Modify, Place
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


def place(
    engine: MatchingEngine,
    side: int,
    price: int,
    quantity: int,
    client_order_id: str | None = None,
    ts: int = 0,
) -> list[Event]:
    return engine.apply(Place(side, price, quantity, client_order_id, "", ts))


def accepted_id(events: list[Event]) -> int:
    """The id of the order the first event accepts (which must be an acceptance)."""
    assert isinstance(events[0], Accepted), events
    return events[0].order_id


def place_id(engine: MatchingEngine, side: int, price: int, quantity: int) -> int:
    return accepted_id(place(engine, side, price, quantity))


def trades(events: list[Event]) -> list[Trade]:
    return [e for e in events if isinstance(e, Trade)]


def book_state(engine: MatchingEngine) -> tuple[object, ...]:
    """Everything about the book except `seq` (which a rejection legitimately advances)."""
    return (
        engine.depth(1000),
        [
            (o.order_id, o.side, o.price, o.quantity, o.remaining, o.ts, o.client_order_id)
            for o in engine.bids.iter_orders() + engine.asks.iter_orders()
        ],
        sorted(
            (i, o.side, o.price, o.quantity, o.remaining, o.client_order_id)
            for i, o in engine.orders.items()
        ),
        engine.next_order_id,
        sorted(engine.client_order_ids.items()),
        engine.bids.best,
        engine.asks.best,
    )


def fill_order(events: list[Event], side: int) -> list[int]:
    """Maker order ids in the order they were filled by a taker of `side`."""
    return [t.ask_order_id if side == BUY else t.bid_order_id for t in trades(events)]


# -- placing -----------------------------------------------------------------------------------


def test_place_on_empty_book_rests() -> None:
    engine = MatchingEngine()
    events = place(engine, BUY, 100, 5, "c1", ts=77)
    assert events == [Accepted(1, 1, BUY, 100, 5, 77, "c1")]
    assert engine.depth(10) == ([(100, 5)], [])
    assert list(engine.orders) == [1]
    assert engine.bids.best == 100
    assert engine.asks.best == NO_ASK

    events = place(engine, SELL, 101, 3, ts=78)
    assert events == [Accepted(2, 2, SELL, 101, 3, 78, None)]
    assert engine.depth(10) == ([(100, 5)], [(101, 3)])
    assert engine.asks.best == 101


def test_non_crossing_orders_do_not_trade() -> None:
    engine = MatchingEngine()
    place(engine, SELL, 100, 5)
    events = place(engine, BUY, 99, 5)
    assert trades(events) == []
    assert engine.depth(10) == ([(99, 5)], [(100, 5)])
    events = place(engine, SELL, 100, 1)
    assert trades(events) == []
    assert engine.depth(10) == ([(99, 5)], [(100, 6)])


def test_fifo_within_a_level() -> None:
    engine = MatchingEngine()
    a = place_id(engine, SELL, 100, 3)
    b = place_id(engine, SELL, 100, 4)
    c = place_id(engine, SELL, 100, 5)
    events = place(engine, BUY, 100, 9)
    assert [(t.ask_order_id, t.quantity) for t in trades(events)] == [(a, 3), (b, 4), (c, 2)]
    assert list(engine.orders) == [c]
    assert engine.orders[c].remaining == 3
    assert engine.depth(10) == ([], [(100, 3)])


def test_fifo_within_a_level_on_the_bid_side() -> None:
    engine = MatchingEngine()
    a = place_id(engine, BUY, 50, 2)
    b = place_id(engine, BUY, 50, 2)
    events = place(engine, SELL, 50, 3)
    assert fill_order(events, SELL) == [a, b]
    assert [t.quantity for t in trades(events)] == [2, 1]
    assert engine.orders[b].remaining == 1
    assert a not in engine.orders


def test_partial_fill_of_the_taker_rests_the_remainder() -> None:
    engine = MatchingEngine()
    maker = place_id(engine, SELL, 100, 5)
    events = place(engine, BUY, 101, 8, ts=9)
    taker = accepted_id(events)
    assert events == [
        Accepted(2, taker, BUY, 101, 8, 9, None),
        Trade(3, 100, 5, taker, maker, BUY, 3, 0, 9),
    ]
    assert maker not in engine.orders
    assert engine.orders[taker].remaining == 3
    assert engine.orders[taker].quantity == 8
    assert engine.orders[taker].price == 101  # rests at its own limit
    assert engine.depth(10) == ([(101, 3)], [])


def test_partial_fill_of_the_maker_keeps_it_resting() -> None:
    engine = MatchingEngine()
    maker = place_id(engine, SELL, 100, 10)
    events = place(engine, BUY, 100, 4)
    taker = accepted_id(events)
    assert trades(events) == [Trade(3, 100, 4, taker, maker, BUY, 0, 6, 0)]
    assert taker not in engine.orders
    assert engine.orders[maker].remaining == 6
    assert engine.depth(10) == ([], [(100, 6)])


def test_walking_several_levels_stops_at_the_limit() -> None:
    engine = MatchingEngine()
    a = place_id(engine, SELL, 100, 2)
    b = place_id(engine, SELL, 101, 3)
    c = place_id(engine, SELL, 102, 4)
    d = place_id(engine, SELL, 103, 1)
    events = place(engine, BUY, 102, 7)
    taker = accepted_id(events)
    assert [(t.price, t.quantity, t.ask_order_id) for t in trades(events)] == [
        (100, 2, a),
        (101, 3, b),
        (102, 2, c),
    ]
    assert [t.bid_remaining for t in trades(events)] == [5, 2, 0]
    assert taker not in engine.orders
    assert engine.depth(10) == ([], [(102, 2), (103, 1)])
    assert set(engine.orders) == {c, d}

    # a buy larger than everything up to its limit sweeps and rests the rest at its limit
    events = place(engine, BUY, 102, 5)
    assert [(t.price, t.quantity) for t in trades(events)] == [(102, 2)]
    assert engine.depth(10) == ([(102, 3)], [(103, 1)])


def test_a_taker_ending_inside_a_level_leaves_its_count_right() -> None:
    """A taker that fills one maker and ends inside the next one at the same price: the
    level still holds exactly the rest, which later orders then trade against and empty."""
    engine = MatchingEngine()
    a = place_id(engine, SELL, 100, 2)
    b = place_id(engine, SELL, 100, 3)
    c = place_id(engine, SELL, 100, 4)
    assert fill_order(place(engine, BUY, 100, 3), BUY) == [a, b]
    assert engine.depth(10) == ([], [(100, 6)])
    assert fill_order(place(engine, BUY, 100, 6), BUY) == [b, c]
    assert engine.depth(10) == ([], [])
    assert engine.asks.levels == {}
    assert place(engine, BUY, 100, 1)[1:] == []  # nothing left to trade with: it rests


def test_sell_walks_bids_best_first() -> None:
    engine = MatchingEngine()
    low = place_id(engine, BUY, 98, 5)
    high = place_id(engine, BUY, 100, 1)
    mid = place_id(engine, BUY, 99, 1)
    events = place(engine, SELL, 97, 4)
    assert [(t.price, t.bid_order_id, t.quantity) for t in trades(events)] == [
        (100, high, 1),
        (99, mid, 1),
        (98, low, 2),
    ]
    assert engine.depth(10) == ([(98, 3)], [])


def test_trade_price_is_the_resting_price_for_a_buy_aggressor() -> None:
    engine = MatchingEngine()
    maker = place_id(engine, SELL, 100, 5)
    events = place(engine, BUY, 105, 5, ts=3)
    taker = accepted_id(events)
    assert trades(events) == [Trade(3, 100, 5, taker, maker, BUY, 0, 0, 3)]
    assert engine.orders == {}
    assert engine.depth(10) == ([], [])


def test_trade_price_is_the_resting_price_for_a_sell_aggressor() -> None:
    engine = MatchingEngine()
    maker = place_id(engine, BUY, 105, 5)
    events = place(engine, SELL, 100, 2, ts=4)
    taker = accepted_id(events)
    assert trades(events) == [Trade(3, 105, 2, maker, taker, SELL, 3, 0, 4)]
    assert engine.depth(10) == ([(105, 3)], [])


def test_trade_seq_numbers_follow_the_accepted_event() -> None:
    engine = MatchingEngine()
    for _ in range(3):
        place(engine, SELL, 100, 1)
    events = place(engine, BUY, 100, 3)
    assert [e.seq for e in events] == [4, 5, 6, 7]
    assert isinstance(events[0], Accepted)
    assert all(isinstance(e, Trade) for e in events[1:])


def test_events_carry_the_command_timestamp() -> None:
    engine = MatchingEngine()
    a = accepted_id(place(engine, SELL, 100, 2, ts=10))
    events = place(engine, BUY, 100, 1, ts=20)
    assert {e.ts for e in events} == {20}
    assert engine.apply(Modify(a, 101, "", 30))[0].ts == 30
    assert engine.apply(Cancel(a, "", 40))[0].ts == 40
    assert engine.apply(Cancel(a, "", 50))[0].ts == 50


# -- modify ------------------------------------------------------------------------------------


def test_modify_keeps_the_id_and_moves_to_the_tail_of_the_new_level() -> None:
    engine = MatchingEngine()
    a = place_id(engine, BUY, 100, 1)
    b = place_id(engine, BUY, 99, 1)
    c = place_id(engine, BUY, 99, 1)
    events = engine.apply(Modify(a, 99, "", 5))
    assert events == [Modified(4, a, 99, 5)]
    assert engine.orders[a].price == 99
    assert engine.depth(10) == ([(99, 3)], [])
    assert [o.order_id for o in engine.bids.iter_orders()] == [b, c, a]
    events = place(engine, SELL, 99, 3)
    assert fill_order(events, SELL) == [b, c, a]


def test_modify_away_and_back_loses_time_priority() -> None:
    engine = MatchingEngine()
    a = place_id(engine, SELL, 100, 1)
    b = place_id(engine, SELL, 100, 1)
    engine.apply(Modify(a, 101))
    assert engine.depth(10) == ([], [(100, 1), (101, 1)])
    engine.apply(Modify(a, 100))
    assert engine.depth(10) == ([], [(100, 2)])
    events = place(engine, BUY, 100, 1)
    assert fill_order(events, BUY) == [b]
    assert list(engine.orders) == [a]


def test_modify_to_the_same_price_succeeds_and_keeps_priority() -> None:
    engine = MatchingEngine()
    a = place_id(engine, BUY, 100, 2)
    b = place_id(engine, BUY, 100, 2)
    before = book_state(engine)
    events = engine.apply(Modify(a, 100, "", 8))
    assert events == [Modified(3, a, 100, 8)]
    assert book_state(engine) == before
    events = place(engine, SELL, 100, 3)
    assert fill_order(events, SELL) == [a, b]


def test_modify_keeps_quantity_and_remaining() -> None:
    engine = MatchingEngine()
    a = place_id(engine, SELL, 100, 10)
    place(engine, BUY, 100, 4)
    engine.apply(Modify(a, 105))
    order = engine.orders[a]
    assert (order.quantity, order.remaining, order.price) == (10, 6, 105)
    assert engine.depth(10) == ([], [(105, 6)])


def test_modify_that_crosses_trades_immediately_and_fully_filled_is_gone() -> None:
    engine = MatchingEngine()
    bid = place_id(engine, BUY, 99, 3)
    ask = place_id(engine, SELL, 101, 5)
    events = engine.apply(Modify(bid, 102, "", 6))
    assert events == [
        Modified(3, bid, 102, 6),
        Trade(4, 101, 3, bid, ask, BUY, 0, 2, 6),  # at the resting ask's price
    ]
    assert bid not in engine.orders
    assert engine.depth(10) == ([], [(101, 2)])
    assert engine.apply(Modify(bid, 50)) == [Rejected(5, ORDER_NOT_ALIVE, bid, 0)]
    assert engine.apply(Cancel(bid)) == [Rejected(6, ORDER_NOT_ALIVE, bid, 0)]


def test_modify_that_crosses_partially_rests_the_remainder_at_the_new_price() -> None:
    engine = MatchingEngine()
    ask = place_id(engine, SELL, 101, 10)
    bid1 = place_id(engine, BUY, 100, 3)
    bid2 = place_id(engine, BUY, 99, 2)
    events = engine.apply(Modify(ask, 99))
    assert events == [
        Modified(4, ask, 99, 0),
        Trade(5, 100, 3, bid1, ask, SELL, 0, 7, 0),
        Trade(6, 99, 2, bid2, ask, SELL, 0, 5, 0),
    ]
    assert engine.orders[ask].remaining == 5
    assert engine.orders[ask].price == 99
    assert engine.depth(10) == ([], [(99, 5)])
    assert engine.bids.best == NO_BID
    assert engine.asks.best == 99


def test_modify_does_not_cross_when_prices_only_touch_the_own_side() -> None:
    engine = MatchingEngine()
    place(engine, BUY, 100, 1)
    ask = place_id(engine, SELL, 105, 1)
    events = engine.apply(Modify(ask, 101))
    assert trades(events) == []
    assert engine.depth(10) == ([(100, 1)], [(101, 1)])


# -- cancel ------------------------------------------------------------------------------------


def test_cancel_removes_the_order() -> None:
    engine = MatchingEngine()
    a = place_id(engine, BUY, 100, 2)
    b = place_id(engine, BUY, 100, 3)
    events = engine.apply(Cancel(a, "", 9))
    assert events == [Cancelled(3, a, 2, 9)]
    assert list(engine.orders) == [b]
    assert engine.depth(10) == ([(100, 3)], [])
    engine.apply(Cancel(b))
    assert engine.depth(10) == ([], [])
    assert engine.bids.best == NO_BID
    assert engine.bids.levels == {}


def test_cancel_after_a_partial_fill_reports_the_remaining_quantity() -> None:
    engine = MatchingEngine()
    maker = place_id(engine, SELL, 100, 10)
    fill = place(engine, BUY, 100, 4)
    traded = sum(t.quantity for t in trades(fill))
    assert traded == 4
    events = engine.apply(Cancel(maker))
    assert events == [Cancelled(4, maker, 6, 0)]
    cancelled = events[0]
    assert isinstance(cancelled, Cancelled)
    assert traded + cancelled.quantity == 10  # the traded part stays traded
    assert engine.depth(10) == ([], [])
    assert engine.orders == {}


def test_cancel_best_level_moves_best_price() -> None:
    engine = MatchingEngine()
    a = place_id(engine, SELL, 100, 1)
    place(engine, SELL, 103, 1)
    engine.apply(Cancel(a))
    assert engine.asks.best == 103
    events = place(engine, BUY, 102, 1)
    assert trades(events) == []


# -- rejections ----------------------------------------------------------------------------------


def _busy_engine() -> tuple[MatchingEngine, dict[str, int]]:
    engine = MatchingEngine()
    ids = {
        "resting": place_id(engine, BUY, 100, 5),
        "filled": place_id(engine, SELL, 110, 2),
        "cancelled": place_id(engine, SELL, 120, 2),
    }
    place(engine, BUY, 110, 2)  # fills "filled"
    engine.apply(Cancel(ids["cancelled"]))
    place(engine, SELL, 105, 7, "dup")
    return engine, ids


@pytest.mark.parametrize("unknown", [0, -1, 6, 7, 10**9])
@pytest.mark.parametrize("kind", ["modify", "cancel"])
def test_unknown_order_is_rejected_and_changes_nothing(unknown: int, kind: str) -> None:
    engine, _ = _busy_engine()
    assert engine.next_order_id == 6
    before = book_state(engine)
    seq = engine.seq
    command: Command = Modify(unknown, 100, "", 3) if kind == "modify" else Cancel(unknown, "", 3)
    events = engine.apply(command)
    assert events == [Rejected(seq + 1, UNKNOWN_ORDER, unknown, 3)]
    assert engine.seq == seq + 1
    assert book_state(engine) == before


@pytest.mark.parametrize("which", ["filled", "cancelled"])
@pytest.mark.parametrize("kind", ["modify", "cancel"])
def test_dead_order_is_rejected_and_changes_nothing(which: str, kind: str) -> None:
    engine, ids = _busy_engine()
    before = book_state(engine)
    seq = engine.seq
    order_id = ids[which]
    # a crossing price: if the dead order were revived, it would trade
    command: Command = Modify(order_id, 100, "", 4) if kind == "modify" else Cancel(order_id)
    events = engine.apply(command)
    assert events == [Rejected(seq + 1, ORDER_NOT_ALIVE, order_id, command.ts)]
    assert book_state(engine) == before


def test_duplicate_client_order_id_is_rejected_with_the_original_order_id() -> None:
    engine = MatchingEngine()
    original = accepted_id(place(engine, BUY, 100, 5, "abc"))
    place(engine, SELL, 200, 1)
    before = book_state(engine)
    events = place(engine, SELL, 90, 5, "abc", ts=12)  # would cross if accepted
    assert events == [Rejected(3, DUPLICATE_CLIENT_ORDER_ID, original, 12)]
    assert book_state(engine) == before
    # the rejection consumed a seq but no order id
    assert place(engine, BUY, 1, 1, "xyz") == [Accepted(4, 3, BUY, 1, 1, 0, "xyz")]


def test_duplicate_client_order_id_is_rejected_after_the_original_is_dead() -> None:
    engine = MatchingEngine()
    filled = accepted_id(place(engine, BUY, 100, 1, "f"))
    cancelled = accepted_id(place(engine, BUY, 90, 1, "c"))
    place(engine, SELL, 100, 1)
    engine.apply(Cancel(cancelled))
    assert engine.orders == {}
    assert place(engine, BUY, 5, 1, "f")[0] == Rejected(6, DUPLICATE_CLIENT_ORDER_ID, filled, 0)
    assert place(engine, BUY, 5, 1, "c")[0] == Rejected(7, DUPLICATE_CLIENT_ORDER_ID, cancelled, 0)
    assert engine.orders == {}


def test_orders_without_client_order_id_never_collide() -> None:
    engine = MatchingEngine()
    events = [place(engine, BUY, 10, 1)[0] for _ in range(3)]
    assert [type(e) for e in events] == [Accepted] * 3
    assert engine.client_order_ids == {}
    assert place(engine, BUY, 10, 1, "")[0] == Accepted(4, 4, BUY, 10, 1, 0, "")
    assert type(place(engine, BUY, 10, 1, "")[0]) is Rejected  # "" is a real id


# -- sequence numbers ----------------------------------------------------------------------------


def test_sequence_numbers_are_gap_free_across_all_events() -> None:
    engine = MatchingEngine()
    commands: list[Command] = [
        Place(SELL, 100, 3, "a"),
        Place(SELL, 101, 3),
        Place(BUY, 99, 2),
        Place(BUY, 101, 5),  # two trades
        Place(SELL, 100, 1, "a"),  # duplicate
        Modify(3, 99),  # same price
        Modify(3, 101),  # crosses the 101 ask
        Modify(99, 5),  # unknown
        Cancel(1),  # filled
        Cancel(2),
        Cancel(2),  # dead
        Place(BUY, 50, 1),
        Cancel(6),
    ]
    seqs = [e.seq for command in commands for e in engine.apply(command)]
    assert seqs == list(range(1, len(seqs) + 1))
    assert engine.seq == len(seqs)
    assert len(seqs) > len(commands)  # trades add events of their own


# -- depth ---------------------------------------------------------------------------------------


def test_depth_aggregates_levels_bids_descending_asks_ascending() -> None:
    engine = MatchingEngine()
    for price, qty in [(98, 1), (100, 2), (99, 3), (100, 4), (97, 5)]:
        place(engine, BUY, price, qty)
    for price, qty in [(103, 1), (101, 2), (102, 3), (101, 4), (104, 5)]:
        place(engine, SELL, price, qty)
    bids, asks = engine.depth(10)
    assert bids == [(100, 6), (99, 3), (98, 1), (97, 5)]
    assert asks == [(101, 6), (102, 3), (103, 1), (104, 5)]
    assert engine.depth(2) == ([(100, 6), (99, 3)], [(101, 6), (102, 3)])
    assert engine.depth(1) == ([(100, 6)], [(101, 6)])
    assert engine.depth(0) == ([], [])
    assert engine.depth(4) == engine.depth(100)


def test_depth_reflects_partial_fills_and_cancels() -> None:
    engine = MatchingEngine()
    a = place_id(engine, SELL, 101, 5)
    place(engine, SELL, 101, 5)
    place(engine, BUY, 101, 3)
    assert engine.depth(5) == ([], [(101, 7)])
    engine.apply(Cancel(a))
    assert engine.depth(5) == ([], [(101, 5)])
    assert engine.asks.levels[101].total == 5


def test_depth_of_an_empty_book() -> None:
    assert MatchingEngine().depth(10) == ([], [])


# -- snapshot / restore --------------------------------------------------------------------------


def _history() -> list[Command]:
    return [
        Place(BUY, 100, 5, "b1", "r1", 1),
        Place(BUY, 100, 3, None, "", 2),
        Place(BUY, 99, 7, "b3", "", 3),
        Place(SELL, 103, 4, None, "", 4),
        Place(SELL, 102, 6, "s2", "", 5),
        Place(SELL, 100, 2, None, "", 6),  # partial fill of order 1
        Modify(3, 100, "", 7),  # moves behind 1 and 2
        Cancel(4, "", 8),
        Place(SELL, 102, 1, "b1", "", 9),  # duplicate
    ]


def _future() -> list[Command]:
    return [
        Place(SELL, 99, 20, None, "", 10),  # sweeps the bids in priority order
        Modify(5, 98, "", 11),
        Cancel(1, "", 12),
        Place(BUY, 105, 30, "s2", "", 13),  # duplicate of a restored client id
        Place(BUY, 105, 30, "new", "", 14),
        Cancel(999, "", 15),
    ]


def test_snapshot_restore_round_trip() -> None:
    engine = MatchingEngine()
    for command in _history():
        engine.apply(command)
    data = snapshot(engine)
    copy = restore(data)
    assert state_hash(copy) == state_hash(engine)
    assert snapshot(copy) == data
    assert book_state(copy) == book_state(engine)
    assert copy.seq == engine.seq
    assert [o.order_id for o in copy.bids.iter_orders()] == [1, 2, 3]
    assert [(o.order_id, o.remaining) for o in copy.bids.iter_orders()] == [(1, 3), (2, 3), (3, 7)]

    for command in _future():
        expected = engine.apply(command)
        assert copy.apply(command) == expected
        assert state_hash(copy) == state_hash(engine)
    assert any(isinstance(e, Trade) for e in engine.apply(Place(SELL, 1, 1)))


def test_snapshot_of_an_empty_engine() -> None:
    engine = MatchingEngine()
    copy = restore(snapshot(engine))
    assert state_hash(copy) == state_hash(engine)
    assert copy.apply(Place(BUY, 1, 1)) == [Accepted(1, 1, BUY, 1, 1, 0, None)]


def test_state_hash_is_deterministic_and_sensitive() -> None:
    a, b = MatchingEngine(), MatchingEngine()
    assert state_hash(a) == state_hash(b)
    for command in _history():
        a.apply(command)
        b.apply(command)
        assert state_hash(a) == state_hash(b)
    before = state_hash(a)
    a.apply(Cancel(12345))  # a rejection still advances seq
    assert state_hash(a) != before
    assert isinstance(state_hash(a), str)


def test_state_hash_depends_on_time_priority() -> None:
    # same orders and seq, different FIFO order inside the level
    def build(first: int) -> MatchingEngine:
        engine = MatchingEngine()
        place(engine, BUY, 100, 1)
        place(engine, BUY, 100, 1)
        engine.apply(Modify(first, 101))
        engine.apply(Modify(first, 100))
        return engine

    one, two = build(1), build(2)
    assert one.depth(10) == two.depth(10)
    assert one.seq == two.seq
    assert state_hash(one) != state_hash(two)


def test_restore_refuses_an_unknown_version() -> None:
    import msgspec

    data = msgspec.msgpack.encode(CoreSnapshot(99, 0, 1, [], []))
    with pytest.raises(ValueError, match="version"):
        restore(data)


def test_a_checkpoint_from_before_owners_restores_with_no_owner() -> None:
    """Checkpoints written before orders had owners list seven fields per order (and no
    base, band or reference): they restore as the same book with every owner ""."""
    import msgspec

    engine = MatchingEngine()
    place(engine, BUY, 100, 5, "c1", ts=7)
    place(engine, SELL, 101, 4, ts=8)
    old = msgspec.msgpack.encode(
        [1, 2, 3, [[1, BUY, 100, 5, 5, 7, "c1"], [2, SELL, 101, 4, 4, 8, None]], [["c1", 1]]]
    )
    copy = restore(old)
    assert state_hash(copy) == state_hash(engine)
    assert copy.apply(Cancel(2, "", 9)) == [Cancelled(3, 2, 4, 9)]


def test_a_malformed_checkpoint_is_still_refused() -> None:
    import msgspec

    for bad in ([1, 2, 3, [[1, BUY, 100, 5, 5, 7]], []], [1, 2, 3, "orders", []], "no"):
        with pytest.raises(msgspec.ValidationError):
            restore(msgspec.msgpack.encode(bad))


# -- the idempotency window --------------------------------------------------------------------


def test_client_order_ids_beyond_the_window_are_forgotten_oldest_first() -> None:
    engine = MatchingEngine()
    engine.client_id_window = 3
    first = [accepted_id(engine.apply(Place(BUY, 10, 1, f"c{k}"))) for k in range(1, 5)]
    assert list(engine.client_order_ids) == ["c2", "c3", "c4"]
    # c2 is still known: a retry answers the original order.
    (dup,) = engine.apply(Place(BUY, 10, 1, "c2"))
    assert isinstance(dup, Rejected) and dup.reason == DUPLICATE_CLIENT_ORDER_ID
    assert dup.order_id == first[1]
    # c1 was forgotten: the same id now places a new order.
    assert accepted_id(engine.apply(Place(BUY, 10, 1, "c1"))) == first[-1] + 1
    assert list(engine.client_order_ids) == ["c3", "c4", "c1"]


def test_the_window_forgets_in_the_same_order_after_a_restore() -> None:
    engine = MatchingEngine()
    for name in ("b", "c", "a"):  # key order differs from placing order
        engine.apply(Place(BUY, 10, 1, name))
    copy = restore(snapshot(engine))
    assert list(copy.client_order_ids) == ["b", "c", "a"]
    for e in (engine, copy):
        e.client_id_window = 3
        e.apply(Place(BUY, 10, 1, "d"))
    assert list(copy.client_order_ids) == list(engine.client_order_ids) == ["c", "a", "d"]
    assert state_hash(copy) == state_hash(engine)


def test_cancelled_orders_do_not_pile_up_in_a_level() -> None:
    """Cancels leave dead entries in a level's queue; a level whose dead entries outnumber
    its live ones (beyond a few) is compacted, so its queue stays within twice its live
    orders plus that slack, whatever order the cancels come in."""
    engine = MatchingEngine()
    ids = [place_id(engine, BUY, 100, 1) for _ in range(200)]
    level = engine.bids.levels[100]
    for n, order_id in enumerate(ids[1::7] + ids[::2] + ids[3::5], start=1):
        if order_id in engine.orders:
            engine.apply(Cancel(order_id))
        live = len(engine.orders)
        assert len(level.queue) <= 2 * live + COMPACT_AFTER, n
        assert level.dead == len(level.queue) - live
    survivors = [o.order_id for o in engine.bids.iter_orders()]
    assert survivors == [i for i in ids if i in engine.orders]
    assert fill_order(place(engine, SELL, 100, len(survivors)), SELL) == survivors


def test_levels_emptied_away_from_the_best_are_skipped_then_dropped() -> None:
    """A level that empties below the best stays in the side's heap, empty: depth, FOK
    checks and matching skip it, a new order reuses it, and once empty levels outnumber
    live ones (beyond some slack) they are dropped and the heap rebuilt."""
    engine = MatchingEngine()
    bids = engine.bids
    ids = {price: place_id(engine, BUY, price, 1) for price in range(100, 400)}
    for price in range(150, 399, 2):  # empty every other level below the best (399)
        engine.apply(Cancel(ids[price]))
    live = [p for p in range(399, 99, -1) if p < 150 or p % 2]
    assert engine.depth(400)[0] == [(p, 1) for p in live]
    assert len(bids.levels) == 300  # the emptied levels linger
    place(engine, BUY, 200, 4)  # reuses an empty level
    assert engine.depth(3)[0] == [(399, 1), (397, 1), (395, 1)]
    assert (200, 4) in engine.depth(400)[0]
    for price in range(100, 399):  # then all but 100..140 (multiples of 10), 200 and 399
        if price % 10 and ids[price] in engine.orders:
            engine.apply(Cancel(ids[price]))
    live_prices = sorted(p for p, level in bids.levels.items() if level.total)
    assert live_prices == sorted(p for p, _ in engine.depth(400)[0])
    assert len(bids.levels) <= 2 * len(live_prices) + 64 < 300  # the empty ones were dropped
    assert sorted(bids.heap) == sorted(-p for p in bids.levels)
    # a FOK sell for everything down to 200 fills, walking the live levels best first
    assert engine.depth(400)[0] == [
        (399, 1),
        (200, 4),
        (140, 1),
        (130, 1),
        (120, 1),
        (110, 1),
        (100, 1),
    ]
    events = engine.apply(Place(SELL, 200, 5, None, "", 0, FOK))
    assert [(t.price, t.quantity) for t in trades(events)] == [(399, 1), (200, 4)]
    assert bids.best == 140


def test_a_level_emptied_at_the_best_serves_a_new_price_afresh() -> None:
    """The best level, once emptied, leaves the side and is kept for reuse: the next new
    price takes it over with nothing of its past (dead orders, counters, price)."""
    engine = MatchingEngine()
    asks = engine.asks
    a, b, c = (place_id(engine, SELL, 101, 2) for _ in range(3))
    for price in (102, 103):
        place(engine, SELL, price, 2)
    engine.apply(Cancel(c))  # a dead order at the tail of 101
    old = asks.levels[101]
    assert fill_order(place(engine, BUY, 101, 4), BUY) == [a, b]
    assert asks.best == 102 and 101 not in asks.levels
    first = place_id(engine, SELL, 99, 5)
    second = place_id(engine, SELL, 99, 1)
    level = asks.levels[99]
    assert level is old  # the reused level
    assert (level.price, level.total, level.dead) == (99, 6, 0)
    assert [order.order_id for order in level.queue] == [first, second]
    assert engine.depth(3)[1] == [(99, 6), (102, 2), (103, 2)]
    assert fill_order(place(engine, BUY, 99, 6), BUY) == [first, second]
    assert asks.best == 102
