"""The read side of the SQLite adapter (`SqliteStore`): one dedicated thread and one
connection, and the queries over them (pages by id and time, candles, the book, the event
log). Apart from the writes (`store.sqlite`) because the two share no code but the
connection: the reads are paging and index choice, the writes folding and idempotence."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from shared.config import ID_SPACE
from shared.events import Event

from .derived import ORDERS, TRADES, cover_ns
from .port import (
    BookLevels,
    CandleRecord,
    OrderRecord,
    RestingOrder,
    RestingOrders,
    TradeRecord,
    id_range,
    id_window,
    narrowed,
)

T = TypeVar("T")

CANDLE_COLUMNS = "interval_s, start, open, high, low, close, volume, count, last_seq"
FOREVER = 1 << 62  # an end beyond every time and id
ORDER_COLUMNS = (
    "order_id, side, price, quantity, remaining, traded, cancelled, alive, client_order_id, "
    "created_ts, updated_ts, tif, owner"
)
# The book's index holds alive orders only (a partial index), so that an order filled or
# cancelled leaves it rather than moving to a random page of an ever-growing dead section:
# that move was most of the pages each archiver commit wrote. Named, since without
# statistics SQLite would rather range-scan every order of an instrument by primary key.
ALIVE_ORDERS = "orders INDEXED BY orders_alive"
TRADE_COLUMNS = "trade_id, price, quantity, bid_order_id, ask_order_id, taker_side, ts"

decode_event = msgspec.msgpack.Decoder(Event).decode


class SqliteReads:
    """The connection (opened by `SqliteStore.open`) and every read of the port."""

    def __init__(self, path: Path, blocking: bool = False) -> None:
        """`blocking`: run every call on the caller's thread, holding up its event loop
        meanwhile. For the archiver, whose loop has nothing to do while a batch is stored
        (its writes are serial anyway): it saves two thread hand-overs per batch. A
        service that serves requests keeps the dedicated thread."""
        self.path = path
        self.blocking = blocking
        self._db: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self.blocking:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    def _instruments(self) -> list[int]:
        rows = self.db.execute("SELECT key FROM meta WHERE key LIKE 'progress:%'").fetchall()
        return sorted(int(key.split(":")[1]) for (key,) in rows)

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
        table = "orders"
        if owner is not None:
            where.append("+owner = ?" if alive else "owner = ?")
            args.append(owner)
        if alive:
            table = ALIVE_ORDERS
            where.append("alive = 1")  # a literal: what the partial index is defined by
        elif alive is not None:
            where.append("+alive = 0")
        if side is not None:
            where.append("side = ?")
            args.append(side)
        query = _Page(table, "order_id", ORDER_COLUMNS, "created_ts", ORDERS, where, args)
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
            stamped = self._time_bounds(number, kind, since, until)
            window = None if stamped is None else narrowed(number, after, before, stamped)
            if window is not None:
                segments.append(window)
        return segments

    def _time_bounds(
        self, number: int, kind: int, since: int | None, until: int | None
    ) -> tuple[int, int] | None:
        """The lowest and highest id (of `kind`) of the instrument's trades or orders stamped
        in [since, until) ns (None: there are none), from at most a few hundred time-index
        rows however long the window."""
        ranges = cover_ns(since, until)
        if not ranges:
            return None
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
            f"SELECT price, SUM(remaining) FROM {ALIVE_ORDERS} WHERE alive = 1 AND side = ? "
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
                f"SELECT order_id, side, price, remaining, last_seq FROM {ALIVE_ORDERS} "
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
        return [decode_event(r[0]) for r in rows]

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
