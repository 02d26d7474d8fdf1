"""Hot standby and the lease, with real engine processes and a real Redis: a standby takes
over from a killed leader and answers every command exactly once; a leader paused past its
lease wakes up to find a newer token and appends nothing; a standby whose state differs
from the leader's stops loudly instead of ever taking over (by its state hash where the
leader forks its checkpoints, by its events where it writes them itself)."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import redis

from engine import checkpoint
from engine.checkpoint_job import CHECKPOINT_VERSION
from engine.core_import import status
from engine.lease import owner_pid
from engine.matching import MatchingEngine
from engine.snapshot import snapshot, state_hash
from shared.commands import Command, Place, decode_command, encode_command
from shared.config import Settings
from shared.events import decode_events
from shared.replies import read_answers
from shared.stack import Stack
from tests.redis_replies import entries, value

SETTINGS = Settings()
COMMANDS = SETTINGS.command_stream_of("DEFAULT")
EVENTS = SETTINGS.event_stream_of("DEFAULT")
REPLIES = SETTINGS.reply_stream_of("DEFAULT", "t1")
LEASE = SETTINGS.engine_lease_of("DEFAULT")
TOKEN = SETTINGS.key("DEFAULT", "engine:token")


T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 20.0, what: str = "") -> T:
    """The first true value `condition` returns within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise TimeoutError(f"not within {timeout} s: {what}")


@contextmanager
def engines(tmp: Path, standby: bool = True, **env: str) -> Iterator[tuple[Stack, redis.Redis]]:
    """Redis and the engine (and its standby) only: these tests write commands themselves."""
    stack = Stack(tmp, [], env={"SNAPSHOT_INTERVAL_S": "60", **env}, log_dir=tmp / "logs")
    try:
        stack.start_redis()
        client = redis.Redis.from_url(stack.redis_url)
        client.xadd(REPLIES, {"open": 1})  # the "API replica" t1's reply stream
        stack.start("engine")
        wait_for(lambda: client.exists(LEASE), what="the first engine leads")
        if standby:
            stack.start("engine-standby")
            wait_for(lambda: '"recovery_done"' in log(stack, "engine-standby"), what="standby up")
        yield stack, client
    finally:
        stack.stop()


def log(stack: Stack, name: str) -> str:
    path = stack.data_dir / "logs" / f"{name}.log"
    return path.read_text() if path.exists() else ""


def log_events(stack: Stack, name: str, event: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in log(stack, name).splitlines()
        if line.startswith("{") and f'"{event}"' in line
    ]


def send(client: redis.Redis, first: int, n: int) -> list[Command]:
    sent: list[Command] = []
    for i in range(first, first + n):
        command = Place(1 if i % 2 else -1, 100 + i % 7, 1 + i % 4, f"c{i}", f"t1-{i}", i)
        client.xadd(COMMANDS, {"c": encode_command(command)})
        sent.append(command)
    return sent


def leader(stack: Stack, client: redis.Redis) -> str:
    """The name of the process holding the lease ("" while nobody does)."""
    owner = value(client.get(LEASE))
    pid = owner_pid(owner.decode()) if owner else None
    return next((name for name, p in stack.processes.items() if p.pid == pid), "")


def answered(client: redis.Redis) -> list[str]:
    return [
        request_id
        for _, fields in entries(client.xrange(REPLIES))
        for request_id, _ in read_answers([item for pair in fields.items() for item in pair])
    ]


def published(client: redis.Redis) -> list[tuple[int, str]]:
    return [(int(i.split(b"-")[0]), f[b"r"].decode()) for i, f in entries(client.xrange(EVENTS))]


def reference(commands: list[Command]) -> tuple[MatchingEngine, list[int]]:
    """A fresh engine fed the commands (the stream is trimmed behind checkpoints), and the
    seq of each command's last event."""
    engine = MatchingEngine()
    seqs = [engine.apply(decode_command(encode_command(c)))[-1].seq for c in commands]
    return engine, seqs


