"""The engine gateway without Redis: the real matching engine runs in the API process, and
each command's events are stored before it is answered.

It is the second implementation of the port that the behaviour suite runs on (as
exchange-core runs one suite over two books), so that every API rule is tested in
milliseconds, with no process to start. It also serves `ENGINE_GATEWAY=inprocess` for a
demo with one process. It keeps the book in memory only: on restart it starts empty, so it
refuses a store that already holds events.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from engine.matching import MatchingEngine
from shared.commands import Command
from shared.config import Instrument, Settings
from shared.events import Event
from store.port import BookLevels, Store

from ..hub import BatchHub, Hub, Subscriber
from ..ports import EVENT_QUEUE, EventBatch

BOOK_DEPTH = 50  # as the engine service broadcasts


class InProcessGateway:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.engines = {i.symbol: MatchingEngine(i.base) for i in settings.instruments}
        self.events: BatchHub[Event] = BatchHub(EVENT_QUEUE)
        self.books: dict[str, Hub[BookLevels]] = {
            i.symbol: Hub(maxsize=16) for i in settings.instruments
        }
        # One command at a time, from apply to stored: the store needs each instrument's
        # events in sequence order, and the engine needs its commands one by one.
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for instrument in self.settings.instruments:
            if await self.store.progress(instrument.number) != instrument.base:
                raise RuntimeError(
                    "the in-process engine starts with an empty book: it needs an empty store"
                )
        self._task = asyncio.create_task(self._broadcast_books())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def submit(self, instrument: Instrument, command: Command) -> list[Event]:
        async with self._lock:
            events = self.engines[instrument.symbol].apply(command)
            await self.store.apply(events)
            self.events.publish(events)  # in the lock: batches go out in sequence order
        return events

    @contextlib.asynccontextmanager
    async def event_feed(self, maxsize: int | None = None) -> AsyncIterator[Subscriber[EventBatch]]:
        """Live from the moment of entry: events are published in `submit` itself, so
        there is no reader to wait for."""
        async with self.events.subscribe(maxsize) as sub:
            yield sub

    def backlog(self, instrument: Instrument) -> int:
        return 0  # every command is applied before it is answered

    async def published(self, instruments: tuple[Instrument, ...]) -> dict[int, int]:
        return {
            i.number: self.engines[i.symbol].seq
            for i in instruments
            if self.engines[i.symbol].seq > i.base
        }

    async def health(self) -> dict[str, bool]:
        return {**{f"engine:{symbol}": True for symbol in self.engines}, "archiver": True}

    async def _broadcast_books(self) -> None:
        while True:
            await asyncio.sleep(self.settings.book_interval_s)
            for symbol, engine in self.engines.items():
                bids, asks = engine.depth(BOOK_DEPTH)
                self.books[symbol].publish(BookLevels(engine.seq, bids, asks, time.time_ns()))
