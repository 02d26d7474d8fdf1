"""LOBSTER replay on small files written by the test (never the real sample data)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from engine.replay import convert_and_replay, read_messages

# time, type, id, size, price x 10000, direction
ROWS = [
    "34200.01,1,11,100,1000000,-1",  # ask 100 @ 100.00
    "34200.02,1,12,50,1000100,-1",  # ask 50 @ 100.01
    "34200.03,1,21,80,999900,1",  # bid 80 @ 99.99
    "34200.04,4,11,30,1000000,-1",  # execution of 30 against ask 11: reproducible
    "34200.05,2,12,20,1000100,-1",  # partial cancel: ask 12 keeps 30
    "34200.06,4,11,30,1000000,-1",  # another 30 of ask 11, still the best price
    "34200.07,4,99,10,1000000,-1",  # execution against an order resting before the file
    "34200.08,3,98,5,999800,1",  # delete of an unknown order
    "34200.09,5,0,7,1000050,1",  # hidden execution
    "34200.10,3,21,80,999900,1",  # delete bid 21
    "34200.11,2,11,70,1000000,-1",  # partial cancel of everything left -> cancel
    "34200.12,1,13,5,1000055,-1",  # sub-penny price: skipped
    "34200.13,6,0,0,0,0",  # cross
]


def write(tmp_path: Path) -> Path:
    path = tmp_path / "TEST_message_1.csv"
    path.write_text("\n".join(ROWS) + "\n")
    return path


def test_conversion_counts_and_exact_executions(tmp_path: Path) -> None:
    result = convert_and_replay(read_messages(write(tmp_path)))
    assert result.rows == len(ROWS)
    assert result.executions == 3
    assert result.exact == 2
    assert result.counts["skipped_unknown_order"] == 2
    assert result.counts["skipped_type_5"] == 1
    assert result.counts["skipped_type_6"] == 1
    assert result.counts["skipped_off_tick"] == 1
    assert result.counts["reduce"] == 1
    assert result.counts["reduce_to_cancel"] == 1
    assert result.counts["cancel"] == 1
    assert result.counts["place"] == 3
    assert len(result.commands) == 8


def test_replay_command_prints_figures(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "engine.replay", str(write(tmp_path))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "reproduced exactly: 2 of 3" in out
    assert "deterministic: True" in out
    assert "commands/s" in out
