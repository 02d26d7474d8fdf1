"""Checkpoints taken in a forked child: the book is copied by the kernel, not by us.

Encoding a book of a million resting orders takes about a second; done on the engine
thread it stopped matching for that long. `fork()` instead gives a child an exact,
copy-on-write image of the engine at this command boundary in a few milliseconds or less
(only page tables are copied). The child encodes the snapshot, hashes it, writes the
checkpoint file (fsync, rename, directory fsync), prunes old files and reports one JSON
line through a pipe; then it leaves with `os._exit`, running no cleanup of the parent's
objects. The parent only records the child and, later, reaps it.

Rules that make fork safe here: the engine process runs no other threads (a thread holding
a lock at fork time would leave that lock held forever in the child), and the child never
touches the parent's Redis connections (their sockets are shared with the parent; a byte
written or read there would corrupt the parent's conversation). The parent freezes the
cyclic collector's generations before forking and the child disables the collector, so
neither scans the book's objects and writes to their headers, which would copy every page.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import checkpoint
from .matching import MatchingEngine
from .snapshot import digest_of, snapshot

CHECKPOINT_VERSION = 1
ALWAYS = "always"  # write the checkpoint file (the leader)
IF_MISSING = "if_missing"  # write it unless that seq has one already (a standby)
CHILD_NICENESS = 10


@dataclass(frozen=True)
class Outcome:
    """What a child did, as it reported it."""

    seq: int
    last_command_id: str
    state_hash: str
    path: str | None  # None: the child only hashed, or the file was there already
    size: int  # bytes of the core snapshot
    trim_to: str | None  # command id the stream may be trimmed behind (oldest kept file)
    encode_seconds: float
    write_seconds: float

    def logged(self, fork_seconds: float) -> dict[str, Any]:
        """What a `checkpoint_written` line says of this child's work, whoever forked it
        (a leader for itself, a standby for its leader)."""
        return {
            "path": self.path,
            "seq": self.seq,
            "bytes": self.size,
            "state_hash": self.state_hash,
            "fork_seconds": round(fork_seconds, 4),
            "encode_seconds": self.encode_seconds,
            "write_seconds": self.write_seconds,
        }


class CheckpointFailed(RuntimeError):
    """The child died or reported an error; the previous checkpoints still stand."""


class CheckpointJob:
    """At most one child at a time per book."""

    def __init__(self) -> None:
        self.pid = 0
        self.fd = -1
        self.seq = 0
        self.fork_seconds = 0.0  # how long the last fork() stopped the engine thread
        self.started_at = 0.0
        self.child_seconds = 0.0  # how long the last child ran, fork to reaping

    @property
    def running(self) -> bool:
        return self.pid != 0

    def start(
        self,
        engine: MatchingEngine,
        last_command_id: str,
        directory: Path,
        write: str = ALWAYS,
    ) -> None:
        """Fork a child that hashes `engine`'s state and writes it as a checkpoint into
        `directory` (`ALWAYS`, or `IF_MISSING`), pruning older files."""
        if self.running:
            raise RuntimeError("a checkpoint child is still running")
        read_fd, write_fd = os.pipe()
        started = time.perf_counter()
        self.started_at = time.monotonic()
        gc.freeze()  # collections in the parent no longer visit (and dirty) these objects
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(read_fd)
            _child(engine, last_command_id, directory, write, write_fd)
        self.fork_seconds = time.perf_counter() - started
        os.close(write_fd)
        self.pid, self.fd, self.seq = pid, read_fd, engine.seq

    def poll(self, block: bool = False) -> Outcome | None:
        """The child's outcome once it has exited (None while it runs); raises
        CheckpointFailed if it failed."""
        if not self.running:
            return None
        pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return None
        with os.fdopen(self.fd, "rb") as pipe:
            report = pipe.read()
        self.pid, self.fd = 0, -1
        self.child_seconds = time.monotonic() - self.started_at
        code = os.waitstatus_to_exitcode(status)
        try:
            fields: dict[str, Any] = json.loads(report) if report else {}
        except ValueError:
            fields = {}
        if code != 0 or "error" in fields or not fields:
            raise CheckpointFailed(
                f"checkpoint child for seq {self.seq} exited with {code}: "
                f"{fields.get('error', 'no report')}"
            )
        return Outcome(**fields)

    def abandon(self) -> None:
        """Stop waiting for the child (it finishes on its own; its file, if it writes
        one, is a valid checkpoint)."""
        if self.running:
            with contextlib.suppress(CheckpointFailed):
                self.poll(block=True)


def _background() -> None:
    """Make this process background work: on a loaded host the engine thread (or the
    standby's, whose commands the leader waits for to trim) gets the CPU first.

    SCHED_IDLE where the kernel has it: a child encoding the book (60-70 ms of CPU every
    10,000 commands at 5,000 mutations/s) then runs only on CPU nothing else wants, and a
    woken service preempts it at once. At 5,000/s on two cores the p99 fell in 8 of 10
    alternating pairs, by 0.6 ms on average (niceness 19 with SCHED_BATCH: no gain). The
    price: on a core that other work keeps fully busy it gets about 0.3% of it per busy
    process (weight 3 against 1,024), so a 60-70 ms encode takes some 20 s, minutes with a
    larger book or more busy processes, and the command stream waits that long for its
    trim (`checkpoint_written` logs the child's times). Niceness 10 where SCHED_IDLE is
    missing or refused."""
    os.nice(CHILD_NICENESS)
    if hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):  # a sandbox that forbids it: niceness 10 applies
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _child(
    engine: MatchingEngine,
    last_command_id: str,
    directory: Path,
    write: str,
    report_fd: int,
) -> None:
    code = 0
    try:
        _background()
        gc.disable()
        started = time.perf_counter()
        core = snapshot(engine)
        state_hash = digest_of(core)
        encoded = time.perf_counter()
        path: str | None = None
        if write == ALWAYS or not (directory / checkpoint.name_of(engine.seq)).exists():
            ckpt = checkpoint.Checkpoint(
                CHECKPOINT_VERSION, engine.seq, last_command_id, core, state_hash
            )
            path = checkpoint.write(directory, ckpt).name
        kept = checkpoint.prune(directory)
        trim_to = kept[-1].last_command_id if kept else None
        report: dict[str, Any] = {
            "seq": engine.seq,
            "last_command_id": last_command_id,
            "state_hash": state_hash,
            "path": path,
            "size": len(core),
            "trim_to": trim_to,
            "encode_seconds": round(encoded - started, 4),
            "write_seconds": round(time.perf_counter() - encoded, 4),
        }
    except BaseException as exc:  # reported to the parent, which logs it
        report, code = {"error": f"{type(exc).__name__}: {exc}"}, 1
    try:
        os.write(report_fd, json.dumps(report).encode())
    finally:
        os._exit(code)
