"""MongoDB store adapter, on PyMongo's native async client (`AsyncMongoClient`).

Documents use the same idempotent, order-tolerant writes as the SQLite adapter: inserts are
`$setOnInsert` upserts keyed by id, updates are guarded by `last_seq < seq` and set absolute
values, and progress only moves forward (`$max`). The orders bulk write is ordered, which
keeps an order's insert ahead of its updates.

On a replica set (what docker-compose runs, even with one node) each batch is written in
one transaction with its progress, and the book is read in one snapshot transaction, so a
reader sees whole batches only, as with SQLite. A standalone server has no transactions:
there a batch lands write by write, and `book()`'s `seq` is only a lower bound.

This module holds the writes (events, and the candles and time index derived from them);
the client, the collections and the reads are `store.mongo_reads`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgspec
from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession

from shared.config import ID_SPACE
from shared.events import Accepted, Cancelled, Event, Modified, QuantityChanged, Trade

from .derived import CandleFold, candle_folds, contiguous_after, time_marks
from .mongo_reads import MongoReads, decode_event
from .port import instrument_number

CATCH_UP = 20_000  # as in the SQLite adapter

T = TypeVar("T")
_encode = msgspec.msgpack.Encoder().encode


class MongoStore(MongoReads):
    """The adapter: opens the client (indexes, then catching up what an older store did not
    derive) and writes event batches; reads as `MongoReads`."""

    async def open(self) -> None:
        await self._client.aconnect()
        hello = await self._client.admin.command("hello")
        self.transactions = "setName" in hello or hello.get("msg") == "isdbgrid"
        await self.orders.create_index(
            [("alive", ASCENDING), ("side", ASCENDING), ("price", ASCENDING)]
        )
        await self.orders.create_index([("owner", ASCENDING), ("_id", ASCENDING)])
        await self.trades.create_index("bid_order_id")
        await self.trades.create_index("ask_order_id")
        await self.candles_.create_index(
            [("i", ASCENDING), ("iv", ASCENDING), ("s", ASCENDING)], unique=True
        )
        await self.time_index.create_index(
            [("i", ASCENDING), ("k", ASCENDING), ("sp", ASCENDING), ("s", ASCENDING)],
            unique=True,
        )
        async for doc in self.meta.find({"_id": {"$regex": "^progress:"}}):
            number = int(doc["_id"].split(":")[1])
            await self._catch_up_all(number)

    async def close(self) -> None:
        await self._client.close()

    async def apply(self, events: Sequence[Event]) -> None:
        if not events:
            return
        orders: list[UpdateOne] = []
        trades: list[UpdateOne] = []
        log: list[UpdateOne] = []
        for e in events:
            log.append(
                UpdateOne({"_id": e.seq}, {"$setOnInsert": {"body": _encode(e)}}, upsert=True)
            )
            match e:
                case Accepted():
                    doc = {
                        "side": e.side, "price": e.price, "quantity": e.quantity,
                        "remaining": e.quantity, "traded": 0, "cancelled": 0, "alive": True,
                        "client_order_id": e.client_order_id, "tif": e.tif, "owner": e.owner,
                        "created_ts": e.ts,
                        "updated_ts": e.ts, "last_seq": e.seq,
                    }  # fmt: skip
                    orders.append(
                        UpdateOne({"_id": e.order_id}, {"$setOnInsert": doc}, upsert=True)
                    )
                case Trade():
                    doc = {
                        "price": e.price, "quantity": e.quantity, "bid_order_id": e.bid_order_id,
                        "ask_order_id": e.ask_order_id, "taker_side": e.taker_side, "ts": e.ts,
                    }  # fmt: skip
                    trades.append(UpdateOne({"_id": e.seq}, {"$setOnInsert": doc}, upsert=True))
                    for order_id, remaining in (
                        (e.bid_order_id, e.bid_remaining),
                        (e.ask_order_id, e.ask_remaining),
                    ):
                        orders.append(
                            _guarded(
                                order_id,
                                e.seq,
                                [
                                    {
                                        "$set": {
                                            "remaining": remaining,
                                            "traded": {"$subtract": ["$quantity", remaining]},
                                            "alive": remaining > 0,
                                            "updated_ts": e.ts,
                                            "last_seq": e.seq,
                                        }
                                    }
                                ],
                            )
                        )
                case Modified():
                    orders.append(
                        _guarded(
                            e.order_id,
                            e.seq,
                            {"$set": {"price": e.price, "updated_ts": e.ts, "last_seq": e.seq}},
                        )
                    )
                case QuantityChanged():
                    orders.append(
                        _guarded(
                            e.order_id,
                            e.seq,
                            {
                                "$set": {
                                    "quantity": e.quantity,
                                    "remaining": e.remaining,
                                    "updated_ts": e.ts,
                                    "last_seq": e.seq,
                                }
                            },
                        )
                    )
                case Cancelled():
                    orders.append(
                        _guarded(
                            e.order_id,
                            e.seq,
                            {
                                "$set": {
                                    "remaining": 0,
                                    "cancelled": e.quantity,
                                    "alive": False,
                                    "updated_ts": e.ts,
                                    "last_seq": e.seq,
                                }
                            },
                        )
                    )
        number = instrument_number(events[-1].seq)
        last = events[-1].seq

        async def write(session: AsyncClientSession | None) -> None:
            progress, mark = await self._marks(number, session)
            await self.events_.bulk_write(log, ordered=False, session=session)
            if orders:
                await self.orders.bulk_write(orders, ordered=True, session=session)
            if trades:
                await self.trades.bulk_write(trades, ordered=False, session=session)
            # The candles and the time index, as the SQLite adapter derives them: fold what
            # continues the `derived:N` mark, then catch up from the stored log if the
            # progress is still ahead (a batch was stored before the one it follows).
            fresh = contiguous_after(mark, events)
            if fresh:
                await self._fold(number, fresh, session)
                mark = fresh[-1].seq
            raised = [UpdateOne({"_id": f"progress:{number}"}, {"$max": {"value": last}}, True)]
            if fresh:
                raised.append(
                    UpdateOne({"_id": f"derived:{number}"}, {"$max": {"value": mark}}, True)
                )
            await self.meta.bulk_write(raised, ordered=False, session=session)
            if mark < max(progress, last):
                await self._fold_stored(number, mark, session)

        await self._in_transaction(write)

    async def _marks(self, number: int, session: AsyncClientSession | None) -> tuple[int, int]:
        """The instrument's progress and derived mark, in one read."""
        keys = {f"progress:{number}": 0, f"derived:{number}": 1}
        found = [number * ID_SPACE] * 2
        async for doc in self.meta.find({"_id": {"$in": list(keys)}}, session=session):
            found[keys[doc["_id"]]] = int(doc["value"])
        return found[0], found[1]

    async def _in_transaction(self, work: Callable[[AsyncClientSession | None], Awaitable[T]]) -> T:
        if not self.transactions:
            return await work(None)
        async with self._client.start_session() as session:
            # with_transaction retries on transient errors (two archivers colliding, say):
            # every write here is idempotent, so a retry is always safe.
            return await session.with_transaction(work)

    async def _raise_meta(self, key: str, value: int, session: AsyncClientSession | None) -> None:
        await self.meta.update_one(
            {"_id": key}, {"$max": {"value": value}}, upsert=True, session=session
        )

    async def _fold_stored(
        self, number: int, mark: int, session: AsyncClientSession | None
    ) -> bool:
        cursor = (
            self.events_.find(
                {"_id": {"$gt": mark, "$lte": (number + 1) * ID_SPACE}}, session=session
            )
            .sort("_id", ASCENDING)
            .limit(CATCH_UP)
        )
        stored = contiguous_after(mark, [decode_event(doc["body"]) async for doc in cursor])
        if not stored:
            return False
        await self._fold(number, stored, session)
        await self._raise_meta(f"derived:{number}", stored[-1].seq, session)
        return True

    async def _catch_up_all(self, number: int) -> None:
        """Derive what an older store lacks, one transaction at a time."""

        async def step(session: AsyncClientSession | None) -> bool:
            return await self._catch_up(number, session)

        while await self._in_transaction(step):
            pass

    async def _catch_up(self, number: int, session: AsyncClientSession | None) -> bool:
        progress, mark = await self._marks(number, session)
        return mark < progress and await self._fold_stored(number, mark, session)

    async def _fold(
        self, number: int, events: Sequence[Event], session: AsyncClientSession | None
    ) -> None:
        """Candles and time index; without transactions one candle merge per trade, each
        guarded by the candle's `last_seq` (see `candle_folds`)."""
        trades = [e for e in events if type(e) is Trade]
        folds = candle_folds(trades, one_per_trade=not self.transactions)
        if folds:
            await self.candles_.bulk_write(
                [op for f in folds for op in _merge_candle(number, f)],
                ordered=True,
                session=session,
            )
        marks = [
            UpdateOne(
                {"_id": f"{number}:{kind}:{span}:{start}"},
                {
                    "$setOnInsert": {"i": number, "k": kind, "sp": span, "s": start},
                    "$min": {"first": low},
                    "$max": {"last": high},
                },
                upsert=True,
            )
            for (kind, span, start), (low, high) in time_marks(events).items()
        ]
        if marks:
            await self.time_index.bulk_write(marks, ordered=False, session=session)


def _merge_candle(number: int, f: CandleFold) -> list[UpdateOne]:
    """Create the candle if missing (empty, opening at the fold's first price), then merge
    the fold unless the candle has seen its trades."""
    key = f"{number}:{f.interval}:{f.start}"
    empty = {
        "i": number, "iv": f.interval, "s": f.start, "open": f.open, "high": f.high,
        "low": f.low, "close": f.close, "volume": 0, "count": 0, "last_seq": 0,
    }  # fmt: skip
    return [
        UpdateOne({"_id": key}, {"$setOnInsert": empty}, upsert=True),
        UpdateOne(
            {"_id": key, "last_seq": {"$lt": f.first_seq}},
            {
                "$max": {"high": f.high},
                "$min": {"low": f.low},
                "$set": {"close": f.close, "last_seq": f.last_seq},
                "$inc": {"volume": f.volume, "count": f.count},
            },
        ),
    ]


def _guarded(order_id: int, seq: int, update: Any) -> UpdateOne:
    """An update that applies only if the document has not seen this event or a later one."""
    return UpdateOne({"_id": order_id, "last_seq": {"$lt": seq}}, update)
