"""The engine gateway without Redis: the real matching engine runs in the API process, and
each command's events are stored before it is answered (group-committed with whatever else
is waiting).

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

from engine.matching import engine_for
from shared.commands import Command
from shared.config import Instrument, Settings
from shared.events import Event
from shared.tasks import cancel_and_wait
from store.port import BookLevels, Store

from ..hub import BatchHub, Hub, Subscriber
from ..ports import EVENT_QUEUE, EventBatch, Unavailable

BOOK_DEPTH = 50  # as the engine service broadcasts


class InProcessGateway:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.engines = {i.symbol: engine_for(i.base, i.band) for i in settings.instruments}
        self.events: BatchHub[Event] = BatchHub(EVENT_QUEUE)
        self.books: dict[str, Hub[BookLevels]] = {
            i.symbol: Hub(maxsize=16) for i in settings.instruments
        }
        # One applier task: the engine takes its commands one by one, and the store each
        # instrument's events in sequence order. What queues up while a batch is being
        # stored is stored next in one transaction per instrument (group commit, as the
        # archiver does), so a burst costs a few store writes, not one per command.
        self._queue: asyncio.Queue[tuple[Instrument, Command, asyncio.Future[list[Event]]]] = (
            asyncio.Queue()
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._broken: Exception | None = None

    async def start(self) -> None:
        for instrument in self.settings.instruments:
            if await self.store.progress(instrument.number) != instrument.base:
                raise RuntimeError(
                    "the in-process engine starts with an empty book: it needs an empty store"
                )
        self._tasks = [
            asyncio.create_task(self._apply_queued()),
            asyncio.create_task(self._broadcast_books()),
        ]

    async def stop(self) -> None:
        errors = await cancel_and_wait(self._tasks)
        if errors:
            raise BaseExceptionGroup("the gateway's tasks failed", errors)

    async def submit(self, instrument: Instrument, command: Command) -> list[Event]:
        if self._broken is not None:
            raise Unavailable(f"the in-process engine stopped: {self._broken!r}")
        future: asyncio.Future[list[Event]] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((instrument, command, future))
        return await future

    async def _apply_queued(self) -> None:
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            answers: list[tuple[asyncio.Future[list[Event]], list[Event]]] = []
            stored: dict[str, list[Event]] = {}
            for instrument, command, future in batch:
                events = self.engines[instrument.symbol].apply(command)
                stored.setdefault(instrument.symbol, []).extend(events)
                answers.append((future, events))
            try:
                for events in stored.values():
                    await self.store.apply(events)
            except Exception as exc:  # the book is now ahead of the store: stop serving
                self._broken = exc
                for future, _ in answers:
                    if not future.done():
                        future.set_exception(Unavailable(f"the store failed: {exc!r}"))
                raise
            for future, events in answers:
                self.events.publish(events)  # one task publishes: in sequence order
                if not future.done():
                    future.set_result(events)

    @contextlib.asynccontextmanager
    async def event_feed(self, maxsize: int | None = None) -> AsyncIterator[Subscriber[EventBatch]]:
        """Live from the moment of entry: the applier publishes each command's events once
        they are stored, so there is no reader to wait for."""
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
