"""The storage port's contract (`store.port.Store`), run against every adapter.

The SQLite adapter runs in `tmp_path`; the MongoDB adapter runs against `MONGODB_URL` when it
is set, else against a local MongoDB wire-protocol server (`tests/mongo_wire.py`), each test
in a database of its own that is dropped afterwards. Every event comes from
the real `MatchingEngine`, and expected reads are computed from those events (and from what
the engine still has resting), never written by hand where the engine can say it.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from archiver.service import continue_sequence
from engine.matching import MatchingEngine
from shared.commands import BUY, SELL
from shared.events import Accepted, Cancelled, Event, Modified, QuantityChanged, Rejected, Trade
from store.derived import CANDLE_INTERVALS, NS
from store.port import (
    BookLevels,
    CandleRecord,
    GapError,
    OrderRecord,
    RestingOrder,
    Store,
    TradeRecord,
)
from store.sqlite import SqliteStore
from tests.mongo_wire import wire_server

EVERYTHING = 1_000_000

# -- engine driver ---------------------------------------------------------------------------


@dataclass
class Feed:
    """Drives a real MatchingEngine with a rising clock and keeps every event it emitted."""

    engine: MatchingEngine = field(default_factory=MatchingEngine)
    log: list[Event] = field(default_factory=list)
    clock: int = 1_000
    # With a generator: a clock that jumps across second, minute and hour edges, and stamps
    # some commands up to 2 s late (several API replicas' clocks disagree), so timestamps do
    # not rise with the sequence numbers.
    rng: random.Random | None = None

    def _tick(self) -> int:
        if self.rng is None:
            self.clock += 7
            return self.clock
        self.clock += self.rng.choice((1, 999_999, NS // 3, NS - 3, 59 * NS, 3599 * NS))
        late = self.rng.randrange(2 * NS) if self.rng.random() < 0.3 else 0
        return max(0, self.clock - late)

    def place(
        self, side: int, price: int, quantity: int, client_order_id: str | None = None
    ) -> list[Event]:
        events = self.engine.place(side, price, quantity, client_order_id, self._tick())
        self.log.extend(events)
        return events

    def place_id(self, side: int, price: int, quantity: int, coid: str | None = None) -> int:
        accepted = self.place(side, price, quantity, coid)[0]
        assert isinstance(accepted, Accepted)
        return accepted.order_id

    def modify(self, order_id: int, price: int, quantity: int = 0) -> list[Event]:
        """A new price and/or total quantity; 0 leaves that one as it is."""
        events = self.engine.modify(order_id, price, self._tick(), quantity)
        self.log.extend(events)
        return events

    def cancel(self, order_id: int) -> list[Event]:
        events = self.engine.cancel(order_id, self._tick())
        self.log.extend(events)
        return events


# -- reference model: what the store must hold after these events ----------------------------


def expected_state(events: Sequence[Event]) -> tuple[dict[int, OrderRecord], list[TradeRecord]]:
    """Orders and trades folded from the events, independently of any adapter."""
    orders: dict[int, OrderRecord] = {}
    trades: list[TradeRecord] = []
    for e in events:
        match e:
            case Accepted():
                orders[e.order_id] = OrderRecord(
                    e.order_id, e.side, e.price, e.quantity, e.quantity, 0, 0, True,
                    e.client_order_id, e.ts, e.ts,
                )  # fmt: skip
            case Trade():
                trades.append(
                    TradeRecord(
                        e.seq, e.price, e.quantity, e.bid_order_id, e.ask_order_id,
                        e.taker_side, e.ts,
                    )
                )  # fmt: skip
                for oid, remaining in (
                    (e.bid_order_id, e.bid_remaining),
                    (e.ask_order_id, e.ask_remaining),
                ):
                    o = orders[oid]
                    assert remaining == o.remaining - e.quantity  # the engine is consistent
                    orders[oid] = replace(
                        o,
                        remaining=remaining,
                        traded=o.traded + e.quantity,
                        alive=remaining > 0,
                        updated_ts=e.ts,
                    )
            case Modified():
                orders[e.order_id] = replace(orders[e.order_id], price=e.price, updated_ts=e.ts)
            case QuantityChanged():
                o = orders[e.order_id]
                assert e.remaining == o.remaining + e.quantity - o.quantity  # consistent
                orders[e.order_id] = replace(
                    o, quantity=e.quantity, remaining=e.remaining, updated_ts=e.ts
                )
            case Cancelled():
                o = orders[e.order_id]
                assert e.quantity == o.remaining
                orders[e.order_id] = replace(
                    o, remaining=0, cancelled=e.quantity, alive=False, updated_ts=e.ts
                )
            case Rejected():
                pass
    return orders, trades


def expected_candles(trades: Sequence[TradeRecord], interval: int) -> list[CandleRecord]:
    """Candles folded from the trades the plain way: per UTC bucket of the trade's ts, open
    and close by trade id."""
    buckets: dict[int, list[TradeRecord]] = {}
    for t in sorted(trades, key=lambda t: t.trade_id):
        buckets.setdefault(t.ts // (interval * NS) * interval, []).append(t)
    return [
        CandleRecord(
            interval, start, group[0].price, max(t.price for t in group),
            min(t.price for t in group), group[-1].price, sum(t.quantity for t in group),
            len(group), group[-1].trade_id,
        )
        for start, group in sorted(buckets.items())
    ]  # fmt: skip


async def all_candles(store: Store, instrument: int = 0) -> dict[int, list[CandleRecord]]:
    return {
        interval: await store.candles(instrument=instrument, interval=interval, limit=EVERYTHING)
        for interval in CANDLE_INTERVALS
    }


Depth = tuple[list[tuple[int, int]], list[tuple[int, int]]]  # (bids, asks): (price, quantity)


@dataclass(frozen=True)
class Snapshot:
    progress: int
    orders: list[OrderRecord]
    trades: list[TradeRecord]
    depth: Depth
    events: list[Event]
    candles: dict[int, list[CandleRecord]]
    newest_trades: list[TradeRecord]  # through the time index


def sides(book: BookLevels) -> Depth:
    return book.bids, book.asks


async def snapshot(store: Store) -> Snapshot:
    return Snapshot(
        await store.progress(),
        await store.list_orders(alive=None, side=None, limit=EVERYTHING, after=None),
        await store.list_trades(limit=EVERYTHING, after=None),
        sides(await store.book(EVERYTHING)),
        await store.events(0, EVERYTHING),
        await all_candles(store),
        await store.list_trades(limit=EVERYTHING, after=None, since=0, descending=True),
    )


async def assert_store_matches(store: Store, feed: Feed) -> None:
    """Every read of the store agrees with the events and with the engine's resting book."""
    log = feed.log
    orders, trades = expected_state(log)
    snap = await snapshot(store)
    assert snap.progress == (log[-1].seq if log else 0)
    assert snap.events == log
    assert snap.orders == [orders[i] for i in sorted(orders)]
    assert snap.trades == trades
    assert snap.newest_trades == trades[::-1]
    for interval in CANDLE_INTERVALS:
        assert snap.candles[interval] == expected_candles(trades, interval), interval
    engine = feed.engine
    assert {o.order_id for o in snap.orders if o.alive} == set(engine.orders)
    for o in snap.orders:
        if o.alive:
            resting = engine.orders[o.order_id]
            assert (o.price, o.remaining, o.side) == (
                resting.price,
                resting.remaining,
                resting.side,
            )
        assert o.quantity == o.traded + o.cancelled + o.remaining
    assert snap.depth == engine.depth(EVERYTHING)
    for n in (1, 2, 5):
        book = await store.book(n)
        assert (book.seq, *sides(book)) == (snap.progress, *engine.depth(n))


