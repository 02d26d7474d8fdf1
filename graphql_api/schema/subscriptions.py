"""Subscriptions: the periodic book, candles, and the feeds of `live/` (resumable trades,
the private order feed, the incremental book), rendered from the same views as the plain
WebSockets. A subscriber that falls too far behind sees its subscription complete; with
a cursor it resubscribes where it stopped."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TypeVar

import strawberry

from ..feed_requests import feed_request
from ..feed_views import (
    book_snapshot_view,
    level_change_view,
    order_event_view,
)
from ..hub import Hub, SlowConsumer
from ..requests import MAX_DEPTH
from ..views import book_view, candle_view, trade_view
from .feed_types import (
    BookSnapshotNode,
    LevelChangeNode,
    OrderBookUpdateNode,
    OrderEventNode,
    order_event_node,
)
from .resolvers import GraphQLInfo, _argument_errors, _caller, _requests, _service
from .types import CandleInterval, CandleNode, OrderBookNode, TradeNode

T = TypeVar("T")
DEFAULT_BOOK_DEPTH = 10


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def trades(
        self, info: GraphQLInfo, symbol: str | None = None, after: strawberry.ID | None = None
    ) -> AsyncGenerator[TradeNode, None]:
        """Every trade, or `symbol`'s only; with `after` (the last trade id you have; one
        per instrument, comma-separated) first every trade after it, then live ones, with
        no gap and no duplicate."""
        service = _service(info)
        with _argument_errors():
            request = feed_request(_requests(info), symbol, after)
        try:
            async with aclosing(service.live.trades(request)) as trades:
                async for trade in trades:
                    yield TradeNode.of(trade_view(service.settings, trade))
        except SlowConsumer:
            return

    @strawberry.subscription
    async def order_updates(
        self, info: GraphQLInfo, symbol: str | None = None, after: strawberry.ID | None = None
    ) -> AsyncGenerator[OrderEventNode, None]:
        """Every event about your orders (with API keys off: everyone's), each with its
        `seq`; with `after` (the last `seq` you have; one per instrument, comma-separated)
        first those after it, from the store, then live ones."""
        service = _service(info)
        with _argument_errors():
            request = feed_request(_requests(info), symbol, after)
        owner = _caller(info) if info.context["keys"].enabled else None
        settings = service.settings
        try:
            async with aclosing(service.live.order_updates(request, owner)) as updates:
                async for update in updates:
                    yield order_event_node(order_event_view(settings, update))
        except SlowConsumer:
            return

    @strawberry.subscription
    async def order_book(
        self, info: GraphQLInfo, depth: int = 5, symbol: str | None = None
    ) -> AsyncGenerator[OrderBookNode, None]:
        service = _service(info)
        with _argument_errors():
            instrument = _requests(info).instrument(symbol)
        depth = max(1, min(depth, MAX_DEPTH))
        async for book in _feed(service.book_feed(instrument)):
            yield OrderBookNode.of(book_view(instrument, book, depth))

    @strawberry.subscription
    async def order_book_updates(
        self, info: GraphQLInfo, depth: int = DEFAULT_BOOK_DEPTH, symbol: str | None = None
    ) -> AsyncGenerator[OrderBookUpdateNode, None]:
        """The top `depth` levels per side as an `OrderBookSnapshot`, then an
        `OrderBookLevelChange` per change to a level within them: its new total, or 0
        when it left (and then the level that entered from below), each with the `seq`
        of the event that caused it."""
        service = _service(info)
        with _argument_errors():
            query = _requests(info).book(depth, symbol)
        instrument = query.instrument
        try:
            async with service.live.book_updates(instrument, query.depth) as (snapshot, changes):
                yield BookSnapshotNode.of(book_snapshot_view(instrument, snapshot, query.depth))
                while True:
                    change = await changes.get()
                    yield LevelChangeNode.of(level_change_view(instrument, change))
        except SlowConsumer:
            return

    @strawberry.subscription
    async def candles(
        self, info: GraphQLInfo, interval: CandleInterval, symbol: str | None = None
    ) -> AsyncGenerator[CandleNode, None]:
        """The current candle, then every candle again each time trades change it, as the
        `candles` query would show it then (`ExchangeService.candle_updates`)."""
        service = _service(info)
        with _argument_errors():
            instrument = _requests(info).instrument(symbol)
        async for candle in service.candle_updates(instrument, interval.value):
            yield CandleNode.of(candle_view(instrument, candle))


async def _feed(hub: Hub[T]) -> AsyncGenerator[T, None]:
    """A hub's items until the subscriber is dropped for being too slow."""
    async with hub.subscribe() as sub:
        while True:
            try:
                yield await sub.get()
            except SlowConsumer:
                return
