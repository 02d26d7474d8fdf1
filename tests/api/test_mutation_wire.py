"""The order mutations on the wire, where the edge's HTTP protocol answers them itself
(`graphql_api/edge/direct.py`): pipelining, connection handling, the edge's refusals, the
rate limit's client address and answers byte for byte as uvicorn's path gives them.

Raw sockets against the real server (uvicorn behind the edge's limits, on a thread, over the
in-process engine), since an HTTP client library hides what is checked here: the order of
answers on one connection, the head's fields, when the server closes.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from graphql_api.security import hash_key
from shared.redis_client import connect
from tests.api.conftest import ThreadServer, engineless_redis, inprocess_settings
from tests.attacks import send_head_and_wait, status_of

MAX_BODY = 4096
PLACE = b'{"side": 1, "price": 7, "quantity": 1}'
ORIGIN = "http://good.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    settings = replace(
        inprocess_settings(tmp_path_factory.mktemp("wire")),
        max_body_bytes=MAX_BODY,
        body_timeout_s=1.0,
    )
    with ThreadServer(settings) as running:
        yield running


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    settings = replace(
        inprocess_settings(tmp_path_factory.mktemp("wire-limited")),
        rate_limit_per_s=0.001,
        rate_limit_burst=2,
    )
    with ThreadServer(settings) as running:
        yield running


def request(method: str, path: str, body: bytes = b"", *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: x", *headers]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Answer:
    def __init__(self, head: bytes, body: bytes) -> None:
        status_line, *fields = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.fields = [(name, value) for name, _, value in (f.partition(": ") for f in fields)]
        self.headers = dict(self.fields)
        self.body = body
        self.raw = head + b"\r\n\r\n" + body

    def json(self) -> Any:  # Any: parsed JSON
        return json.loads(self.body)


class Wire:
    """One raw keep-alive connection to the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Wire:
        host, port = url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def send(self, *requests: bytes) -> None:
        self.writer.write(b"".join(requests))  # in one write: pipelined
        await self.writer.drain()

    async def answer(self) -> Answer:
        """The next final answer (after any `100 Continue`)."""
        async with asyncio.timeout(10):
            head = (await self.reader.readuntil(b"\r\n\r\n"))[:-4]
            while head.startswith(b"HTTP/1.1 100 "):
                head = (await self.reader.readuntil(b"\r\n\r\n"))[:-4]
            length = re.search(rb"(?i)\r\ncontent-length: (\d+)", head)
            assert length is not None, head
            return Answer(head, await self.reader.readexactly(int(length[1])))

    async def closed(self) -> bool:
        """Whether the server closes the connection (within 10 s) with nothing more sent."""
        async with asyncio.timeout(10):
            return await self.reader.read() == b""

    def close(self) -> None:
        self.writer.close()


async def test_pipelined_mutations_are_answered_in_order(server: ThreadServer) -> None:
    """Mutations, a refused mutation and a read (which takes uvicorn's path) sent in one
    write are answered in the order sent, on the one keep-alive connection."""
    wire = await Wire.open(server.url)
    await wire.send(
        request("POST", "/orders", PLACE),
        request("POST", "/orders", b"{"),
        request("GET", "/health/live"),
        request("DELETE", "/orders/x1"),
        request("POST", "/orders", PLACE),
    )
    answers = [await wire.answer() for _ in range(5)]
    assert [a.status for a in answers] == [201, 400, 200, 422, 201], [a.raw for a in answers]
    assert answers[1].json()["error"] == "invalid_json"
    assert answers[2].json() == {"live": True}
    first, second = (a.json()["order_id"] for a in (answers[0], answers[4]))
    assert int(first) < int(second)
    # What uvicorn puts in every head, then the handler's fields, and no `connection`.
    assert [name for name, _ in answers[0].fields] == [
        "date",
        "server",
        "content-type",
        "content-length",
    ]
    assert answers[0].headers["content-type"] == "application/json"

    # Each cancel is answered for its own order: the second one cancels nothing.
    await wire.send(
        request("DELETE", f"/orders/{second}"),
        request("DELETE", f"/orders/{first}"),
        request("DELETE", f"/orders/{first}"),
    )
    cancels = [(await wire.answer()).json() for _ in range(3)]
    assert cancels[:2] == [{"success": True}, {"success": True}], cancels
    assert cancels[2] != {"success": True}, cancels
    wire.close()