# -- the adapters ------------------------------------------------------------------------------


class Backend:
    """Opens stores of one adapter on one location (file or database), and cleans up."""

    def __init__(self, make: Callable[[], Store]) -> None:
        self._make = make
        self._open: list[Store] = []

    async def open(self) -> Store:
        store = self._make()
        self._open.append(store)  # closed at teardown even if opening fails
        await store.open()
        return store

    async def close(self, store: Store) -> None:
        self._open.remove(store)
        await store.close()

    async def close_all(self) -> None:
        while self._open:
            await self.close(self._open[-1])


@pytest.fixture(scope="session")
def mongodb_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with wire_server(tmp_path_factory.mktemp("mongo")) as url:
        yield url


@pytest.fixture(params=["sqlite", "mongo"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        b = Backend(lambda: SqliteStore(tmp_path / "store" / "exchange.sqlite3"))
        try:
            yield b
        finally:
            await b.close_all()
        return
    url: str = request.getfixturevalue("mongodb_url")
    from pymongo import AsyncMongoClient

    from store.mongo import MongoStore

    name = f"test_contract_{uuid.uuid4().hex[:12]}"
    b = Backend(lambda: MongoStore(url, name))
    try:
        yield b
    finally:
        await b.close_all()
        admin: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
        try:
            await admin.drop_database(name)
        finally:
            await admin.close()


@pytest.fixture
async def store(backend: Backend) -> Store:
    return await backend.open()


# -- single operations -----------------------------------------------------------------------


async def test_empty_store(store: Store) -> None:
    assert await store.progress() == 0
    assert await store.get_order(1) is None
    assert await store.list_orders(alive=None, side=None, limit=10, after=None) == []
    assert await store.list_trades(limit=10, after=None) == []
    assert sides(await store.book(5)) == ([], [])
    assert await store.events(0, 10) == []
    await store.apply([])
    assert await store.progress() == 0


async def test_accepted_order_is_stored(store: Store) -> None:
    feed = Feed()
    events = feed.place(BUY, 100, 10, "client-1")
    feed.place(SELL, 105, 3)
    await store.apply(feed.log)
    (accepted,) = events
    assert isinstance(accepted, Accepted)
    assert await store.get_order(1) == OrderRecord(
        order_id=1, side=BUY, price=100, quantity=10, remaining=10, traded=0, cancelled=0,
        alive=True, client_order_id="client-1", created_ts=accepted.ts, updated_ts=accepted.ts,
    )  # fmt: skip
    second = await store.get_order(2)
    assert second is not None
    assert (second.side, second.price, second.client_order_id) == (SELL, 105, None)
    assert await store.get_order(3) is None
    await assert_store_matches(store, feed)


async def test_trade_stores_both_order_ids_and_seq_as_trade_id(store: Store) -> None:
    feed = Feed()
    maker = feed.place_id(SELL, 100, 5)
    events = feed.place(BUY, 101, 3)
    accepted, trade = events
    assert isinstance(accepted, Accepted) and isinstance(trade, Trade)
    await store.apply(feed.log)

    assert await store.list_trades(limit=10, after=None) == [
        TradeRecord(trade.seq, 100, 3, accepted.order_id, maker, BUY, trade.ts)
    ]
    ask = await store.get_order(maker)
    bid = await store.get_order(accepted.order_id)
    assert ask is not None and bid is not None
    assert (ask.remaining, ask.traded, ask.alive, ask.updated_ts) == (2, 3, True, trade.ts)
    assert ask.created_ts < ask.updated_ts
    # the taker filled completely: it never rested, so it is dead with nothing cancelled
    assert (bid.price, bid.remaining, bid.traded, bid.cancelled, bid.alive) == (101, 0, 3, 0, False)
    assert bid.created_ts == bid.updated_ts == trade.ts

    await assert_store_matches(store, feed)


async def test_sell_taker_trade(store: Store) -> None:
    feed = Feed()
    bid = feed.place_id(BUY, 100, 5)
    accepted, trade = feed.place(SELL, 99, 2)
    assert isinstance(accepted, Accepted) and isinstance(trade, Trade)
    await store.apply(feed.log)
    assert await store.list_trades(limit=10, after=None) == [
        TradeRecord(trade.seq, 100, 2, bid, accepted.order_id, SELL, trade.ts)
    ]
    await assert_store_matches(store, feed)


async def test_partial_fill_then_cancel(store: Store) -> None:
    feed = Feed()
    oid = feed.place_id(SELL, 100, 10)
    feed.place(BUY, 100, 4)
    await store.apply(feed.log)
    order = await store.get_order(oid)
    assert order is not None
    assert (order.remaining, order.traded, order.cancelled, order.alive) == (6, 4, 0, True)

    (cancelled,) = feed.cancel(oid)
    assert isinstance(cancelled, Cancelled)
    await store.apply([cancelled])
    order = await store.get_order(oid)
    assert order is not None
    assert (order.quantity, order.remaining, order.traded, order.cancelled, order.alive) == (
        10,
        0,
        4,
        6,
        False,
    )
    assert order.updated_ts == cancelled.ts
    assert sides(await store.book(5)) == ([], [])
    await assert_store_matches(store, feed)


async def test_modify_updates_price(store: Store) -> None:
    feed = Feed()
    oid = feed.place_id(BUY, 100, 5)
    feed.place(SELL, 110, 2)
    await store.apply(feed.log)
    (modified,) = feed.modify(oid, 102)
    assert isinstance(modified, Modified)
    await store.apply([modified])
    order = await store.get_order(oid)
    assert order is not None
    assert (order.price, order.remaining, order.alive, order.updated_ts) == (
        102,
        5,
        True,
        modified.ts,
    )
    assert order.created_ts < order.updated_ts
    assert sides(await store.book(5)) == ([(102, 5)], [(110, 2)])

    # a modify that crosses trades at once, in the same batch as the Modified event
    events = feed.modify(oid, 110)
    assert [type(e) for e in events] == [Modified, Trade]
    await store.apply(events)
    order = await store.get_order(oid)
    assert order is not None
    assert (order.price, order.remaining, order.traded, order.alive) == (110, 3, 2, True)
    await assert_store_matches(store, feed)


async def test_quantity_change_updates_quantity_and_remaining(store: Store) -> None:
    feed = Feed()
    oid = feed.place_id(SELL, 100, 10)
    feed.place(SELL, 100, 5)  # behind it in the queue
    feed.place(BUY, 100, 3)  # 7 left of 10
    await store.apply(feed.log)

    (lowered,) = feed.modify(oid, 0, quantity=6)  # keeps its place: 3 left
    assert isinstance(lowered, QuantityChanged)
    await store.apply([lowered])
    order = await store.get_order(oid)
    assert order is not None
    assert (order.quantity, order.remaining, order.traded, order.alive, order.updated_ts) == (
        6,
        3,
        3,
        True,
        lowered.ts,
    )
    assert sides(await store.book(5)) == ([], [(100, 8)])

    # Raised and repriced at once, in one batch: QuantityChanged then Modified.
    events = feed.modify(oid, 101, quantity=12)
    assert [type(e) for e in events] == [QuantityChanged, Modified]
    await store.apply(events)
    order = await store.get_order(oid)
    assert order is not None
    assert (order.price, order.quantity, order.remaining, order.traded) == (101, 12, 9, 3)

    # At or below what already traded: refused, nothing changes.
    (refused,) = feed.modify(oid, 0, quantity=3)
    assert isinstance(refused, Rejected)
    await store.apply([refused])
    assert await store.get_order(oid) == order
    await assert_store_matches(store, feed)


async def test_progress_is_highest_seq_including_rejections(store: Store) -> None:
    feed = Feed()
    feed.place(BUY, 100, 5)
    await store.apply(feed.log)
    assert await store.progress() == feed.log[-1].seq == 1
    events = feed.cancel(42) + feed.modify(43, 100) + feed.place(SELL, 100, 1)
    events += feed.place(SELL, 101, 1, "dup") + feed.place(SELL, 102, 1, "dup")
    assert isinstance(events[-1], Rejected)
    await store.apply(events)
    assert await store.progress() == events[-1].seq == feed.engine.seq
    assert await store.events(0, EVERYTHING) == feed.log
    await assert_store_matches(store, feed)


# -- reads: filters, cursors, aggregation ----------------------------------------------------


def build_book(feed: Feed) -> None:
    """A book with both sides, several orders per level, dead and alive orders."""
    feed.place(BUY, 100, 5)  # 1
    feed.place(BUY, 100, 7)  # 2
    feed.place(BUY, 99, 4)  # 3
    feed.place(BUY, 98, 1)  # 4
    feed.place(BUY, 97, 2)  # 5
    feed.place(SELL, 103, 6)  # 6
    feed.place(SELL, 103, 1)  # 7
    feed.place(SELL, 104, 2)  # 8
    feed.place(SELL, 105, 9)  # 9
    feed.place(SELL, 106, 3)  # 10
    feed.cancel(3)  # level 99 disappears: only alive orders count
    feed.cancel(7)  # level 103 keeps order 6 only
    feed.place(SELL, 100, 8)  # 11: fills 1 (5) and 3 of 2, dies filled
    feed.place(BUY, 104, 3)  # 12: takes 103 (3 of 6), dies filled
    feed.modify(5, 96)
    feed.place(BUY, 96, 4, "x")  # 13: joins 5 at 96
    feed.place(SELL, 108, 1, "y")  # 14


async def test_list_orders_filters_and_cursor(store: Store) -> None:
    feed = Feed()
    build_book(feed)
    await store.apply(feed.log)
    everything = await store.list_orders(alive=None, side=None, limit=EVERYTHING, after=None)
    ids = [o.order_id for o in everything]
    assert ids == sorted(ids) == list(range(1, feed.engine.next_order_id))
    assert await store.list_orders(alive=None, side=None, limit=EVERYTHING, after=0) == everything

    for alive in (None, True, False):
        for side in (None, BUY, SELL):
            want = [
                o
                for o in everything
                if (alive is None or o.alive == alive) and (side is None or o.side == side)
            ]
            got = await store.list_orders(alive=alive, side=side, limit=EVERYTHING, after=None)
            assert got == want, (alive, side)
            for limit in (1, 2, 3):
                pages: list[OrderRecord] = []
                after: int | None = None
                while True:
                    page = await store.list_orders(alive=alive, side=side, limit=limit, after=after)
                    assert len(page) <= limit
                    assert all(after is None or o.order_id > after for o in page)
                    if not page:
                        break
                    pages.extend(page)
                    after = page[-1].order_id
                assert pages == want, (alive, side, limit)
    alive_ids = {o.order_id for o in everything if o.alive}
    assert alive_ids == set(feed.engine.orders)
    page = await store.list_orders(alive=None, side=None, limit=2, after=4)
    assert [o.order_id for o in page] == [5, 6]
    assert await store.list_orders(alive=None, side=None, limit=5, after=2_000) == []
    await assert_store_matches(store, feed)


async def test_list_trades_cursor_and_order_filter(store: Store) -> None:
    feed = Feed()
    for price in (100, 101, 102):
        feed.place(SELL, price, 2)
        feed.place(SELL, price, 3)
    taker = feed.place_id(BUY, 102, 12)  # sweeps 2+3 at 100, 2+3 at 101, 2 at 102
    feed.place(BUY, 102, 1)  # one more trade with the last ask, which keeps 2
    feed.place(BUY, 90, 5)
    feed.place(SELL, 90, 7)  # a sell taker: takes the bid at 90, rests with 2
    await store.apply(feed.log)
    _, trades = expected_state(feed.log)
    assert len(trades) == 7
    assert trades[-1].taker_side == SELL
    assert await store.list_trades(limit=EVERYTHING, after=None) == trades
    assert [t.trade_id for t in trades] == [e.seq for e in feed.log if isinstance(e, Trade)]

    for limit in (1, 3, 4):
        got: list[TradeRecord] = []
        after: int | None = None
        while page := await store.list_trades(limit=limit, after=after):
            assert len(page) <= limit
            assert after is None or page[0].trade_id > after
            got.extend(page)
            after = page[-1].trade_id
        assert got == trades

    for oid in range(1, feed.engine.next_order_id + 1):
        want = [t for t in trades if oid in (t.bid_order_id, t.ask_order_id)]
        assert await store.list_trades(limit=EVERYTHING, after=None, order_id=oid) == want
        order = await store.get_order(oid)
        if order is not None:
            assert order.traded == sum(t.quantity for t in want)
    taker_trades = [t for t in trades if t.bid_order_id == taker]
    assert len(taker_trades) == 5
    page = await store.list_trades(limit=2, after=taker_trades[1].trade_id, order_id=taker)
    assert page == taker_trades[2:4]
    await assert_store_matches(store, feed)


async def test_depth_aggregates_alive_orders(store: Store) -> None:
    feed = Feed()
    build_book(feed)
    await store.apply(feed.log)
    bids, asks = feed.engine.depth(EVERYTHING)
    # spelled out once, to pin the direction of each side and the aggregation
    assert bids == [(100, 4), (98, 1), (96, 6)]
    assert asks == [(103, 3), (104, 2), (105, 9), (106, 3), (108, 1)]
    for n in (1, 2, 3, 4, 10):
        assert sides(await store.book(n)) == (bids[:n], asks[:n])
    await assert_store_matches(store, feed)


async def test_events_log_pages(store: Store) -> None:
    feed = Feed()
    build_book(feed)
    feed.cancel(999)
    await store.apply(feed.log)
    assert await store.events(0, EVERYTHING) == feed.log
    top = feed.log[-1].seq
    assert [e.seq for e in feed.log] == list(range(1, top + 1))
    for after in (0, 1, 5, top - 1, top):
        for limit in (1, 4, EVERYTHING):
            assert await store.events(after, limit) == feed.log[after : after + limit]


# -- history: both directions, time windows, candles ------------------------------------------


def pick(items: Sequence[Any], key: Callable[[Any], int], want: dict[str, Any]) -> list[Any]:
    """The page the store must return, computed the plain way over every item."""
    chosen = sorted(
        (
            x
            for x in items
            if (want["after"] is None or key(x) > want["after"])
            and (want["before"] is None or key(x) < want["before"])
            and (want["since"] is None or want["ts"](x) >= want["since"])
            and (want["until"] is None or want["ts"](x) < want["until"])
        ),
        key=key,
        reverse=want["descending"],
    )
    return chosen[: want["limit"]]


def random_window(rng: random.Random, ids: list[int], stamps: list[int]) -> dict[str, Any]:
    def cursor() -> int | None:
        return rng.choice(ids) + rng.choice((-1, 0, 1)) if ids and rng.random() < 0.5 else None

    def moment() -> int | None:
        if not stamps or rng.random() < 0.4:
            return None
        return rng.choice(stamps) + rng.choice((-NS, -1, 0, 1, NS, 61 * NS))

    return {
        "limit": rng.choice((1, 2, 5, EVERYTHING)),
        "after": cursor(),
        "before": cursor(),
        "since": moment(),
        "until": moment(),
        "descending": rng.random() < 0.5,
    }


@pytest.mark.parametrize("seed", [4, 5])
async def test_pages_in_both_directions_and_time_windows(store: Store, seed: int) -> None:
    """Every combination of cursors, time bounds, direction and page size gives exactly the
    items a plain filter over all of them gives, although timestamps do not rise with ids."""
    rng = random.Random(seed)
    feed = Feed(rng=random.Random(seed))
    random_commands(feed, rng, 400)
    await store.apply(feed.log)
    orders, trades = expected_state(feed.log)
    assert any(b.ts < a.ts for a, b in itertools.pairwise(trades)), "ts must not rise"
    trade_ids = [t.trade_id for t in trades]
    order_ids = list(orders)
    for _ in range(60):
        want = random_window(rng, trade_ids, [t.ts for t in trades])
        got = await store.list_trades(
            limit=want["limit"], after=want["after"], before=want["before"],
            since=want["since"], until=want["until"], descending=want["descending"],
        )  # fmt: skip
        assert got == pick(trades, lambda t: t.trade_id, {**want, "ts": lambda t: t.ts}), want

        want = random_window(rng, order_ids, [o.created_ts for o in orders.values()])
        alive = rng.choice((None, True, False))
        side = rng.choice((None, BUY, SELL))
        subset = [
            o
            for o in orders.values()
            if (alive is None or o.alive == alive) and (side is None or o.side == side)
        ]
        got_orders = await store.list_orders(
            alive=alive, side=side, limit=want["limit"], after=want["after"],
            before=want["before"], since=want["since"], until=want["until"],
            descending=want["descending"],
        )  # fmt: skip
        expected = pick(subset, lambda o: o.order_id, {**want, "ts": lambda o: o.created_ts})
        assert got_orders == expected, want

    # walking back from the newest with `before` visits every trade once, newest first
    walked: list[TradeRecord] = []
    before: int | None = None
    while page := await store.list_trades(limit=7, after=None, before=before, descending=True):
        walked += page
        before = page[-1].trade_id
    assert walked == trades[::-1]
    # one order's fills, newest first and in a time window
    busiest = max(orders.values(), key=lambda o: o.traded)
    fills = [t for t in trades if busiest.order_id in (t.bid_order_id, t.ask_order_id)]
    assert len(fills) > 1
    newest = await store.list_trades(
        limit=EVERYTHING, after=None, order_id=busiest.order_id, descending=True
    )
    assert newest == fills[::-1]
    window = await store.list_trades(
        limit=EVERYTHING, after=None, order_id=busiest.order_id, since=fills[-1].ts
    )
    assert window == [t for t in fills if t.ts >= fills[-1].ts]


async def test_time_window_outside_every_event_is_empty(store: Store) -> None:
    feed = Feed()
    build_book(feed)
    await store.apply(feed.log)
    first, last = feed.log[0].ts, feed.log[-1].ts
    assert await store.list_trades(limit=10, after=None, until=first) == []
    assert await store.list_trades(limit=10, after=None, since=last + 1) == []
    assert (
        await store.list_orders(alive=None, side=None, limit=10, after=None, since=last + 10 * NS)
        == []
    )
    everything = await store.list_orders(alive=None, side=None, limit=EVERYTHING, after=None)
    assert (
        await store.list_orders(
            alive=None, side=None, limit=EVERYTHING, after=None, since=first, until=last + 1
        )
        == everything
    )
    assert await store.list_trades(limit=10, after=None, since=5, until=5) == []


async def test_candles_at_bucket_edges(store: Store) -> None:
    """A trade stamped on a bucket's first nanosecond opens that bucket; one nanosecond
    earlier it closes the previous one; a late-stamped trade lands in the earlier bucket
    but does not change that bucket's open; empty buckets have no candle."""
    feed = Feed()
    hour = 3600 * NS

    def buy(ts: int, price: int, quantity: int) -> None:
        """One trade of `quantity` at `price`, stamped `ts` (the taker's time)."""
        feed.clock = ts - 14  # the ask is stamped ts - 7, the buy that takes it exactly ts
        feed.place(SELL, price, quantity)
        feed.place(BUY, price, quantity)

    buy(hour - 1, 100, 2)  # the last nanosecond of hour 0 (and of its minute and second)
    buy(hour, 100, 3)  # the first nanosecond of hour 1
    buy(hour + 1, 105, 1)
    buy(hour + 59 * NS + NS - 1, 90, 4)  # still minute 0 of hour 1
    buy(hour + 300 * NS, 101, 5)  # the first nanosecond of the second 5-minute bucket
    buy(hour + NS // 2, 95, 6)  # stamped late: second 0 again, though last by sequence
    await store.apply(feed.log)
    h = 3600
    candles = await all_candles(store)

    def ohlc(c: CandleRecord) -> tuple[int, int, int, int, int, int, int]:
        return (c.start, c.open, c.high, c.low, c.close, c.volume, c.count)

    assert [ohlc(c) for c in candles[3600]] == [
        (0, 100, 100, 100, 100, 2, 1),
        (h, 100, 105, 90, 95, 19, 5),
    ]
    assert [ohlc(c) for c in candles[300]] == [
        (h - 300, 100, 100, 100, 100, 2, 1),
        (h, 100, 105, 90, 95, 14, 4),
        (h + 300, 101, 101, 101, 101, 5, 1),
    ]
    assert [ohlc(c) for c in candles[60]] == [
        (h - 60, 100, 100, 100, 100, 2, 1),
        (h, 100, 105, 90, 95, 14, 4),
        (h + 300, 101, 101, 101, 101, 5, 1),
    ]
    assert [ohlc(c) for c in candles[1]] == [
        (h - 1, 100, 100, 100, 100, 2, 1),
        (h, 100, 105, 95, 95, 10, 3),
        (h + 59, 90, 90, 90, 90, 4, 1),
        (h + 300, 101, 101, 101, 101, 5, 1),
    ]
    await assert_store_matches(store, feed)
    # the reads: start bounds are half-open, `newest` takes the last ones, ascending
    read = store.candles
    assert [
        c.start for c in await read(instrument=0, interval=1, limit=9, since=h, until=h + 60)
    ] == [h, h + 59]
    assert [c.start for c in await read(instrument=0, interval=1, limit=2, newest=True)] == [
        h + 59,
        h + 300,
    ]
    assert [c.start for c in await read(instrument=0, interval=1, limit=2)] == [h - 1, h]
    assert await read(instrument=1, interval=1, limit=9) == []


async def test_batch_ahead_of_the_stored_ones_is_folded_when_the_gap_fills(store: Store) -> None:
    """Candles and the time index follow the sequence even when a batch is stored before the
    one it follows. (Orders do not: an update to an order not stored yet is lost, and the
    archiver never writes out of order. Trades and the derived data need no order.)"""
    feed = Feed(rng=random.Random(8))
    random_commands(feed, random.Random(9), 200)
    half = len(feed.log) // 2
    await store.apply(feed.log[half:])  # arrives first: nothing continues the folds yet
    assert await all_candles(store) == {interval: [] for interval in CANDLE_INTERVALS}
    await store.apply(feed.log[:half])
    _, trades = expected_state(feed.log)
    snap = await snapshot(store)
    assert snap.newest_trades == trades[::-1]
    for interval in CANDLE_INTERVALS:
        assert snap.candles[interval] == expected_candles(trades, interval), interval


async def test_candles_without_transactions_count_each_trade_once(store: Store) -> None:
    """A standalone MongoDB has no transactions: a batch lands write by write, and its
    candle merges go one trade at a time. Re-applied with other boundaries (an archiver
    restarting after a crash mid-batch), every trade still counts once. (SQLite always has
    transactions: there this is the plain overlapping-batches case.)"""
    feed = Feed(rng=random.Random(12))
    random_commands(feed, random.Random(13), 200)
    log = feed.log
    n = len(log)
    await store.apply(log[: n // 2])
    if hasattr(store, "transactions"):
        store.transactions = False
        await store.apply(log[n // 2 : 2 * n // 3])
        # a crash after the candle merges of that batch, before its marks moved
        await rewind_derived_mark(store, log[n // 2 - 1].seq)
    await store.apply(log[n // 3 :])  # read again, now running on to the end
    await store.apply(log)
    _, trades = expected_state(log)
    snap = await snapshot(store)
    assert snap.newest_trades == trades[::-1]
    for interval in CANDLE_INTERVALS:
        assert snap.candles[interval] == expected_candles(trades, interval), interval


async def test_reopening_derives_what_an_older_store_lacks(backend: Backend) -> None:
    """A store written before candles and the time index existed gets them when opened."""
    feed = Feed(rng=random.Random(10))
    random_commands(feed, random.Random(11), 200)
    first = await backend.open()
    await first.apply(feed.log)
    await forget_derived(first)
    assert await all_candles(first) == {interval: [] for interval in CANDLE_INTERVALS}
    await backend.close(first)
    second = await backend.open()
    await assert_store_matches(second, feed)


async def rewind_derived_mark(store: Store, seq: int) -> None:
    from store.mongo import MongoStore

    assert isinstance(store, MongoStore)
    await store.meta.update_one({"_id": "derived:0"}, {"$set": {"value": seq}})


async def forget_derived(store: Store) -> None:
    """What a store from before the derived data held: no candles, no time index, no mark."""
    if isinstance(store, SqliteStore):
        db = store.db
        db.execute("DELETE FROM candles")
        db.execute("DELETE FROM time_index")
        db.execute("DELETE FROM meta WHERE key LIKE 'derived:%'")
        return
    from store.mongo import MongoStore

    assert isinstance(store, MongoStore)
    await store.candles_.delete_many({})
    await store.time_index.delete_many({})
    await store.meta.delete_many({"_id": {"$regex": "^derived:"}})


# -- idempotency and order tolerance ---------------------------------------------------------


async def test_same_batch_twice_changes_nothing(store: Store) -> None:
    feed = Feed()
    build_book(feed)
    await store.apply(feed.log)
    first = await snapshot(store)
    await store.apply(feed.log)
    assert await snapshot(store) == first
    for event in feed.log:  # one by one, again
        await store.apply([event])
    assert await snapshot(store) == first
    await assert_store_matches(store, feed)


async def test_overlapping_batches(store: Store) -> None:
    feed = Feed()
    build_book(feed)
    log = feed.log
    n = len(log)
    await store.apply(log[: n // 2])
    await store.apply(log[n // 4 : 3 * n // 4])
    await store.apply(log[n // 3 :])
    await store.apply(log[n // 2 - 1 : n // 2 + 3])
    await assert_store_matches(store, feed)


def lifecycle(feed: Feed) -> tuple[int, int]:
    """One order that is modified, partly filled twice, resized, then cancelled; the split
    point is between the first fill and the rest."""
    oid = feed.place_id(SELL, 105, 10, "life")
    feed.place(BUY, 100, 1)
    feed.modify(oid, 104)
    feed.place(BUY, 104, 3)  # partial fill: 7 left
    split = len(feed.log)
    feed.modify(oid, 0, quantity=9)  # 6 left
    feed.modify(oid, 103)
    feed.place(BUY, 103, 2)  # 4 left
    feed.cancel(oid)
    feed.place(SELL, 100, 1)  # fills the bid at 100 completely
    return oid, split


async def test_reapplying_an_earlier_batch_does_not_roll_back(store: Store) -> None:
    feed = Feed()
    oid, split = lifecycle(feed)
    early, late = feed.log[:split], feed.log[split:]
    await store.apply(early)
    await store.apply(late)
    final = await snapshot(store)
    order = await store.get_order(oid)
    assert order is not None
    assert (order.price, order.quantity, order.traded, order.cancelled, order.remaining) == (
        103,
        9,
        5,
        4,
        0,
    )
    assert order.alive is False

    await store.apply(early)  # an archiver that lagged behind writes the old batch again
    assert await snapshot(store) == final
    for event in reversed(feed.log):  # every single event, newest first
        await store.apply([event])
    assert await snapshot(store) == final
    await store.apply(feed.log[1:3])
    assert await snapshot(store) == final
    assert await store.progress() == feed.log[-1].seq
    await assert_store_matches(store, feed)


# -- durability -------------------------------------------------------------------------------


async def test_reopened_store_keeps_everything(backend: Backend) -> None:
    feed = Feed()
    build_book(feed)
    first = await backend.open()
    await first.apply(feed.log)
    before = await snapshot(first)
    await backend.close(first)

    second = await backend.open()
    assert await snapshot(second) == before
    await assert_store_matches(second, feed)
    # and it carries on from where it was
    mark = len(feed.log)
    oid, _ = lifecycle(feed)
    await second.apply(feed.log[mark:])
    await assert_store_matches(second, feed)
    await backend.close(second)

    third = await backend.open()
    await assert_store_matches(third, feed)
    record = await third.get_order(oid)
    assert record is not None and record.client_order_id == "life"


async def test_sqlite_store_with_the_old_book_index_moves_to_the_partial_one(
    tmp_path: Path,
) -> None:
    """A store whose book index still held dead orders (alive, side, price) gets the
    partial index of alive orders on opening, and reads the same through it."""
    backend = Backend(lambda: SqliteStore(tmp_path / "store" / "exchange.sqlite3"))
    try:
        feed = Feed()
        build_book(feed)
        first = await backend.open()
        await first.apply(feed.log)
        assert isinstance(first, SqliteStore)
        first.db.executescript(
            "DROP INDEX orders_alive; CREATE INDEX orders_book ON orders (alive, side, price);"
        )
        await backend.close(first)
        second = await backend.open()
        assert isinstance(second, SqliteStore)
        names = {r[0] for r in second.db.execute("SELECT name FROM sqlite_master")}
        assert "orders_alive" in names and "orders_book" not in names
        await assert_store_matches(second, feed)
    finally:
        await backend.close_all()


async def test_sqlite_store_opened_blocking_as_the_archiver_does(tmp_path: Path) -> None:
    """The archiver's store runs its calls on the event loop's thread: the same rows, read
    back by it and by a store on its own thread (as an API replica reads)."""
    path = tmp_path / "store" / "exchange.sqlite3"
    writer, reader = SqliteStore(path, blocking=True), SqliteStore(path)
    try:
        await writer.open()
        await reader.open()
        feed, rng = Feed(rng=random.Random(21)), random.Random(22)
        random_commands(feed, rng, 300)
        for start in range(0, len(feed.log), 7):
            await writer.apply(feed.log[start : start + 7])
        await assert_store_matches(writer, feed)
        await assert_store_matches(reader, feed)
    finally:
        await reader.close()
        await writer.close()


# -- a randomized property -----------------------------------------------------------------


def random_commands(feed: Feed, rng: random.Random, count: int) -> None:
    for _ in range(count):
        roll = rng.random()
        top = feed.engine.next_order_id
        if roll < 0.55 or top == 1:
            coid = None
            if rng.random() < 0.3:
                coid = f"c{rng.randrange(40)}"  # some collide: duplicate rejections
            feed.place(rng.choice((BUY, SELL)), rng.randint(95, 105), rng.randint(1, 20), coid)
        elif roll < 0.75:
            target = rng.choice(list(feed.engine.orders) or [1]) if rng.random() < 0.8 else 0
            change = rng.random()  # a new price, a new total quantity, or both
            price = rng.randint(94, 106) if change < 0.7 else 0
            quantity = rng.randint(1, 25) if change >= 0.4 else 0
            feed.modify(target or rng.randrange(1, top + 2), price, quantity)
        else:
            target = rng.choice(list(feed.engine.orders) or [1]) if rng.random() < 0.8 else 0
            feed.cancel(target or rng.randrange(1, top + 2))


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_chunks_with_replays_match_the_engine(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    feed = Feed(rng=random.Random(seed + 100))
    random_commands(feed, rng, 300)
    log = feed.log
    kinds = {type(e) for e in log}
    assert kinds == {Accepted, Trade, Modified, QuantityChanged, Cancelled, Rejected}

    chunks: list[tuple[int, int]] = []
    start = 0
    while start < len(log):
        end = min(len(log), start + rng.randint(1, 40))
        await store.apply(log[start:end])
        chunks.append((start, end))
        start = end
        roll = rng.random()
        if roll < 0.25:  # an earlier chunk again
            a, b = rng.choice(chunks)
            await store.apply(log[a:b])
        elif roll < 0.4:  # a window overlapping what is stored, possibly ahead of it
            a = rng.randrange(0, start)
            b = min(len(log), start + rng.randint(0, 10))
            await store.apply(log[a:b])
            start = max(start, b)
        assert await store.progress() == log[start - 1].seq

    await assert_store_matches(store, feed)

    orders, trades = expected_state(log)
    traded: dict[int, int] = {}
    for t in trades:
        traded[t.bid_order_id] = traded.get(t.bid_order_id, 0) + t.quantity
        traded[t.ask_order_id] = traded.get(t.ask_order_id, 0) + t.quantity
    for oid in orders:
        record = await store.get_order(oid)
        assert record is not None
        own = await store.list_trades(limit=EVERYTHING, after=None, order_id=oid)
        assert record.traded == sum(t.quantity for t in own) == traded.get(oid, 0)

    for alive in (None, True, False):
        side = rng.choice((None, BUY, SELL))
        want = [
            o
            for o in sorted(orders.values(), key=lambda o: o.order_id)
            if (alive is None or o.alive == alive) and (side is None or o.side == side)
        ]
        got: list[OrderRecord] = []
        after: int | None = None
        while page := await store.list_orders(alive=alive, side=side, limit=7, after=after):
            got.extend(page)
            after = page[-1].order_id
        assert got == want


# -- the archiver's sequence check -------------------------------------------------------------


def engine_events(count: int) -> list[Event]:
    feed = Feed()
    random_commands(feed, random.Random(7), count)
    return feed.log


def test_continue_sequence_passes_contiguous_events() -> None:
    log = engine_events(30)
    assert continue_sequence(0, log) == log
    assert continue_sequence(10, log[10:]) == log[10:]
    assert continue_sequence(5, []) == []


def test_continue_sequence_drops_already_stored_events() -> None:
    log = engine_events(30)
    assert continue_sequence(10, log) == log[10:]
    assert continue_sequence(10, log[4:15]) == log[10:15]
    assert continue_sequence(log[-1].seq, log) == []
    assert continue_sequence(log[-1].seq + 5, log) == []


def test_continue_sequence_raises_on_a_hole() -> None:
    log = engine_events(30)
    with pytest.raises(GapError, match="expected 11, got 12"):
        continue_sequence(10, log[11:])  # the first fresh event is not the next one
    with pytest.raises(GapError, match="expected 16, got 17"):
        continue_sequence(10, log[10:15] + log[16:])  # a hole in the middle
    with pytest.raises(GapError):
        continue_sequence(0, log[1:])
    with pytest.raises(GapError):
        continue_sequence(0, [log[1], log[0]])  # out of order is not contiguous


async def test_book_is_one_snapshot_while_the_archiver_writes(backend: Backend) -> None:
    """The API reads the book while the archiver (another connection) writes batches: each
    book read must be exactly the engine's book at the `seq` it reports, never a mix. (A
    standalone MongoDB, without transactions, cannot promise this; the test servers are
    replica sets.)"""
    writer, reader = await backend.open(), await backend.open()
    assert getattr(writer, "transactions", True), "a MongoDB test server without transactions"
    feed, rng = Feed(), random.Random(11)
    books: dict[int, Depth] = {0: ([], [])}
    batches: list[list[Event]] = []
    for _ in range(400):
        start = len(feed.log)
        random_commands(feed, rng, 3)
        batches.append(feed.log[start:])
        books[feed.log[-1].seq] = feed.engine.depth(EVERYTHING)

    async def archive() -> None:
        for batch in batches:
            await writer.apply(batch)

    archiving = asyncio.create_task(archive())
    seen: set[int] = set()
    while not archiving.done():
        book = await reader.book(EVERYTHING)
        assert sides(book) == books[book.seq], book.seq
        seen.add(book.seq)
    await archiving
    assert len(seen) > 10  # the reads did interleave with the writes
    assert sides(await reader.book(EVERYTHING)) == feed.engine.depth(EVERYTHING)


def last_event_of(events: Sequence[Event]) -> dict[int, int]:
    """Per order id: the sequence number of the last event that changed it."""
    last: dict[int, int] = {}
    for e in events:
        match e:
            case Trade():
                last[e.bid_order_id] = last[e.ask_order_id] = e.seq
            case Accepted() | Modified() | QuantityChanged() | Cancelled():
                last[e.order_id] = e.seq
    return last


@pytest.mark.parametrize("seed", [4, 5])
async def test_resting_orders_are_the_alive_orders_at_the_progress(
    backend: Backend, seed: int
) -> None:
    """What the API's replica of the book starts from: every alive order with its side,
    price, remaining and last event, in one read with the progress, while the archiver
    writes (so each read is the book at the `seq` it reports)."""
    writer, reader = await backend.open(), await backend.open()
    assert getattr(writer, "transactions", True), "a MongoDB test server without transactions"
    feed, rng = Feed(), random.Random(seed)
    expected: dict[int, dict[int, RestingOrder]] = {0: {}}
    batches: list[list[Event]] = []
    for _ in range(150):
        start = len(feed.log)
        random_commands(feed, rng, 3)
        batches.append(feed.log[start:])
        orders, _ = expected_state(feed.log)
        last = last_event_of(feed.log)
        expected[feed.log[-1].seq] = {
            o.order_id: RestingOrder(o.order_id, o.side, o.price, o.remaining, last[o.order_id])
            for o in orders.values()
            if o.alive
        }

    async def archive() -> None:
        for batch in batches:
            await writer.apply(batch)

    archiving = asyncio.create_task(archive())
    seen: set[int] = set()
    while not archiving.done():
        resting = await reader.resting()
        assert {o.order_id: o for o in resting.orders} == expected[resting.seq], resting.seq
        seen.add(resting.seq)
    await archiving
    final = await reader.resting()
    assert final.seq == feed.log[-1].seq
    assert {o.order_id: o for o in final.orders} == expected[final.seq]
    assert {o.order_id for o in final.orders} == set(feed.engine.orders)
    assert len(seen) > 5  # the reads did interleave with the writes
    assert (await reader.resting(1)) == (1 << 40, [])  # another instrument's: empty
