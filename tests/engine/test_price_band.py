"""Price bands in the matching core: off by default, integer ticks, part of the state."""

from __future__ import annotations

import random
from collections.abc import Sequence

import msgspec

from engine.matching import MatchingEngine, engine_for
from engine.snapshot import FORMAT_VERSION, restore, snapshot, state_hash
from shared.commands import BUY, FOK, IOC, MARKET, SELL, Cancel, Command, Modify, Place
from shared.events import PRICE_OUT_OF_BAND, Accepted, Cancelled, Event, Modified, Rejected, Trade

BAND = (1000, 10_000)  # 10 % around 100.00 (tick 0.01) before the first trade


def trades(events: Sequence[Event]) -> list[tuple[int, int]]:
    return [(e.price, e.quantity) for e in events if isinstance(e, Trade)]


def refused(events: Sequence[Event], order_id: int = 0) -> bool:
    (event,) = events
    return (
        isinstance(event, Rejected)
        and event.reason == PRICE_OUT_OF_BAND
        and event.order_id == order_id
    )


def test_off_by_default_a_far_buy_rests_and_a_later_sell_trades_at_it() -> None:
    """The issue's finding, kept when no band is configured."""
    engine = MatchingEngine()
    assert isinstance(engine.place(BUY, 100_000_000, 1, None, 1)[0], Accepted)
    assert trades(engine.place(SELL, 10_000, 1, None, 2)) == [(100_000_000, 1)]


def test_a_limit_order_outside_the_band_is_refused_and_nothing_changes() -> None:
    engine = engine_for(0, BAND)
    before = snapshot(engine)
    assert refused(engine.place(BUY, 100_000_000, 1, "c1", 1))
    assert engine.seq == 1 and engine.next_order_id == 1 and not engine.orders
    assert snapshot(engine) != before  # the seq moved on, as for any rejection
    for price in (11_001, 8_999):  # one tick past each edge
        assert refused(engine.place(BUY, price, 1, None, 2))
        assert refused(engine.place(SELL, price, 1, None, 2, IOC))
    for price in (11_000, 9_000, 10_000):  # the edges are inside
        assert isinstance(engine.place(BUY, price, 1, None, 3)[0], Accepted)
    # The refused place did not use its client order id.
    accepted = engine.place(SELL, 10_500, 1, "c1", 4)[0]
    assert isinstance(accepted, Accepted) and accepted.client_order_id == "c1"


def test_the_reference_is_the_last_trade() -> None:
    engine = engine_for(0, BAND)
    engine.place(SELL, 10_800, 1, None, 1)
    assert trades(engine.place(BUY, 10_800, 1, None, 2)) == [(10_800, 1)]
    assert engine.last_price == 10_800  # band now 10,800 +- 1,080
    assert refused(engine.place(BUY, 11_881, 1, None, 3))
    assert isinstance(engine.place(BUY, 11_880, 1, None, 3)[0], Accepted)
    assert refused(engine.place(SELL, 9_719, 1, None, 4))


def test_the_width_is_integer_ticks_rounded_towards_the_reference() -> None:
    engine = engine_for(0, (1, 10_001))  # 0.01 % of 10,001 ticks is 1.0001: 1 tick
    assert isinstance(engine.place(BUY, 10_002, 1, None, 1)[0], Accepted)
    assert refused(engine.place(BUY, 10_003, 1, None, 1))


def test_without_a_reference_there_is_no_band_until_the_first_trade() -> None:
    engine = engine_for(0, (1000, 0))
    assert isinstance(engine.place(SELL, 100_000, 2, None, 1)[0], Accepted)
    assert trades(engine.place(BUY, 100_000, 1, None, 2)) == [(100_000, 1)]
    assert refused(engine.place(BUY, 10_000, 1, None, 3))  # 100,000 +- 10 % from now on


def test_a_market_order_that_would_trade_outside_is_refused_whole() -> None:
    engine = engine_for(0, BAND)  # 9,000..11,000 around 10,000
    engine.place(SELL, 10_500, 5, None, 1)
    engine.place(SELL, 10_900, 5, None, 1)
    engine.set_band((2000, 10_000))  # wider for a while (a restart with another band)
    engine.place(SELL, 11_500, 5, None, 1)
    engine.set_band(BAND)  # the ask at 11,500 is outside again
    seq = engine.seq
    assert refused(engine.place(BUY, MARKET, 12, None, 2))  # 10 inside, then 11,500
    assert engine.seq == seq + 1
    assert sorted((o.price, o.remaining) for o in engine.orders.values()) == [
        (10_500, 5),
        (10_900, 5),
        (11_500, 5),
    ]
    assert trades(engine.place(BUY, MARKET, 8, None, 3)) == [(10_500, 5), (10_900, 3)]
    # The reference is now 10,900 (9,810..11,990): the ask at 11,500 is inside.
    assert trades(engine.place(BUY, MARKET, 7, None, 4)) == [(10_900, 2), (11_500, 5)]