async def test_connection_close_and_http10_end_the_connection(server: ThreadServer) -> None:
    for sent in (
        request("POST", "/orders", PLACE, "Connection: close"),
        request("POST", "/orders", PLACE).replace(b"HTTP/1.1", b"HTTP/1.0", 1),
    ):
        wire = await Wire.open(server.url)
        await wire.send(sent)
        answer = await wire.answer()
        assert answer.status == 201, answer.raw
        assert answer.headers["connection"] == "close", answer.raw
        assert await wire.closed()
        wire.close()
    # Keep-alive asked for explicitly on HTTP/1.0 is still closed, as uvicorn does.
    wire = await Wire.open(server.url)
    await wire.send(
        request("DELETE", "/orders/1", b"", "Connection: keep-alive").replace(
            b"HTTP/1.1", b"HTTP/1.0", 1
        )
    )
    assert (await wire.answer()).headers["connection"] == "close"
    assert await wire.closed()
    wire.close()


async def test_a_body_over_the_limit_is_refused(server: ThreadServer) -> None:
    head = b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    declared = head + b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1)
    answer, _ = await send_head_and_wait(server.url, declared, b"{", 10)
    assert status_of(answer) == 413, answer
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {
        "error": "body_too_large",
        "message": f"the body must be at most {MAX_BODY} bytes",
    }
    chunked = head + b"Transfer-Encoding: chunked\r\n\r\n"
    chunk = b"x" * 1024
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY // 1024 + 1))
    answer, _ = await send_head_and_wait(server.url, chunked, chunks, 10)
    assert status_of(answer) == 413, answer


async def test_a_slow_body_is_refused(server: ThreadServer) -> None:
    """Half of a declared body, then nothing: 408 once the body timeout (1 s here) passes,
    also for a mutation waiting behind another on the same connection."""
    partial = request("POST", "/orders", PLACE)[:-10]
    answer, _ = await send_head_and_wait(server.url, partial, b"", 10)
    assert status_of(answer) == 408, answer
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    message = "the request body must arrive within 1 s"
    assert body == {"error": "request_timeout", "message": message}
    answer, _ = await send_head_and_wait(
        server.url, request("POST", "/orders", PLACE) + partial, b"", 10
    )
    assert answer.startswith(b"HTTP/1.1 201 "), answer
    assert status_of(answer) == 408, answer


async def test_refusals_name_the_field(server: ThreadServer) -> None:
    wire = await Wire.open(server.url)
    await wire.send(
        request("POST", "/orders", b'{"side": 1, "price": 7, "quantity": 1, "colour": "red"}'),
        request("POST", "/orders", b'{"side": 2, "price": 7, "quantity": 1}'),
        request("PUT", "/orders/abc", b'{"price": 5}'),
        request("POST", "/orders", b'{"side": 1, "price": 7, "quantity": 1, "side": -1}'),
        request("POST", "/orders", PLACE).replace(b"application/json", b"text/plain"),
    )
    answers = [await wire.answer() for _ in range(5)]
    assert [a.status for a in answers] == [422, 422, 422, 422, 415], [a.raw for a in answers]
    fields = [[e["field"] for e in a.json()["errors"]] for a in answers[:4]]
    assert fields == [["colour"], ["side"], ["order_id"], ["side"]], fields
    assert answers[4].json()["error"] == "unsupported_media_type"
    wire.close()


async def test_answers_are_uvicorns_byte_for_byte(server: ThreadServer) -> None:
    """`Expect: 100-continue` takes uvicorn's path (its interim answer is uvicorn's to
    send): the final answers of the two paths match to the byte, but for the date."""
    refused = b'{"side": 1, "price": 7, "quantity": 1, "colour": "red"}'
    for sent in (
        request("POST", "/orders", refused),
        request("PUT", "/orders/abc", b"{}"),
        request("DELETE", "/orders/123456789", b"", "Connection: close"),
    ):
        wire = await Wire.open(server.url)
        await wire.send(sent)
        direct = await wire.answer()
        wire.close()
        wire = await Wire.open(server.url)
        await wire.send(sent.replace(b"Host: x", b"Host: x\r\nExpect: 100-continue"))
        full = await wire.answer()
        wire.close()
        undated = re.compile(rb"\r\ndate: [^\r]*")
        assert undated.sub(b"", direct.raw) == undated.sub(b"", full.raw), (direct.raw, full.raw)


async def test_the_rate_limit_buckets_by_the_forwarded_client(limited: ThreadServer) -> None:
    """Behind a trusted proxy (loopback, uvicorn's default), the X-Forwarded-For address is
    the client: each gets its burst (2 here) and then a 429 with Retry-After."""
    wire = await Wire.open(limited.url)
    for address in ("10.0.0.1", "10.0.0.2"):
        forwarded = f"X-Forwarded-For: {address}"
        await wire.send(*(request("POST", "/orders", PLACE, forwarded) for _ in range(3)))
        answers = [await wire.answer() for _ in range(3)]
        assert [a.status for a in answers] == [201, 201, 429], [a.raw for a in answers]
        assert answers[2].json()["error"] == "rate_limited"
        assert int(answers[2].headers["retry-after"]) >= 1
    await wire.send(request("POST", "/orders", PLACE))  # the proxy's own address
    assert (await wire.answer()).status == 201
    wire.close()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    settings = replace(
        inprocess_settings(tmp_path_factory.mktemp("wire-guarded")),
        auth_mode="api_key",
        api_keys=f"alice:{hash_key('alice-secret')}",
        allowed_origins=(ORIGIN,),
    )
    with ThreadServer(settings) as running:
        yield running


