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

from collections.abc import Sequence
from typing import Any

import msgspec
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.read_concern import ReadConcern

from shared.config import ID_SPACE
from shared.events import Accepted, Cancelled, Event, Modified, QuantityChanged, Trade

from .port import BookLevels, OrderRecord, TradeRecord, id_range, instrument_number

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
        self.transactions = False  # known once open: only replica sets (and mongos) have them

    async def open(self) -> None:
        await self._client.aconnect()
        hello = await self._client.admin.command("hello")
        self.transactions = "setName" in hello or hello.get("msg") == "isdbgrid"
        await self.orders.create_index(
            [("alive", ASCENDING), ("side", ASCENDING), ("price", ASCENDING)]
        )
        await self.trades.create_index("bid_order_id")
        await self.trades.create_index("ask_order_id")

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
        key = f"progress:{instrument_number(events[-1].seq)}"

        async def write(session: AsyncClientSession | None) -> None:
            await self.events_.bulk_write(log, ordered=False, session=session)
            if orders:
                await self.orders.bulk_write(orders, ordered=True, session=session)
            if trades:
                await self.trades.bulk_write(trades, ordered=False, session=session)
            await self.meta.update_one(
                {"_id": key}, {"$max": {"value": events[-1].seq}}, upsert=True, session=session
            )

        if not self.transactions:
            await write(None)
            return
        async with self._client.start_session() as session:
            # with_transaction retries on transient errors (two archivers colliding, say):
            # every write here is idempotent, so a retry is always safe.
            await session.with_transaction(write)

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
    ) -> list[OrderRecord]:
        low, high = id_range(instrument, after)
        query: dict[str, Any] = {"_id": {"$gt": low, "$lte": high}}
        if owner is not None:
            query["owner"] = owner
        if alive is not None:
            query["alive"] = alive
        if side is not None:
            query["side"] = side
        cursor = self.orders.find(query).sort("_id", ASCENDING).limit(limit)
        return [_order(doc) async for doc in cursor]

    async def list_trades(
        self,
        *,
        limit: int,
        after: int | None,
        order_id: int | None = None,
        instrument: int | None = None,
    ) -> list[TradeRecord]:
        low, high = id_range(instrument, after)
        query: dict[str, Any] = {"_id": {"$gt": low, "$lte": high}}
        if order_id is not None:
            query["$or"] = [{"bid_order_id": order_id}, {"ask_order_id": order_id}]
        cursor = self.trades.find(query).sort("_id", ASCENDING).limit(limit)
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
            async for d in cursor
        ]

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

    async def events(self, after: int, limit: int) -> list[Event]:
        cursor = self.events_.find({"_id": {"$gt": after}}).sort("_id", ASCENDING).limit(limit)
        return [_decode_event(doc["body"]) async for doc in cursor]


def _guarded(order_id: int, seq: int, update: Any) -> UpdateOne:
    """An update that applies only if the document has not seen this event or a later one."""
    return UpdateOne({"_id": order_id, "last_seq": {"$lt": seq}}, update)


def _order(doc: dict[str, Any]) -> OrderRecord:
    return OrderRecord(
        doc["_id"], doc["side"], doc["price"], doc["quantity"], doc["remaining"], doc["traded"],
        doc["cancelled"], doc["alive"], doc["client_order_id"], doc["created_ts"],
        doc["updated_ts"], doc.get("tif", 0), doc.get("owner", ""),
    )  # fmt: skip
