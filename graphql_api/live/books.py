"""The incremental book feed: per instrument, a replica of the book (`book.py`) kept while
anyone subscribes; each subscriber gets a snapshot of its window and then every change
to it, both stamped with sequence numbers.

The replica starts as a resumed feed does: subscribe to the events, pass a read barrier,
read the resting orders with the store's progress in one snapshot, then apply every
queued batch after that progress. A subscriber that arrives later takes its snapshot from
the running replica between two batches, and its window's changes from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import structlog
from structlog.typing import FilteringBoundLogger

from shared.config import Instrument
from shared.tasks import cancel_soon
from store.port import BookLevels, Store

from ..hub import Hub, Subscriber
from ..ports import EngineGateway
from .book import LevelChange, ReplicaBook
from .resume import Barrier

REPLICA_QUEUE = 100_000  # events a replica may fall behind by before it starts over
WINDOW_QUEUE = 10_000  # level changes a subscriber may fall behind by before it is dropped


@dataclass
class _Running:
    task: asyncio.Task[None]
    book: asyncio.Future[ReplicaBook]
    users: int = 0


class BookFeeds:
    def __init__(self, gateway: EngineGateway, store: Store, barrier: Barrier) -> None:
        self.gateway = gateway
        self.store = store
        self.barrier = barrier
        self.log: FilteringBoundLogger = structlog.get_logger(service="api")
        self._running: dict[str, _Running] = {}

    @contextlib.asynccontextmanager
    async def subscribe(
        self, instrument: Instrument, depth: int
    ) -> AsyncIterator[tuple[BookLevels, Subscriber[LevelChange]]]:
        """The top `depth` levels per side now, and every change to them from then on."""
        running = self._running.get(instrument.symbol)
        if running is None:
            future: asyncio.Future[ReplicaBook] = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._run(instrument, future))
            running = self._running[instrument.symbol] = _Running(task, future)
        running.users += 1
        try:
            book = await asyncio.shield(running.book)
            hub = book.views.get(depth)
            if hub is None:
                hub = book.views[depth] = Hub(WINDOW_QUEUE)
            async with hub.subscribe() as sub:
                # No await between the snapshot and the subscription: no batch in between.
                yield book.snapshot(depth), sub
            if not hub.subscribers and book.views.get(depth) is hub:
                del book.views[depth]
        finally:
            running.users -= 1
            if not running.users and self._running.get(instrument.symbol) is running:
                cancel_soon(running.task)
                del self._running[instrument.symbol]

    async def _run(self, instrument: Instrument, ready: asyncio.Future[ReplicaBook]) -> None:
        book: ReplicaBook | None = None
        try:
            async with self.gateway.event_feed(REPLICA_QUEUE) as feed:
                await self.barrier((instrument,))
                resting = await self.store.resting(instrument.number)
                book = ReplicaBook(resting.seq, resting.orders)
                owns = instrument.owns
                while True:
                    if not ready.done() and book.consistent:
                        ready.set_result(book)
                    batch = await feed.get()
                    if owns(batch[0].seq):
                        book.apply(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # fell behind, or the store failed: subscribers start over
            self.log.warning("book_replica_stopped", symbol=instrument.symbol, error=repr(exc))
            if not ready.done():
                ready.set_exception(exc)
            if book is not None:
                for hub in book.views.values():
                    hub.drop_all()
            running = self._running.get(instrument.symbol)
            if running is not None and running.book is ready:
                del self._running[instrument.symbol]
