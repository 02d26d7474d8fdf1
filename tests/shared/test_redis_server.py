"""The embedded Redis server's start-up (`shared/redis_server.py`)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shared.redis_client import connect
from shared.redis_server import free_port, start_redis

FILL = "for i = ARGV[1], ARGV[1] + 99999 do redis.call('SET', 'k' .. i, i) end"
KEYS = 1_500_000


def servers_on(port: int) -> list[int]:
    """The processes started with `--port PORT`, or titled `redis-server 127.0.0.1:PORT` as
    Redis renames itself once up (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # ended meanwhile
        started = b"--port" in args[:-1] and args[args.index(b"--port") + 1] == b"%d" % port
        if started or any(arg.endswith(b"127.0.0.1:%d" % port) for arg in args):
            found.append(int(entry.name))
    return found


def test_a_server_that_does_not_answer_in_time_is_stopped(tmp_path: Path) -> None:
    """A restarted server answers LOADING until it has read its AOF back: one that took
    longer than the wait was left running, owned by no one, holding the port (and its
    caller's output)."""
    port = free_port()
    process, url = start_redis(tmp_path / "redis", port)
    try:
        client = connect(url)
        for first in range(0, KEYS, 100_000):
            client.eval(FILL, 0, first)
        client.bgrewriteaof()
        while client.info("persistence")["aof_rewrite_in_progress"]:
            time.sleep(0.05)
        client.close()
    finally:
        process.terminate()
        process.wait(timeout=30)

    try:
        answered, _ = start_redis(tmp_path / "redis", port, timeout_s=0.1)
    except TimeoutError:
        pass
    else:
        answered.terminate()
        answered.wait(timeout=30)
        pytest.fail("it answered within 0.1 s: the AOF was read back too fast for this test")
    assert servers_on(port) == []
    process, url = start_redis(tmp_path / "redis", port)  # the port is free, the data there
    try:
        assert servers_on(port) == [process.pid]
        assert connect(url).dbsize() == KEYS
    finally:
        process.terminate()
        process.wait(timeout=30)