def test_the_standby_takes_over_and_every_command_is_answered_once(tmp_path: Path) -> None:
    with engines(tmp_path, SNAPSHOT_EVERY="40") as (stack, client):
        sent: list[Command] = []

        def checked() -> bool:  # more commands until the standby has checked a checkpoint
            sent.extend(send(client, len(sent), 40))
            return bool(log_events(stack, "engine-standby", "events_verified"))

        wait_for(checked, what="the standby checks a checkpoint")
        wait_for(lambda: len(answered(client)) == len(sent), what="every answer")
        # Both run the core this process imports (compiled, or the source and why), and say so.
        for name in ("engine", "engine-standby"):
            (core,) = log_events(stack, name, "matching_core")
            assert {key: core.get(key) for key in ("implementation", "reason")} == {
                "reason": None,
                **status(),
            }, name
        # (Normally "engine"; on a starved machine the standby may have taken over already.)
        old = leader(stack, client)
        token = int(client.get(TOKEN) or 0)
        stack.kill(old, signal.SIGKILL)

        def new_leader() -> str:
            name = leader(stack, client)
            return "" if name == old else name

        new = wait_for(new_leader, what="a new leader")
        assert int(client.get(TOKEN) or 0) > token
        sent += send(client, len(sent), 200)
        wait_for(lambda: len(answered(client)) == len(sent), what="every answer")
        stack.kill(new, signal.SIGTERM)  # the leader now: stops cleanly

        engine, seqs = reference(sent)
        assert answered(client) == [c.request_id for c in sent]  # each once, in order
        assert published(client) == list(zip(seqs, [c.request_id for c in sent], strict=True))
        events = [e for _, f in entries(client.xrange(EVENTS)) for e in decode_events(f[b"e"])]
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        hash_key = SETTINGS.key("DEFAULT", "engine:state_hash")
        assert (value(client.get(hash_key)) or b"").decode() == state_hash(engine)
        assert not client.exists(LEASE)  # released at the clean stop
        assert log_events(stack, new, "lease_acquired")[-1]["token"] > token


def tokens(client: redis.Redis) -> list[int]:
    """The fencing token each event entry was published under, in stream order."""
    return [int(fields[b"t"]) for _, fields in entries(client.xrange(EVENTS))]


def test_a_paused_leader_appends_nothing_after_a_takeover(tmp_path: Path) -> None:
    with engines(tmp_path, SNAPSHOT_EVERY="1000") as (stack, client):
        sent = send(client, 0, 50)
        wait_for(lambda: len(answered(client)) == 50, what="50 answers")
        first = int(client.get(TOKEN) or 0)
        a = leader(stack, client)  # "engine", unless a starved machine let the standby in
        b = next(name for name in ("engine", "engine-standby") if name != a)
        stack.processes[a].send_signal(signal.SIGSTOP)
        wait_for(lambda: leader(stack, client) == b, what="takeover")
        # Stop the new leader too, before it answers anything: commands sent now can only
        # be answered by the old leader once it wakes up, which must first find out that
        # its token is stale, and may only publish after taking the lease again.
        stack.processes[b].send_signal(signal.SIGSTOP)
        assert int(client.get(TOKEN) or 0) == first + 1
        sent += send(client, 50, 30)
        stack.processes[a].send_signal(signal.SIGCONT)
        wait_for(lambda: len(answered(client)) == 80, what="the old leader, leading again")
        assert log_events(stack, a, "lease_lost")
        retaken = log_events(stack, a, "lease_acquired")[-1]
        assert retaken["token"] == first + 2
        # Nothing went out under the stale token: tokens never decrease along the stream.
        published_tokens = tokens(client)
        assert published_tokens == sorted(published_tokens)
        assert set(published_tokens) == {first, first + 2}

        stack.processes[b].send_signal(signal.SIGCONT)
        wait_for(
            lambda: log_events(stack, b, "lease_lost"),
            what="the second paused leader finds its token stale too",
        )
        sent += send(client, 80, 20)
        wait_for(lambda: len(answered(client)) == 100, what="100 answers")
        _, seqs = reference(sent)
        assert [seq for seq, _ in published(client)] == seqs
        assert answered(client) == [f"t1-{i}" for i in range(100)]
        assert tokens(client) == sorted(tokens(client))


def test_a_standby_with_a_different_state_stops_loudly(tmp_path: Path) -> None:
    with engines(tmp_path, standby=False, SNAPSHOT_EVERY="20") as (stack, client):
        sent = send(client, 0, 60)
        wait_for(lambda: len(answered(client)) == 60, what="60 answers")
        # A standby with its own data directory, holding a checkpoint at the current seq
        # that forgets one client order id: same orders and seq, a different state.
        engine, _ = reference(sent)
        engine.client_order_ids.pop("c3")
        last_command = entries(client.xrevrange(COMMANDS, "+", "-", count=1))[0][0].decode()
        other = tmp_path / "other"
        checkpoint.write(
            other / "checkpoints" / "DEFAULT",
            checkpoint.Checkpoint(CHECKPOINT_VERSION, engine.seq, last_command, snapshot(engine)),
        )
        second = Stack(other, [], stack.redis_url, log_dir=other / "logs", env=stack.extra_env)
        try:
            second.start("engine")
            wait_for(lambda: '"recovery_done"' in log(second, "engine"), what="standby up")
            send(client, 60, 60)  # the leader checkpoints; the standby compares
            assert second.processes["engine"].wait(timeout=20) == 2  # EXIT_DIVERGED
        finally:
            second.stop()
        diverged = log_events(second, "engine", "standby_diverged")
        assert diverged and diverged[0]["state_hash"] != diverged[0]["leader_hash"]
        assert leader(stack, client) == "engine"  # the leader carries on
        wait_for(lambda: len(answered(client)) == 120, what="the leader answers the rest")


