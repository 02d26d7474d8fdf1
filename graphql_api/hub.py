"""Fan-out of live data (trades, book snapshots) to many subscribers.

Each subscriber has a bounded queue. Publishing never waits: a subscriber whose queue is
full is dropped (it sees `SlowConsumer` once it has drained what it had), so one slow
client can never slow the reader that feeds everyone else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class SlowConsumer(Exception):
    """The subscriber fell too far behind and was dropped."""


class Subscriber(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[T] = asyncio.Queue(maxsize)
        self.dropped = False

    async def get(self) -> T:
        if self.dropped and self.queue.empty():
            raise SlowConsumer
        return await self.queue.get()


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

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscriber[T]]:
        sub: Subscriber[T] = Subscriber(self.maxsize)
        self.subscribers[sub] = None
        try:
            yield sub
        finally:
            self.subscribers.pop(sub, None)
