"""The archiver service: event stream -> store, resumable and idempotent.

It resumes from the progress recorded in the store (not in Redis), checks that sequence
numbers continue without a gap, and writes each read batch in one call to the store. It
never skips: a gap (events trimmed or lost before they were stored) stops it with an error
instead of silently storing a history with a hole in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any, cast

import hiredis
import redis
import redis.asyncio as aioredis
import structlog
import uvloop
from structlog.typing import FilteringBoundLogger

from shared import gc_policy
from shared.config import Instrument, Settings
from shared.events import Event, decode_events
from shared.logs import configure
from shared.redis_client import (
    TRANSIENT_ERRORS,
    AsyncClient,
    ReplicaAcks,
    async_node_client,
    connect_async,
)
from shared.stream_entries import Entries, field, read_entries
from shared.tasks import cancel_and_wait
from store import GapError, Store, open_store

READ_BATCH = 500
BLOCK_MS = 500  # how long a read waits for the first entry, so that a stop is seen soon
# Group commit: after storing a short read, wait this long before reading again, so a
# steady trickle (one event per order at a few thousand orders/s) is stored in a few
# hundred transactions a second rather than one per event, each after one read (waiting
# after the read instead costs a second read per batch). It delays reads after a write
# (the read barrier) by at most this much, and never the answer to a mutation; the first
# event after a quiet spell is stored at once.
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


class _Reader:
    """One stream's reads, each after the copy of the stored progress when that moved:
    one round trip per batch.

    On a single server, both are sent packed by hiredis and read straight on a connection
    kept for the stream, without the client's per-command pipeline: that dispatch cost the
    archiver more CPU than the rest of a read. A Redis error closes that connection, and
    `_archive` starts over with a new reader. On a cluster, the client's pipeline."""

    def __init__(self, client: AsyncClient, stream: str, copy: str, copied: int) -> None:
        """`copied`: the progress the copy is known to hold, or need not be raised to (the
        stored one when resuming)."""
        self.client = client
        self.stream = stream
        self.copy = copy
        self.copied = copied
        self._connection: Any = None
        self._timeout: float | None = None  # the connection's own socket timeout

    async def read(self, after: bytes | str, progress: int) -> Entries:
        """The entries after `after` (up to READ_BATCH; [] when none came within the
        block), once `progress` is copied."""
        if not isinstance(self.client, aioredis.Redis):
            return await self._read_pipelined(after, progress)
        if self._connection is None:
            pool: Any = self.client.connection_pool
            self._connection = await pool.get_connection()
            # One deadline per read (below, the block added) instead of the connection's own
            # on every send and reply: with a socket timeout, each send is a wait_for, a task.
            self._timeout, self._connection.socket_timeout = self._connection.socket_timeout, None
        connection = self._connection
        commands = []
        if progress != self.copied:
            commands.append(_packed("SET", self.copy, progress))
        commands.append(
            _packed("XREAD", "COUNT", READ_BATCH, "BLOCK", BLOCK_MS, "STREAMS", self.stream, after)
        )
        try:
            deadline = None if self._timeout is None else self._timeout + BLOCK_MS / 1000
            async with asyncio.timeout(deadline):
                await connection.send_packed_command(commands)
                if len(commands) == 2:
                    await connection.read_response()
                    self.copied = progress
                response = await connection.read_response()
        except BaseException as exc:
            await self.close(broken=True)
            if isinstance(exc, TimeoutError):
                raise redis.TimeoutError(f"no reply from Redis within {deadline} s") from exc
            raise
        return read_entries(response)

    async def _read_pipelined(self, after: bytes | str, progress: int) -> Entries:
        response: Any
        if progress == self.copied:
            response = await self.client.xread(
                {self.stream: after}, count=READ_BATCH, block=BLOCK_MS
            )
        else:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.set(self.copy, progress)
                pipe.xread({self.stream: after}, count=READ_BATCH, block=BLOCK_MS)
                _, response = await pipe.execute()
            self.copied = progress
        return read_entries(response)

    async def close(self, broken: bool = False) -> None:
        """Give the kept connection back to the pool, or drop it when `broken`."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        connection.socket_timeout = self._timeout
        if broken:
            await connection.disconnect()
        pool = cast(aioredis.Redis, self.client).connection_pool
        await pool.release(connection)


def _packed(*command: Any) -> bytes:
    return hiredis.pack_command(command)  # type: ignore[no-any-return]


class ArchiverService:
    def __init__(self, settings: Settings, client: AsyncClient, store: Store) -> None:
        self.settings = settings
        self.redis = client
        self.store = store
        self.acks = ReplicaAcks(settings.replica_ack, settings.replica_ack_timeout_ms)
        self.log: FilteringBoundLogger = structlog.get_logger(service="archiver")
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        """Archive each instrument's event stream (ARCHIVER_SYMBOLS, default all) in a task
        of its own, each from its own stored progress: one XREAD per stream (an XREAD of
        several instruments' streams is cross-slot on a Redis Cluster), and a shard that
        fails over stalls only its own instruments. Returns on stop; a sequence gap in any
        stream ends the service."""
        tasks = [asyncio.create_task(self._beat())] + [
            asyncio.create_task(self._archive(i)) for i in self.settings.archived_instruments()
        ]
        gc_policy.settle()
        raised: BaseException | None = None
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                raised = None if task.cancelled() else task.exception()
                task.result()
        finally:
            # The first failure is raised above; any other, before or while stopping, logged.
            for error in await cancel_and_wait(tasks):
                if error is not raised:
                    self.log.error("task_failed", error=repr(error), exc_info=error)

    async def _beat(self) -> None:
        """Liveness for health checks, once a second."""
        while not self.stopping.is_set():
            try:
                await self.redis.set(self.settings.archiver_heartbeat, 1, ex=5)
            except TRANSIENT_ERRORS as exc:
                self.log.warning("heartbeat_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 1.0)

    async def _archive(self, instrument: Instrument) -> None:
        """Follow one stream; after a Redis error, start over from the stored progress."""
        loop = asyncio.get_running_loop()
        backoff = 0.1
        while not self.stopping.is_set():
            started = loop.time()
            try:
                await self._follow(instrument)
            except TRANSIENT_ERRORS as exc:
                if loop.time() - started > 5:
                    backoff = 0.1
                self.log.warning(
                    "redis_unavailable", symbol=instrument.symbol, error=str(exc), retry_in=backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _follow(self, instrument: Instrument) -> None:
        symbol = instrument.symbol
        stream = self.settings.event_stream_of(symbol)
        copy = self.settings.key(symbol, "archiver:progress")
        progress = await self.store.progress(instrument.number)
        after: bytes | str = f"{progress}-0"
        self.log.info("resume", symbol=symbol, progress=progress)
        reader = _Reader(self.redis, stream, copy, progress)
        stored_since_trim = 0
        try:
            while not self.stopping.is_set():
                entries = await reader.read(after, progress)
                if not entries:
                    continue
                events: list[Event] = []
                for _, fields in entries:
                    events.extend(decode_events(field(fields, b"e")))
                fresh = continue_sequence(progress, events)
                if fresh:
                    await self._replicated(symbol, stream)
                    await self.store.apply(fresh)
                    progress = fresh[-1].seq
                    stored_since_trim += len(fresh)
                    if (
                        stored_since_trim >= 10_000
                        and progress - instrument.base > STREAM_RETENTION
                    ):
                        await self.redis.xtrim(stream, minid=f"{progress - STREAM_RETENTION}-0")
                        stored_since_trim = 0
                after = entries[-1][0]
                if len(entries) < READ_BATCH:
                    await asyncio.sleep(LINGER_S)
        finally:
            await reader.close()

    async def _replicated(self, symbol: str, stream: str) -> None:
        """Return once a replica holds every event read so far, where the node has one.

        Events reach the stream before the engine's WAIT confirms them. Stored at once, an
        event that a failover then loses, together with its command, would stay in the store
        while the engine hands its sequence number to another command. A write of ours after
        the read, WAITed for on the same connection, covers everything the node held
        before it."""
        node = async_node_client(self.redis, stream)
        wanted = await self.acks.wanted_async(node)
        if not wanted:
            return
        async with node.pipeline(transaction=False) as pipe:
            pipe.set(self.settings.key(symbol, "archiver:read"), 1)
            pipe.execute_command("WAIT", wanted, self.acks.timeout_ms)
            _, acked = await pipe.execute()
        await self.acks.check_async(node, wanted, int(acked))


async def amain() -> None:
    settings = Settings.from_env()
    log = configure("archiver", settings.log_level)
    if not settings.redis_url:
        raise SystemExit("REDIS_URL is not set (make run and the tests set it)")
    store = open_store(settings, blocking=True)
    await store.open()
    client = connect_async(settings.redis_url)
    service = ArchiverService(settings, client, store)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.stopping.set)
    try:
        await service.run()
    finally:
        await store.close()
        await client.aclose()
        log.info("stopped")


def main() -> None:
    uvloop.run(amain())  # the API's event loop too (uvicorn picks uvloop)
