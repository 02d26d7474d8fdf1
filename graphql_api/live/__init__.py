"""Live feeds beyond the periodic book: resumable trades, the private order feed and the
incremental book, over the engine gateway's event feed and the store."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import AbstractAsyncContextManager

from shared.config import Instrument
from store.port import BookLevels, Store

from ..feed_requests import FeedRequest
from ..hub import Subscriber
from ..ports import EngineGateway
from .book import LevelChange
from .books import BookFeeds
from .orders import OrderUpdate, OwnerRouter, order_updates
from .resume import Barrier
from .trades import TradeItem, trades

__all__ = ["LevelChange", "LiveFeeds", "OrderUpdate", "TradeItem"]


class LiveFeeds:
    def __init__(self, gateway: EngineGateway, store: Store, barrier: Barrier) -> None:
        self.gateway = gateway
        self.store = store
        self.barrier = barrier
        self.router = OwnerRouter(gateway, store, barrier)
        self.books = BookFeeds(gateway, store, barrier)

    def trades(self, request: FeedRequest) -> AsyncGenerator[TradeItem, None]:
        """Trades after the request's cursor (from the store, then live), or live ones."""
        return trades(request, self.gateway, self.store, self.barrier)

    def order_updates(
        self, request: FeedRequest, owner: str | None
    ) -> AsyncGenerator[OrderUpdate, None]:
        """`owner`'s order events (None: everyone's), resumed as `trades` is."""
        return order_updates(request, owner, self.gateway, self.store, self.barrier, self.router)

    def book_updates(
        self, instrument: Instrument, depth: int
    ) -> AbstractAsyncContextManager[tuple[BookLevels, Subscriber[LevelChange]]]:
        """A snapshot of the top `depth` levels, and every change to them from then on."""
        return self.books.subscribe(instrument, depth)
