"""Resumable feeds: the store's history after a client's cursor, then the live events, with
no gap and no duplicate across the switch.

The snapshot-and-buffer technique: subscribe to the live events first (they queue up),
then pass a read barrier (the store now holds everything published before the
subscription), read the store up to its end, and only then take the queued events,
dropping those at or below the last one sent. A long catch-up is read before subscribing,
page by page until the store's tail, so the live queue only has to hold what arrives
during the last pages.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, aclosing
from dataclasses import dataclass
from typing import Generic, TypeVar

from shared.config import Instrument
from store.port import instrument_number

from ..feed_requests import FeedRequest
from ..hub import Subscriber

T = TypeVar("T")  # what the feed sends
B = TypeVar("B")  # what the live subscription delivers

PAGE = 1000


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    last: int  # the position read up to (the last item read, kept or filtered out)
    more: bool  # a full page: the store may hold more


Barrier = Callable[[tuple[Instrument, ...]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Source(Generic[T, B]):
    """Where one feed's items come from."""

    history: Callable[[Instrument, int], Awaitable[Page[T]]]  # a page after a position
    subscribe: Callable[[], AbstractAsyncContextManager[Subscriber[B]]]
    live: Callable[[B], Iterable[T]]  # a live delivery's items for this feed
    position: Callable[[T], int]  # an item's sequence number


async def follow(
    request: FeedRequest, source: Source[T, B], barrier: Barrier
) -> AsyncGenerator[T, None]:
    """The feed's items: live only without a cursor, else resumed after it."""
    if request.after is None:
        async with source.subscribe() as sub:
            while True:
                for item in source.live(await sub.get()):
                    yield item
    last = dict(request.after)

    async def history() -> AsyncGenerator[T, None]:
        for instrument in request.instruments:
            number = instrument.number
            while True:
                page = await source.history(instrument, last[number])
                for item in page.items:
                    yield item
                last[number] = max(last[number], page.last)
                if not page.more:
                    break

    async with aclosing(history()) as pages:  # most of a long catch-up, no live queue yet
        async for item in pages:
            yield item
    async with source.subscribe() as sub:
        await barrier(request.instruments)
        async with aclosing(history()) as pages:  # the rest, up to what was published before
            async for item in pages:
                yield item
        position = source.position
        while True:
            for item in source.live(await sub.get()):
                seq = position(item)
                number = instrument_number(seq)
                if seq > last.get(number, seq):
                    last[number] = seq
                    yield item
