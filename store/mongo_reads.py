"""The read side of the MongoDB adapter (`MongoStore`): the client and its collections, and
every query of the port (pages by id and time, candles, the book, the event log). Apart from
the writes (`store.mongo`) because the two share nothing but the collections: the reads are
paging and snapshots, the writes idempotent bulk upserts and folding."""

from __future__ import annotations

from typing import Any

import msgspec
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.read_concern import ReadConcern

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

FOREVER = 1 << 62
decode_event = msgspec.msgpack.Decoder(Event).decode


class MongoReads:
    """The client, the collections, and every read of the port; `MongoStore` opens them."""

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
            stamped = await self._time_bounds(number, kind, since, until)
            window = None if stamped is None else narrowed(number, after, before, stamped)
            if window is not None:
                segments.append(window)
        return segments

    async def _time_bounds(
        self, number: int, kind: int, since: int | None, until: int | None
    ) -> tuple[int, int] | None:
        buckets = cover_ns(since, until)
        if not buckets:
            return None
        ranges = [
            {"sp": span, "s": {"$gte": start, "$lt": FOREVER if end is None else end}}
            for span, start, end in buckets
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
        return [decode_event(doc["body"]) async for doc in cursor]


def _time_filter(query: dict[str, Any], field: str, since: int | None, until: int | None) -> None:
    bounds: dict[str, int] = {}
    if since is not None:
        bounds["$gte"] = since
    if until is not None:
        bounds["$lt"] = until
    if bounds:
        query[field] = bounds


def _order(doc: dict[str, Any]) -> OrderRecord:
    return OrderRecord(
        doc["_id"], doc["side"], doc["price"], doc["quantity"], doc["remaining"], doc["traded"],
        doc["cancelled"], doc["alive"], doc["client_order_id"], doc["created_ts"],
        doc["updated_ts"], doc.get("tif", 0), doc.get("owner", ""),
    )  # fmt: skip
