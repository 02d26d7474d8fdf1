"""Fan-out of live data (event batches, book snapshots, level changes) to many subscribers.

Each subscriber has a bounded queue. Publishing never waits: a subscriber whose queue is
full is dropped (it sees `SlowConsumer` once it has drained what it had), so one slow
client can never slow the reader that feeds everyone else. A `BatchHub` bounds its
subscribers' queues in items of the batches (events), not in batches, since one command
can make thousands of events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

T = TypeVar("T")
E = TypeVar("E")


class SlowConsumer(Exception):
    """The subscriber fell too far behind, or its source failed, and was dropped."""


class _End:
    """Queued by `Hub.drop_all` to wake a subscriber waiting on an empty queue."""


_END = _End()


class Subscriber(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[T | _End] = asyncio.Queue(maxsize)
        self.dropped = False

    async def get(self) -> T:
        if self.dropped and self.queue.empty():
            raise SlowConsumer
        item = await self.queue.get()
        if isinstance(item, _End):
            raise SlowConsumer
        return item

    def clear(self) -> None:
        """Forget what is queued (a reader that rereads the source instead)."""
        while not self.queue.empty():
            self.queue.get_nowait()


class Hub(Generic[T]):
    def __init__(self, maxsize: int = 1000) -> None:
        self.maxsize = maxsize
        self.subscribers: dict[Subscriber[T], None] = {}

    def publish(self, item: T) -> None:
        for sub in list(self.subscribers):
            try:
                sub.queue.put_nowait(item)
            except asyncio.QueueFull:
                sub.dropped = True
                self.subscribers.pop(sub, None)

    def drop_all(self) -> None:
        """Drop every subscriber: the source can no longer promise them every item."""
        for sub in self.subscribers:
            sub.dropped = True
            if not sub.queue.full():  # (a full queue's reader is not waiting)
                sub.queue.put_nowait(_END)
        self.subscribers.clear()

    def _subscriber(self, maxsize: int) -> Subscriber[T]:
        return Subscriber(maxsize)

    @asynccontextmanager
    async def subscribe(self, maxsize: int | None = None) -> AsyncIterator[Subscriber[T]]:
        sub = self._subscriber(maxsize or self.maxsize)
        self.subscribers[sub] = None
        try:
            yield sub
        finally:
            self.subscribers.pop(sub, None)


class BatchSubscriber(Subscriber[Sequence[E]]):
    def __init__(self, limit: int) -> None:
        super().__init__(0)  # bounded by `limit` items, counted by the hub
        self.limit = limit
        self.pending = 0

    async def get(self) -> Sequence[E]:
        batch = await super().get()
        self.pending -= len(batch)
        return batch


class BatchHub(Hub[Sequence[E]]):
    """A hub of batches whose subscribers may be `maxsize` items behind. One that a batch
    would take past it gets the part that fits, then is dropped: it receives what was
    queued, in order, and then `SlowConsumer`."""

    def _subscriber(self, maxsize: int) -> Subscriber[Sequence[E]]:
        return BatchSubscriber(maxsize)

    def publish(self, item: Sequence[E]) -> None:
        size = len(item)
        for sub in list(self.subscribers):
            assert isinstance(sub, BatchSubscriber)
            room = sub.limit - sub.pending
            if size <= room:
                sub.queue.put_nowait(item)
                sub.pending += size
                continue
            if room > 0:
                sub.queue.put_nowait(item[:room])
                sub.pending += room
            sub.dropped = True
            self.subscribers.pop(sub, None)
