"""Connections of their own to a single Redis server for the journal's two hot paths, the
appends of commands and the answers on a reply stream's channel, driven by callbacks
instead of tasks.

Why: under an open-loop load (requests arriving one at a time) each append batch and each
reply read is a handful of requests, so what a round trip costs in the API counts per
request. Awaited through redis-py, each one was a task step, a timeout object and its
timer, a retry wrapper and a chain of coroutines for every reply; py-spy put that at about
an eighth of an API replica's CPU. Here a batch is one `transport.write`, and its replies
are parsed by hiredis in `data_received` and handed to the futures that wait for them, in
order: 5-14 µs less API CPU per mutation at 5,000 mutations/s, and from 1 to 40 clients
closed loop 20-60% more mutations/s (docs/operations.md).

The connection is opened by redis-py (the URL's options: TLS, AUTH, database, protocol) and
then taken over: its transport is given to the protocol here. A connection that Redis
closes, or that stops answering for the socket timeout, fails what waits on it at once (the
requests answer 503, as when Redis is down), and the next use opens a new one.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeout

# A reply stream entry as Redis sends it: (entry id, [field, value, ...]).
Entry = tuple[bytes, list[bytes]]


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def pack_append_head(stream: str) -> bytes:
    """`XADD <stream> * c`, without its last argument (the command body)."""
    return b"*5\r\n$4\r\nXADD\r\n" + _bulk(stream.encode()) + b"$1\r\n*\r\n$1\r\nc\r\n"


def timeout_of(client: aioredis.Redis) -> float | None:
    """The client's socket timeout: how long a round trip may take here."""
    return client.connection_pool.connection_kwargs.get("socket_timeout") or None


async def take_over(client: aioredis.Redis, protocol: _Pipe) -> None:
    """Open a connection with `client`'s options (the handshake is redis-py's), then hand
    its transport to `protocol`. redis-py's connection object forgets it: nothing of
    redis-py reads from it again. The pipe keeps the stream writer, whose finalizer would
    close the transport."""
    options = client.connection_pool.connection_kwargs
    connection: Any = client.connection_pool.connection_class(**options)
    try:
        await connection.connect()
    except BaseException:  # cancelled or failed mid-way: close what was opened
        connection._close()
        raise
    # redis-py's, pinned by the lock (tests/api/test_redis_link.py runs this).
    writer, leftover = connection._writer, connection._parser._reader
    connection._reader = connection._writer = None
    if leftover is not None and leftover.has_data():  # nothing is due after the handshake
        writer.close()
        raise RedisConnectionError("unexpected data after the Redis handshake")
    protocol.writer = writer
    transport = writer.transport
    transport.set_protocol(protocol)
    protocol.connection_made(transport)


class _Pipe(asyncio.Protocol):
    """A taken-over connection: replies parsed by hiredis, error replies as the redis-py
    exceptions (values, not raised)."""

    def __init__(self, timeout_s: float | None) -> None:
        self.timeout_s = timeout_s
        # Error replies as redis-py raises them (LOADING is a BusyLoadingError, transient).
        self.parser = hiredis.Reader(replyError=BaseParser.parse_error)
        self.transport: asyncio.Transport | None = None
        self.writer: asyncio.StreamWriter | None = None  # see `take_over`
        self.closed: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        if self.closed.done():  # aborted while it was being opened
            transport.abort()  # type: ignore[attr-defined]

    @property
    def open(self) -> bool:
        return self.transport is not None and not self.closed.done()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.lost(redis_error(exc) if exc else RedisConnectionError("Redis closed the connection"))

    def replies(self, data: bytes) -> list[Any]:
        """The replies `data` completes (push messages left out); on bytes that are not
        RESP, the connection is dropped and none."""
        parser = self.parser
        found = []
        try:
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                if type(reply) is not hiredis.PushNotification:
                    found.append(reply)
        except hiredis.ProtocolError as exc:
            self.abort(redis_error(exc))
            return []
        return found

    def lost(self, error: Exception) -> None:
        if not self.closed.done():
            self.closed.set_result(error)

    def abort(self, error: Exception) -> None:
        """Drop the connection (overdue or broken): what waits on it fails with `error`."""
        self.lost(error)
        if self.transport is not None:
            self.transport.abort()

    def overdue(self, since: float) -> bool:
        return self.timeout_s is not None and time.monotonic() - since > self.timeout_s


def redis_error(exc: BaseException) -> RedisError:
    """`exc` as the redis-py error the journal's callers map to 503: a connection reset or
    a protocol error is a lost connection."""
    if isinstance(exc, RedisError):
        return exc
    error = RedisConnectionError(f"connection to Redis lost: {exc!r}")
    error.__cause__ = exc
    return error


