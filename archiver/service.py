"""The archiver service: event stream -> store, resumable and idempotent.

It resumes from the progress recorded in the store (not in Redis), checks that sequence
numbers continue without a gap, and writes each read batch in one call to the store. It
never skips: a gap (events trimmed or lost before they were stored) stops it with an error
instead of silently storing a history with a hole in it.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import redis.asyncio as aioredis
import structlog
from structlog.typing import FilteringBoundLogger

from shared.config import Settings
from shared.events import Event, decode_events
from shared.logs import configure
from store import GapError, Store, open_store

READ_BATCH = 500
# Group commit: after a short read, wait this long for more events before storing, so a
# steady trickle (one event per order at a few thousand orders/s) is stored in a few
# hundred transactions a second rather than one per event. It delays reads after a write
# (the read barrier) by at most this much, and never the answer to a mutation.
LINGER_S = 0.004
# Events kept in the stream behind the stored progress, for late readers and debugging.
STREAM_RETENTION = 100_000


def continue_sequence(progress: int, events: list[Event]) -> list[Event]:
    """The events after `progress`, checked to follow it without a gap."""
    fresh = [e for e in events if e.seq > progress]
    expected = progress + 1
    for e in fresh:
        if e.seq != expected:
            raise GapError(f"sequence gap: expected {expected}, got {e.seq}")
        expected += 1
    return fresh


class ArchiverService:
    def __init__(self, settings: Settings, client: aioredis.Redis, store: Store) -> None:
        self.settings = settings
        self.redis = client
        self.store = store
        self.log: FilteringBoundLogger = structlog.get_logger(service="archiver")
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        """Archive every instrument's event stream, each from its own stored progress."""
        symbols = {self.settings.event_stream_of(i.symbol): i for i in self.settings.instruments}
        progress = {s: await self.store.progress(i.number) for s, i in symbols.items()}
        positions: dict[Any, Any] = {s: f"{p}-0" for s, p in progress.items()}
        self.log.info("resume", progress={symbols[s].symbol: p for s, p in progress.items()})
        stored_since_trim = dict.fromkeys(symbols, 0)
        heartbeat = self.settings.archiver_heartbeat
        next_beat = 0.0
        loop = asyncio.get_running_loop()
        while not self.stopping.is_set():
            if loop.time() >= next_beat:  # liveness for health checks, at most once a second
                await self.redis.set(heartbeat, 1, ex=5)
                next_beat = loop.time() + 1.0
            response: Any = await self.redis.xread(positions, count=READ_BATCH, block=500)
            if response and sum(len(entries) for _, entries in response) < READ_BATCH:
                await asyncio.sleep(LINGER_S)
                response = await self._read_more(response, positions)
            for raw_stream, entries in response or ():
                stream = raw_stream.decode()
                events: list[Event] = []
                for _, fields in entries:
                    events.extend(decode_events(fields[b"e"]))
                fresh = continue_sequence(progress[stream], events)
                positions[stream] = entries[-1][0]
                if not fresh:
                    continue
                await self.store.apply(fresh)
                done = progress[stream] = fresh[-1].seq
                symbol = symbols[stream].symbol
                await self.redis.set(self.settings.key(symbol, "archiver:progress"), done)
                stored_since_trim[stream] += len(fresh)
                base = symbols[stream].base
                if stored_since_trim[stream] >= 10_000 and done - base > STREAM_RETENTION:
                    await self.redis.xtrim(stream, minid=f"{done - STREAM_RETENTION}-0")
                    stored_since_trim[stream] = 0

    async def _read_more(self, response: Any, positions: dict[Any, Any]) -> Any:
        """`response` plus whatever arrived after it (without blocking), per stream."""
        after = dict(positions)
        for raw_stream, entries in response:
            after[raw_stream.decode()] = entries[-1][0]
        more: Any = await self.redis.xread(after, count=READ_BATCH)
        merged = {raw_stream: list(entries) for raw_stream, entries in response}
        for raw_stream, entries in more or ():
            merged.setdefault(raw_stream, []).extend(entries)
        return list(merged.items())


async def amain() -> None:
    settings = Settings.from_env()
    log = configure("archiver", settings.log_level)
    if not settings.redis_url:
        raise SystemExit("REDIS_URL is not set (make run and the tests set it)")
    store = open_store(settings)
    await store.open()
    client = aioredis.Redis.from_url(settings.redis_url)
    service = ArchiverService(settings, client, store)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.stopping.set)
    backoff = 0.1
    try:
        while not service.stopping.is_set():
            try:
                await service.run()
            except (
                aioredis.ConnectionError,
                aioredis.TimeoutError,
                aioredis.BusyLoadingError,
            ) as exc:
                log.warning("redis_unavailable", error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
    finally:
        await store.close()
        await client.aclose()
        log.info("stopped")


def main() -> None:
    asyncio.run(amain())
