"""The engine service's checkpoints, written off the engine thread: they land on disk, the
command stream is trimmed behind them, and a clean stop leaves one the next start needs no
replay after."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import redis

from engine import checkpoint
from tests.conftest import running_stack
from tests.redis_replies import entries


def test_checkpoints_trim_the_oplog_and_a_clean_stop_needs_no_replay(tmp_path: Path) -> None:
    commands = "exchange:{DEFAULT}:commands"
    directory = tmp_path / "checkpoints" / "DEFAULT"
    with running_stack(tmp_path, SNAPSHOT_EVERY="50", SNAPSHOT_INTERVAL_S="60") as stack:
        client = redis.Redis.from_url(stack.redis_url)
        with httpx.Client(base_url=stack.api_url(), timeout=10) as http:
            for k in range(300):
                body = {"side": 1 if k % 2 else -1, "price": 100 + k % 7, "quantity": 1 + k % 5}
                assert http.post("/orders", json=body).status_code == 201
        deadline = time.monotonic() + 10
        while client.xlen(commands) >= 300 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.xlen(commands) < 300  # trimmed behind the oldest kept checkpoint

        stack.kill("engine", signal.SIGTERM)
        # (While the engine runs, a fourth file exists between a write and its pruning.)
        assert 1 <= len(checkpoint.files(directory)) <= checkpoint.KEEP
        last_event = entries(client.xrevrange("exchange:{DEFAULT}:events", "+", "-", count=1))
        published = int(last_event[0][0].split(b"-")[0])
        newest, _ = checkpoint.load_newest(directory)
        assert newest is not None and newest.seq == published  # the stop's checkpoint
        hash_at_stop = client.get("exchange:{DEFAULT}:engine:state_hash")

        stack.start("engine")
        stack.wait_ready()
        done = None
        while done is None and time.monotonic() < deadline + 20:
            log = (tmp_path / "logs" / "engine.log").read_text().splitlines()
            starts = [json.loads(line) for line in log if '"recovery_done"' in line]
            done = starts[1] if len(starts) > 1 else None
            time.sleep(0.1)
        assert done is not None
        assert done["commands_replayed"] == 0
        assert done["state_hash"].encode() == hash_at_stop


def test_no_usable_checkpoint_over_a_trimmed_stream_refuses_to_serve(tmp_path: Path) -> None:
    """Checkpoints on disk, none readable, and the stream trimmed behind them: a replay
    from the start would build a wrong book, so the engine refuses to start."""
    directory = tmp_path / "checkpoints" / "DEFAULT"
    with running_stack(tmp_path, SNAPSHOT_EVERY="20", SNAPSHOT_INTERVAL_S="60") as stack:
        with httpx.Client(base_url=stack.api_url(), timeout=10) as http:
            for k in range(60):
                body = {"side": 1, "price": 100 + k % 3, "quantity": 1}
                assert http.post("/orders", json=body).status_code == 201
        stack.kill("engine", signal.SIGTERM)
        files = checkpoint.files(directory)
        assert files
        for path in files:  # corrupt: the digest no longer matches
            data = path.read_bytes()
            path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
        stack.start("engine")
        assert stack.processes["engine"].wait(timeout=30) != 0
        log = (tmp_path / "logs" / "engine.log").read_text()
        assert '"recovery_impossible"' in log
        assert "none usable" in log