async def test_api_keys_and_cors_on_the_mutations(guarded: ThreadServer) -> None:
    """Without a key, 401 with its challenge; with one, placed. A browser's request (an
    Origin under CORS) gets CORSMiddleware's headers, another request none."""
    key = "X-API-Key: alice-secret"
    wire = await Wire.open(guarded.url)
    await wire.send(
        request("POST", "/orders", PLACE),
        request("POST", "/orders", PLACE, "X-API-Key: mallory"),
        request("POST", "/orders", PLACE, key),
        request("POST", "/orders", PLACE, key, f"Origin: {ORIGIN}"),
    )
    answers = [await wire.answer() for _ in range(4)]
    assert [a.status for a in answers] == [401, 401, 201, 201], [a.raw for a in answers]
    assert answers[0].headers["www-authenticate"] == "ApiKey"
    assert answers[1].json()["message"] == "unknown API key"
    assert "access-control-allow-origin" not in answers[2].headers
    assert answers[3].headers["access-control-allow-origin"] == ORIGIN
    wire.close()


async def test_a_refusal_read_with_a_mutation_follows_its_answer(server: ThreadServer) -> None:
    """A mutation, then a declared body over the limit, in one write: the mutation is
    answered (placed), then the 413, and the connection ends. (The 413 written at once read
    as the mutation's answer, while the order was placed: the same client order id was then
    a duplicate.)"""
    place = b'{"side": 1, "price": 7, "quantity": 1, "client_order_id": "refused-after"}'
    oversized = b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    oversized += b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1)
    wire = await Wire.open(server.url)
    await wire.send(request("POST", "/orders", place), oversized)
    placed, refusal = await wire.answer(), await wire.answer()
    assert [placed.status, refusal.status] == [201, 413], (placed.raw, refusal.raw)
    assert refusal.json()["error"] == "body_too_large"
    assert await wire.closed()
    wire.close()


async def test_a_refusal_waits_for_the_answers_owed_before_it(engineless: ThreadServer) -> None:
    """A mutation still waiting for the engine, then a request whose body stops coming:
    the mutation's own answer comes first, then the 408 for the one after it (answering
    the 408 first would tell the client its mutation was refused, while it may have been
    carried out)."""
    partial = request("POST", "/orders", PLACE)[:-10]
    wire = await Wire.open(engineless.url)
    await wire.send(request("POST", "/orders", PLACE), partial)
    first = await wire.answer()
    assert first.status != 408, first.raw
    second = await wire.answer()
    assert second.status == 408, second.raw
    assert await wire.closed()
    wire.close()


async def test_a_pipelined_body_is_due_from_its_turn(engineless: ThreadServer) -> None:
    """A mutation waiting for the engine (3 s, then 503), and behind it a request whose body
    ends after the body timeout (1 s) but while the first still waits: reading is paused
    behind the first, so the second's body is due from its turn, not from its headers, and
    it is answered for what it is (a 400 for its JSON), not refused with a 408. The same
    for a second request on uvicorn's path (`Expect: 100-continue`)."""
    direct = request("POST", "/orders", b"{" * 20)
    for second in (direct, direct.replace(b"Host: x", b"Host: x\r\nExpect: 100-continue")):
        wire = await Wire.open(engineless.url)
        await wire.send(request("POST", "/orders", PLACE), second[:-5])
        await asyncio.sleep(1.5)
        await wire.send(second[-5:])
        first, then = await wire.answer(), await wire.answer()
        assert [first.status, then.status] == [503, 400], (first.raw, then.raw)
        assert then.json()["error"] == "invalid_json"
        wire.close()


async def test_a_direct_mutation_in_flight_at_shutdown_is_answered(tmp_path: Path) -> None:
    """The server stopping while a mutation waits for the engine (uvicorn's shutdown reads
    and sets the direct request as it does a request cycle): the mutation is answered
    (503 once its request timeout passes), with `connection: close`, and the connection
    ends; the server waits for it before it stops."""
    with engineless_redis(tmp_path) as settings, ThreadServer(settings) as server:
        wire = await Wire.open(server.url)
        await wire.send(request("POST", "/orders", PLACE))
        redis = connect(settings.redis_url)
        try:
            async with asyncio.timeout(10):
                while not redis.xlen(settings.command_stream):  # the API appended it
                    await asyncio.sleep(0.02)
        finally:
            redis.close()
        server.server.should_exit = True
        answer = await wire.answer()
        assert answer.status == 503, answer.raw
        assert answer.headers["connection"] == "close", answer.raw
        assert await wire.closed()
        wire.close()
