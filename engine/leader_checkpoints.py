"""When a leader checkpoints, and who writes the checkpoint: the leader's own forked child,
or, while a live standby shares its checkpoint directory, the standby.

A fork stops the engine thread for as long as copying the page tables takes (about 30 µs
per MB: 16 ms at a million resting orders). A standby holds the same state at the same
command boundary, so the leader only chooses the boundary: it appends the marker with the
batch (`w=standby`) and forks nothing. The standby forks there, writes the file into the
shared directory, and reports the outcome (`Lease.report_checkpoint`); the leader then
publishes that state hash as the marker's `<seq>-1` entry and trims the command stream
behind the oldest checkpoint kept in that directory, never past the standby's position. A
restarting leader and a standby taking over (or restarting) read that same directory, so
the trim never passes a checkpoint the engine that recovers can read. With no standby, or
one with its own directory (another host), the leader forks as before.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import checkpoint
from .checkpoint_job import CheckpointFailed, Outcome
from .lease import LEADER, STANDBY, Marker

if TYPE_CHECKING:
    from .book_service import BookService

CHILD_SHARE = 4  # checkpoints start at most once per this many times the last one's run
REPORT_POLL_S = 0.02  # how often a leader looks for the standby's outcome while it waits
SHARE_CHECK_S = 0.2  # how often a leader checks for a live standby in its directory
DELEGATE_TIMEOUT_S = 10.0  # plus CHILD_SHARE child runs: then the leader stops waiting


class LeaderCheckpoints:
    """One book's checkpoint schedule while it leads."""

    def __init__(self, book: BookService) -> None:
        self.book = book
        self.store = checkpoint.store_id(book.checkpoint_dir)
        self.commands_since = 0
        self.last_at = time.monotonic()
        self.child_seconds = 0.0  # the last child's run, whoever forked it
        self.delegated: tuple[int, float] | None = None  # (seq, since) left to the standby
        self.next_poll = 0.0
        self.shared = False  # a live standby writes into this directory (as last checked)
        self.next_share_check = 0.0

    def reset(self) -> None:
        """After a recovery: count from here, and wait for nothing left to a standby."""
        self.commands_since = 0
        self.last_at = time.monotonic()
        self.delegated = None
        self.shared = False
        self.next_share_check = 0.0

    def check_standby(self, now: float) -> None:
        """Between reads, not when a checkpoint is due: the marker then costs no round trip."""
        if now >= self.next_share_check:
            self.next_share_check = now + SHARE_CHECK_S
            shared = self.book.lease.standby_shares(self.store)
            if shared != self.shared:
                self.book.log.info("checkpoint_writer", writer=STANDBY if shared else LEADER)
            self.shared = shared
            if not shared and self.delegated is not None:  # the standby is gone: no report
                self.book.log.warning("standby_checkpoint_missing", seq=self.delegated[0])
                self.delegated = None

    def due(self, now: float) -> bool:
        if self.book.job.running or self.delegated is not None:
            return False  # one at a time
        if now - self.last_at < CHILD_SHARE * self.child_seconds:
            # A big book's child runs for seconds: leave at least this much time between
            # starts, so that checkpoints take at most a quarter of a core.
            return False
        settings = self.book.settings
        return bool(self.commands_since) and (
            self.commands_since >= settings.snapshot_every
            or now - self.last_at >= settings.snapshot_interval_s
        )

    def marker(self, command_id: bytes) -> Marker:
        """A marker at the book's current state, and its writer: the standby when a live
        one shares the checkpoint directory."""
        writer = STANDBY if self.shared else LEADER
        return Marker(self.book.engine.seq, command_id, writer)

    def started(self, marker: Marker) -> None:
        """The marker is published (with its batch's events): fork, or wait for the standby."""
        book = self.book
        if marker.writer == LEADER:
            book.job.start(book.engine, book.last_command_id, book.checkpoint_dir)
        else:
            self.delegated = (marker.seq, time.monotonic())
            self.next_poll = 0.0
        self.commands_since = 0
        self.last_at = time.monotonic()

    def reap(self, block: bool = False) -> Outcome | None:
        """The leader's own child, once done: publish its hash, trim."""
        book = self.book
        try:
            outcome = book.job.poll(block)
        except CheckpointFailed as exc:  # the previous files stand; the next one retries
            book.log.error("checkpoint_failed", error=str(exc))
            return None
        if outcome is None:
            return None
        self.child_seconds = book.job.child_seconds
        book.last_hash = (outcome.seq, outcome.state_hash)
        if book.leading:
            trimmed = book.lease.checkpointed(outcome.seq, outcome.state_hash, outcome.trim_to)
            book.log.info(
                "checkpoint_written",
                writer=LEADER,
                commands_trimmed=trimmed,
                **outcome.logged(book.job.fork_seconds),
            )
        return outcome

    def poll_standby(self, now: float) -> None:
        """The standby's outcome for the marker left to it: publish its hash, trim. A
        standby that stops reporting is not waited for (`check_standby`); one that reports
        but never answers is waited for at most DELEGATE_TIMEOUT_S. The next checkpoint is
        then due as usual."""
        if self.delegated is None or now < self.next_poll:
            return
        self.next_poll = now + REPORT_POLL_S
        book = self.book
        seq, since = self.delegated
        report = book.lease.standby_checkpoint()
        if report is not None and report.get("seq") == seq:
            self.delegated = None
            self.done(report)
        elif now - since > DELEGATE_TIMEOUT_S + CHILD_SHARE * self.child_seconds:
            self.delegated = None
            book.log.warning("standby_checkpoint_missing", seq=seq, waited_seconds=now - since)

    def done(self, report: dict[str, Any]) -> None:
        book = self.book
        if "error" in report:
            book.log.error("standby_checkpoint_failed", seq=report["seq"], error=report["error"])
            return
        self.child_seconds = float(report["child_seconds"])
        seq, state_hash = int(report["seq"]), str(report["state_hash"])
        trimmed = book.lease.checkpointed(seq, state_hash, report["trim_to"], writer=STANDBY)
        book.last_hash = (seq, state_hash)
        book.log.info(
            "checkpoint_written",
            writer=STANDBY,
            path=report["path"],
            seq=seq,
            bytes=report["size"],
            state_hash=state_hash,
            commands_trimmed=trimmed,
            child_seconds=round(self.child_seconds, 3),
        )
