"""The engine service: the single sequential owner of each book it serves.

For every instrument it owns (ENGINE_SYMBOLS, default all) it reads commands from that
instrument's command stream strictly in stream order, applies them to the pure core, and
appends each command's events to the instrument's event stream under the explicit id
`<last seq>-0`. Because the ids derive from the deterministic sequence numbers, a replay
after a crash re-appends the same ids: Redis refuses them as not greater than the stream
top, and we skip them, so no event is published twice.

Recovery = newest valid checkpoint + replay of the commands after it, per instrument. The
same path runs after any Redis error: the service drops its in-memory state and recovers
again, which is simpler than reasoning about which of its writes landed.
"""

from __future__ import annotations

import gc
import json
import signal
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, cast

import redis
import structlog
from redis.typing import EncodableT, FieldT

from shared.commands import decode_command
from shared.config import Instrument, Settings
from shared.events import encode_events
from shared.logs import configure
from shared.redis_client import TRANSIENT_ERRORS, Client, ReplicaAcks, connect, node_client

from . import checkpoint
from .matching import MatchingEngine
from .reader import CommandReader
from .snapshot import restore, snapshot, state_hash

BOOK_DEPTH = 50  # levels published; subscribers slice what they asked for
READ_BATCH = 1000
REPLY_STREAM_LENGTH = 10_000  # answers kept per replica stream: far more than are in flight
Entries = list[tuple[bytes, dict[bytes, bytes]]]
Fields = dict[FieldT, EncodableT]
Appended = tuple[str, Fields, str]  # stream, fields, explicit entry id
Answer = tuple[str, Fields]  # reply stream, fields


class RecoveryImpossible(RuntimeError):
    """The durable state cannot rebuild the book exactly; serving would be wrong."""


def _is_duplicate_id(exc: BaseException) -> bool:
    return isinstance(exc, redis.ResponseError) and "equal or smaller" in str(exc)


