"""A hot standby: a second engine that applies the same commands as the leader, never ahead
of what the leader published, and checks its state against the leader's at every checkpoint.

How it follows: it reads the leader's event stream (each entry names the command it
answers, field `c`) and the leader's checkpoint markers (`engine.lease`), then fetches and
applies the commands up to the newest answered one. Trailing the published events is what
makes a takeover exact: everything the standby applied is published, so the new leader
simply carries on from its position, and whatever the old leader published after that is
skipped as already published.

What it checks:
- after each command that the leader answered, the standby's sequence number must equal
  the id of the leader's event entry, and the events it produced, encoded, must equal the
  entry's bytes (field `e`), byte for byte. The standby reads those entries to follow
  anyway, so this costs the leader nothing (a running digest of its output, put in each
  marker, was the first design: it cost the leader a hash of every batch and checked only
  per span between markers);
- at a marker the leader checkpoints itself (`w=leader`), the standby forks a child that
  hashes its own state (and writes the checkpoint file if that seq has none yet, for a
  standby with its own data directory), and compares that hash with the leader's `S-1`
  entry. At a marker left to it (`w=standby`: a leader that shares its checkpoint
  directory forks nothing, `engine.leader_checkpoints`) its child writes the checkpoint
  file whatever is there, and the standby reports the outcome, which the leader publishes
  as `S-1`: that hash is this standby's own, so there is no state hash to compare then,
  only the events, which the standby logs as verified up to there (`events_verified`).
A mismatch is logged loudly and stops the process (`standby_diverged`, exit code 2): it
would take over with a different book.

The standby reports its position (`engine:standby`, see `engine.lease`) and the leader
trims the command stream only behind it. A stream trimmed past the standby's position all
the same (it was stopped longer than the position's expiry) shows as an answered command
it cannot find: it then recovers again from the newest checkpoint, like a restart, instead
of reporting a divergence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.events import encode_events
from shared.stream_entries import Entries, field

from .checkpoint_job import ALWAYS, IF_MISSING, CheckpointFailed, Outcome
from .lease import STANDBY

REPORT_S = 0.2  # how often a standby reports its position (see lease.STANDBY_POSITION_MS)

if TYPE_CHECKING:
    from .book_service import BookService


class Diverged(RuntimeError):
    """This engine's state differs from what the leader published."""


def optional(fields: list[bytes] | dict[bytes, bytes], name: bytes) -> bytes:
    """A field that markers written before it existed lack."""
    try:
        return field(fields, name)
    except KeyError:
        return b""


@dataclass(frozen=True)
class Mark:
    """A checkpoint marker as the standby reads it (`lease.Marker`)."""

    seq: int
    writer: str


