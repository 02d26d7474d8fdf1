"""The API's reader of its reply streams (`graphql_api/gateway/redis_journal.py`) against a
real Redis, with this test in the engine's place: it reads the command the API appended and
writes the answer entries itself, with the engine's own script function (`ANSWER`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from engine.lease_scripts import ANSWER
from shared.commands import decode_command
from shared.config import Settings
from shared.events import Rejected, encode_events
from shared.redis_client import Client, connect
from shared.replies import BATCH_FIELD, answer_head, pack_answers
from tests import redis_replies
from tests.api.conftest import ThreadServer

PLACE = {"side": 1, "price": "7", "quantity": 1}


def request_id_appended(settings: Settings) -> str:
    """The request id of the one command on the default instrument's stream, once the API
    appended it."""
    client = connect(settings.redis_url)
    deadline = time.monotonic() + 10
    try:
        while True:
            entries = redis_replies.entries(client.xrange(settings.command_stream))
            if entries:
                _, fields = entries[0]
                return decode_command(fields[b"c"]).request_id
            assert time.monotonic() < deadline, "the API appended no command"
            time.sleep(0.02)
    finally:
        client.close()


def rejection_of(request_id: str) -> bytes:
    """A reply entry's value answering `request_id` with a no_liquidity rejection (as the
    engine would)."""
    rid = request_id.encode()
    rejected = encode_events([Rejected(seq=1, reason="no_liquidity", order_id=1, ts=1)])
    return pack_answers([answer_head(rid), rid, rejected])


def rejection_reply(settings: Settings, request_id: str) -> tuple[str, bytes]:
    """The reply stream of the replica that asked `request_id`, and `rejection_of` it."""
    replica = request_id.partition("-")[0]
    stream = settings.reply_stream_of(settings.default_instrument.symbol, replica)
    return stream, rejection_of(request_id)


def append_answer(client: Client, stream: str, value: bytes) -> None:
    """Append a reply entry as the engine's publish script does: the entry, and the same as
    a message on the stream's channel (ARGV[11] '1', as on a single server)."""
    client.eval(ANSWER + "answer(KEYS[1], 'b', ARGV[12])", 1, stream, *[""] * 10, "1", value)


async def placed_and_answered(
    server: ThreadServer, answer: Callable[[Client, str, bytes], object]
) -> httpx.Response:
    """POST an order to the engineless replica and play the engine: once its command is on
    the stream, `answer(client, the asking replica's reply stream, rejection_of it)`. The
    command stream is emptied after, so that the next test finds its own command."""
    settings: Settings = server.app.state.service.settings
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        placing = asyncio.create_task(http.post("/orders", json=PLACE))
        request_id = await asyncio.to_thread(request_id_appended, settings)
        client = connect(settings.redis_url)
        try:
            answer(client, *rejection_reply(settings, request_id))
        finally:
            client.xtrim(settings.command_stream, maxlen=0)
            client.close()
        return await placing


async def test_an_entry_that_does_not_decode_leaves_the_reader_answering(
    engineless: ThreadServer,
) -> None:
    """An entry the replica cannot decode (another version's events, a bad write) is logged
    and passed over: the next entry still answers its request, which would otherwise wait
    for its timeout, as would every later one on this replica."""

    def answer(client: Client, stream: str, rejection: bytes) -> None:
        append_answer(client, stream, b"\x91\xc1")  # not msgpack: 0xc1 is unused
        append_answer(client, stream, rejection)

    response = await placed_and_answered(engineless, answer)
    assert response.status_code == 409, response.text
    assert response.json()["reason"] == "no_liquidity"


async def test_an_answer_appended_while_the_reader_was_away_is_read_from_the_stream(
    engineless: ThreadServer,
) -> None:
    """The channel loses what is published while the replica is not subscribed; the stream
    keeps it. An answer appended (without its message) between the reader's connection being
    killed and its reconnecting answers the request once the reader catches up."""
    killed: list[int] = []

    def answer(client: Client, stream: str, rejection: bytes) -> None:
        killed.append(client.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))  # type: ignore[no-untyped-call]
        client.xadd(stream, {BATCH_FIELD: rejection})  # the reader waits 0.2 s to reconnect

    response = await placed_and_answered(engineless, answer)
    assert killed[0] >= 1
    assert response.status_code == 409, response.text
    assert response.json()["reason"] == "no_liquidity"
