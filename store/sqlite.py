"""Embedded store adapter: SQLite in WAL mode, used when no MongoDB is configured.

All calls run on one dedicated thread with one connection, which keeps sqlite3's threading
rules simple; WAL lets the API processes read while the archiver writes.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from shared.config import ID_SPACE
from shared.events import Accepted, Cancelled, Event, Modified, QuantityChanged, Trade

from .derived import NS, ORDERS, TRADES, candle_folds, contiguous_after, cover, time_marks
from .port import (
    BookLevels,
    CandleRecord,
    OrderRecord,
    RestingOrder,
    RestingOrders,
    TradeRecord,
    id_range,
    id_window,
    instrument_number,
)

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id INTEGER PRIMARY KEY, side INTEGER NOT NULL, price INTEGER NOT NULL,
    quantity INTEGER NOT NULL, remaining INTEGER NOT NULL, traded INTEGER NOT NULL,
    cancelled INTEGER NOT NULL, alive INTEGER NOT NULL, client_order_id TEXT,
    created_ts INTEGER NOT NULL, updated_ts INTEGER NOT NULL, last_seq INTEGER NOT NULL,
    tif INTEGER NOT NULL DEFAULT 0, owner TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS orders_book ON orders (alive, side, price);
CREATE INDEX IF NOT EXISTS orders_owner ON orders (owner, order_id);
CREATE TABLE IF NOT EXISTS trades (
    trade_id INTEGER PRIMARY KEY, price INTEGER NOT NULL, quantity INTEGER NOT NULL,
    bid_order_id INTEGER NOT NULL, ask_order_id INTEGER NOT NULL,
    taker_side INTEGER NOT NULL, ts INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS trades_bid ON trades (bid_order_id);
CREATE INDEX IF NOT EXISTS trades_ask ON trades (ask_order_id);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS candles (
    instrument INTEGER NOT NULL, interval_s INTEGER NOT NULL, start INTEGER NOT NULL,
    open INTEGER NOT NULL, high INTEGER NOT NULL, low INTEGER NOT NULL,
    close INTEGER NOT NULL, volume INTEGER NOT NULL, count INTEGER NOT NULL,
    last_seq INTEGER NOT NULL, PRIMARY KEY (instrument, interval_s, start)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS time_index (
    instrument INTEGER NOT NULL, kind INTEGER NOT NULL, span INTEGER NOT NULL,
    start INTEGER NOT NULL, first_id INTEGER NOT NULL, last_id INTEGER NOT NULL,
    PRIMARY KEY (instrument, kind, span, start)) WITHOUT ROWID;
"""
# A candle merges a fold only if it has not seen the fold's trades (`last_seq` below them).
MERGE_CANDLE = """
INSERT INTO candles (instrument, interval_s, start, open, high, low, close, volume, count,
    last_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (instrument, interval_s, start) DO UPDATE SET
    high = max(high, excluded.high), low = min(low, excluded.low), close = excluded.close,
    volume = volume + excluded.volume, count = count + excluded.count,
    last_seq = excluded.last_seq
WHERE last_seq < ?
"""
MERGE_TIME_MARK = """
INSERT INTO time_index (instrument, kind, span, start, first_id, last_id)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (instrument, kind, span, start) DO UPDATE SET
    first_id = min(first_id, excluded.first_id), last_id = max(last_id, excluded.last_id)
"""
CANDLE_COLUMNS = "interval_s, start, open, high, low, close, volume, count, last_seq"
# Events folded per transaction when deriving what older stores lack (and in `apply`, at
# most this many beyond its own batch when a batch arrived ahead of the others).
CATCH_UP = 20_000
FOREVER = 1 << 62  # an end beyond every time and id

ORDER_COLUMNS = (
    "order_id, side, price, quantity, remaining, traded, cancelled, alive, client_order_id, "
    "created_ts, updated_ts, tif, owner"
)
TRADE_COLUMNS = "trade_id, price, quantity, bid_order_id, ask_order_id, taker_side, ts"