class Standby:
    """The following half of a book (`BookService`): positions, markers, hash checks."""

    def __init__(self, book: BookService) -> None:
        self.book = book
        self.markers_key = book.lease.markers_key
        self.last_event_id = "0-0"
        self.last_marker_id = "0-0"
        self.marks: dict[bytes, Mark] = {}  # command id -> the marker after it
        self.writing = 0  # the seq whose checkpoint the leader left to this standby
        self.own: dict[int, str] = {}  # seq -> this engine's state hash there
        self.leaders: dict[int, str] = {}  # seq -> the leader's state hash there
        self.verified = 0
        self.compared = 0  # commands whose events were compared since the last marker
        self.reported_at = 0.0

    def start(self) -> None:
        """Follow from the book's current (recovered) position."""
        seq = self.book.engine.seq
        self.last_event_id = f"{seq}-0"
        # Include a marker at exactly this seq: the standby is there, it can check it.
        self.last_marker_id = f"{seq - 1}-1" if seq > 0 else "0-0"
        self.marks.clear()
        self.own.clear()
        self.leaders.clear()
        self.writing = 0

    def stop(self) -> None:
        """Leading now: nothing is compared any more. A hashing child still running is
        not waited for (with a big book that takes seconds, and the takeover must not):
        the leader reaps it like its own checkpoints, and publishes its hash."""
        self.writing = 0
        self.marks.clear()
        self.own.clear()
        self.leaders.clear()

    def report(self, now: float) -> None:
        """Tell the leader how far this standby is, so that it keeps the commands after."""
        if now - self.reported_at >= REPORT_S:
            book = self.book
            book.lease.report_position(book.last_command_id, book.checkpoints.store)
            self.reported_at = now

    def positions(self) -> dict[str, str]:
        return {self.book.event_stream: self.last_event_id, self.markers_key: self.last_marker_id}

    def follow(self, events: Entries, markers: Entries) -> None:
        book = self.book
        for entry_id, fields in markers:
            seq_text, _, part = entry_id.decode().partition("-")
            if part == "0":
                writer = optional(fields, b"w").decode()
                self.marks[field(fields, b"c")] = Mark(int(seq_text), writer)
            elif optional(fields, b"w") != STANDBY.encode():  # not this standby's own hash
                self.leaders[int(seq_text)] = field(fields, b"h").decode()
            self.last_marker_id = entry_id.decode()
        # A marker for the command just applied (a clean stop's checkpoint at the tip).
        here = self.marks.pop(book.last_command_id.encode(), None)
        if here is not None:
            self.hash_here(here)
        if events:
            answered = {
                field(fields, b"c"): (int(entry_id.split(b"-")[0]), field(fields, b"e"))
                for entry_id, fields in events
            }
            last_answered = field(events[-1][1], b"c")
            commands: Entries = book.redis.xrange(  # type: ignore[assignment]
                book.command_stream, f"({book.last_command_id}", last_answered
            )
            fetched = {entry_id for entry_id, _ in commands}
            if any(command_id not in fetched for command_id in answered):
                self.resync("an answered command is no longer in the command stream")
                return
            self.apply(commands, answered)
            self.last_event_id = events[-1][0].decode()
        self.compare()

    def apply(self, commands: Entries, answered: dict[bytes, tuple[int, bytes]]) -> None:
        book = self.book
        engine = book.engine
        for entry_id, fields in commands:
            command = book.decode(entry_id, fields)
            mine = encode_events(engine.apply(command)) if command is not None else b""
            book.last_command_id = entry_id.decode()
            expected = answered.get(entry_id)
            if expected is not None:
                seq, theirs = expected
                if seq != engine.seq:
                    raise Diverged(
                        f"{book.symbol}: after command {entry_id.decode()} the leader is at "
                        f"seq {seq}, this standby at {engine.seq}"
                    )
                if mine != theirs:
                    book.log.error(
                        "standby_diverged",
                        seq=seq,
                        command=entry_id.decode(),
                        events=mine.hex(),
                        leader_events=theirs.hex(),
                    )
                    raise Diverged(
                        f"{book.symbol}: command {entry_id.decode()} (seq {seq}): this "
                        "standby's events differ from the leader's"
                    )
                self.compared += 1
            marked = self.marks.pop(entry_id, None)
            if marked is not None:
                self.hash_here(marked)

    def hash_here(self, mark: Mark) -> None:
        """The leader marked a checkpoint here: hash (and write, when left to this standby)
        this state in a child. If the previous child still runs, this checkpoint goes
        unchecked (and unwritten: the leader is told) rather than stop the standby, which
        must keep polling the lease; the leader spaces checkpoints at four times a child's
        run (`leader_checkpoints.CHILD_SHARE`), so that is rare."""
        book = self.book
        seq = mark.seq
        if seq != book.engine.seq:
            raise Diverged(
                f"{book.symbol}: the leader checkpointed at seq {seq} after command "
                f"{book.last_command_id}, this standby is at {book.engine.seq}"
            )
        book.log.info("events_verified", seq=seq, commands=self.compared)
        self.compared = 0
        writes = mark.writer == STANDBY
        if book.job.running:
            self.reap()
        if book.job.running:
            book.log.warning("checkpoint_unchecked", seq=seq, reason="previous child running")
            if writes:
                book.lease.report_checkpoint({"seq": seq, "error": "previous child running"})
            return
        write = ALWAYS if writes else IF_MISSING
        book.job.start(book.engine, book.last_command_id, book.checkpoint_dir, write)
        self.writing = seq if writes else 0

    def reap(self, block: bool = False) -> None:
        book = self.book
        try:
            outcome = book.job.poll(block)
        except CheckpointFailed as exc:
            book.log.error("standby_hash_failed", error=str(exc))
            if self.writing:
                book.lease.report_checkpoint({"seq": self.writing, "error": str(exc)})
                self.writing = 0
            return
        if outcome is None:
            return
        book.last_hash = (outcome.seq, outcome.state_hash)
        if outcome.seq == self.writing:  # no leader hash will come to compare with
            self.writing = 0
            self.written(outcome)
            return
        self.own[outcome.seq] = outcome.state_hash
        self.compare()

    def written(self, outcome: Outcome) -> None:
        """Tell the leader what this standby wrote for it (it publishes the hash, trims)."""
        book = self.book
        child_seconds = book.job.child_seconds
        book.lease.report_checkpoint(
            {
                "seq": outcome.seq,
                "state_hash": outcome.state_hash,
                "trim_to": outcome.trim_to,
                "path": outcome.path,
                "size": outcome.size,
                "child_seconds": round(child_seconds, 4),
            }
        )
        book.log.info("checkpoint_written", writer=STANDBY, **outcome.logged(book.job.fork_seconds))

    def compare(self) -> None:
        book = self.book
        for seq in sorted(set(self.own) & set(self.leaders)):
            mine, theirs = self.own.pop(seq), self.leaders.pop(seq)
            if mine != theirs:
                book.log.error("standby_diverged", seq=seq, state_hash=mine, leader_hash=theirs)
                raise Diverged(f"{book.symbol}: at seq {seq} state hash {mine}, leader's {theirs}")
            self.verified += 1
            book.log.info("checkpoint_verified", seq=seq, state_hash=mine, verified=self.verified)
        # Hashes the other side will never publish (a leader that died before its child
        # finished; a checkpoint taken before this standby started) are dropped.
        newest = max(self.leaders, default=0)
        for seq in [s for s in self.own if s < newest]:
            del self.own[seq]
        mine_newest = max(self.own, default=0)
        for seq in [s for s in self.leaders if s < mine_newest and s < book.engine.seq]:
            del self.leaders[seq]

    def resync(self, reason: str) -> None:
        book = self.book
        book.log.warning("standby_resync", reason=reason, seq=book.engine.seq)
        started = time.monotonic()
        book.recover()
        book.log.info("standby_resynced", seconds=round(time.monotonic() - started, 3))
