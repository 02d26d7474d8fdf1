"""One instrument's side of the engine service: its core, its place in the streams, its
lease and checkpoints (`engine.service` runs one per instrument it serves).

- **Leading** (it holds the instrument's lease, `engine.lease`): it reads commands from the
  instrument's command stream strictly in stream order, applies them to the pure core, and
  appends each command's events to the event stream under the explicit id `<last seq>-0`,
  and to the asking replica's reply stream, in one fenced script per batch. Because the ids
  derive from the deterministic sequence numbers, a replay after a crash re-appends the same
  ids: the script skips those at or below the stream's top, so no event is published twice.
- **Following** (another process holds the lease): a hot standby (`engine.standby`) that
  applies the same commands, never ahead of what the leader published, checks its state
  against the leader's at every checkpoint, and takes over when the lease expires.

Recovery = newest valid checkpoint + replay: the replay applies (without publishing) every
command whose events are already published, then the book follows or leads.
"""

from __future__ import annotations

import json
import time
from typing import Any

import structlog

from shared.commands import decode_command
from shared.config import Instrument, Settings
from shared.events import encode_events
from shared.redis_client import Client, ReplicaAcks
from shared.replies import SHORT_HEADS, answer_head, pack_answers
from shared.stream_entries import Entries, field

from . import checkpoint
from .checkpoint_job import CheckpointJob
from .leader_checkpoints import LeaderCheckpoints
from .lease import LEADER, POLL_S, RENEW_S, Lease, Marker, frame
from .matching import engine_for
from .reader import StreamReader
from .snapshot import digest_of, restore
from .standby import Diverged, Standby

BOOK_DEPTH = 50  # levels published; subscribers slice what they asked for
READ_BATCH = 1000


class RecoveryImpossible(RuntimeError):
    """The durable state cannot rebuild the book exactly; serving would be wrong."""


