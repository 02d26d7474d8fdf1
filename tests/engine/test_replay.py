"""LOBSTER replay on small files written by the test (never the real sample data)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from engine.replay import convert_and_replay, read_messages, resting_at_start

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


def write_rows(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "TEST_message_2.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


# Orders 3, 5 and 7 rested before the file starts (their ids are below 11, its first new
# order). 4 is old too, but the file adds it itself, so it is not one of them. The file
# refers to 5 before 3, but 3 is older, so 3 is ahead of 5 at 100.00, as the executions say.
RESTING_ROWS = [
    "34200.01,1,11,10,1000200,-1",  # ask 10 @ 100.02
    "34200.02,2,5,1,1000000,-1",  # old ask 5 @ 100.00 loses 1
    "34200.03,4,3,4,1000000,-1",  # execution of 4 of old ask 3, at the same price
    "34200.04,4,3,1,1000000,-1",  # ... and of its last unit
    "34200.05,4,5,6,1000000,-1",  # then 6 of ask 5
    "34200.06,2,7,2,999000,1",  # old bid 7 @ 99.90 loses 2
    "34200.07,1,4,8,999500,1",  # old id 4 enters as a new bid
    "34200.08,3,5,3,1000000,-1",  # delete of what is left of ask 5
    "34200.09,3,7,5,999000,1",  # delete of bid 7
]


def test_orders_resting_before_the_file_are_placed_first_in_id_order(tmp_path: Path) -> None:
    rows = read_messages(write_rows(tmp_path, RESTING_ROWS))
    # in id order, each with all the file later removes from it
    assert resting_at_start(rows) == [
        (1, 3, 5, 1000000, -1),
        (1, 5, 10, 1000000, -1),
        (1, 7, 7, 999000, 1),
    ]
    result = convert_and_replay(rows)
    assert result.counts["place_resting_at_start"] == 3
    assert result.counts["skipped_unknown_order"] == 0
    assert result.counts["reduce"] == 2
    assert result.counts["cancel"] == 2
    assert (result.executions, result.exact) == (3, 3)
    # engine ids: 3 -> 1, 5 -> 2, 7 -> 3 (placed first), then the file's own orders
    assert [(t.quantity, t.ask_order_id) for t in result.trades] == [(4, 1), (1, 1), (6, 2)]


# Asks X (20), Y (21) and Z (22) rest at 100.00 in that order. LOBSTER executes Y in full
# first (X had priority here, so the engine fills X instead and Y stays behind). Without
# the option, the later execution of Z then trades with the stale Y.
EXECUTED_ROWS = [
    "34200.01,1,20,10,1000000,-1",
    "34200.02,1,21,10,1000000,-1",
    "34200.03,1,22,5,1000000,-1",
    "34200.04,4,21,10,1000000,-1",  # Y fully executed, as LOBSTER has it
    "34200.05,3,20,10,1000000,-1",  # X deleted (the engine filled it already)
    "34200.06,4,22,5,1000000,-1",  # Z executed
]


def test_cancel_executed_removes_an_order_lobster_shows_fully_executed(tmp_path: Path) -> None:
    rows = read_messages(write_rows(tmp_path, EXECUTED_ROWS))
    plain = convert_and_replay(rows)
    assert (plain.executions, plain.exact) == (2, 0)
    assert [t.ask_order_id for t in plain.trades] == [1, 2]  # X, then the stale Y
    assert plain.counts["skipped_dead_order"] == 1
    fixed = convert_and_replay(rows, cancel_executed=True)
    assert (fixed.executions, fixed.exact) == (2, 1)
    assert [t.ask_order_id for t in fixed.trades] == [1, 3]  # X, then Z
    assert fixed.counts["cancel_executed"] == 1
    assert fixed.trade_digest() != plain.trade_digest()
    assert fixed.trade_digest() == convert_and_replay(rows, cancel_executed=True).trade_digest()


def test_replay_command_prints_the_trade_digest(tmp_path: Path) -> None:
    path = write_rows(tmp_path, EXECUTED_ROWS)
    expected = convert_and_replay(read_messages(path), cancel_executed=True).trade_digest()
    out = subprocess.run(
        [sys.executable, "-m", "engine.replay", str(path), "--cancel-executed"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "reproduced exactly: 1 of 2" in out
    assert f"trades: 2, digest (blake2b-128): {expected}" in out