class BookService:
    """One instrument: its core, its place in the command stream, its checkpoints."""

    def __init__(self, settings: Settings, instrument: Instrument, client: Client) -> None:
        self.settings = settings
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.redis = client
        self.acks = ReplicaAcks(settings.replica_ack, settings.replica_ack_timeout_ms)
        self.log: Any = structlog.get_logger(service="engine", symbol=self.symbol)
        self.command_stream = settings.command_stream_of(self.symbol)
        self.event_stream = settings.event_stream_of(self.symbol)
        self.checkpoint_dir = settings.data_dir / "checkpoints" / self.symbol
        self.engine = MatchingEngine(instrument.base)
        self.last_command_id = "0-0"
        self.commands_since_checkpoint = 0
        self.last_checkpoint_at = time.monotonic()
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"ckpt-{self.symbol}")
        self._writing: Future[None] | None = None

    def recover(self) -> None:
        started = time.monotonic()
        self.abandon_write()
        # A checkpoint is written only after its events are published. One that is ahead of
        # the event stream means Redis lost acknowledged writes (a power loss under
        # appendfsync everysec): resume from an older one that the stream still covers.
        last: Any = self.redis.xrevrange(self.event_stream, "+", "-", count=1)
        published = int(last[0][0].split(b"-")[0]) if last else self.instrument.base
        found, skipped = checkpoint.load_newest(self.checkpoint_dir, max_seq=published)
        for reason in skipped:
            self.log.warning("checkpoint_skipped", reason=reason)
        if found is None and skipped:
            # Every write of a checkpoint trims the command stream behind the oldest one
            # kept: with checkpoints on disk but none usable, a replay from the start would
            # rebuild a book without the trimmed commands. Refuse, loudly, rather than serve
            # a wrong book (docs/recovery.md: restore Redis or the checkpoints).
            self.log.error("recovery_impossible", checkpoints_unusable=len(skipped))
            raise RecoveryImpossible(
                f"{self.symbol}: {len(skipped)} checkpoint(s) on disk, none usable, and the "
                "command stream is trimmed behind them: restore Redis's data or a checkpoint"
            )
        if found is None:
            self.engine = MatchingEngine(self.instrument.base)
            self.last_command_id = "0-0"
            self.log.info("recovery_start", checkpoint=None)
        else:
            self.engine, self.last_command_id = restore(found.core), found.last_command_id
            self.log.info("checkpoint_loaded", seq=found.seq, last_command_id=found.last_command_id)
        self.commands_since_checkpoint = 0
        replayed = republished = 0
        while True:
            entries: Entries = cast(
                Entries,
                self.redis.xrange(
                    self.command_stream, f"({self.last_command_id}", "+", count=READ_BATCH
                ),
            )
            if not entries:
                break
            republished += self.process(entries)
            replayed += len(entries)
            self.log.info("replay_progress", commands=replayed, seq=self.engine.seq)
        digest = state_hash(self.engine)
        self.log.info(
            "recovery_done",
            commands_replayed=replayed,
            events_already_published=republished,
            seq=self.engine.seq,
            resting_orders=len(self.engine.orders),
            state_hash=digest,
            seconds=round(time.monotonic() - started, 3),
        )
        self.redis.set(self.settings.key(self.symbol, "engine:state_hash"), digest)

    def process(self, entries: Entries) -> int:
        """Apply commands in order and publish their events; returns how many were re-publishes."""
        engine, stream = self.engine, self.event_stream
        published: list[Appended] = []
        answers: list[Answer] = []
        for entry_id, fields in entries:
            try:
                command = decode_command(fields[b"c"])
            except Exception as exc:  # a poison entry: skipping it is itself deterministic
                self.log.error("bad_command_entry", entry_id=entry_id.decode(), error=str(exc))
                continue
            events = engine.apply(command)
            body = encode_events(events)
            published.append(
                (stream, {"r": command.request_id, "c": entry_id, "e": body}, f"{events[-1].seq}-0")
            )
            replica, dash, _ = command.request_id.partition("-")
            if dash:
                # The answer again, on the asking replica's own stream, which only that
                # replica creates (NOMKSTREAM: none for a replica that is gone) and reads.
                answers.append(
                    (
                        self.settings.reply_stream_of(self.symbol, replica),
                        {"r": command.request_id, "e": body},
                    )
                )
        event_results, reply_results = self.publish(published, answers)
        duplicates = 0
        for result in event_results:
            if _is_duplicate_id(result):
                duplicates += 1
            elif isinstance(result, Exception):
                raise result
        for result in reply_results:  # the event is published; a replica missing it gets a 503
            if isinstance(result, Exception):
                self.log.warning("reply_not_sent", error=str(result))
        self.last_command_id = entries[-1][0].decode()
        self.commands_since_checkpoint += len(entries)
        return duplicates

    def publish(self, events: list[Appended], answers: list[Answer]) -> tuple[list[Any], list[Any]]:
        """Append the events in one MULTI/EXEC, then the answers; returns each append's result.

        MULTI/EXEC: an error at queueing time (READONLY, OOM, MOVED) aborts the whole batch,
        so a failed publish never leaves a later entry in the stream above a missing one.
        Only runtime refusals of re-appended ids (the replay case) come back per entry.

        Where the node has a replica in sync, WAIT for it on the connection that wrote, and
        only then append the answers: no client hears of a write that a failover could still
        lose. A SET inside the transaction makes it a write even when every event is a refused
        re-append (a replay), so WAIT still covers what an earlier, unconfirmed attempt put in
        the stream. On timeout, NotReplicated sends the engine through recovery, which
        republishes and waits again before answering. Without a replica the answers go in the
        same transaction: one round trip, as on a single server."""
        node = node_client(self.redis, self.event_stream)
        replicas = self.acks.wanted(node)
        pipe = node.pipeline(transaction=False)  # one connection: WAIT must follow the writes
        queue = cast(Callable[..., object], pipe.execute_command)  # untyped in redis-py
        queue("MULTI")
        for key, fields, entry_id in events:
            pipe.xadd(key, fields, id=entry_id)
        if replicas:
            pipe.set(self.settings.key(self.symbol, "engine:published"), self.engine.seq)
            answered = self.redis.pipeline(transaction=False)
        else:
            answered = pipe
        for key, fields in answers:
            answered.xadd(
                key, fields, maxlen=REPLY_STREAM_LENGTH, approximate=True, nomkstream=True
            )
        queued = len(pipe.command_stack) - 1
        queue("EXEC")
        if replicas:
            queue("WAIT", replicas, self.acks.timeout_ms)
        results = pipe.execute(raise_on_error=False)
        done = results[queued + 1]
        if isinstance(done, Exception):  # refused at queueing time: raise the first reason
            raise next((r for r in results[1 : queued + 1] if isinstance(r, Exception)), done)
        if not replicas:
            return done[: len(events)], done[len(events) :]
        self.acks.check(node, replicas, results[-1])
        return done[: len(events)], answered.execute(raise_on_error=False)

    def publish_book(self) -> None:
        bids, asks = self.engine.depth(BOOK_DEPTH)
        message = json.dumps(
            {
                "symbol": self.symbol,
                "seq": self.engine.seq,
                "ts": time.time_ns(),
                "bids": bids,
                "asks": asks,
            }
        )
        heartbeat = self.settings.key(self.symbol, "engine:book")
        # One round trip to the node holding the instrument's keys (a cluster pipeline
        # refuses PUBLISH; a cluster node forwards it to every node's subscribers).
        pipe = node_client(self.redis, heartbeat).pipeline(transaction=False)
        pipe.publish(self.settings.book_channel_of(self.symbol), message)
        # Doubles as the engine's heartbeat: readiness checks want it fresh.
        expiry = max(5, int(3 * self.settings.book_interval_s) + 1)
        pipe.set(heartbeat, message, ex=expiry)
        pipe.execute()

    def checkpoint_due(self, now: float) -> bool:
        if self._writing is not None:
            if not self._writing.done():
                return False  # one write at a time
            self.finish_checkpoint()  # a failed write raises here, on the engine thread
        return bool(self.commands_since_checkpoint) and (
            self.commands_since_checkpoint >= self.settings.snapshot_every
            or now - self.last_checkpoint_at >= self.settings.snapshot_interval_s
        )

    def write_checkpoint(self) -> None:
        """Snapshot the core here, on the engine thread (the state must not move under it),
        and persist it on the writer thread: the file write, two fsyncs, pruning and the
        trim of the command stream would otherwise stall matching for tens of ms. Nothing
        depends on the write having finished: recovery uses whichever checkpoint is newest
        on disk, and the stream is trimmed only behind checkpoints already written."""
        self.finish_checkpoint()
        started = time.monotonic()
        ckpt = checkpoint.Checkpoint(
            version=1,
            seq=self.engine.seq,
            last_command_id=self.last_command_id,
            core=snapshot(self.engine),
        )
        self.commands_since_checkpoint = 0
        self.last_checkpoint_at = time.monotonic()
        self._writing = self._writer.submit(
            self._persist, ckpt, round(self.last_checkpoint_at - started, 4)
        )

    def finish_checkpoint(self) -> None:
        """Wait for the checkpoint being written, if any; re-raise its failure."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def abandon_write(self) -> None:
        """Before recovering: let a write in flight end; its failure (Redis is down, say)
        changes nothing, as recovery reads only what is on disk and in Redis."""
        writing, self._writing = self._writing, None
        if writing is not None:
            try:
                writing.result()
            except Exception as exc:  # logged: recovery does not depend on that write
                self.log.warning("checkpoint_write_failed", error=str(exc))

    def _persist(self, ckpt: checkpoint.Checkpoint, snapshot_seconds: float) -> None:
        started = time.monotonic()
        path = checkpoint.write(self.checkpoint_dir, ckpt)
        kept = checkpoint.prune(self.checkpoint_dir)
        # The command stream is the oplog: keep everything after the oldest kept checkpoint.
        trimmed = self.redis.xtrim(self.command_stream, minid=kept[-1].last_command_id)
        self.log.info(
            "checkpoint_written",
            path=path.name,
            seq=ckpt.seq,
            bytes=len(ckpt.core),
            commands_trimmed=trimmed,
            snapshot_seconds=snapshot_seconds,
            write_seconds=round(time.monotonic() - started, 3),
        )


class EngineService:
    def __init__(self, settings: Settings, client: Client) -> None:
        self.settings = settings
        self.redis = client
        self.log: Any = structlog.get_logger(service="engine")
        self.books = {
            settings.command_stream_of(i.symbol): BookService(settings, i, client)
            for i in settings.owned_instruments()
        }
        self.stopping = False

    def recover(self) -> None:
        for book in self.books.values():
            book.recover()
        # The restored books are long-lived: keep the cyclic GC from rescanning them forever.
        gc.collect()
        gc.freeze()

    def serve(self) -> None:
        interval = self.settings.book_interval_s
        next_book = time.monotonic()
        positions = {s: b.last_command_id for s, b in self.books.items()}
        reader = CommandReader(self.redis, positions, READ_BATCH)
        try:
            while not self.stopping:
                block_ms = max(1, int((next_book - time.monotonic()) * 1000))
                for stream, entries in reader.read(block_ms):
                    self.books[stream].process(entries)
                now = time.monotonic()
                if now >= next_book:
                    for book in self.books.values():
                        book.publish_book()
                    next_book = now + interval
                for book in self.books.values():
                    if book.checkpoint_due(now):
                        book.write_checkpoint()
        finally:
            reader.close()

    def run(self) -> None:
        """Recover, serve; on a Redis failure, recover again from durable state."""
        backoff = 0.1
        consistent = False  # books match what Redis holds (false after a failed publish)
        while not self.stopping:
            try:
                consistent = False
                self.recover()
                consistent = True
                backoff = 0.1
                self.serve()
            except TRANSIENT_ERRORS as exc:
                consistent = False  # a batch may be applied in memory but not published
                self.log.warning("redis_unavailable", error=str(exc), retry_in=backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
        if not consistent:
            # A checkpoint now would record commands as applied that were never published:
            # the next start recovers from the last good checkpoint instead.
            self.log.warning("stop_without_checkpoint", reason="state not known to be published")
            for book in self.books.values():
                book.abandon_write()
            return
        # A clean stop leaves a checkpoint, so the next start replays nothing, and
        # publishes the state hash for operators and the crash harness to compare.
        for book in self.books.values():
            try:
                if book.commands_since_checkpoint:
                    book.write_checkpoint()
                book.finish_checkpoint()
                self.redis.set(
                    self.settings.key(book.symbol, "engine:state_hash"), state_hash(book.engine)
                )
            except redis.RedisError as exc:
                # Redis stopped first (or refused the trim): what is missing (a trim, the
                # published hash) is redone or recomputed by the next start, which replays
                # from the last checkpoint on disk. The other books still get theirs.
                self.log.warning("stop_without_redis", symbol=book.symbol, error=str(exc))


def main() -> None:
    settings = Settings.from_env()
    configure("engine", settings.log_level)
    if not settings.redis_url:
        raise SystemExit("REDIS_URL is not set (make run and the tests set it)")
    service = EngineService(settings, connect(settings.redis_url))

    def stop(signum: int, frame: object) -> None:
        service.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    service.run()
    service.log.info("stopped", seqs={b.symbol: b.engine.seq for b in service.books.values()})
