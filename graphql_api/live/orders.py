"""The private order feed: every event about a client's own orders (accepted, traded,
modified, quantity changed, cancelled) and its own rejected commands, from the store's
event log after the client's last sequence number, then live.

With keys on, events are attributed to owners: `Accepted` and `Rejected` carry the owner;
later events of an order are attributed through the order's owner, which a per-replica
map (order id -> owner, fed by `Accepted`, emptied as orders die) gives without a store
read, except for orders accepted before the map started (read once from the store). One
router task does this for every private feed of the replica, so each event is attributed
once however many clients listen, and each client's queue gets only its own events. With
keys off every order is everyone's: the feed carries every event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from typing import NamedTuple

import structlog
from structlog.typing import FilteringBoundLogger

from shared.config import Instrument
from shared.events import Accepted, Cancelled, Event, Rejected, Trade
from shared.tasks import cancel_soon
from store.port import Store

from ..feed_requests import FeedRequest
from ..hub import Hub, Subscriber
from ..ports import EngineGateway, EventBatch
from .resume import PAGE, Barrier, Page, Source, follow

BID, ASK = 1, 2
BOTH = BID | ASK
ROUTER_QUEUE = 100_000  # events the router may fall behind by before it starts over


class OrderUpdate(NamedTuple):
    event: Event
    mine: int  # for a trade, which of its two orders are the subscriber's: BID, ASK, both


class Owners:
    """Order id -> owner, from the store for orders the caller has not seen accepted."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.known: dict[int, str] = {}

    async def of(self, order_id: int) -> str:
        owner = self.known.get(order_id)
        if owner is None:
            record = await self.store.get_order(order_id)
            owner = self.known[order_id] = record.owner if record is not None else ""
        return owner

    async def sides(self, event: Event, owner: str) -> int:
        """Which of the subscriber's orders (BID, ASK, both; 0: none) the event concerns."""
        kind = type(event)
        if kind is Accepted or kind is Rejected:
            return BOTH if event.owner == owner else 0  # type: ignore[union-attr]
        if kind is Trade:
            t: Trade = event  # type: ignore[assignment]
            bid = BID if await self.of(t.bid_order_id) == owner else 0
            return bid | (ASK if await self.of(t.ask_order_id) == owner else 0)
        return BOTH if await self.of(event.order_id) == owner else 0  # type: ignore[union-attr]


class OwnerRouter:
    """One per replica while any private feed is open with keys on: reads every event
    once and hands each to the subscribers of the owners it concerns."""

    def __init__(self, gateway: EngineGateway, store: Store, barrier: Barrier) -> None:
        self.gateway = gateway
        self.store = store
        self.barrier = barrier
        self.log: FilteringBoundLogger = structlog.get_logger(service="api")
        self.hubs: dict[str, Hub[OrderUpdate]] = {}
        self._task: asyncio.Task[None] | None = None
        self._started: asyncio.Future[None] | None = None

    @contextlib.asynccontextmanager
    async def subscribe(self, owner: str) -> AsyncIterator[Subscriber[OrderUpdate]]:
        """The owner's events from the moment of entry (as `EngineGateway.event_feed`)."""
        hub = self.hubs.get(owner)
        if hub is None:
            hub = self.hubs[owner] = Hub()
        try:
            async with hub.subscribe() as sub:
                if self._task is None or self._started is None:
                    self._started = asyncio.get_running_loop().create_future()
                    self._task = asyncio.create_task(self._run(self._started))
                await asyncio.shield(self._started)
                yield sub
        finally:
            if not hub.subscribers and self.hubs.get(owner) is hub:
                del self.hubs[owner]
            if not self.hubs and self._task is not None:
                cancel_soon(self._task)
                self._task = self._started = None

    async def _run(self, started: asyncio.Future[None]) -> None:
        owners = Owners(self.store)
        try:
            async with self.gateway.event_feed(ROUTER_QUEUE) as feed:
                # Orders accepted before this point are looked up in the store: it must
                # hold them first.
                await self.barrier(())
                started.set_result(None)
                while True:
                    for event in await feed.get():
                        await self._route(event, owners)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the feed fell behind or the store failed: start over
            self.log.warning("order_router_stopped", error=repr(exc))
            if not started.done():
                started.set_exception(exc)
            for hub in self.hubs.values():
                hub.drop_all()
            self.hubs.clear()
            if self._started is started:
                self._task = self._started = None

    async def _route(self, event: Event, owners: Owners) -> None:
        hubs = self.hubs
        kind = type(event)
        if kind is Trade:
            t: Trade = event  # type: ignore[assignment]
            bid = await owners.of(t.bid_order_id)
            ask = await owners.of(t.ask_order_id)
            if not t.bid_remaining:
                owners.known.pop(t.bid_order_id, None)
            if not t.ask_remaining:
                owners.known.pop(t.ask_order_id, None)
            if bid == ask:
                if bid in hubs:
                    hubs[bid].publish(OrderUpdate(t, BOTH))
                return
            if bid in hubs:
                hubs[bid].publish(OrderUpdate(t, BID))
            if ask in hubs:
                hubs[ask].publish(OrderUpdate(t, ASK))
            return
        if kind is Accepted:
            owner = owners.known[event.order_id] = event.owner  # type: ignore[union-attr]
        elif kind is Rejected:
            owner = event.owner  # type: ignore[union-attr]
        else:
            order_id: int = event.order_id  # type: ignore[union-attr]
            owner = await owners.of(order_id)
            if kind is Cancelled:
                owners.known.pop(order_id, None)
        if owner in hubs:
            hubs[owner].publish(OrderUpdate(event, BOTH))


def order_updates(
    request: FeedRequest,
    owner: str | None,
    gateway: EngineGateway,
    store: Store,
    barrier: Barrier,
    router: OwnerRouter,
) -> AsyncGenerator[OrderUpdate, None]:
    """`owner`'s order events, or (None: keys off) everyone's."""
    seen = Owners(store)  # the history's owners: from its own Accepted events, else stored

    async def history(instrument: Instrument, after: int) -> Page[OrderUpdate]:
        events = await store.events(after, PAGE)
        mine: list[OrderUpdate] = []
        last = after
        for event in events:
            if not instrument.owns(event.seq):
                return Page(mine, last, False)  # the next instrument's events
            last = event.seq
            if owner is None:
                mine.append(OrderUpdate(event, BOTH))
                continue
            if type(event) is Accepted:
                seen.known[event.order_id] = event.owner
            sides = await seen.sides(event, owner)
            if sides:
                mine.append(OrderUpdate(event, sides))
        return Page(mine, last, len(events) == PAGE)

    covers = request.covers

    if owner is None:

        def everyone(batch: EventBatch) -> Iterable[OrderUpdate]:
            if not covers(batch[0].seq):
                return ()
            return [OrderUpdate(e, BOTH) for e in batch]

        source = Source(history, gateway.event_feed, everyone, _position)
        return follow(request, source, barrier)

    def own(update: OrderUpdate) -> Iterable[OrderUpdate]:
        return (update,) if covers(update.event.seq) else ()

    routed = Source(history, lambda: router.subscribe(owner), own, _position)
    return follow(request, routed, barrier)


def _position(update: OrderUpdate) -> int:
    return update.event.seq
