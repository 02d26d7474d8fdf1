"""The engine's stream reader against a real Redis: a command carried with a blocking read
is settled in order, and the engine is not woken for its short answer alone."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hiredis
import pytest
import redis

from engine.reader import Batch, StreamReader
from shared.redis_server import start_redis

STREAM = "commands"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    process, url = start_redis(tmp_path / "redis")
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


class Carried:
    """A command carried with a read, both on a thread of their own (the reader keeps one
    connection per thread): the command's answer and when it came, what the read returned."""

    def __init__(self, server: str, command: tuple[Any, ...], block_ms: int) -> None:
        self.reader = StreamReader(redis.Redis.from_url(server), {"book": {STREAM: "0-0"}}, 100)
        self.answer: object = None
        self.settled = threading.Event()
        self.got: list[Batch] = []
        self.connection: Any = None
        self.low_water_after = 0
        self.thread = threading.Thread(target=self._read, args=(command, block_ms), daemon=True)
        self.thread.start()

    def _read(self, command: tuple[Any, ...], block_ms: int) -> None:
        self.connection = self.reader.carry(hiredis.pack_command(command), self._settle)
        self.got += self.reader.read(block_ms)
        sock = self.connection._sock
        self.low_water_after = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)
        self.reader.close()

    def _settle(self) -> None:
        self.answer = self.connection.read_response()
        self.settled.set()

    def join(self) -> None:
        self.thread.join(10)
        assert not self.thread.is_alive()


def test_a_short_answer_is_settled_with_the_read_not_before_it(server: str) -> None:
    carried = Carried(server, ("EXISTS", "nothing"), 10_000)  # answers `:0\r\n`, 4 bytes
    # Redis answers EXISTS at once; the reading thread is not woken until the read answers.
    assert not carried.settled.wait(0.5)
    entry = redis.Redis.from_url(server).xadd(STREAM, {"c": b"command"})
    carried.join()
    assert carried.answer == 0
    assert carried.got == [("book", {STREAM: [[entry, [b"c", b"command"]]]})]
    assert carried.low_water_after == 1  # reset: a later reply's last bytes are read


def test_a_carried_command_settles_when_the_read_times_out_empty(server: str) -> None:
    carried = Carried(server, ("EXISTS", "nothing"), 200)
    carried.join()
    assert carried.answer == 0
    assert carried.got == []
    assert carried.low_water_after == 1


def test_a_longer_answer_is_settled_at_once(server: str) -> None:
    """A fence or an error answers with more bytes than a publish that went through: the
    engine learns of it while the read still blocks."""
    carried = Carried(server, ("ECHO", "fenced"), 10_000)
    assert carried.settled.wait(5)
    assert carried.answer == b"fenced"
    assert carried.thread.is_alive()  # the read still blocks
    redis.Redis.from_url(server).xadd(STREAM, {"c": b"command"})
    carried.join()
    assert len(carried.got) == 1
