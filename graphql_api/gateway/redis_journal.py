"""Request and reply over Redis: commands go on the instrument's command stream, answers
come back on this replica's own reply stream.

The engine appends each command's events to the instrument's event stream and then (in the
same transaction, or once a Redis replica holds the events where there is one) to the reply
stream of the replica that asked (named by the prefix of the request id). So a replica reads
only its own answers, never the others'. Each reply stream is read on its own: one XREAD
of several instruments' streams would be cross-slot on a Redis Cluster.

Costs per request are kept flat: commands go out in batches, one batch in flight (the next
gathers while it is answered), one reader answers many requests per read, and one sweeper
fails overdue requests (instead of a timer per request). On a single server the appends and
the answers each have a connection of their own driven by callbacks (`redis_link`: no task
step per batch), and the answers come by SUBSCRIBE to the reply stream's channel, where the
engine publishes each reply entry too: no read to send again after every batch (at 5,000
mutations/s open loop, p99 3.9-4.9 ms against 5.3-5.7 reading the stream). On a cluster
(a PUBLISH there reaches every node), redis-py routes the appends and reads the streams,
from a writer task and a task per reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeout
from structlog.typing import FilteringBoundLogger

from shared.commands import Command, encode_command
from shared.config import Settings
from shared.events import Event
from shared.redis_client import TRANSIENT_ERRORS, AsyncClient
from shared.replies import notice_entry, read_answers
from shared.stream_entries import read_entries, stream_id

from .redis_link import AppendPipe, Entry, SubscribePipe, redis_error, take_over, timeout_of

T = TypeVar("T")

EXPIRY_TICK_S = 0.05
REPLY_STREAM_TTL_S = 60
# The most commands appended in one batch. One batch is in flight at a time, the next sent
# once the last is answered: behind a stalled Redis the rest wait in the outbox, where a
# request that times out is dropped before it is sent (it must not become an order later).
MAX_BATCH = 512
READ_COUNT = 1000  # entries per read of a reply stream
# How long a subscriber's SUBSCRIBE or PING may go unanswered where the Redis URL sets no
# socket timeout: all of a replica's answers come on that one connection, so a half-open
# one must not go unnoticed (a new subscriber catches up from the stream).
SUBSCRIBER_TIMEOUT_S = 5.0


@contextlib.asynccontextmanager
async def bounded(timeout_s: float) -> AsyncIterator[None]:
    """At most `timeout_s` for what runs inside, overdue as Redis being overdue (a redis-py
    TimeoutError, which the readers treat as transient)."""
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except TimeoutError as exc:
        raise RedisTimeout(f"no answer from Redis within {timeout_s} s") from exc


@dataclass
class _Subscription:
    """One subscriber's progress: the position its catch-up reads from, the keeper's count
    of re-creations of the stream then, whether it has caught up, and the newest entry its
    messages answered before that."""

    start: bytes
    resets: int
    caught_up: bool = False
    newest: bytes | None = None


class Journal:
    def __init__(self, settings: Settings, client: AsyncClient) -> None:
        self.settings = settings
        self.redis = client
        self.log: FilteringBoundLogger = structlog.get_logger(service="api")
        self.pending: dict[str, asyncio.Future[list[Event]]] = {}
        # Commands to append, and the flag that wakes the writer when there are some.
        self._outbox: list[tuple[str, bytes, asyncio.Future[list[Event]]]] = []
        self._queued = asyncio.Event()  # the cluster's writer task waits on it
        # A single server: the appends' connection, the one being opened, the readers'.
        self._single = isinstance(client, aioredis.Redis)
        self._appender: AppendPipe | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._flush_due = False
        self._readers: dict[str, SubscribePipe] = {}
        self._closed = False
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
        self._resets = dict.fromkeys(self._reply_streams, 0)  # re-creations of each stream
        self.recheck = asyncio.Event()  # set when the reply streams may be gone

    async def open(self) -> list[asyncio.Task[None]]:
        """Open the reply streams; the tasks that keep the journal running."""
        self._reply_positions = {
            stream: await self._open_reply_stream(stream) for stream in self._reply_streams
        }
        if self._single:
            readers = [self._keep_reading(s) for s in self._reply_streams]
        else:
            readers = [self._read_replies(s) for s in self._reply_streams]
            readers.append(self._write())
        return [
            *(asyncio.create_task(reader) for reader in readers),
            asyncio.create_task(self._keep_reply_streams()),
            asyncio.create_task(self._expire()),
        ]

    async def request(self, stream: str, command: Command) -> list[Event]:
        """Append `command` to `stream` and wait for its events. The writer fails the wait
        if the append fails, the reply reader ends it, and the sweeper fails it with
        TimeoutError when overdue."""
        if self._closed:
            raise RedisConnectionError("the journal is closed")
        self._request_count += 1
        request_id = f"{self._request_prefix}{self._request_count:x}"
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Event]] = loop.create_future()
        self.pending[request_id] = future
        self._deadlines.append((loop.time() + self.settings.request_timeout_s, future))
        body = encode_command(msgspec.structs.replace(command, request_id=request_id))
        self._outbox.append((stream, body, future))
        if not self._single:
            self._queued.set()
        elif not self._flush_due:
            self._flush_due = True
            loop.call_soon(self._flush)
        try:
            return await future
        finally:
            self.pending.pop(request_id, None)

    async def close(self) -> None:
        """Close the connections of a single server, once the journal's tasks are over; a
        request still waiting to be appended fails (none is appended after this)."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        closing = RedisConnectionError("the journal is closed")
        for pipe in (self._appender, *self._readers.values()):
            if pipe is not None:
                pipe.abort(closing)
        self._appender = None
        self._readers.clear()
        self._fail_outbox(closing)

    def _fail_outbox(self, error: BaseException) -> None:
        waiting = [future for _, _, future in self._outbox]
        self._outbox.clear()
        for future in waiting:
            if not future.done():
                future.set_exception(error)

    # -- a single server: appends and reads from callbacks (`redis_link`) -------------------

    def _flush(self) -> None:
        """Append what is queued, in one write, unless a batch is still unanswered (then
        its answer calls this again)."""
        self._flush_due = False
        outbox = self._outbox
        # A request that already failed (timed out) must not become an order later.
        outbox[:] = [item for item in outbox if not item[2].done()]
        if self._closed or not outbox:
            return
        pipe = self._appender
        if pipe is None or not pipe.open:
            if self._connecting is None:
                self._connecting = asyncio.create_task(self._connect_appender())
            return
        if pipe.waiting:
            # One batch in flight, as redis-py's writer task had: under load the next one
            # grows while this one is answered (64 clients: 104-115 µs of stack CPU per
            # mutation against 125-154 with a write per loop turn), and behind a stalled
            # Redis the requests that time out are never sent.
            return
        pipe.append(outbox[:MAX_BATCH])
        del outbox[:MAX_BATCH]

    async def _connect_appender(self) -> None:
        """Open the appends' connection, then send what waited for it; if it cannot be
        opened, every waiting request fails with the reason (503)."""
        pipe = AppendPipe(timeout_of(cast(aioredis.Redis, self.redis)), self._flush)
        try:
            await take_over(cast(aioredis.Redis, self.redis), pipe)
        except Exception as exc:  # handed to every waiting request, which reports it
            self._fail_outbox(exc)
            return
        finally:
            self._connecting = None
        if self._closed:
            pipe.abort(RedisConnectionError("the journal is closed"))
            return
        self._appender = pipe
        self._flush()

    async def _keep_reading(self, stream: str) -> None:
        """Keep a subscriber to one reply stream's channel connected; it answers from its
        callback. Once subscribed, it reads what the stream got after the position it
        started from (the stream's opening, or where the last subscriber had got to): an
        answer that comes both ways is taken once. After a failure, pause and reconnect
        (the reply streams may have been lost with it)."""
        client = cast(aioredis.Redis, self.redis)
        timeout_s = timeout_of(client) or SUBSCRIBER_TIMEOUT_S
        while True:
            subscription = _Subscription(self._reply_positions[stream], self._resets[stream])
            pipe = SubscribePipe(
                timeout_s, stream, functools.partial(self._on_notice, stream, subscription)
            )
            self._readers[stream] = pipe
            try:
                async with bounded(timeout_s):
                    await take_over(client, pipe)
                await asyncio.wait((pipe.subscribed, pipe.closed), return_when="FIRST_COMPLETED")
                if pipe.subscribed.done():
                    await self._catch_up(stream, subscription, timeout_s)
                error = await pipe.closed
            except Exception as exc:  # logged below; the reader reconnects
                pipe.abort(redis_error(exc))
                error = exc
            if isinstance(error, TRANSIENT_ERRORS):
                self.log.warning("reply_reader_redis_error", error=str(error))
            else:  # a defect (a message that does not read, say): its traceback
                self.log.error("reply_reader_error", error=repr(error), exc_info=error)
            self.recheck.set()
            await asyncio.sleep(0.2)

    def _on_notice(self, stream: str, subscription: _Subscription, message: bytes) -> None:
        """Answer from one message. A message that does not read raises, which drops the
        subscriber: the next one reads its entry from the stream."""
        entry_id, fields = notice_entry(message)
        self._answer(stream, [(entry_id, fields)])
        if subscription.caught_up:
            self._reply_positions[stream] = entry_id
        else:  # entries before this one may still be unread: the catch-up moves the position
            subscription.newest = entry_id

    async def _catch_up(
        self, stream: str, subscription: _Subscription, timeout_s: float = SUBSCRIBER_TIMEOUT_S
    ) -> None:
        """Answer from the entries of a reply stream after where its subscriber started, up
        to its end; then the position is the newest entry answered either way (unless the
        stream was re-created meanwhile: then it is read from its start). A failure leaves
        the position where it was, for the next subscriber to catch up from."""
        after = subscription.start
        while True:
            async with bounded(timeout_s):  # a half-open connection would hold it for good
                entries = await self._xread(stream, after, block=None)
            if entries:
                self._answer(stream, entries)
                after = entries[-1][0]
            if len(entries) < READ_COUNT:
                break
        newest = subscription.newest
        if newest is not None and stream_id(newest) > stream_id(after):
            after = newest
        subscription.caught_up = True
        if self._resets[stream] == subscription.resets:
            self._reply_positions[stream] = after

    def _answer(self, stream: str, entries: list[Entry]) -> None:
        """Answer the requests of reply entries (a read of the stream, or one message)."""
        pending = self.pending
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

    def _check_pipes(self) -> None:
        """Drop a connection on which Redis is overdue (an append's reply, or a
        subscriber's SUBSCRIBE or PING)."""
        if self._appender is not None:
            self._appender.check()
        for reader in self._readers.values():
            reader.check()

    # -- a cluster: redis-py routes the appends and the reads --------------------------------

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
        without it, or it expired while Redis was away), and then read it from its start: a
        Redis restarted on a host whose clock is behind hands out lower ids. On a single
        server its subscriber is dropped, so that the next one catches up from there.
        Checked at once after any Redis error, as the engine cannot answer into a missing
        stream."""
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
                        self._resets[stream] += 1
                        self.log.warning("reply_stream_recreated", stream=stream)
                        reader = self._readers.get(stream)
                        if reader is not None:
                            reader.abort(RedisConnectionError("the reply stream was re-created"))
            except Exception as exc:  # logged; without this task every request would time out
                self.log.warning("reply_stream_keeper_error", error=repr(exc))
                await asyncio.sleep(0.5)
                self.recheck.set()

    async def _read_replies(self, stream: str) -> None:
        """Answer waiting requests from one of this replica's reply streams."""
        positions = self._reply_positions
        while True:
            entries = await self.guarded("reply_reader", self._xread(stream, positions[stream]))
            if entries:
                self._answer(stream, entries)
                positions[stream] = entries[-1][0]

    async def _xread(self, stream: str, after: Any, block: int | None = 1000) -> list[Entry]:
        """The entries of a reply stream after `after`, through the client (waiting up to
        `block` ms for the first; None: not at all)."""
        response: Any = await self.redis.xread(  # Any: redis-py's untyped reply
            {stream: after}, count=READ_COUNT, block=block
        )
        return [
            (entry_id, [item for pair in fields.items() for item in pair])
            for entry_id, fields in read_entries(response)
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
        while True:
            await self._queued.wait()
            self._queued.clear()
            while outbox:
                batch = outbox[:MAX_BATCH]
                del outbox[:MAX_BATCH]
                # A request that already failed (timed out) must not become an order later.
                batch = [item for item in batch if not item[2].done()]
                if batch:
                    await self._append(batch)

    async def _append(self, batch: list[tuple[str, bytes, asyncio.Future[list[Event]]]]) -> None:
        """Append one batch; a failed append fails its request's wait."""
        results: list[Any]  # Any: an entry id or an exception
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
            self._check_pipes()
            now = loop.time()
            while deadlines and deadlines[0][0] <= now:
                _, future = deadlines.popleft()
                if not future.done():
                    future.set_exception(TimeoutError())
                    self.recheck.set()  # was the reply stream lost?
