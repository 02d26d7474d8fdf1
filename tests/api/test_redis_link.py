"""The journal's callback-driven connections (`graphql_api/gateway/redis_link.py`) against
a real Redis: replies go to the right request, a connection that Redis closes or that stops
answering fails what waits on it, and the API carries on over new connections."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeout

from graphql_api.gateway import redis_journal
from graphql_api.gateway.redis_journal import MAX_BATCH, Journal, _Subscription
from graphql_api.gateway.redis_link import AppendPipe, SubscribePipe, take_over
from shared.commands import Place
from shared.config import Settings
from shared.events import Rejected
from shared.redis_client import AsyncClient, connect, connect_async
from shared.replies import notice_entry
from shared.tasks import cancel_and_wait
from tests import redis_replies
from tests.api.conftest import ThreadServer
from tests.api.test_reply_reader import append_answer, placed_and_answered, rejection_of
from tests.redis_process import running_redis


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_redis(Path(tmp_path_factory.mktemp("link")) / "redis") as (_, url):
        yield url


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    made: AsyncClient = connect_async(redis_url)
    assert isinstance(made, aioredis.Redis)
    await made.flushall()
    try:
        yield made
    finally:
        await made.client_unpause()
        await made.aclose()


async def until(condition: object, what: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


def futures(n: int) -> list[asyncio.Future[object]]:
    loop = asyncio.get_running_loop()
    return [loop.create_future() for _ in range(n)]


async def test_an_append_that_fails_fails_only_its_own_request(client: aioredis.Redis) -> None:
    await client.set("not-a-stream", "x")
    pipe = AppendPipe(None)
    await take_over(client, pipe)
    first, wrong, last = futures(3)
    pipe.append([("s", b"a", first), ("not-a-stream", b"b", wrong), ("s", b"c", last)])
    await until(lambda: not pipe.waiting, "Redis answered the three appends")
    assert isinstance(wrong.exception(), ResponseError)
    assert "WRONGTYPE" in str(wrong.exception())
    # A success resolves nothing: the engine's answer does, later.
    assert not first.done() and not last.done()
    stored = await client.xrange("s")
    assert [fields[b"c"] for _, fields in stored or () if fields] == [b"a", b"c"]
    pipe.abort(RedisConnectionError("done"))


async def test_a_connection_redis_closes_fails_what_waits_on_it(client: aioredis.Redis) -> None:
    pipe = AppendPipe(None)
    await take_over(client, pipe)
    await client.client_pause(5000, all=False)  # writes wait; this client's reads do not
    waiting = futures(2)
    pipe.append([("s", b"a", waiting[0]), ("s", b"b", waiting[1])])
    await asyncio.sleep(0.1)
    assert not any(f.done() for f in waiting)
    await client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")  # type: ignore[no-untyped-call]
    await until(lambda: all(f.done() for f in waiting), "the waiting appends failed")
    assert all(isinstance(f.exception(), RedisConnectionError) for f in waiting)
    assert not pipe.open
    assert isinstance(pipe.closed.result(), RedisConnectionError)


async def test_an_overdue_answer_drops_the_connection(client: aioredis.Redis) -> None:
    pipe = AppendPipe(0.2)
    await take_over(client, pipe)
    await client.client_pause(5000, all=False)
    (waiting,) = futures(1)
    pipe.append([("s", b"a", waiting)])
    pipe.check()
    assert pipe.open, "not overdue yet"
    await asyncio.sleep(0.3)
    pipe.check()
    assert not pipe.open
    assert isinstance(waiting.exception(), RedisTimeout)


async def test_the_subscriber_hands_over_each_message(client: aioredis.Redis) -> None:
    got: list[bytes] = []
    pipe = SubscribePipe(None, "replies", got.append)
    await take_over(client, pipe)
    await asyncio.wait_for(pipe.subscribed, 5)
    assert await client.publish("replies", b"1-1 b one") == 1
    await client.publish("other", b"2-1 b not ours")
    await client.publish("replies", b"3-1 b two")
    await until(lambda: len(got) == 2, "the two messages were handed over")
    assert got == [b"1-1 b one", b"3-1 b two"]
    assert pipe.open
    pipe.abort(RedisConnectionError("done"))


async def test_the_api_carries_on_after_redis_drops_its_connections(
    engineless: ThreadServer,
) -> None:
    """Every connection of the API is killed; the next mutation is appended and answered
    over new ones (the answer is written here, in the engine's place)."""
    settings: Settings = engineless.app.state.service.settings
    admin = connect(settings.redis_url)
    try:
        admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")  # type: ignore[no-untyped-call]
    finally:
        admin.close()
    await asyncio.sleep(0.5)  # the readers reconnect after their pause
    response = await placed_and_answered(engineless, append_answer)
    assert response.status_code == 409, response.text
    assert response.json()["reason"] == "no_liquidity"


async def test_a_reset_connection_fails_requests_as_a_redis_connection_error(
    client: aioredis.Redis,
) -> None:
    """A reset (Redis killed with unread input) reaches the protocol as an OSError; the
    requests must get the redis-py error the API answers 503 for, not a 500."""
    pipe = AppendPipe(None)
    await take_over(client, pipe)
    await client.client_pause(5000, all=False)
    (waiting,) = futures(1)
    pipe.append([("s", b"a", waiting)])
    pipe.connection_lost(ConnectionResetError(104, "Connection reset by peer"))
    assert isinstance(waiting.exception(), RedisConnectionError)
    assert isinstance(waiting.exception().__cause__, ConnectionResetError)  # type: ignore[union-attr]
    pipe.abort(RedisConnectionError("done"))


async def test_a_quiet_subscriber_pings_and_drops_the_connection_when_unanswered(
    client: aioredis.Redis,
) -> None:
    """A subscriber hears nothing while no answer is due: after `ping_s` it sends a PING,
    and a PING unanswered for the socket timeout drops the connection, as an overdue read
    did (Redis stalled, or a half-open connection)."""
    pipe = SubscribePipe(0.2, "replies", lambda message: None, ping_s=0.1)
    await take_over(client, pipe)
    await asyncio.wait_for(pipe.subscribed, 5)
    await asyncio.sleep(0.15)
    pipe.check()  # quiet past ping_s: a PING, which Redis answers
    assert pipe.asked_at is not None
    await until(lambda: pipe.asked_at is None, "Redis answered the PING")
    await client.client_pause(5000)  # every command waits, the PING too
    await asyncio.sleep(0.15)
    pipe.check()
    assert pipe.open and pipe.asked_at is not None, "a PING is waiting, not overdue yet"
    await asyncio.sleep(0.3)
    pipe.check()
    assert not pipe.open
    assert isinstance(pipe.closed.result(), RedisTimeout)


async def test_a_subscribe_that_redis_refuses_closes_the_connection(
    redis_url: str, client: aioredis.Redis
) -> None:
    """An error reply (here a user not allowed on the channel) ends the subscriber with that
    error, for its owner to log and reconnect, instead of a subscriber that hears nothing."""
    await client.execute_command(  # type: ignore[no-untyped-call]
        "ACL", "SETUSER", "barred", "on", "nopass", "resetchannels", "~*", "+@all"
    )
    barred = connect_async(redis_url.replace("redis://", "redis://barred:x@"))
    assert isinstance(barred, aioredis.Redis)
    try:
        pipe = SubscribePipe(None, "replies", lambda message: None)
        await take_over(barred, pipe)
        error = await asyncio.wait_for(pipe.closed, 5)
    finally:
        await barred.aclose()
        await client.execute_command("ACL", "DELUSER", "barred")  # type: ignore[no-untyped-call]
    assert isinstance(error, NoPermissionError), error
    assert not pipe.subscribed.done() and not pipe.open


@pytest.mark.parametrize("protocol", ["2", "3"])
async def test_a_message_during_the_catch_up_leaves_the_entries_before_it_to_the_catch_up(
    redis_url: str, client: aioredis.Redis, protocol: str
) -> None:
    """A subscriber that reconnects catches up from where the last one got to. A message
    that arrives before that read (entry B) must not move the position past the entries
    appended while nobody listened (entry A, no message): A is answered by the catch-up,
    and the position ends at the newest entry answered either way. Under either protocol
    of the URL (redis-py shapes an XREAD reply differently under RESP3). The journal runs
    no reader of its own here: the test plays the subscriber's callbacks."""
    own = connect_async(f"{redis_url}?protocol={protocol}")
    journal = Journal(Settings(redis_url=redis_url), own)
    try:
        stream = journal._reply_streams[0]
        start = journal._reply_positions[stream] = await journal._open_reply_stream(stream)
        waiting_a = asyncio.get_running_loop().create_future()
        journal.pending["t-a"] = waiting_a
        entry_a = await client.xadd(stream, {"b": rejection_of("t-a")})
        entry_b = await client.xadd(stream, {"b": rejection_of("t-b")})
        assert isinstance(entry_a, bytes) and isinstance(entry_b, bytes)
        subscription = _Subscription(start, journal._resets[stream])
        journal._on_notice(stream, subscription, entry_b + b" b " + rejection_of("t-b"))
        assert journal._reply_positions[stream] == start, "moved before the catch-up"
        await journal._catch_up(stream, subscription)
        (answer,) = waiting_a.result()
        assert isinstance(answer, Rejected) and answer.reason == "no_liquidity"
        assert journal._reply_positions[stream] == entry_b
        # A message newer than anything the catch-up reads: the position ends there.
        later = _Subscription(entry_b, journal._resets[stream])
        journal._on_notice(stream, later, b"9999999999999-1 b " + rejection_of("t-c"))
        await journal._catch_up(stream, later)
        assert journal._reply_positions[stream] == b"9999999999999-1"
        # Caught up, each message moves it.
        journal._on_notice(stream, later, b"9999999999999-2 b " + rejection_of("t-d"))
        assert journal._reply_positions[stream] == b"9999999999999-2"
    finally:
        await own.aclose()


def test_a_message_whose_id_is_no_entry_id_does_not_read() -> None:
    """Its id would become the reader's position, and every catch-up from it would fail."""
    assert notice_entry(b"1-2 b x y") == (b"1-2", [b"b", b"x y"])
    with pytest.raises(ValueError):
        notice_entry(b"foo b x")


@asynccontextmanager
async def own_journal(redis_url: str, socket_timeout: float | None) -> AsyncIterator[Journal]:
    """A journal of its own over the real Redis, with no engine (requests time out after
    0.5 s)."""
    settings = Settings(redis_url=redis_url, request_timeout_s=0.5)
    own = connect_async(redis_url, socket_timeout=socket_timeout)
    made = Journal(settings, own)
    tasks = await made.open()
    try:
        yield made
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await made.close()
        await own.aclose()


def place_command() -> Place:
    return Place(side=1, price=7, quantity=1)


async def test_behind_a_stalled_redis_at_most_max_in_flight_appends_are_sent(
    redis_url: str, client: aioredis.Redis
) -> None:
    """Requests that time out while Redis stalls (no socket timeout: the connection stays)
    never become commands, except those already sent: at most MAX_BATCH."""
    async with own_journal(redis_url, None) as journal:
        stream = journal.settings.command_stream
        await client.client_pause(1500, all=False)
        sent = [journal.request(stream, place_command()) for _ in range(MAX_BATCH + 200)]
        results = await asyncio.gather(*sent, return_exceptions=True)
        assert all(isinstance(r, TimeoutError) for r in results), {type(r) for r in results}
        await asyncio.sleep(1.2)  # the pause is over: Redis runs what it was sent
        appended = await client.xlen(stream)
    assert appended == MAX_BATCH


async def test_the_sweeper_drops_a_connection_redis_stalls_on(
    redis_url: str, client: aioredis.Redis
) -> None:
    async with own_journal(redis_url, 0.2) as journal:
        stream = journal.settings.command_stream
        await client.client_pause(2000, all=False)
        with pytest.raises(RedisTimeout):  # before the request timeout's TimeoutError
            await journal.request(stream, place_command())
        assert journal._appender is not None and not journal._appender.open


async def test_a_closed_journal_appends_nothing_more(
    redis_url: str, client: aioredis.Redis
) -> None:
    async with own_journal(redis_url, None) as journal:
        stream = journal.settings.command_stream
        await client.client_pause(1000, all=False)  # the first append waits in Redis
        first = asyncio.ensure_future(journal.request(stream, place_command()))
        await asyncio.sleep(0.05)
        queued = asyncio.ensure_future(journal.request(stream, place_command()))
        await journal.close()
        for request in (first, queued):
            with pytest.raises(RedisConnectionError):
                await request
        with pytest.raises(RedisConnectionError):
            await journal.request(stream, place_command())
        await client.client_unpause()
        await asyncio.sleep(0.1)
        assert await client.xlen(stream) <= 1  # the one sent before the close, if Redis took it


async def test_a_re_created_reply_stream_gets_a_new_subscriber_that_reads_it_from_its_start(
    redis_url: str, client: aioredis.Redis
) -> None:
    """A reply stream lost with Redis's data is re-created by the keeper, whose new entries
    may have lower ids than the old ones (a Redis whose clock went back): the subscriber
    then is dropped, and the next one catches up from the stream's start, not from the old
    position."""
    async with own_journal(redis_url, None) as journal:
        stream = journal._reply_streams[0]
        await until(lambda: stream in journal._readers, "a subscriber")
        first = journal._readers[stream]
        await asyncio.wait_for(first.subscribed, 5)
        journal._reply_positions[stream] = b"9999999999999-0"  # the old, higher position
        await client.delete(stream)
        journal.recheck.set()
        await until(lambda: journal._readers.get(stream) is not first, "a new subscriber")
        assert not first.open
        second = journal._readers[stream]
        await asyncio.wait_for(second.subscribed, 5)
        (opened,) = [entry_id for entry_id, _ in redis_replies.entries(await client.xrange(stream))]
        await until(lambda: journal._reply_positions[stream] == opened, "caught up from 0-0")


async def test_a_catch_up_redis_does_not_answer_gives_up_and_leaves_the_position(
    redis_url: str, client: aioredis.Redis
) -> None:
    """A catch-up read that Redis never answers (stalled, or a half-open connection where
    the URL sets no socket timeout) ends after the subscriber's timeout as a redis-py
    TimeoutError, which the reader treats as transient: it reconnects and catches up again,
    from the position this one left as it was."""
    own = connect_async(redis_url)  # no socket timeout: only the bound ends the read
    try:
        journal = Journal(Settings(redis_url=redis_url), own)
        stream = journal._reply_streams[0]
        start = journal._reply_positions[stream] = await journal._open_reply_stream(stream)
        await client.xadd(stream, {"b": rejection_of("t-a")})
        subscription = _Subscription(start, journal._resets[stream])
        await client.client_pause(1000)  # 3x the bound; it ends on its own (see below)
        with pytest.raises(RedisTimeout):
            await journal._catch_up(stream, subscription, timeout_s=0.3)
        assert journal._reply_positions[stream] == start
        assert not subscription.caught_up
    finally:
        await client.client_unpause()  # Redis holds it until a full pause ends anyway
        await own.aclose()


async def test_a_subscriber_redis_does_not_answer_is_given_up_and_opened_again(
    redis_url: str, client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the URL sets no socket timeout, the subscriber's own timeout bounds the opening
    of its connection too (redis-py's handshake names the client, which Redis does not
    answer while paused): while Redis answers nothing, the reader gives up on each attempt
    and tries again, instead of waiting on the first for good; once Redis answers, one
    subscribes."""
    monkeypatch.setattr(redis_journal, "SUBSCRIBER_TIMEOUT_S", 0.3)
    own = connect_async(f"{redis_url}?client_name=subscriber-test")
    reader: asyncio.Task[None] | None = None
    journal = Journal(Settings(redis_url=redis_url), own)
    try:
        stream = journal._reply_streams[0]
        journal._reply_positions[stream] = await journal._open_reply_stream(stream)
        await client.client_pause(5000)
        reader = asyncio.create_task(journal._keep_reading(stream))
        attempts: list[SubscribePipe] = []

        def attempted_twice() -> bool:
            pipe = journal._readers.get(stream)
            if pipe is not None and (not attempts or attempts[-1] is not pipe):
                attempts.append(pipe)
            return len(attempts) >= 2

        await until(attempted_twice, "the first attempt held the reader while Redis was silent")
        assert not any(pipe.subscribed.done() for pipe in attempts)
        await until(lambda: journal._readers[stream].subscribed.done(), "subscribed", 15)
    finally:
        if reader is not None:
            assert await cancel_and_wait([reader]) == []
        await journal.close()
        await client.client_unpause()
        await own.aclose()
