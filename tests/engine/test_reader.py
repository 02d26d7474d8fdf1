"""The engine's stream reader against a real Redis: a command carried with a blocking read
is settled before the read's entries, and over TCP the engine is not woken for the
publish's usual short answer alone; it never hangs, whatever the protocol and timeout."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import hiredis
import pytest
import redis

from engine.reader import Batch, StreamReader
from tests.redis_process import running_redis

STREAM = "commands"
# The connection options the engine may run with: RESP2 or RESP3 (an empty read's answer
# is 5 bytes or 3), with or without a socket timeout (a recv after a poll, or a plain one).
OPTIONS = [
    pytest.param({"protocol": protocol, "socket_timeout": timeout}, id=f"resp{protocol}-{name}")
    for protocol in (2, 3)
    for timeout, name in ((None, "no-timeout"), (5, "timeout"))
]
# Publishes' answers: one that went through (`:0\r\n`, 4 bytes), one refused by the fence
# (`:-1\r\n`, 5 bytes), one that found an entry published before (`:1\r\n`).
PUBLISHED: tuple[Any, ...] = ("EVAL", "return 0", "0")
FENCED: tuple[Any, ...] = ("EVAL", "return -1", "0")
SKIPPED_ONE: tuple[Any, ...] = ("EVAL", "return 1", "0")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_redis(tmp_path_factory.mktemp("redis")) as (_, url):
        yield url


class Carried:
    """A command carried with a read, both on a thread of their own (the reader keeps one
    connection per thread): the command's answer and when it came, what the read returned.
    The settle starts `late_s` after it is called (a preempted engine thread), so that the
    short answer is already queued when it reads."""

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        command: tuple[Any, ...],
        block_ms: int,
        late_s: float = 0.0,
    ) -> None:
        self.reader = StreamReader(client, {"book": {stream: "0-0"}}, 100)
        self.late_s = late_s
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
        time.sleep(self.late_s)
        self.answer = self.connection.read_response()
        self.settled.set()

    def join(self) -> None:
        self.thread.join(10)
        assert not self.thread.is_alive(), "the reader hangs"


@pytest.mark.parametrize("options", OPTIONS)
def test_the_usual_answer_is_settled_with_the_read_not_before_it(
    server: str, options: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    client = redis.Redis.from_url(server, **options)
    stream = request.node.name
    carried = Carried(client, stream, PUBLISHED, 10_000)
    # Redis answers the publish at once; the reading thread is not woken until the read
    # answers too.
    assert not carried.settled.wait(0.5)
    entry = client.xadd(stream, {"c": b"command"})
    carried.join()
    assert carried.answer == 0
    ((book, read),) = carried.got
    assert (book, list(read), [list(e) for e in read[stream]]) == (
        "book",
        [stream],
        [[entry, [b"c", b"command"]]],
    )
    assert carried.low_water_after == 1  # reset: a later reply's last bytes are read


@pytest.mark.parametrize("options", OPTIONS)
def test_a_read_that_times_out_empty_ends_even_when_the_answer_is_read_late(
    server: str, options: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    """The publish's 4 bytes are queued before the settle reads; then the read's empty
    answer (3 bytes in RESP3) comes: a recv under the mark would wait for good."""
    client = redis.Redis.from_url(server, **options)
    carried = Carried(client, request.node.name, PUBLISHED, 200, late_s=0.02)
    carried.join()
    assert carried.answer == 0
    assert carried.got == []
    assert carried.low_water_after == 1


@pytest.mark.parametrize("options", OPTIONS)
def test_a_fenced_publish_is_settled_at_once(
    server: str, options: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    """A fence's answer is one byte longer than a publish that went through: the engine
    learns of it while the read still blocks."""
    client = redis.Redis.from_url(server, **options)
    stream = request.node.name
    carried = Carried(client, stream, FENCED, 10_000)
    assert carried.settled.wait(5)
    assert carried.answer == -1
    assert carried.thread.is_alive()  # the read still blocks
    client.xadd(stream, {"c": b"command"})
    carried.join()
    assert len(carried.got) == 1


def test_a_short_answer_other_than_zero_waits_for_the_read_like_zero(server: str) -> None:
    """One to nine entries published before (after a takeover) answer in 4 bytes too: they
    are settled when the read answers, still before its entries are applied."""
    client = redis.Redis.from_url(server)
    carried = Carried(client, "skipped", SKIPPED_ONE, 200)
    carried.join()
    assert carried.answer == 1
    assert carried.got == []


@pytest.mark.parametrize("carried", [False, True], ids=["plain", "carried"])
def test_a_socket_timeout_shorter_than_the_block_fails_the_read_alike(
    server: str, carried: bool
) -> None:
    """The wait for the read's answer is bounded by the socket timeout too: a carried read
    times out as a plain one does, instead of waiting out the block."""
    client = redis.Redis.from_url(server, socket_timeout=0.3)
    reader = StreamReader(client, {"book": {"timeout": "0-0"}}, 100)
    answers: list[object] = []
    if carried:
        connection = reader.carry(
            hiredis.pack_command(PUBLISHED), lambda: answers.append(connection.read_response())
        )
    with pytest.raises(redis.TimeoutError):
        reader.read(2000)
    assert answers == ([0] if carried else [])
    reader.close()