MARKERS = SETTINGS.key("DEFAULT", "engine:checkpoints")


def writers(client: redis.Redis) -> dict[int, str]:
    """Who wrote each checkpoint whose hash is published: seq -> leader or standby."""
    return {
        int(i.split(b"-")[0]): f[b"w"].decode()
        for i, f in entries(client.xrange(MARKERS))
        if i.endswith(b"-1")
    }


def test_with_a_live_standby_the_leader_forks_nothing_and_a_restart_loads_its_files(
    tmp_path: Path,
) -> None:
    with engines(tmp_path, SNAPSHOT_EVERY="40") as (stack, client):
        sent: list[Command] = []
        lead = leader(stack, client)
        follower = next(n for n in ("engine", "engine-standby") if n != lead)
        # The leader checks for a live standby in its directory every 200 ms.
        wait_for(lambda: log_events(stack, lead, "checkpoint_writer"), what="standby seen")

        def written() -> bool:  # more commands until the standby has written three
            sent.extend(send(client, len(sent), 40))
            wait_for(lambda: len(answered(client)) == len(sent), what="every answer")
            return len(log_events(stack, follower, "checkpoint_written")) >= 3

        wait_for(written, what="the standby writes checkpoints")
        assert leader(stack, client) == lead  # (the test means nothing after a takeover)
        # The leader forked nothing: every checkpoint hash it published is the standby's.
        assert {e["writer"] for e in log_events(stack, lead, "checkpoint_written")} == {"standby"}
        assert set(writers(client).values()) == {"standby"}
        assert "fork_seconds" not in log(stack, lead)
        # The files are in the directory both engines share, and hold the exact state.
        directory = stack.data_dir / "checkpoints" / "DEFAULT"
        newest, _ = checkpoint.load_newest(directory)
        assert newest is not None
        engine, _ = reference(sent[: seqs_index(sent, newest.seq) + 1])
        assert newest.state_hash == state_hash(engine)
        # The leader publishes that hash once the standby reports it.
        seq = newest.seq
        wait_for(lambda: writers_hash(client, seq), what="the hash published")
        assert writers_hash(client, seq) == newest.state_hash

        # Both engines die; a leader restarting alone recovers from the standby's file.
        stack.kill("engine", signal.SIGKILL)
        stack.kill("engine-standby", signal.SIGKILL)
        stack.start("engine")
        wait_for(lambda: leader(stack, client) == "engine", what="the restarted leader")
        loaded = log_events(stack, "engine", "checkpoint_loaded")[-1]
        newest, _ = checkpoint.load_newest(directory)
        assert newest is not None
        assert (loaded["seq"], loaded["state_hash"]) == (newest.seq, newest.state_hash)
        sent += send(client, len(sent), 50)
        wait_for(lambda: len(answered(client)) == len(sent), what="every answer")
        stack.kill("engine", signal.SIGTERM)
        stack.processes["engine"].wait(timeout=20)
        engine, _ = reference(sent)
        hash_key = SETTINGS.key("DEFAULT", "engine:state_hash")
        assert (value(client.get(hash_key)) or b"").decode() == state_hash(engine)
        assert answered(client) == [c.request_id for c in sent]


def seqs_index(sent: list[Command], seq: int) -> int:
    """The index of the command after which the engine was at `seq`."""
    _, seqs = reference(sent)
    return seqs.index(seq)


def writers_hash(client: redis.Redis, seq: int) -> str:
    """The state hash published for the checkpoint at `seq` ("" while none is)."""
    marker = entries(client.xrange(MARKERS, f"{seq}-1", f"{seq}-1"))
    return marker[0][1][b"h"].decode() if marker else ""


