"""MongoDB store adapter, on PyMongo's native async client (`AsyncMongoClient`).

Documents use the same idempotent, order-tolerant writes as the SQLite adapter: inserts are
`$setOnInsert` upserts keyed by id, updates are guarded by `last_seq < seq` and set absolute
values, and progress only moves forward (`$max`). The orders bulk write is ordered, which
keeps an order's insert ahead of its updates.

On a replica set (what docker-compose runs, even with one node) each batch is written in
one transaction with its progress, and the book is read in one snapshot transaction, so a
reader sees whole batches only, as with SQLite. A standalone server has no transactions:
there a batch lands write by write, and `book()`'s `seq` is only a lower bound.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msgspec
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.read_concern import ReadConcern

from shared.config import ID_SPACE
from shared.events import Accepted, Cancelled, Event, Modified, QuantityChanged, Trade

from .derived import (
    NS,
    ORDERS,
    TRADES,
    CandleFold,
    candle_folds,
    contiguous_after,
    cover,
    time_marks,
)
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

CATCH_UP = 20_000  # as in the SQLite adapter
FOREVER = 1 << 62

T = TypeVar("T")
_encode = msgspec.msgpack.Encoder().encode
_decode_event = msgspec.msgpack.Decoder(Event).decode


class MongoStore:
    def __init__(self, url: str, database: str) -> None:
        self._client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
        db = self._client[database]
        self.orders = db["orders"]
        self.trades = db["trades"]
        self.events_ = db["events"]
        self.meta = db["meta"]
        self.candles_ = db["candles"]
        self.time_index = db["time_index"]
        self.transactions = False  # known once open: only replica sets (and mongos) have them

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
        stored = contiguous_after(mark, [_decode_event(doc["body"]) async for doc in cursor])
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

    async def progress(self, instrument: int = 0) -> int:
        return await self._progress(instrument, None)

    async def _progress(self, instrument: int, session: AsyncClientSession | None) -> int:
        doc = await self.meta.find_one({"_id": f"progress:{instrument}"}, session=session)
        return int(doc["value"]) if doc else instrument * ID_SPACE

    async def get_order(self, order_id: int) -> OrderRecord | None:
        doc = await self.orders.find_one({"_id": order_id})
        return _order(doc) if doc else None

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
        query: dict[str, Any] = {}
        if owner is not None:
            query["owner"] = owner
        if alive is not None:
            query["alive"] = alive
        if side is not None:
            query["side"] = side
        _time_filter(query, "created_ts", since, until)
        docs = await self._page(
            self.orders, ORDERS, query, instrument, after, before, since, until, descending, limit
        )
        return [_order(doc) for doc in docs]

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
        query: dict[str, Any] = {}
        if order_id is not None:
            query["$or"] = [{"bid_order_id": order_id}, {"ask_order_id": order_id}]
        _time_filter(query, "ts", since, until)
        docs = await self._page(
            self.trades, TRADES, query, instrument, after, before, since, until, descending, limit
        )
        return [
            TradeRecord(
                d["_id"],
                d["price"],
                d["quantity"],
                d["bid_order_id"],
                d["ask_order_id"],
                d["taker_side"],
                d["ts"],
            )
            for d in docs
        ]

    async def _page(
        self,
        collection: AsyncCollection[dict[str, Any]],
        kind: int,
        query: dict[str, Any],
        instrument: int | None,
        after: int | None,
        before: int | None,
        since: int | None,
        until: int | None,
        descending: bool,
        limit: int,
    ) -> list[dict[str, Any]]:
        """As the SQLite adapter's: one `_id` range per instrument, narrowed by the time
        index, read by `_id` in the page's direction."""
        segments = await self._segments(kind, instrument, after, before, since, until)
        docs: list[dict[str, Any]] = []
        for low, high in reversed(segments) if descending else segments:
            cursor = (
                collection.find({**query, "_id": {"$gt": low, "$lt": high}})
                .sort("_id", DESCENDING if descending else ASCENDING)
                .limit(limit - len(docs))
            )
            docs += [doc async for doc in cursor]
            if len(docs) >= limit:
                break
        return docs

    async def _segments(
        self,
        kind: int,
        instrument: int | None,
        after: int | None,
        before: int | None,
        since: int | None,
        until: int | None,
    ) -> list[tuple[int, int]]:
        if since is None and until is None:
            return [id_window(instrument, after, before)]
        if instrument is None:
            numbers = sorted(
                [
                    int(doc["_id"].split(":")[1])
                    async for doc in self.meta.find({"_id": {"$regex": "^progress:"}})
                ]
            )
        else:
            numbers = [instrument]
        segments = []
        for number in numbers:
            bounds = await self._time_bounds(number, kind, since, until)
            if bounds is not None:
                low, high = id_window(number, after, before)
                low, high = max(low, bounds[0] - 1), min(high, bounds[1] + 1)
                if low + 1 < high:
                    segments.append((low, high))
        return segments

    async def _time_bounds(
        self, number: int, kind: int, since: int | None, until: int | None
    ) -> tuple[int, int] | None:
        first_s = 0 if since is None else since // NS
        end_s = None if until is None else -(-until // NS)
        if end_s is not None and end_s <= first_s:
            return None
        ranges = [
            {"sp": span, "s": {"$gte": start, "$lt": FOREVER if end is None else end}}
            for span, start, end in cover(first_s, end_s)
        ]
        pipeline: list[dict[str, Any]] = [
            {"$match": {"i": number, "k": kind, "$or": ranges}},
            {"$group": {"_id": None, "low": {"$min": "$first"}, "high": {"$max": "$last"}}},
        ]
        cursor = await self.time_index.aggregate(pipeline)
        found = [doc async for doc in cursor]
        return (found[0]["low"], found[0]["high"]) if found else None

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
        query = {
            "i": instrument,
            "iv": interval,
            "s": {"$gte": since or 0, "$lt": FOREVER if until is None else until},
        }
        cursor = (
            self.candles_.find(query).sort("s", DESCENDING if newest else ASCENDING).limit(limit)
        )
        records = [
            CandleRecord(
                d["iv"], d["s"], d["open"], d["high"], d["low"], d["close"], d["volume"],
                d["count"], d["last_seq"],
            )
            async for d in cursor
        ]  # fmt: skip
        return records[::-1] if newest else records

    async def book(self, levels: int, instrument: int = 0) -> BookLevels:
        if not self.transactions:
            return await self._book(levels, instrument, None)  # seq first: a lower bound
        async with (
            self._client.start_session() as session,
            await session.start_transaction(read_concern=ReadConcern("snapshot")),
        ):
            return await self._book(levels, instrument, session)

    async def _book(
        self, levels: int, instrument: int, session: AsyncClientSession | None
    ) -> BookLevels:
        seq = await self._progress(instrument, session)
        low, high = id_range(instrument, None)

        async def side(side: int, direction: int) -> list[tuple[int, int]]:
            pipeline: list[dict[str, Any]] = [
                {"$match": {"alive": True, "side": side, "_id": {"$gt": low, "$lte": high}}},
                {"$group": {"_id": "$price", "quantity": {"$sum": "$remaining"}}},
                {"$sort": {"_id": direction}},
                {"$limit": levels},
            ]
            cursor = await self.orders.aggregate(pipeline, session=session)
            return [(d["_id"], d["quantity"]) async for d in cursor]

        return BookLevels(seq, await side(1, DESCENDING), await side(-1, ASCENDING))

    async def resting(self, instrument: int = 0) -> RestingOrders:
        if not self.transactions:
            return await self._resting(instrument, None)  # seq first: a lower bound
        async with (
            self._client.start_session() as session,
            await session.start_transaction(read_concern=ReadConcern("snapshot")),
        ):
            return await self._resting(instrument, session)

    async def _resting(self, instrument: int, session: AsyncClientSession | None) -> RestingOrders:
        seq = await self._progress(instrument, session)
        low, high = id_range(instrument, None)
        cursor = self.orders.find(
            {"alive": True, "_id": {"$gt": low, "$lte": high}},
            {"side": 1, "price": 1, "remaining": 1, "last_seq": 1},
            session=session,
        )
        orders = [
            RestingOrder(d["_id"], d["side"], d["price"], d["remaining"], d["last_seq"])
            async for d in cursor
        ]
        return RestingOrders(seq, orders)

    async def events(self, after: int, limit: int) -> list[Event]:
        cursor = self.events_.find({"_id": {"$gt": after}}).sort("_id", ASCENDING).limit(limit)
        return [_decode_event(doc["body"]) async for doc in cursor]


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


def _time_filter(query: dict[str, Any], field: str, since: int | None, until: int | None) -> None:
    bounds: dict[str, int] = {}
    if since is not None:
        bounds["$gte"] = since
    if until is not None:
        bounds["$lt"] = until
    if bounds:
        query[field] = bounds


def _guarded(order_id: int, seq: int, update: Any) -> UpdateOne:
    """An update that applies only if the document has not seen this event or a later one."""
    return UpdateOne({"_id": order_id, "last_seq": {"$lt": seq}}, update)


def _order(doc: dict[str, Any]) -> OrderRecord:
    return OrderRecord(
        doc["_id"], doc["side"], doc["price"], doc["quantity"], doc["remaining"], doc["traded"],
        doc["cancelled"], doc["alive"], doc["client_order_id"], doc["created_ts"],
        doc["updated_ts"], doc.get("tif", 0), doc.get("owner", ""),
    )  # fmt: skip
