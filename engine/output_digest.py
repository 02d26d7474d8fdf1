"""A running digest of an engine's output, cut at each checkpoint marker.

A standby must find out whether it still matches the leader at every checkpoint. Hashing
the whole state (`snapshot.state_hash`) needs a forked child on each side; when the
standby writes the checkpoints the leader forks nothing, so it cannot offer a state hash.
What it can offer cheaply is a digest of everything it produced: blake2b over the encoded
events of each command, in order (one `update` per batch on the leader, per command on the
standby; a stream hash does not depend on how the bytes were split). Each checkpoint marker
carries the digest of the events since the previous marker (`p`: the seq it started at)
and the standby compares its own over the same span.

What that proves: both engines produced byte-identical events for every command in the
span. It does not see a difference in state that no event has shown yet (an order the
span never touched, a client order id not reused); the state hash of the checkpoint the
standby wrote is published with it, and a leader that forks (no standby) still publishes
its own, which a standby compares."""

from __future__ import annotations

import hashlib


class OutputDigest:
    def __init__(self, start: int = 0) -> None:
        self.start = start  # the seq after which this span began
        self._hash = hashlib.blake2b(digest_size=16)
        self.update = self._hash.update

    def reset(self, seq: int) -> None:
        """Start a new span after `seq` (nothing before it is known to this engine)."""
        self.start = seq
        self._hash = hashlib.blake2b(digest_size=16)
        self.update = self._hash.update

    def cut(self, seq: int) -> tuple[int, str]:
        """The span's start and digest up to `seq`; the next span starts there."""
        span = (self.start, self._hash.hexdigest())
        self.reset(seq)
        return span
