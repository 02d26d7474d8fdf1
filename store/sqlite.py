"""Embedded store adapter: SQLite in WAL mode, used when no MongoDB is configured.

All calls run on one thread with one connection, which keeps sqlite3's threading rules
simple: a dedicated one in the API, the event loop's own in the archiver (`blocking`); WAL
lets the API processes read while the archiver writes. This module holds
the schema and the writes (events, and the candles and time index derived from them); the
connection and the reads are `store.sqlite_reads`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import msgspec

from shared.config import ID_SPACE
from shared.events import Accepted, Cancelled, Event, Modified, QuantityChanged, Trade

from .derived import candle_folds, contiguous_after, time_marks
from .port import instrument_number
from .sqlite_reads import ORDER_COLUMNS, TRADE_COLUMNS, SqliteReads, decode_event, transaction

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id INTEGER PRIMARY KEY, side INTEGER NOT NULL, price INTEGER NOT NULL,
    quantity INTEGER NOT NULL, remaining INTEGER NOT NULL, traded INTEGER NOT NULL,
    cancelled INTEGER NOT NULL, alive INTEGER NOT NULL, client_order_id TEXT,
    created_ts INTEGER NOT NULL, updated_ts INTEGER NOT NULL, last_seq INTEGER NOT NULL,
    tif INTEGER NOT NULL DEFAULT 0, owner TEXT NOT NULL DEFAULT '');
DROP INDEX IF EXISTS orders_book;
CREATE INDEX IF NOT EXISTS orders_alive ON orders (side, price) WHERE alive = 1;
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
INSERT_EVENT = "INSERT OR IGNORE INTO events (seq, body) VALUES (?, ?)"
# An order accepted in the batch goes in once, in its state after the batch: alive (and in
# the book's index) only if it still is. A row already stored from an earlier, overlapping
# batch takes that state only over an older one (`last_seq`), as the updates below do.
_UPSERT_ORDER = """
INSERT INTO orders ({columns}, last_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, {client_order_id},
    ?, ?, ?, ?, ?)
ON CONFLICT (order_id) DO UPDATE SET price = excluded.price, quantity = excluded.quantity,
    remaining = excluded.remaining, traded = excluded.traded, cancelled = excluded.cancelled,
    alive = excluded.alive, updated_ts = excluded.updated_ts, last_seq = excluded.last_seq
