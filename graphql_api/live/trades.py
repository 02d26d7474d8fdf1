"""The trade feed: stored trades after a client's last trade id, then live ones."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable

from shared.config import Instrument
from shared.events import Trade
from store.port import Store, TradeRecord

from ..feed_requests import FeedRequest
from ..ports import EngineGateway, EventBatch
from .resume import PAGE, Barrier, Page, Source, follow

TradeItem = Trade | TradeRecord  # a live trade event, or a stored trade


def trades(
    request: FeedRequest, gateway: EngineGateway, store: Store, barrier: Barrier
) -> AsyncGenerator[TradeItem, None]:
    async def history(instrument: Instrument, after: int) -> Page[TradeItem]:
        records = await store.list_trades(limit=PAGE, after=after, instrument=instrument.number)
        last = records[-1].trade_id if records else after
        return Page(records, last, len(records) == PAGE)

    covers = request.covers

    def live(batch: EventBatch) -> Iterable[TradeItem]:
        if not covers(batch[0].seq):
            return ()
        return [e for e in batch if type(e) is Trade]

    def position(item: TradeItem) -> int:
        return item.seq if type(item) is Trade else item.trade_id  # type: ignore[union-attr]

    return follow(request, Source(history, gateway.event_feed, live, position), barrier)
