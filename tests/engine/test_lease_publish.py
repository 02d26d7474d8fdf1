"""The leader's publish against a real Redis: entries the previous leader already published
are skipped, however many batches a new leader needs to get past them.

A standby takes over from the position of the events it has applied, which may be well
behind the old leader's last entry; its first batches then repeat what is already in the
event stream. Each repeated entry must be skipped, not appended again (nor refused by
XADD, which would fail the publish)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from engine.lease import Lease, frame, new_owner_id
from shared.config import Settings
from shared.events import Cancelled, encode_events
from shared.redis_client import ReplicaAcks
from shared.replies import answer_head, notice_entry, pack_answers, read_answers
from tests import redis_replies
from tests.redis_process import running_redis

SYMBOL = "DEFAULT"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with running_redis(tmp_path / "redis") as (_, url):
        yield url


def batch(seqs: range) -> bytes:
    """One frame per seq: event entry `<seq>-0` answering command `<seq>-0`, no reply."""
    parts: list[bytes] = []
    for seq in seqs:
        entry = f"{seq}-0".encode()
        parts += frame(entry, b"", entry, b"events of %d" % seq, 0)
    return b"".join(parts)


def leader(url: str) -> tuple[Lease, redis.Redis]:
    client = redis.Redis.from_url(url)
    settings = Settings(redis_url=url)
    lease = Lease(settings, SYMBOL, client, new_owner_id(), ReplicaAcks("off", 100))
    assert lease.acquire()
    return lease, client


@pytest.mark.parametrize("wait", [True, False], ids=["waiting", "pipelined"])
def test_a_new_leader_skips_what_was_published_over_several_batches(
    server: str, wait: bool
) -> None:
    old, client = leader(server)
    old.publish(batch(range(1, 31)), [], None)  # the old leader got to seq 30
    stream = old.event_stream
    client.delete(old.lease_key)  # it died: its lease is gone

    new, _ = leader(server)
    assert new.token > old.token
    # It resumes from seq 10 (a standby's position) in batches of 8: the first three
    # repeat published entries (the third in part), the fourth is new.
    skipped = []
    for start in (11, 19, 27, 35):
        found = new.publish(batch(range(start, start + 8)), [], None, wait=wait)
        skipped.append(found if wait else new.settle())
    assert skipped == [8, 8, 4, 0]
    entries = redis_replies.entries(client.xrange(stream))
    assert [e[0] for e in entries] == [f"{s}-0".encode() for s in range(1, 43)]
    # Each entry was written once, by whoever published it first.
    tokens = [int(fields[b"t"]) for _, fields in entries]
    assert tokens == [old.token] * 30 + [new.token] * 12
    assert [fields[b"e"] for _, fields in entries][29:31] == [b"events of 30", b"events of 31"]


def answered_batch(seqs: range, replica: int) -> tuple[bytes, bytes]:
    """Frames of a batch whose every command asks the replica at KEYS index `replica`,
    request id `t1-<seq>`, and that replica's answers to it."""
    parts: list[bytes] = []
    answers: list[bytes] = []
    for seq in seqs:
        entry, request = f"{seq}-0".encode(), f"t1-{seq}".encode()
        events = encode_events([Cancelled(seq, seq, 1, seq)])
        parts += frame(entry, request, entry, events, replica)
        answers += (answer_head(request), request, events)
    return b"".join(parts), pack_answers(answers)


@pytest.mark.parametrize("wait", [True, False], ids=["waiting", "pipelined"])
def test_each_command_is_answered_once_across_a_takeover(server: str, wait: bool) -> None:
    """A batch's answers go out as one entry per replica; a new leader whose first batches
    repeat published entries answers only the commands it publishes, each once."""
    old, client = leader(server)
    replies = Settings(redis_url=server).reply_stream_of(SYMBOL, "t1")
    client.xadd(replies, {"open": "t1"})  # the replica opens its stream (NOMKSTREAM)
    listener = client.pubsub()  # type: ignore[no-untyped-call]
    listener.subscribe(replies)  # the replica's subscriber, on a single server
    assert listener.get_message(timeout=5) is not None  # the confirmation
    frames, answers = answered_batch(range(1, 11), 6)
    old.publish(frames, [(replies, answers)], None)
    client.delete(old.lease_key)

    new, _ = leader(server)
    for start in (7, 15):  # 7..14 repeats 7..10, then 15..22 is new
        frames, answers = answered_batch(range(start, start + 8), 6)
        new.publish(frames, [(replies, answers)], None, wait=wait)
        new.settle()
    entries = redis_replies.entries(client.xrange(replies))
    answered = [
        [(request_id, events[0].seq) for request_id, events in read_answers(flat(fields))]
        for _, fields in entries[1:]
    ]
    # One entry for each whole batch; after the skip, one per command published.
    expected = [[(f"t1-{s}", s) for s in range(1, 11)]]
    expected += [[(f"t1-{s}", s)] for s in range(11, 15)]
    expected += [[(f"t1-{s}", s) for s in range(15, 23)]]
    assert answered == expected
    # Each entry came as a message on the stream's channel too, whole, in order.
    notices = []
    while (message := listener.get_message(timeout=1)) is not None:
        notices.append(notice_entry(message["data"]))
    listener.close()
    assert notices == [(entry_id, flat(fields)) for entry_id, fields in entries[1:]]


def flat(fields: dict[bytes, bytes]) -> list[bytes]:
    """A reply entry's fields as Redis sends them."""
    return [item for pair in fields.items() for item in pair]