class BookService:
    """One instrument: its core, its place in the streams, its lease and checkpoints."""

    def __init__(
        self, settings: Settings, instrument: Instrument, client: Client, owner: str
    ) -> None:
        self.settings = settings
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.redis = client
        self.log: Any = structlog.get_logger(service="engine", symbol=self.symbol)
        self.command_stream = settings.command_stream_of(self.symbol)
        self.event_stream = settings.event_stream_of(self.symbol)
        self.checkpoint_dir = settings.data_dir / "checkpoints" / self.symbol
        acks = ReplicaAcks(settings.replica_ack, settings.replica_ack_timeout_ms)
        self.lease = Lease(settings, self.symbol, client, owner, acks)
        self.engine = engine_for(instrument.base, instrument.band)
        self.last_command_id = "0-0"
        self.job = CheckpointJob()  # this process's checkpoint child, leading or following
        self.checkpoints = LeaderCheckpoints(self)
        self.standby = Standby(self)
        self.last_hash: tuple[int, str] | None = None  # (seq, state hash) of the newest checkpoint
        self.renewed_at = 0.0
        self.next_lease_poll = 0.0
        self.next_book = 0.0
        self.waiting_since = 0.0  # when this book started waiting for the lease
        self.recoveries = 0  # a reader built before the last recovery reads stale positions
        self.held: tuple[bytes, list[tuple[str, bytes]], Marker | None] | None = None
        self.behind = False  # the held batch was a full read: more commands are waiting

    @property
    def leading(self) -> bool:
        return self.lease.leading

    # -- recovery ---------------------------------------------------------------------------

    def published_tip(self) -> tuple[int, bytes | None]:
        """The leader's progress: the last published seq and the command it answered."""
        last: Any = self.redis.xrevrange(self.event_stream, "+", "-", count=1)
        if not last:
            return self.instrument.base, None
        entry_id, fields = last[0]
        return int(entry_id.split(b"-")[0]), field(fields, b"c")

    def recover(self) -> None:
        started = time.monotonic()
        self.recoveries += 1
        # Leading again takes the lease again: still ours (a short Redis blip) gives back
        # the same token; expired meanwhile, any engine may take it, with a new one.
        self.lease.abandon()
        self.lease.token = 0
        self.held = None
        self.behind = False
        # A checkpoint child still running is not waited for: its state was published
        # (children are forked only after that), so its outcome is still good to reap.
        for name in checkpoint.remove_orphaned_tmp(self.checkpoint_dir):
            self.log.info("checkpoint_tmp_removed", file=name)
        # A checkpoint is written only after its events are published. One that is ahead of
        # the event stream means Redis lost acknowledged writes (a power loss under
        # appendfsync everysec): resume from an older one that the stream still covers.
        published, tip_command = self.published_tip()
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
        self.last_hash = None
        if found is None:
            self.engine = engine_for(self.instrument.base, self.instrument.band)
            self.last_command_id = "0-0"
            self.log.info("recovery_start", checkpoint=None)
        else:
            self.engine, self.last_command_id = restore(found.core), found.last_command_id
            self.last_hash = (found.seq, found.state_hash or digest_of(found.core))
            self.log.info(
                "checkpoint_loaded",
                seq=found.seq,
                last_command_id=found.last_command_id,
                state_hash=self.last_hash[1],
                seconds=round(time.monotonic() - started, 3),
            )
            if self.engine.band != self.instrument.band:
                # The commands replayed from here meet the new band (docs/api.md: change a
                # band after a clean stop, whose checkpoint leaves nothing to replay).
                self.log.warning(
                    "price_band_changed", checkpoint=self.engine.band, now=self.instrument.band
                )
                self.engine.set_band(self.instrument.band)
                self.last_hash = None  # that checkpoint no longer describes this state
        self.checkpoints.reset()
        # Replay what the leader (this process before a crash, or another) already
        # published: applied, not published again.
        replayed = 0
        while tip_command is not None:
            entries: Entries = self.redis.xrange(  # type: ignore[assignment]
                self.command_stream,
                f"({self.last_command_id}",
                tip_command,
                count=READ_BATCH,
            )
            if not entries:
                break
            self.apply(entries)
            replayed += len(entries)
            self.log.info("replay_progress", commands=replayed, seq=self.engine.seq)
        if self.engine.seq != published and tip_command is not None:
            self.log.error(
                "replay_mismatch",
                seq=self.engine.seq,
                published=published,
                reason="the replayed commands do not end at the published sequence number",
            )
            raise Diverged(f"{self.symbol}: replay ends at seq {self.engine.seq}, not {published}")
        # Until it leads, this engine follows: the leader must keep the commands after here.
        self.lease.report_position(self.last_command_id, self.checkpoints.store)
        unchanged = replayed == 0 and self.last_hash is not None
        self.log.info(
            "recovery_done",
            commands_replayed=replayed,
            seq=self.engine.seq,
            resting_orders=len(self.engine.orders),
            state_hash=self.last_hash[1] if unchanged and self.last_hash else None,
            seconds=round(time.monotonic() - started, 3),
        )
        self.standby.start()
        self.waiting_since = time.monotonic()
        self.next_lease_poll = 0.0

    def apply(self, entries: Entries) -> None:
        """Apply commands without publishing anything (replay and standby)."""
        engine = self.engine
        for entry_id, fields in entries:
            command = self.decode(entry_id, fields)
            if command is not None:
                engine.apply(command)
        self.last_command_id = entries[-1][0].decode()

    def decode(self, entry_id: bytes, fields: list[bytes]) -> Any:
        try:
            return decode_command(field(fields, b"c"))
        except Exception as exc:  # a poison entry: skipping it is itself deterministic
            self.log.error("bad_command_entry", entry_id=entry_id.decode(), error=str(exc))
            return None

    # -- leading ----------------------------------------------------------------------------

    def try_lead(self, now: float) -> bool:
        """Poll the lease (a standby does so every POLL_S); True when it was just acquired."""
        if now < self.next_lease_poll:
            return False
        self.next_lease_poll = now + POLL_S
        if not self.lease.acquire():
            return False
        self.standby.stop()
        self.renewed_at = now
        self.next_book = now
        self.log.info(
            "lease_acquired",
            token=self.lease.token,
            seq=self.engine.seq,
            waited_seconds=round(now - self.waiting_since, 3),
        )
        return True

    def process(self, entries: Entries, now: float) -> None:
        """Apply commands in order and prepare the publish of their events, which `flush`
        sends: behind (a full batch), the serve loop reads the next batch first, so that
        Redis appends this one while the engine matches the next; caught up, it sends
        this one and then blocks for the next."""
        self.flush()
        engine, settings, symbol = self.engine, self.settings, self.symbol
        parts: list[bytes] = []
        add = parts.extend
        replies: dict[str, int] = {}  # replica -> its KEYS index in the publish script
        reply_keys: list[str] = []
        answers: list[list[bytes]] = []  # each replica's, in the order of reply_keys
        heads = SHORT_HEADS
        decode = decode_command
        for entry_id, fields in entries:
            try:  # the API writes one field, "c": a list [b"c", body] as Redis sends it
                command = decode(fields[1] if fields[0] == b"c" else field(fields, b"c"))
            except Exception:
                command = self.decode(entry_id, fields)  # logs the poison entry
                if command is None:
                    continue
            events = engine.apply(command)
            request_id = command.request_id
            encoded = encode_events(events)
            request = request_id.encode()
            replica, dash, _ = request_id.partition("-")
            reply = 0
            if dash:
                reply = replies.get(replica, 0)
                if not reply:
                    # KEYS index in the publish script, after token, lease, events,
                    # markers and published
                    reply = replies[replica] = 6 + len(reply_keys)
                    reply_keys.append(settings.reply_stream_of(symbol, replica))
                    answers.append([])
                n = len(request)
                answers[reply - 6] += (
                    heads[n] if n < 32 else answer_head(request),
                    request,
                    encoded,
                )
            add(frame(b"%d-0" % events[-1].seq, request, entry_id, encoded, reply))
        self.last_command_id = entries[-1][0].decode()
        checkpoints = self.checkpoints
        checkpoints.commands_since += len(entries)
        marker = checkpoints.marker(entries[-1][0]) if checkpoints.due(now) else None
        batch = [(key, pack_answers(a)) for key, a in zip(reply_keys, answers, strict=True)]
        self.held = (b"".join(parts), batch, marker)
        self.behind = len(entries) >= READ_BATCH

    def flush(self, reader: StreamReader | None = None) -> None:
        """Send the prepared publish, without waiting for Redis's answer (`Lease.settle`
        reads it before the next write) unless this leader forks a checkpoint next: it does
        so only once the events up to its state are published. With a `reader` that
        `carries`, the publish goes out with that reader's next read, in one write, and
        is settled there."""
        held, self.held = self.held, None
        self.behind = False
        if held is None:
            return
        frames, replies, marker = held
        self.settle()
        forks = marker is not None and marker.writer == LEADER
        carrier = None
        if reader is not None and reader.carries:
            settle = self.settle

            def carrier(packed: bytes) -> Any:
                return reader.carry(packed, settle)

        duplicates = self.lease.publish(frames, replies, marker, wait=forks, carrier=carrier)
        if duplicates:
            self.log.info("events_already_published", entries=duplicates, seq=self.engine.seq)
        self.renewed_at = time.monotonic()
        if marker is not None:
            self.checkpoints.started(marker)

    def settle(self) -> None:
        """Wait for the publish in flight; log entries that were published already."""
        duplicates = self.lease.settle()
        if duplicates:
            self.log.info("events_already_published", entries=duplicates, seq=self.engine.seq)

    def maintain(self, now: float) -> None:
        """Between reads: reap a finished checkpoint child, renew the lease, broadcast
        the book (leader); poll the lease (standby)."""
        checkpoints = self.checkpoints
        if self.job.running:
            if self.leading:
                checkpoints.reap()
            else:
                self.standby.reap()
        if not self.leading:
            if not self.try_lead(now):
                self.standby.report(now)
            return
        checkpoints.poll_standby(now)
        checkpoints.check_standby(now)
        if self.held is None and checkpoints.due(now):
            # Due while no batch comes (the count was reached while the previous child ran,
            # or the interval passed): the marker goes out on its own, then the child.
            marker = checkpoints.marker(self.last_command_id.encode())
            self.lease.publish(b"", [], marker)
            checkpoints.started(marker)
        if now >= self.next_book:
            self.publish_book()
            self.renewed_at = now
            self.next_book = now + self.settings.book_interval_s
        if now - self.renewed_at >= RENEW_S:
            self.lease.renew()
            self.renewed_at = now

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
        self.lease.publish_book(message, max(5, int(3 * self.settings.book_interval_s) + 1))

    def stop(self) -> None:
        """A clean stop: a checkpoint at the last published state (so the next start
        replays nothing), its hash stored for operators and the crash harness (unless this
        leader had not caught up with what its predecessor published: that hash would not
        be the book's), the lease given up so that a standby takes over at once."""
        if not self.leading:
            self.job.abandon()
            return
        self.flush()
        self.settle()
        if self.job.running:
            self.checkpoints.reap(block=True)
        if not self.leading:
            return
        marker: Marker | None = None
        if self.last_hash is None or self.last_hash[0] != self.engine.seq:
            self.job.start(self.engine, self.last_command_id, self.checkpoint_dir)
            outcome = self.job.poll(block=True)
            assert outcome is not None  # a blocking poll returns or raises
            self.last_hash = (outcome.seq, outcome.state_hash)
            seq, command = self.engine.seq, self.last_command_id.encode()
            marker = Marker(seq, command, LEADER)
            trim_to = outcome.trim_to
        else:
            trim_to = None
        caught_up = self.engine.seq >= self.published_tip()[0]
        self.lease.checkpointed(
            self.engine.seq, self.last_hash[1], trim_to, marker, store_hash=caught_up, release=True
        )
        seq, digest = self.last_hash
        self.log.info("stopped_cleanly", seq=seq, state_hash=digest, caught_up=caught_up)