def test_a_market_order_whose_best_price_is_outside_is_refused() -> None:
    engine = MatchingEngine()
    engine.place(BUY, 9_600, 1, None, 1)
    engine.set_band((300, 10_000))  # 9,700..10,300
    assert refused(engine.place(SELL, MARKET, 1, None, 2))
    assert engine.orders  # the bid is untouched


def test_a_market_order_fills_inside_and_cancels_the_rest_when_nothing_is_beyond() -> None:
    engine = engine_for(0, BAND)
    engine.place(BUY, 10_100, 3, None, 1)
    events = engine.place(SELL, MARKET, 5, None, 2)
    rest = events[-1]
    assert trades(events) == [(10_100, 3)]
    assert isinstance(rest, Cancelled) and rest.quantity == 2


def test_a_fok_limit_inside_the_band_still_trades_all_or_nothing() -> None:
    engine = engine_for(0, BAND)
    engine.place(SELL, 10_200, 2, None, 1)
    assert trades(engine.place(BUY, 10_200, 3, None, 2, FOK)) == []
    assert trades(engine.place(BUY, 10_200, 2, None, 3, FOK)) == [(10_200, 2)]


def test_a_modify_to_a_price_outside_is_refused_and_the_order_keeps_its_place() -> None:
    engine = engine_for(0, BAND)
    accepted = engine.place(BUY, 9_500, 5, None, 1)[0]
    assert isinstance(accepted, Accepted)
    order_id = accepted.order_id
    assert refused(engine.modify(order_id, 100_000_000, 2), order_id)
    assert refused(engine.modify(order_id, 8_999, 2, quantity=7), order_id)
    order = engine.orders[order_id]
    assert (order.price, order.quantity) == (9_500, 5)
    modified = engine.modify(order_id, 9_000, 3)[0]
    assert isinstance(modified, Modified) and modified.price == 9_000
    assert engine.modify(order_id, 0, 4, quantity=3)  # quantity only: no band check


def random_commands(seed: int, count: int) -> list[Command]:
    rng = random.Random(seed)
    commands: list[Command] = []
    for n in range(count):
        roll = rng.random()
        side = rng.choice((BUY, SELL))
        price = rng.randint(8_000, 12_000)
        if roll < 0.6:
            tif = rng.choice((0, 0, 0, IOC, FOK))
            market = rng.random() < 0.1
            commands.append(
                Place(side, MARKET if market else price, rng.randint(1, 9), None, "", n,
                      IOC if market else tif)
            )  # fmt: skip
        elif roll < 0.8:
            commands.append(Cancel(rng.randint(1, n + 1), "", n))
        else:
            commands.append(Modify(rng.randint(1, n + 1), price, "", n))
    return commands


def test_replay_from_a_snapshot_is_deterministic_and_the_band_is_state() -> None:
    commands = random_commands(7, 4000)
    straight = engine_for(0, BAND)
    events = [straight.apply(c) for c in commands]
    assert any(refused(e) for e in events if len(e) == 1)  # the band did refuse some
    resumed = engine_for(0, BAND)
    for command in commands[:2000]:
        resumed.apply(command)
    resumed = restore(snapshot(resumed))
    assert resumed.band == BAND and resumed.last_price
    assert [resumed.apply(c) for c in commands[2000:]] == events[2000:]
    assert state_hash(resumed) == state_hash(straight)
    # The band and its reference are in the hash: equal books, different bands differ.
    other = restore(snapshot(straight))
    other.set_band((999, 10_000))
    assert state_hash(other) != state_hash(straight)
    other.set_band(straight.band)
    other.last_price = straight.last_price + 1
    assert state_hash(other) != state_hash(straight)


def test_a_checkpoint_from_before_bands_restores_with_no_band() -> None:
    old = msgspec.msgpack.encode([FORMAT_VERSION, 3, 2, [], [], 0])
    engine = restore(old)
    assert (engine.band, engine.last_price, engine.seq) == (None, 0, 3)
