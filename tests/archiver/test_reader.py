"""The archiver's stream reads on a single server, against a real Redis: the progress copy
rides with a read only when the progress moved, and a server that stops answering fails the
read as a transient error, after which the next read starts on a fresh connection."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from archiver.service import _Reader
from shared.events import Cancelled, decode_events, encode_events
from shared.redis_client import TRANSIENT_ERRORS, AsyncClient, connect_async
from shared.stream_entries import field
from tests.redis_process import running_redis

STREAM, COPY = "events", "archiver:progress"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[subprocess.Popen[bytes], AsyncClient]]:
    with running_redis(tmp_path / "redis") as (process, url):
        client = connect_async(url, socket_timeout=0.5)
        try:
            for seq in (1, 2, 3):
                body = {"r": "", "c": "0-1", "e": encode_events([Cancelled(seq, seq, 1, 0)])}
                await client.xadd(STREAM, body, id=f"{seq}-0")  # type: ignore[arg-type]
            yield process, client
        finally:
            await client.aclose()


async def sets(client: AsyncClient) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_set", {}).get("calls", 0))


async def test_reads_entries_and_copies_the_progress_only_when_it_moved(
    server: tuple[subprocess.Popen[bytes], AsyncClient],
) -> None:
    _, client = server
    reader = _Reader(client, STREAM, COPY, copied=0)
    try:
        entries = await reader.read("0-0", 0)
        assert [e.seq for _, f in entries for e in decode_events(field(f, b"e"))] == [1, 2, 3]
        assert await client.get(COPY) is None and await sets(client) == 0
        assert await reader.read(entries[1][0], 2) == entries[2:]
        assert await client.get(COPY) == b"2" and await sets(client) == 1
        assert await reader.read(entries[2][0], 2) == []  # the block ran out
        assert await sets(client) == 1
    finally:
        await reader.close()


async def test_a_silent_server_fails_the_read_and_the_next_one_reconnects(
    server: tuple[subprocess.Popen[bytes], AsyncClient],
) -> None:
    process, client = server
    reader = _Reader(client, STREAM, COPY, copied=0)
    try:
        assert len(await reader.read("0-0", 0)) == 3
        process.send_signal(signal.SIGSTOP)
        with pytest.raises(redis.TimeoutError) as failed:
            await reader.read("0-0", 3)
        assert isinstance(failed.value, TRANSIENT_ERRORS)
        process.send_signal(signal.SIGCONT)
        assert len(await reader.read("0-0", 3)) == 3
        assert await client.get(COPY) == b"3"
    finally:
        await reader.close()