def test_a_standby_whose_events_differ_stops_loudly(tmp_path: Path) -> None:
    """A standby that shares the leader's checkpoint directory writes the checkpoints, so
    no leader state hash comes to compare with: its events, compared byte for byte with
    the leader's published ones, catch it."""
    with engines(tmp_path, standby=False, SNAPSHOT_EVERY="20") as (stack, client):
        sent = send(client, 0, 60)
        wait_for(lambda: len(answered(client)) == 60, what="60 answers")

        def past_the_last_checkpoint() -> bool:
            """One command more until the tip is past the leader's last checkpoint, which
            is complete, with fewer than 20 commands after it (so none is due before 20
            more). The standby starts there: no state hash of the leader's is compared."""
            sent.extend(send(client, len(sent), 1))
            wait_for(lambda: len(answered(client)) == len(sent), what="answers")
            marks = dict(entries(client.xrange(MARKERS)))
            last = max(int(i.split(b"-")[0]) for i in marks if i.endswith(b"-0"))
            after = entries(client.xrange(COMMANDS, b"(" + marks[f"{last}-0".encode()][b"c"], "+"))
            done = f"{last}-1".encode() in marks
            return done and len(after) < 20 and last < published(client)[-1][0]

        wait_for(past_the_last_checkpoint, what="a tip past the last checkpoint")
        # A standby whose checkpoint at the current seq hands out other order ids: same
        # seq, same number of events, different events. Its directory claims to be the
        # leader's (the same store id), so the leader leaves it the checkpoints.
        engine, _ = reference(sent)
        engine.next_order_id += 1000
        last_command = entries(client.xrevrange(COMMANDS, "+", "-", count=1))[0][0].decode()
        other = tmp_path / "other"
        directory = other / "checkpoints" / "DEFAULT"
        checkpoint.write(
            directory,
            checkpoint.Checkpoint(CHECKPOINT_VERSION, engine.seq, last_command, snapshot(engine)),
        )
        own = stack.data_dir / "checkpoints" / "DEFAULT" / checkpoint.STORE_ID
        (directory / checkpoint.STORE_ID).write_text(own.read_text())
        second = Stack(other, [], stack.redis_url, log_dir=other / "logs", env=stack.extra_env)
        try:
            second.start("engine")
            wait_for(lambda: '"recovery_done"' in log(second, "engine"), what="standby up")
            wait_for(lambda: log_events(stack, "engine", "checkpoint_writer"), what="seen")
            count = len(sent)

            def stopped() -> bool:  # batches of 20 until two markers reached the standby
                nonlocal count
                if second.processes["engine"].poll() is not None:
                    return True
                send(client, count, 20)
                count += 20
                wait_for(lambda: len(answered(client)) == count, what="answers")
                return False

            wait_for(stopped, what="the standby stops")
            assert second.processes["engine"].wait(timeout=20) == 2  # EXIT_DIVERGED
        finally:
            second.stop()
        diverged = log_events(second, "engine", "standby_diverged")
        assert diverged and diverged[0]["events"] != diverged[0]["leader_events"]
        marked = [f.get(b"w") for i, f in entries(client.xrange(MARKERS)) if i.endswith(b"-0")]
        assert b"standby" in marked  # the leader had left the checkpoints to it
        assert leader(stack, client) == "engine"  # the leader carries on


def test_without_a_live_standby_the_leader_forks_again(tmp_path: Path) -> None:
    with engines(tmp_path, SNAPSHOT_EVERY="40") as (stack, client):
        lead = leader(stack, client)
        follower = next(n for n in ("engine", "engine-standby") if n != lead)
        wait_for(lambda: log_events(stack, lead, "checkpoint_writer"), what="standby seen")
        sent: list[Command] = []

        def written_by(writer: str) -> Callable[[], bool]:
            def more() -> bool:  # more commands until the leader publishes one by `writer`
                sent.extend(send(client, len(sent), 40))
                wait_for(lambda: len(answered(client)) == len(sent), what="every answer")
                published = log_events(stack, lead, "checkpoint_written")
                return any(e["writer"] == writer for e in published)

            return more

        wait_for(written_by("standby"), what="a checkpoint by the standby")
        stack.kill(follower, signal.SIGKILL)
        # Its position expires unrefreshed: within a second the leader forks its own.
        wait_for(
            lambda: (
                [e["writer"] for e in log_events(stack, lead, "checkpoint_writer")][-1] == "leader"
            ),
            what="the leader sees the standby gone",
        )
        wait_for(written_by("leader"), what="a checkpoint by the leader")
        newest, _ = checkpoint.load_newest(stack.data_dir / "checkpoints" / "DEFAULT")
        assert newest is not None
        engine, _ = reference(sent[: seqs_index(sent, newest.seq) + 1])
        assert newest.state_hash == state_hash(engine)
