"""Checkpoint files: atomic, checksummed, and never trusted beyond what was published."""

from __future__ import annotations

from pathlib import Path

from engine import checkpoint
from engine.checkpoint import Checkpoint


def ckpt(seq: int) -> Checkpoint:
    return Checkpoint(version=1, seq=seq, last_command_id=f"{seq}-0", core=b"core")


def test_newest_valid_checkpoint_wins_and_corrupt_ones_are_skipped(tmp_path: Path) -> None:
    checkpoint.write(tmp_path, ckpt(5))
    newest = checkpoint.write(tmp_path, ckpt(9))
    newest.write_bytes(newest.read_bytes()[:-1] + b"X")  # torn or corrupt
    found, skipped = checkpoint.load_newest(tmp_path)
    assert found == ckpt(5)
    assert len(skipped) == 1 and "checksum" in skipped[0]


def test_checkpoint_ahead_of_the_published_events_is_not_used(tmp_path: Path) -> None:
    for seq in (5, 10):
        checkpoint.write(tmp_path, ckpt(seq))
    found, skipped = checkpoint.load_newest(tmp_path, max_seq=7)
    assert found == ckpt(5)
    assert skipped and "ahead of the published events" in skipped[0]
    assert checkpoint.load_newest(tmp_path, max_seq=4)[0] is None
    assert checkpoint.load_newest(tmp_path, max_seq=10)[0] == ckpt(10)


def test_prune_keeps_the_newest_three(tmp_path: Path) -> None:
    for seq in range(1, 6):
        checkpoint.write(tmp_path, ckpt(seq))
    kept = checkpoint.prune(tmp_path)
    assert [c.seq for c in kept] == [5, 4, 3]
    assert len(checkpoint.files(tmp_path)) == 3