WHERE last_seq < excluded.last_seq
"""
UPSERT_ORDER = _UPSERT_ORDER.format(columns=ORDER_COLUMNS, client_order_id="?")
# The same for orders without a client order id, whose NULL is written in the statement:
# a None parameter costs sqlite3 a failed adapter lookup (an AttributeError raised and
# cleared) per row, as a bytes one does (the events' bodies go as bytearray).
UPSERT_ORDER_ANONYMOUS = _UPSERT_ORDER.format(columns=ORDER_COLUMNS, client_order_id="NULL")
INSERT_TRADE = f"INSERT OR IGNORE INTO trades ({TRADE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
# Order updates, each applied only over an older state (`last_seq`). A fill that leaves the
# order open does not name `alive` (it stays 1), so the partial book index is not touched.
FILL = (
    "UPDATE orders SET remaining = ?, traded = quantity - ?, updated_ts = ?, last_seq = ? "
    "WHERE order_id = ? AND last_seq < ?"
)
FILL_LAST = (
    "UPDATE orders SET remaining = 0, traded = quantity, alive = 0, updated_ts = ?, "
    "last_seq = ? WHERE order_id = ? AND last_seq < ?"
)
MODIFY = (
    "UPDATE orders SET price = ?, updated_ts = ?, last_seq = ? WHERE order_id = ? AND last_seq < ?"
)
RESIZE = (
    "UPDATE orders SET quantity = ?, remaining = ?, updated_ts = ?, last_seq = ? "
    "WHERE order_id = ? AND last_seq < ?"
)
CANCEL = (
    "UPDATE orders SET remaining = 0, cancelled = ?, alive = 0, updated_ts = ?, last_seq = ? "
    "WHERE order_id = ? AND last_seq < ?"
)
# Events folded per transaction when deriving what older stores lack (and in `apply`, at
# most this many beyond its own batch when a batch arrived ahead of the others).
CATCH_UP = 20_000

_encode = msgspec.msgpack.Encoder().encode
# Positions in an `UPSERT_ORDER` row of what later events of the batch change.
_PRICE, _QUANTITY, _REMAINING, _TRADED, _CANCELLED, _ALIVE = 2, 3, 4, 5, 6, 7
_CLIENT_ORDER_ID, _UPDATED_TS, _LAST_SEQ = 8, 10, 13


class SqliteStore(SqliteReads):
    """The adapter: opens the connection (the schema, then catching up what an older store
    did not derive), writes event batches; reads as `SqliteReads`."""

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

    # -- writes -----------------------------------------------------------------------------

    async def apply(self, events: Sequence[Event]) -> None:
        if events:
            await self._run(self._apply, events)

    def _apply(self, events: Sequence[Event]) -> None:
        """The batch's rows in a few statements. The events and the trades are inserts keyed
        by their own ids, one `executemany` each. An order accepted in the batch is carried
        to its state after the batch here, row values as the updates below would set them,
        and written once (`UPSERT_ORDER`): most updates are the fills of a taker accepted
        in the same command. The updates of older orders run one by one in sequence order,
        after the acceptances, as their `last_seq` guard requires."""
        accepted: dict[int, list[Any]] = {}
        trades: list[tuple[int, ...]] = []
        updates: list[tuple[str, tuple[int, ...]]] = []
        for e in events:
            match e:
                case Trade():
                    trades.append((e.seq, e.price, e.quantity, e.bid_order_id,
                                   e.ask_order_id, e.taker_side, e.ts))  # fmt: skip
                    for order_id, left in (
                        (e.bid_order_id, e.bid_remaining),
                        (e.ask_order_id, e.ask_remaining),
                    ):
                        row = accepted.get(order_id)
                        if row is not None:
                            row[_REMAINING], row[_TRADED] = left, row[_QUANTITY] - left
                            if not left:
                                row[_ALIVE] = 0
                            row[_UPDATED_TS], row[_LAST_SEQ] = e.ts, e.seq
                        elif left:
                            updates.append((FILL, (left, left, e.ts, e.seq, order_id, e.seq)))
                        else:
                            updates.append((FILL_LAST, (e.ts, e.seq, order_id, e.seq)))
                case Accepted():
                    accepted[e.order_id] = [e.order_id, e.side, e.price, e.quantity, e.quantity,
                                            0, 0, 1, e.client_order_id, e.ts, e.ts, e.tif,
                                            e.owner, e.seq]  # fmt: skip
                case Cancelled():
                    row = accepted.get(e.order_id)
                    if row is None:
                        updates.append((CANCEL, (e.quantity, e.ts, e.seq, e.order_id, e.seq)))
                    else:
                        row[_REMAINING], row[_CANCELLED], row[_ALIVE] = 0, e.quantity, 0
                        row[_UPDATED_TS], row[_LAST_SEQ] = e.ts, e.seq
                case Modified():
                    row = accepted.get(e.order_id)
                    if row is None:
                        updates.append((MODIFY, (e.price, e.ts, e.seq, e.order_id, e.seq)))
                    else:
                        row[_PRICE], row[_UPDATED_TS], row[_LAST_SEQ] = e.price, e.ts, e.seq
                case QuantityChanged():
                    row = accepted.get(e.order_id)
                    if row is None:
                        updates.append(
                            (RESIZE, (e.quantity, e.remaining, e.ts, e.seq, e.order_id, e.seq))
                        )
                    else:
                        row[_QUANTITY], row[_REMAINING] = e.quantity, e.remaining
                        row[_UPDATED_TS], row[_LAST_SEQ] = e.ts, e.seq
        db = self.db
        cursor = db.cursor()
        with transaction(db, "IMMEDIATE"):
            cursor.executemany(INSERT_EVENT, [(e.seq, bytearray(_encode(e))) for e in events])
            if accepted:
                rows = accepted.values()
                named = [row for row in rows if row[_CLIENT_ORDER_ID] is not None]
                if named:
                    cursor.executemany(UPSERT_ORDER, named)
                if len(named) < len(rows):
                    cursor.executemany(
                        UPSERT_ORDER_ANONYMOUS,
                        [row[:_CLIENT_ORDER_ID] + row[_CLIENT_ORDER_ID + 1 :] for row in rows
                         if row[_CLIENT_ORDER_ID] is None],
                    )  # fmt: skip
            if trades:
                cursor.executemany(INSERT_TRADE, trades)
            for sql, args in updates:
                cursor.execute(sql, args)
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
        stored = contiguous_after(mark, [decode_event(r[0]) for r in rows])
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

    def _catch_up(self, number: int) -> bool:
        """One transaction of deriving what an older store lacks; whether to go on."""
        with transaction(self.db, "IMMEDIATE"):
            mark = self._meta(f"derived:{number}", number * ID_SPACE)
            return mark < self._progress(number) and self._fold_stored(number, mark)
