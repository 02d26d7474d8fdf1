"""One dedicated connection to a single Redis server, speaking the wire protocol directly for
the journal's two hot commands: the batch of command appends, and the reply stream read.

Why not redis-py's pipeline and `xread`: profiling an API replica under `python -m
tests.load` showed its per-command machinery (argument encoding, the command stack,
response callbacks, the connection pool's lock and timeout per batch, the dict built per
stream entry) costing more CPU than the rest of the Redis path. Here a batch is packed
into one buffer (the per-stream part of each append is packed once, at start-up), the
replies are read raw (`shared.replies` takes an entry apart). The connection is
redis-py's own (same URL options, reconnect and health handling, hiredis parsing), held
outside the pool, and retried on a connection error as redis-py retries a pipeline. Its
socket timeout bounds each round trip as a whole (one timer per batch), not each write
and each reply.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeout

# A reply stream entry as Redis sends it: (entry id, [field, value, ...]).
Entry = tuple[bytes, list[bytes]]


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def pack_append_head(stream: str) -> bytes:
    """`XADD <stream> * c`, without its last argument (the command body)."""
    return b"*5\r\n$4\r\nXADD\r\n" + _bulk(stream.encode()) + b"$1\r\n*\r\n$1\r\nc\r\n"


class Link:
    def __init__(self, client: aioredis.Redis) -> None:
        pool = client.connection_pool
        options = pool.connection_kwargs
        # The socket timeout of every other connection, applied to a round trip whole.
        self.timeout_s: float | None = options.get("socket_timeout") or None
        self.connection: Any = pool.connection_class(**{**options, "socket_timeout": None})
        self._heads: dict[str, bytes] = {}

    async def close(self) -> None:
        await self.connection.disconnect()

    async def append(self, commands: list[tuple[str, bytes]]) -> list[object]:
        """XADD each (stream, body) as field `c`: each one's entry id, or its ResponseError."""
        heads = self._heads
        parts: list[bytes] = []
        for stream, body in commands:
            head = heads.get(stream)
            if head is None:
                head = heads[stream] = pack_append_head(stream)
            parts += (head, b"$%d\r\n" % len(body), body, b"\r\n")
        packed = b"".join(parts)
        return await self._retried(lambda: self._round_trip(packed, len(commands), 0.0))  # type: ignore[no-any-return]

    async def read(self, stream: str, after: bytes, count: int, block_ms: int) -> list[Entry]:
        """XREAD COUNT `count` BLOCK `block_ms` STREAMS `stream` `after`: the entries."""
        packed = b"".join(
            (
                b"*8\r\n$5\r\nXREAD\r\n$5\r\nCOUNT\r\n",
                _bulk(b"%d" % count),
                b"$5\r\nBLOCK\r\n",
                _bulk(b"%d" % block_ms),
                b"$7\r\nSTREAMS\r\n",
                _bulk(stream.encode()),
                _bulk(after),
            )
        )
        replies = await self._retried(lambda: self._round_trip(packed, 1, block_ms / 1000))
        found = replies[0]
        if isinstance(found, ResponseError):
            raise found
        if not found:
            return []
        if isinstance(found, dict):  # RESP3: {stream: entries}
            return next(iter(found.values()))
        return found[0][1]  # type: ignore[no-any-return]  # RESP2: [[stream, entries]]

    async def _round_trip(self, packed: bytes, replies: int, blocks_s: float) -> list[object]:
        """Send `packed`, read its `replies`; within the socket timeout (plus `blocks_s`, how
        long the command may block in Redis)."""
        connection = self.connection
        answers: list[object] = []
        limit = None if self.timeout_s is None else self.timeout_s + blocks_s
        try:
            async with asyncio.timeout(limit):
                await connection.send_packed_command(packed, check_health=False)
                for _ in range(replies):
                    try:
                        answers.append(await connection.read_response(disable_decoding=True))
                    except ResponseError as exc:  # read whole: the connection stays in step
                        answers.append(exc)
        except TimeoutError:
            await connection.disconnect(nowait=True)
            raise RedisTimeout(f"no answer from Redis within {self.timeout_s} s") from None
        return answers

    async def _retried(self, call: Any) -> Any:
        """`call` under the connection's retry policy, reconnecting between attempts (as
        redis-py runs a pipeline: a connection the server closed while it sat idle, say
        across a Redis restart, fails once and is replaced)."""
        connection = self.connection

        async def reconnect(error: Exception) -> None:
            await connection.disconnect()

        return await connection.retry.call_with_retry(call, reconnect)
