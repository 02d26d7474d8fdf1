"""The engine gateway of the deployed system: engines behind Redis streams."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import redis

from shared.commands import Command
from shared.config import Instrument, Settings
from shared.events import Event
from shared.redis_client import TRANSIENT_ERRORS, AsyncClient, connect_async
from shared.tasks import cancel_and_wait
from store.port import BookLevels

from ..hub import BatchHub, Hub
from ..ports import EngineTimeout, Unavailable
from .redis_feeds import Feeds, newest_ids
from .redis_journal import Journal

# What the command append may raise: Redis away or moving, or refusing the write.
APPEND_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, redis.ResponseError)
HEALTH_TIMEOUT_S = 1.0
HEALTH_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, TimeoutError)


def connect(settings: Settings) -> AsyncClient:
    """On a single server, requests wait for a free connection rather than fail when a
    burst exceeds the pool; `REDIS_URL` alone picks a single server or a cluster."""
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set (make run and the tests set it)")
    return connect_async(
        settings.redis_url, max_connections=64, pool_wait_s=settings.request_timeout_s
    )


class RedisGateway:
    def __init__(self, settings: Settings, client: AsyncClient) -> None:
        self.settings = settings
        self.redis = client
        self.journal = Journal(settings, client)
        self.feeds = Feeds(settings, client, self.journal)
        self.events: BatchHub[Event] = self.feeds.events
        self.event_feed = self.feeds.event_feed
        self.books: Mapping[str, Hub[BookLevels]] = self.feeds.books
        self._command_streams = {
            i.symbol: settings.command_stream_of(i.symbol) for i in settings.instruments
        }
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = await self.journal.open() + self.feeds.tasks()

    async def stop(self) -> None:
        try:
            errors = await cancel_and_wait(self._tasks)
        finally:
            try:
                await self.journal.close()
            finally:
                await self.redis.aclose()
        if errors:
            raise BaseExceptionGroup("the gateway's tasks failed", errors)

    async def submit(self, instrument: Instrument, command: Command) -> list[Event]:
        try:
            return await self.journal.request(self._command_streams[instrument.symbol], command)
        except TimeoutError:
            raise EngineTimeout(
                "the engine did not answer in time; the command may still be applied: "
                "retry with the same client_order_id, or read the order back"
            ) from None
        except APPEND_ERRORS as exc:
            raise Unavailable(
                f"the command stream is unavailable ({exc}); the command may still be applied: "
                "retry with the same client_order_id, or read the order back"
            ) from None

    def backlog(self, instrument: Instrument) -> int:
        return self.feeds.backlog[instrument.symbol]

    async def published(self, instruments: tuple[Instrument, ...]) -> dict[int, int]:
        """An event's stream id is `<seq>-0`: the newest id gives the newest seq."""
        streams = {self.settings.event_stream_of(i.symbol): i.number for i in instruments}
        try:
            newest = await newest_ids(self.redis, streams)
        except TRANSIENT_ERRORS as exc:
            raise Unavailable(f"the event streams are unavailable ({exc}); retry shortly") from None
        return {
            streams[stream]: int(entry_id.split(b"-", 1)[0])
            for stream, entry_id in newest.items()
            if entry_id is not None
        }

    async def health(self) -> dict[str, bool]:
        """Redis answers; every instrument's engine lease (held by a live leader, with a
        sub-second expiry) and the archiver's heartbeat are present. One pipelined round
        trip, at most `HEALTH_TIMEOUT_S`: a hung Redis makes the replica unready instead of
        the check hang. With Redis down the others are unknown, so only `redis` is
        reported."""
        symbols = list(self.books)
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                pipe = self.redis.pipeline(transaction=False)
                for symbol in symbols:
                    pipe.exists(self.settings.engine_lease_of(symbol))
                pipe.exists(self.settings.archiver_heartbeat)
                *engines, archiver = await pipe.execute()
        except HEALTH_ERRORS:
            return {"redis": False}
        health = {"redis": True}
        health.update((f"engine:{s}", bool(up)) for s, up in zip(symbols, engines, strict=True))
        health["archiver"] = bool(archiver)
        return health
