"""Request and reply over Redis: commands go on the instrument's command stream, answers
come back on this replica's own reply stream.

The engine appends each command's events to the instrument's event stream and then (in the
same transaction, or once a Redis replica holds the events where there is one) to the reply
stream of the replica that asked (named by the prefix of the request id). So a replica reads
only its own answers, never the others'. Each reply stream is read on its own: one XREAD
of several instruments' streams would be cross-slot on a Redis Cluster.

Costs per request are kept flat: one writer task appends many commands per round trip, one
reader answers many requests per read, and one sweeper fails overdue requests (instead of a
timer per request). On a single server the writer and the readers each hold a `Link` (a
connection of their own, commands packed by hand); on a cluster, redis-py routes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Awaitable
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
import structlog
from structlog.typing import FilteringBoundLogger

from shared.commands import Command, encode_command
from shared.config import Settings
from shared.events import Event
from shared.redis_client import TRANSIENT_ERRORS, AsyncClient
from shared.replies import read_answers

from .redis_link import Entry, Link

T = TypeVar("T")

EXPIRY_TICK_S = 0.05
REPLY_STREAM_TTL_S = 60
MAX_BATCH = 512


class Journal:
    def __init__(self, settings: Settings, client: AsyncClient) -> None:
        self.settings = settings
        self.redis = client
        self.log: FilteringBoundLogger = structlog.get_logger(service="api")
        self.pending: dict[str, asyncio.Future[list[Event]]] = {}
        # Commands to append, and the flag that wakes the writer when there are some.
        self._outbox: list[tuple[str, bytes, asyncio.Future[list[Event]]]] = []
        self._queued = asyncio.Event()
        self._links: list[Link] = []
        self._deadlines: deque[tuple[float, asyncio.Future[list[Event]]]] = deque()
        # Request ids: unique per process start (the replica id) and per request (the
        # count). The engine answers each on the stream named after the replica id.
        self.replica = uuid.uuid4().hex[:12]
        self._request_prefix = self.replica + "-"
        self._request_count = 0
        self._reply_streams = [
            settings.reply_stream_of(i.symbol, self.replica) for i in settings.instruments
        ]
        # redis-py types stream positions loosely: stream name -> last id read.
        self._reply_positions: dict[Any, Any] = {}  # Any: redis-py's stream positions
        self.recheck = asyncio.Event()  # set when the reply streams may be gone

    async def open(self) -> list[asyncio.Task[None]]:
        """Open the reply streams; the tasks that keep the journal running."""
        self._reply_positions = {
            stream: await self._open_reply_stream(stream) for stream in self._reply_streams
        }
        return [
            *(asyncio.create_task(self._read_replies(s)) for s in self._reply_streams),
            asyncio.create_task(self._keep_reply_streams()),
            asyncio.create_task(self._write()),
            asyncio.create_task(self._expire()),
        ]

    async def request(self, stream: str, command: Command) -> list[Event]:
        """Append `command` to `stream` and wait for its events. The writer fails the wait
        if the append fails, the reply reader ends it, and the sweeper fails it with
        TimeoutError when overdue."""
        self._request_count += 1
        request_id = f"{self._request_prefix}{self._request_count:x}"
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Event]] = loop.create_future()
        self.pending[request_id] = future
        self._deadlines.append((loop.time() + self.settings.request_timeout_s, future))
        body = encode_command(msgspec.structs.replace(command, request_id=request_id))
        self._outbox.append((stream, body, future))
        self._queued.set()
        try:
            return await future
        finally:
            self.pending.pop(request_id, None)

    def _link(self) -> Link | None:
        """A connection of the caller's own on a single server; None on a cluster."""
        if not isinstance(self.redis, aioredis.Redis):
            return None
        link = Link(self.redis)
        self._links.append(link)
        return link

    async def close(self) -> None:
        """Close the links, once the journal's tasks are over."""
        for link in self._links:
            await link.close()
        self._links.clear()

    async def _open_reply_stream(self, stream: str) -> bytes:
        """Create this replica's reply stream (the engine never does) with a lifetime that
        `_keep_reply_streams` extends: a replica that dies leaves nothing behind for long.
        Returns the id to read after."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(stream, {"open": self.replica})
            pipe.expire(stream, REPLY_STREAM_TTL_S)
            opened, _ = await pipe.execute()
        return opened  # type: ignore[no-any-return]

    async def _keep_reply_streams(self) -> None:
        """Extend the reply streams' lifetime; re-create one that is gone (Redis came back
        without it, or it expired while Redis was away), and then read it from the start:
        a Redis restarted on a host whose clock is behind hands out lower ids. Checked at
        once after any Redis error, as the engine cannot answer into a missing stream."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REPLY_STREAM_TTL_S / 4):
                    await self.recheck.wait()
            self.recheck.clear()
            try:
                for stream in self._reply_streams:
                    if not await self.redis.expire(stream, REPLY_STREAM_TTL_S):
                        await self._open_reply_stream(stream)
                        self._reply_positions[stream] = b"0-0"  # duplicates are harmless
                        self.log.warning("reply_stream_recreated", stream=stream)
            except Exception as exc:  # logged; without this task every request would time out
                self.log.warning("reply_stream_keeper_error", error=repr(exc))
                await asyncio.sleep(0.5)
                self.recheck.set()

    async def _read_replies(self, stream: str) -> None:
        """Answer waiting requests from one of this replica's reply streams."""
        positions = self._reply_positions
        pending = self.pending
        link = self._link()
        while True:
            entries: list[Entry] | None
            if link is not None:
                entries = await self.guarded(
                    "reply_reader", link.read(stream, positions[stream], 1000, 1000)
                )
            else:
                entries = await self.guarded("reply_reader", self._xread(stream))
            if not entries:
                continue
            for entry_id, fields in entries:
                try:
                    answers = read_answers(fields)
                except (msgspec.DecodeError, UnicodeDecodeError):
                    # Another version's events or a bad write: its requests time out, and
                    # this reader (the only one of the stream) goes on answering the rest.
                    self.log.exception("reply_undecodable", stream=stream, entry=entry_id)
                    continue
                for request_id, events in answers:
                    future = pending.pop(request_id, None)
                    if future is not None and not future.done():
                        future.set_result(events)
            positions[stream] = entries[-1][0]

    async def _xread(self, stream: str) -> list[Entry]:
        """The next entries of a reply stream, through the cluster client."""
        response: Any = await self.redis.xread(  # Any: redis-py's untyped reply
            {stream: self._reply_positions[stream]}, count=1000, block=1000
        )
        return [
            (entry_id, [item for pair in fields.items() for item in pair])
            for _, entries in response or ()
            for entry_id, fields in entries
        ]

    async def guarded(self, reader: str, call: Awaitable[T]) -> T | None:
        """`call`'s result; None after logging a failure and pausing, so that a reader
        outlives any Redis error. An error may mean the reply streams were lost too."""
        try:
            return await call
        except TRANSIENT_ERRORS as exc:
            self.log.warning(f"{reader}_redis_error", error=str(exc))
        except Exception:  # logged with its traceback
            self.log.exception(f"{reader}_error")
        self.recheck.set()
        await asyncio.sleep(0.2)
        return None

    async def _write(self) -> None:
        """Append queued commands to their command streams, many per round trip.

        One writer task and one pipeline per batch, instead of a connection per request:
        under load this is what keeps the API's Redis cost per mutation small.
        """
        outbox = self._outbox
        link = self._link()
        while True:
            await self._queued.wait()
            self._queued.clear()
            while outbox:
                batch = outbox[:MAX_BATCH]
                del outbox[:MAX_BATCH]
                # A request that already failed (timed out) must not become an order later.
                batch = [item for item in batch if not item[2].done()]
                if batch:
                    await self._append(batch, link)

    async def _append(
        self, batch: list[tuple[str, bytes, asyncio.Future[list[Event]]]], link: Link | None
    ) -> None:
        """Append one batch; a failed append fails its request's wait."""
        results: list[Any]  # Any: an entry id or an exception
        try:
            if link is not None:
                results = await link.append([(stream, body) for stream, body, _ in batch])
            else:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for stream, body, _ in batch:
                        pipe.xadd(stream, {"c": body})
                    results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # handed to every waiting request, which reports it
            results = [exc] * len(batch)
        for (_, _, answer), result in zip(batch, results, strict=True):
            if isinstance(result, Exception) and not answer.done():
                answer.set_exception(result)

    async def _expire(self) -> None:
        """Fail requests whose engine answer is overdue, every `EXPIRY_TICK_S`.

        All requests share one timeout, so their deadlines are in arrival order and the
        sweep stops at the first one not due. A request may wait up to one tick longer than
        `request_timeout_s`."""
        loop = asyncio.get_running_loop()
        deadlines = self._deadlines
        while True:
            await asyncio.sleep(EXPIRY_TICK_S)
            now = loop.time()
            while deadlines and deadlines[0][0] <= now:
                _, future = deadlines.popleft()
                if not future.done():
                    future.set_exception(TimeoutError())
                    self.recheck.set()  # was the reply stream lost?
