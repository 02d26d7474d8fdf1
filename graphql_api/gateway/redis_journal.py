"""Request and reply over Redis: commands go on the instrument's command stream, answers
come back on this replica's own reply stream.

The engine appends each command's events to the instrument's event stream and then (in the
same transaction, or once a Redis replica holds the events where there is one) to the reply
stream of the replica that asked (named by the prefix of the request id). So a replica reads
only its own answers, never the others'. Each reply stream is read on its own: one XREAD
of several instruments' streams would be cross-slot on a Redis Cluster.

Costs per request are kept flat: one writer task appends many commands per round trip, one
reader answers many requests per read, and one sweeper fails overdue requests (instead of a
timer per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Awaitable
from typing import Any, TypeVar

import msgspec
import structlog
from structlog.typing import FilteringBoundLogger

from shared.commands import Command, encode_command
from shared.config import Settings
from shared.events import Event, decode_events
from shared.redis_client import TRANSIENT_ERRORS, AsyncClient

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
        self._outbox: asyncio.Queue[tuple[str, bytes, asyncio.Future[list[Event]]]] = (
            asyncio.Queue()
        )
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
        self._outbox.put_nowait((stream, body, future))
        try:
            return await future
        finally:
            self.pending.pop(request_id, None)

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
        while True:
            response: Any = await self.guarded(  # Any: redis-py's untyped reply
                "reply_reader",
                self.redis.xread({stream: positions[stream]}, count=1000, block=1000),
            )
            for _, entries in response or ():
                for _, fields in entries:
                    request_id = fields.get(b"r")
                    future = pending.pop(request_id.decode(), None) if request_id else None
                    if future is not None and not future.done():
                        future.set_result(decode_events(fields[b"e"]))
                positions[stream] = entries[-1][0]

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
        queue = self._outbox
        while True:
            batch = [await queue.get()]
            while not queue.empty() and len(batch) < MAX_BATCH:
                batch.append(queue.get_nowait())
            # A request that already failed (timed out) must not become an order later.
            batch = [item for item in batch if not item[2].done()]
            if not batch:
                continue
            try:
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