_encode = msgspec.msgpack.Encoder().encode
_decode_event = msgspec.msgpack.Decoder(Event).decode


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=10000")
        db.executescript(SCHEMA)
        self._db = db
        for number in self._instruments():
            while self._catch_up(number):
                pass

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    # -- writes -----------------------------------------------------------------------------

    async def apply(self, events: Sequence[Event]) -> None:
        if events:
            await self._run(self._apply, events)

    def _apply(self, events: Sequence[Event]) -> None:
        db = self.db
        with transaction(db, "IMMEDIATE"):
            for e in events:
                db.execute(
                    "INSERT OR IGNORE INTO events (seq, body) VALUES (?, ?)", (e.seq, _encode(e))
                )
                match e:
                    case Accepted():
                        db.execute(
                            f"INSERT OR IGNORE INTO orders ({ORDER_COLUMNS}, last_seq) "
                            "VALUES (?, ?, ?, ?, ?, 0, 0, 1, ?, ?, ?, ?, ?, ?)",
                            (e.order_id, e.side, e.price, e.quantity, e.quantity,
                             e.client_order_id, e.ts, e.ts, e.tif, e.owner, e.seq),
                        )  # fmt: skip
                    case Trade():
                        db.execute(
                            f"INSERT OR IGNORE INTO trades ({TRADE_COLUMNS}) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (e.seq, e.price, e.quantity, e.bid_order_id, e.ask_order_id,
                             e.taker_side, e.ts),
                        )  # fmt: skip
                        for order_id, remaining in (
                            (e.bid_order_id, e.bid_remaining),
                            (e.ask_order_id, e.ask_remaining),
                        ):
                            db.execute(
                                "UPDATE orders SET remaining = ?, traded = quantity - ?, "
                                "alive = ?, updated_ts = ?, last_seq = ? "
                                "WHERE order_id = ? AND last_seq < ?",
                                (remaining, remaining, int(remaining > 0), e.ts, e.seq,
                                 order_id, e.seq),
                            )  # fmt: skip
                    case Modified():
                        db.execute(
                            "UPDATE orders SET price = ?, updated_ts = ?, last_seq = ? "
                            "WHERE order_id = ? AND last_seq < ?",
                            (e.price, e.ts, e.seq, e.order_id, e.seq),
                        )
                    case QuantityChanged():
                        db.execute(
                            "UPDATE orders SET quantity = ?, remaining = ?, updated_ts = ?, "
                            "last_seq = ? WHERE order_id = ? AND last_seq < ?",
                            (e.quantity, e.remaining, e.ts, e.seq, e.order_id, e.seq),
                        )
                    case Cancelled():
                        db.execute(
                            "UPDATE orders SET remaining = 0, cancelled = ?, alive = 0, "
                            "updated_ts = ?, last_seq = ? WHERE order_id = ? AND last_seq < ?",
                            (e.quantity, e.ts, e.seq, e.order_id, e.seq),
                        )
            number = instrument_number(events[-1].seq)
            self._raise_meta(f"progress:{number}", events[-1].seq)
            self._derive(number, events)

    def _raise_meta(self, key: str, value: int) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
            (key, value),
        )

    def _meta(self, key: str, default: int) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else default

    def _derive(self, number: int, events: Sequence[Event]) -> None:
        """Fold into the candles and the time index the events that continue what was
        folded (`derived:N`, its own mark, so a store from before them catches up), then,
        if the progress is still ahead (a batch arrived before the one it follows), up to
        CATCH_UP events from the stored log."""
        mark = self._meta(f"derived:{number}", number * ID_SPACE)
        fresh = contiguous_after(mark, events)
        if fresh:
            self._fold(number, fresh)
            self._raise_meta(f"derived:{number}", fresh[-1].seq)
            mark = fresh[-1].seq
        if mark < self._progress(number):
            self._fold_stored(number, mark)

    def _fold_stored(self, number: int, mark: int) -> bool:
        """Fold up to CATCH_UP stored events after `mark`; whether any were folded."""
        rows = self.db.execute(
            "SELECT body FROM events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (mark, (number + 1) * ID_SPACE, CATCH_UP),
        ).fetchall()
        stored = contiguous_after(mark, [_decode_event(r[0]) for r in rows])
        if not stored:
            return False
        self._fold(number, stored)
        self._raise_meta(f"derived:{number}", stored[-1].seq)
        return True

    def _fold(self, number: int, events: Sequence[Event]) -> None:
        db = self.db
        trades = [e for e in events if type(e) is Trade]
        db.executemany(
            MERGE_CANDLE,
            [
                (number, f.interval, f.start, f.open, f.high, f.low, f.close, f.volume,
                 f.count, f.last_seq, f.first_seq)
                for f in candle_folds(trades)
            ],
        )  # fmt: skip
        db.executemany(
            MERGE_TIME_MARK,
            [
                (number, kind, span, start, low, high)
                for (kind, span, start), (low, high) in time_marks(events).items()
            ],
        )

    def _instruments(self) -> list[int]:
        rows = self.db.execute("SELECT key FROM meta WHERE key LIKE 'progress:%'").fetchall()
        return sorted(int(key.split(":")[1]) for (key,) in rows)

    def _catch_up(self, number: int) -> bool:
        """One transaction of deriving what an older store lacks; whether to go on."""
        with transaction(self.db, "IMMEDIATE"):
            mark = self._meta(f"derived:{number}", number * ID_SPACE)
            return mark < self._progress(number) and self._fold_stored(number, mark)

    # -- reads ------------------------------------------------------------------------------

    async def progress(self, instrument: int = 0) -> int:
        return await self._run(self._progress, instrument)

    def _progress(self, instrument: int) -> int:
        row = self.db.execute(
            "SELECT value FROM meta WHERE key = ?", (f"progress:{instrument}",)
        ).fetchone()
        return int(row[0]) if row else instrument * ID_SPACE

    async def get_order(self, order_id: int) -> OrderRecord | None:
        rows = await self._run(
            self._query, f"SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = ?", (order_id,)
        )
        return _order(rows[0]) if rows else None

    async def list_orders(
        self,
        *,
        alive: bool | None,
        side: int | None,
        limit: int,
        after: int | None,
        owner: str | None = None,
        instrument: int | None = None,
        before: int | None = None,
        since: int | None = None,
        until: int | None = None,
        descending: bool = False,
    ) -> list[OrderRecord]:
        where: list[str] = []
        args: list[int | str] = []
        # Which index serves a page: alive orders are the book, a few, so the book's index
        # (then a sort); otherwise an owner's orders by (owner, order_id), or every order by
        # the primary key, in the page's direction. A "+" keeps SQLite off an index: dead
        # orders are most rows, and an owner's alive ones are found faster in the book.
        if owner is not None:
            where.append("+owner = ?" if alive else "owner = ?")
            args.append(owner)
        if alive is not None:
            where.append("alive = ?" if alive else "+alive = ?")
            args.append(int(alive))
        if side is not None:
            where.append("side = ?")
            args.append(side)
        query = _Page("orders", "order_id", ORDER_COLUMNS, "created_ts", ORDERS, where, args)
        rows = await self._run(
            self._page, query, instrument, after, before, since, until, descending, limit
        )
        return [_order(r) for r in rows]

    async def list_trades(
        self,
        *,
        limit: int,
        after: int | None,
        order_id: int | None = None,
        instrument: int | None = None,
        before: int | None = None,
        since: int | None = None,
        until: int | None = None,
        descending: bool = False,
    ) -> list[TradeRecord]:
        where: list[str] = []
        args: list[int | str] = []
        if order_id is not None:
            where.append("(bid_order_id = ? OR ask_order_id = ?)")
            args += [order_id, order_id]
        query = _Page("trades", "trade_id", TRADE_COLUMNS, "ts", TRADES, where, args)
        rows = await self._run(
            self._page, query, instrument, after, before, since, until, descending, limit
        )
        return [TradeRecord(*r) for r in rows]

    def _page(
        self,
        query: _Page,
        instrument: int | None,
        after: int | None,
        before: int | None,
        since: int | None,
        until: int | None,
        descending: bool,
        limit: int,
    ) -> list[tuple[Any, ...]]:
        """One page, from one id range per instrument (ids of different instruments never
        interleave, so their ranges in id order give the rows in id order), each range
        narrowed by the time index when there is a time filter, and read by primary key."""
        db = self.db
        with transaction(db):  # one snapshot for the time index and the rows
            segments = self._segments(query.kind, instrument, after, before, since, until)
            where = [*query.where]
            args = [*query.args]
            if since is not None:
                where.append(f"{query.ts} >= ?")
                args.append(since)
            if until is not None:
                where.append(f"{query.ts} < ?")
                args.append(until)
            sql = (
                f"SELECT {query.columns} FROM {query.table} "
                f"WHERE {query.key} > ? AND {query.key} < ? "
                + "".join(f"AND {w} " for w in where)
                + f"ORDER BY {query.key} {'DESC' if descending else 'ASC'} LIMIT ?"
            )
            rows: list[tuple[Any, ...]] = []
            for low, high in reversed(segments) if descending else segments:
                rows += db.execute(sql, (low, high, *args, limit - len(rows))).fetchall()
                if len(rows) >= limit:
                    break
        return rows

    def _segments(
        self,
        kind: int,
        instrument: int | None,
        after: int | None,
        before: int | None,
        since: int | None,
        until: int | None,
    ) -> list[tuple[int, int]]:
        """Ascending (exclusive low, exclusive high) id ranges holding every match."""
        if since is None and until is None:
            return [id_window(instrument, after, before)]
        segments = []
        for number in self._instruments() if instrument is None else [instrument]:
            bounds = self._time_bounds(number, kind, since, until)
            if bounds is not None:
                low, high = id_window(number, after, before)
                low, high = max(low, bounds[0] - 1), min(high, bounds[1] + 1)
                if low + 1 < high:
                    segments.append((low, high))
        return segments

    def _time_bounds(
        self, number: int, kind: int, since: int | None, until: int | None
    ) -> tuple[int, int] | None:
        """The lowest and highest id (of `kind`) of the instrument's trades or orders stamped
        in [since, until) ns (None: there are none), from at most a few hundred time-index
        rows however long the window."""
        first_s = 0 if since is None else since // NS
        end_s = None if until is None else -(-until // NS)
        if end_s is not None and end_s <= first_s:
            return None
        ranges = cover(first_s, end_s)
        sql = " UNION ALL ".join(
            ["SELECT min(first_id), max(last_id) FROM time_index "
             "WHERE instrument = ? AND kind = ? AND span = ? AND start >= ? AND start < ?"]
            * len(ranges)
        )  # fmt: skip
        args: list[int] = []
        for span, start, end in ranges:
            args += [number, kind, span, start, FOREVER if end is None else end]
        found = [(lo, hi) for lo, hi in self.db.execute(sql, args).fetchall() if lo is not None]
        if not found:
            return None
        return min(lo for lo, _ in found), max(hi for _, hi in found)

    async def candles(
        self,
        *,
        instrument: int,
        interval: int,
        limit: int,
        since: int | None = None,
        until: int | None = None,
        newest: bool = False,
    ) -> list[CandleRecord]:
        sql = (
            f"SELECT {CANDLE_COLUMNS} FROM candles WHERE instrument = ? AND interval_s = ? "
            f"AND start >= ? AND start < ? ORDER BY start {'DESC' if newest else 'ASC'} LIMIT ?"
        )
        args = (instrument, interval, since or 0, FOREVER if until is None else until, limit)
        rows = await self._run(self._query, sql, args)
        records = [CandleRecord(*r) for r in rows]
        return records[::-1] if newest else records

    async def book(self, levels: int, instrument: int = 0) -> BookLevels:
        return await self._run(self._book, levels, instrument)

    def _book(self, levels: int, instrument: int) -> BookLevels:
        sql = (
            "SELECT price, SUM(remaining) FROM orders WHERE alive = 1 AND side = ? "
            "AND order_id > ? AND order_id <= ? GROUP BY price ORDER BY price {} LIMIT ?"
        )
        low, high = id_range(instrument, None)
        db = self.db
        with transaction(db):  # one read snapshot (WAL) for the progress and both sides
            seq = self._progress(instrument)
            bids = db.execute(sql.format("DESC"), (1, low, high, levels)).fetchall()
            asks = db.execute(sql.format("ASC"), (-1, low, high, levels)).fetchall()
        return BookLevels(seq, [(p, q) for p, q in bids], [(p, q) for p, q in asks])

    async def resting(self, instrument: int = 0) -> RestingOrders:
        return await self._run(self._resting, instrument)

    def _resting(self, instrument: int) -> RestingOrders:
        low, high = id_range(instrument, None)
        db = self.db
        with transaction(db):
            seq = self._progress(instrument)
            rows = db.execute(
                "SELECT order_id, side, price, remaining, last_seq FROM orders "
                "WHERE alive = 1 AND order_id > ? AND order_id <= ?",
                (low, high),
            ).fetchall()
        return RestingOrders(seq, [RestingOrder(*row) for row in rows])

    async def events(self, after: int, limit: int) -> list[Event]:
        rows = await self._run(
            self._query,
            "SELECT body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        )
        return [_decode_event(r[0]) for r in rows]

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self.db.execute(sql, args).fetchall()


@contextmanager
def transaction(db: sqlite3.Connection, mode: str = "") -> Iterator[None]:
    """BEGIN [mode] ... COMMIT, or ROLLBACK on any error (unless SQLite already rolled
    back by itself, as it does on IOERR or FULL: a second ROLLBACK would hide the cause)."""
    db.execute(f"BEGIN {mode}")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


@dataclass(frozen=True, slots=True)
class _Page:
    """A paged read: the table, its id and time columns, and its other filters."""

    table: str
    key: str
    columns: str
    ts: str
    kind: int  # its ids in the time index: TRADES or ORDERS
    where: list[str]
    args: list[int | str]


def _order(r: tuple[Any, ...]) -> OrderRecord:
    return OrderRecord(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], r[9], r[10], r[11], r[12]
    )