class AppendPipe(_Pipe):
    """Appends commands; each reply goes to the future of the request it belongs to, which
    fails only when the append does (an entry id is all a success returns). `on_answered`
    is called when every append sent has its reply."""

    def __init__(
        self, timeout_s: float | None, on_answered: Callable[[], object] = lambda: None
    ) -> None:
        super().__init__(timeout_s)
        self.on_answered = on_answered
        self.heads: dict[str, bytes] = {}
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.progress_at = 0.0  # when the oldest waiting reply was sent or the last came

    def append(self, commands: list[tuple[str, bytes, asyncio.Future[Any]]]) -> None:
        """XADD each (stream, body) as field `c`, in one write."""
        assert self.transport is not None
        heads = self.heads
        parts: list[bytes] = []
        for stream, body, _ in commands:
            head = heads.get(stream)
            if head is None:
                head = heads[stream] = pack_append_head(stream)
            parts += (head, b"$%d\r\n" % len(body), body, b"\r\n")
        self.transport.write(b"".join(parts))
        if not self.waiting:
            self.progress_at = time.monotonic()
        self.waiting.extend(future for _, _, future in commands)

    def data_received(self, data: bytes) -> None:
        waiting = self.waiting
        busy = bool(waiting)
        for reply in self.replies(data):
            if not waiting:
                self.abort(RedisConnectionError("a reply nothing waited for"))
                return
            future = waiting.popleft()
            if isinstance(reply, RedisError) and not future.done():
                future.set_exception(reply)
        self.progress_at = time.monotonic()
        if busy and not waiting:
            self.on_answered()

    def lost(self, error: Exception) -> None:
        super().lost(error)
        waiting, self.waiting = self.waiting, deque()
        for future in waiting:
            if not future.done():
                future.set_exception(error)

    def check(self) -> None:
        """Drop the connection if Redis has answered nothing for the socket timeout."""
        if self.waiting and self.overdue(self.progress_at):
            self.abort(RedisTimeout(f"no answer from Redis within {self.timeout_s} s"))


class SubscribePipe(_Pipe):
    """Answers from the channel of one reply stream (`shared.replies`): one SUBSCRIBE, then
    each message, a reply entry, goes to `on_message` from the callback. No read has to be
    sent again after each batch, as it had with a blocking XREAD: a write less per batch in
    the API, a command less in Redis. `subscribed` is set once Redis confirms; entries
    appended before that the owner reads from the stream (it catches up). A second with no
    message sends a PING, and a PING (or the SUBSCRIBE) unanswered for `timeout_s` (the
    socket timeout, or the journal's 5 s where the URL sets none) drops the connection."""

    def __init__(
        self,
        timeout_s: float | None,
        stream: str,
        on_message: Callable[[bytes], None],
        ping_s: float = 1.0,
    ) -> None:
        super().__init__(timeout_s)
        self.stream, self.on_message, self.ping_s = stream, on_message, ping_s
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.heard_at = 0.0
        self.asked_at: float | None = None  # when the unanswered SUBSCRIBE or PING was sent

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self.open:
            return
        self.heard_at = self.asked_at = time.monotonic()
        self.transport.write(b"*2\r\n$9\r\nSUBSCRIBE\r\n" + _bulk(self.stream.encode()))  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.heard_at, self.asked_at = time.monotonic(), None
        parser = self.parser
        try:
            parser.feed(data)
            while (reply := parser.gets()) is not False:
                # RESP2 sends a message as an array, RESP3 as a push; a PONG is either
                if isinstance(reply, RedisError):
                    self.abort(reply)
                    return
                if type(reply) is bytes:  # RESP3's PONG
                    continue
                kind = reply[0]
                if kind == b"message":
                    self.on_message(reply[2])
                elif kind == b"subscribe" and not self.subscribed.done():
                    self.subscribed.set_result(None)
        except hiredis.ProtocolError as exc:
            self.abort(redis_error(exc))
        except Exception as exc:  # `on_message` failed: the owner logs it, and reconnects
            self.abort(exc)

    def check(self) -> None:
        """PING after a quiet second; drop the connection if Redis is overdue with a reply."""
        if not self.open:
            return
        if self.asked_at is not None:
            if self.overdue(self.asked_at):
                self.abort(RedisTimeout(f"no answer from Redis within {self.timeout_s} s"))
        elif time.monotonic() - self.heard_at > self.ping_s:
            self.asked_at = time.monotonic()
            self.transport.write(b"*1\r\n$4\r\nPING\r\n")  # type: ignore[union-attr]
