"""What a replica reads from Redis besides its answers: live events from the event streams
(while anyone subscribes), the engines' book broadcasts, and each engine's backlog."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from structlog.typing import FilteringBoundLogger

from shared.config import Settings
from shared.events import Event, decode_events
from shared.redis_client import TRANSIENT_ERRORS, AsyncClient
from store.port import BookLevels

from ..hub import BatchHub, Hub, Subscriber
from ..metrics import BACKLOG
from ..ports import EVENT_QUEUE, EventBatch, Unavailable
from .redis_journal import Journal

# Commands (stream KEYS[1]) after the last one the engine answered (the `c` field of the
# newest entry of its event stream KEYS[2]), counted up to ARGV[1].
COUNT_UNANSWERED = """
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local start = '-'
if #last > 0 then
  local fields = last[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'c' then start = '(' .. fields[i + 1] end
  end
end
return #redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', ARGV[1])
"""


async def newest_ids(client: AsyncClient, streams: Iterable[str]) -> dict[str, bytes | None]:
    """Each stream's newest entry id (None: empty)."""
    newest: dict[str, bytes | None] = {}
    for stream in streams:
        last: Any = await client.xrevrange(stream, "+", "-", count=1)  # Any: redis-py reply
        newest[stream] = last[0][0] if last else None
    return newest


class Feeds:
    def __init__(self, settings: Settings, client: AsyncClient, journal: Journal) -> None:
        self.settings = settings
        self.redis = client
        self.journal = journal  # for its guarded reads
        self.log: FilteringBoundLogger = structlog.get_logger(service="api")
        self.events: BatchHub[Event] = BatchHub(EVENT_QUEUE)
        self.books: dict[str, Hub[BookLevels]] = {
            i.symbol: Hub(maxsize=16) for i in settings.instruments
        }
        # Per symbol: how many commands its engine has not answered yet (counted up to
        # MAX_BACKLOG + 1).
        self.backlog: dict[str, int] = dict.fromkeys(self.books, 0)
        self._event_streams = [settings.event_stream_of(i.symbol) for i in settings.instruments]
        # Per event stream: set while its reader follows it for the current subscribers.
        self._following = {stream: asyncio.Event() for stream in self._event_streams}
        # Set when an event subscriber comes: the readers wait on it while there is none,
        # rather than look every few milliseconds (most of an idle replica's wake-ups).
        self._wanted = asyncio.Event()

    def tasks(self) -> list[asyncio.Task[None]]:
        return [
            *(asyncio.create_task(self._read_events(s)) for s in self._event_streams),
            asyncio.create_task(self._read_books()),
            asyncio.create_task(self._watch_backlog()),
        ]

    @asynccontextmanager
    async def event_feed(self, maxsize: int | None = None) -> AsyncIterator[Subscriber[EventBatch]]:
        """Subscribe, then wait until every stream's reader follows its stream: from then
        on each publishes every entry after a position that was already published, so
        whatever this subscriber misses is at or below any later `published` position.
        `Unavailable` if a reader cannot start (Redis away) within REQUEST_TIMEOUT_S."""
        async with self.events.subscribe(maxsize) as sub:
            self._wanted.set()
            try:
                async with asyncio.timeout(self.settings.request_timeout_s):
                    for following in self._following.values():
                        await following.wait()
            except TimeoutError:
                raise Unavailable("the event streams are unavailable; retry shortly") from None
            yield sub

    async def _read_events(self, stream: str) -> None:
        """Feed event subscribers from one event stream (one XREAD per stream: several
        instruments' streams in one would be cross-slot on a cluster), one batch per
        entry, only while there are any. When the first one arrives, reading starts at
        the stream's newest entry, by id (never "$", which would drop what arrives between
        two reads)."""
        after: bytes | None = None
        guarded = self.journal.guarded
        following = self._following[stream]
        while True:
            if not self.events.subscribers:
                after = None
                following.clear()
                self._wanted.clear()
                await self._wanted.wait()
                continue
            if after is None:
                newest = await guarded("event_reader", newest_ids(self.redis, [stream]))
                if newest is None:
                    continue
                after = newest[stream] or b"0-0"
                following.set()
            response: Any = await guarded(  # Any: redis-py's untyped reply
                "event_reader", self.redis.xread({stream: after}, count=1000, block=200)
            )
            publish = self.events.publish
            for _, entries in response or ():
                for _, fields in entries:
                    publish(decode_events(fields[b"e"]))
                after = entries[-1][0]

    async def _watch_backlog(self) -> None:
        """Count (up to the threshold) the commands each engine has not answered yet.

        Counted inside Redis by a script: only the number crosses the network, not the up
        to MAX_BACKLOG + 1 entries, which would cost the most exactly when the engine is
        behind and the machine is busiest."""
        cap = self.settings.max_backlog + 1
        count = self.redis.register_script(COUNT_UNANSWERED)
        while True:
            for symbol in self.backlog:
                keys = [
                    self.settings.command_stream_of(symbol),
                    self.settings.event_stream_of(symbol),
                ]
                try:
                    waiting = int(await count(keys=keys, args=[cap]))
                    self.backlog[symbol] = waiting
                    BACKLOG.labels(symbol).set(waiting)
                except TRANSIENT_ERRORS as exc:
                    self.log.warning("backlog_watch_redis_error", error=str(exc))
                except Exception:  # logged; a frozen backlog figure would shed load forever
                    self.log.exception("backlog_watch_error")
            await asyncio.sleep(0.1)

    async def _read_books(self) -> None:
        channels = [self.settings.book_channel_of(symbol) for symbol in self.books]
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(*channels)
                    async for message in pubsub.listen():
                        if message["type"] != "message":
                            continue
                        data = json.loads(message["data"])
                        book = BookLevels(
                            data["seq"],
                            [(p, q) for p, q in data["bids"]],
                            [(p, q) for p, q in data["asks"]],
                            data["ts"],
                        )
                        self.books[data["symbol"]].publish(book)
            except TRANSIENT_ERRORS as exc:
                self.log.warning("book_reader_redis_error", error=str(exc))
                await asyncio.sleep(0.2)
            except Exception:  # logged; subscribers must keep getting books
                self.log.exception("book_reader_error")
                await asyncio.sleep(0.2)
