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
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from shared.config import ID_SPACE
from shared.events import Accepted, Cancelled, Event, Modified, QuantityChanged, Trade

from .port import BookLevels, OrderRecord, TradeRecord, id_range, instrument_number

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id INTEGER PRIMARY KEY, side INTEGER NOT NULL, price INTEGER NOT NULL,
    quantity INTEGER NOT NULL, remaining INTEGER NOT NULL, traded INTEGER NOT NULL,
    cancelled INTEGER NOT NULL, alive INTEGER NOT NULL, client_order_id TEXT,
    created_ts INTEGER NOT NULL, updated_ts INTEGER NOT NULL, last_seq INTEGER NOT NULL,
    tif INTEGER NOT NULL DEFAULT 0, owner TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS orders_book ON orders (alive, side, price);
CREATE TABLE IF NOT EXISTS trades (
    trade_id INTEGER PRIMARY KEY, price INTEGER NOT NULL, quantity INTEGER NOT NULL,
    bid_order_id INTEGER NOT NULL, ask_order_id INTEGER NOT NULL,
    taker_side INTEGER NOT NULL, ts INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS trades_bid ON trades (bid_order_id);
CREATE INDEX IF NOT EXISTS trades_ask ON trades (ask_order_id);
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

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
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                (f"progress:{instrument_number(events[-1].seq)}", events[-1].seq),
            )

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
    ) -> list[OrderRecord]:
        where: list[str] = ["order_id > ?", "order_id <= ?"]
        args: list[int | str] = [*id_range(instrument, after)]
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if alive is not None:
            where.append("alive = ?")
            args.append(int(alive))
        if side is not None:
            where.append("side = ?")
            args.append(side)
        sql = (
            f"SELECT {ORDER_COLUMNS} FROM orders WHERE {' AND '.join(where)} "
            "ORDER BY order_id LIMIT ?"
        )
        rows = await self._run(self._query, sql, (*args, limit))
        return [_order(r) for r in rows]

    async def list_trades(
        self,
        *,
        limit: int,
        after: int | None,
        order_id: int | None = None,
        instrument: int | None = None,
    ) -> list[TradeRecord]:
        where = "trade_id > ? AND trade_id <= ?"
        args: tuple[int, ...] = id_range(instrument, after)
        if order_id is not None:
            where += " AND (bid_order_id = ? OR ask_order_id = ?)"
            args = (*args, order_id, order_id)
        sql = f"SELECT {TRADE_COLUMNS} FROM trades WHERE {where} ORDER BY trade_id LIMIT ?"
        rows = await self._run(self._query, sql, (*args, limit))
        return [TradeRecord(*r) for r in rows]

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


def _order(r: tuple[Any, ...]) -> OrderRecord:
    return OrderRecord(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], r[9], r[10], r[11], r[12]
    )
