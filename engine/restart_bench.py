"""How long an engine with a big book takes to be ready again: `python -m engine.restart_bench`.

Builds a book of `--resting` orders (each with a client order id unless
`--no-client-ids`, so the idempotency window is full too), writes it as a checkpoint into
a fresh data directory, starts a local Redis whose event stream ends at that checkpoint's
sequence number, then starts `python -m engine` (no standby) and measures, from the moment
the process is started:
- until it holds the instrument's lease, i.e. it is ready to match (its readiness key);
- until it has answered one command sent right after the start.
Prints the checkpoint's size and the engine's own `checkpoint_loaded` / `recovery_done`
timings. Runs `--runs` times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

from shared.commands import Place, encode_command
from shared.config import Settings
from shared.events import encode_events
from shared.redis_server import start_redis
from shared.stack import stop_process

from . import checkpoint
from .checkpoint_job import CHECKPOINT_VERSION
from .deep_book import MID, SPREAD, build
from .drain_bench import cpu_seconds
from .snapshot import snapshot


def wait(condition: object, timeout: float, process: subprocess.Popen[bytes]) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return time.monotonic()
        if process.poll() is not None:
            raise RuntimeError(f"engine exited with {process.returncode}")
        time.sleep(0.002)
    raise TimeoutError("engine not ready in time")


def one_run(directory: Path, core: bytes, seq: int, settings: Settings) -> dict[str, float]:
    data = directory / "data"
    ckpt = checkpoint.Checkpoint(CHECKPOINT_VERSION, seq, "1-0", core)
    checkpoint.write(data / "checkpoints" / "DEFAULT", ckpt)
    server, url = start_redis(directory / "redis")
    client = redis.Redis.from_url(url)
    try:
        # The published tip: the events of the command the checkpoint ends with.
        client.xadd(settings.command_stream, {"c": b"\x90"}, id="1-0")
        client.xadd(
            settings.event_stream, {"r": "", "c": "1-0", "e": encode_events([])}, id=f"{seq}-0"
        )
        client.xadd(settings.reply_stream_of("DEFAULT", "bench"), {"open": 1})
        env = {**os.environ, "REDIS_URL": url, "DATA_DIR": str(data), "LOG_LEVEL": "info"}
        log = directory / "engine.log"
        with open(log, "wb") as out:
            started = time.monotonic()
            engine = subprocess.Popen(
                [sys.executable, "-m", "engine"], env=env, stdout=out, stderr=out
            )
            place = Place(1, MID - SPREAD - 10, 1, None, "bench-1", 0)
            client.xadd(settings.command_stream, {"c": encode_command(place)})
            lease = settings.engine_lease_of("DEFAULT")
            ready = wait(lambda: client.exists(lease), 60, engine)
            ready_cpu = cpu_seconds(engine.pid)
            replies = settings.reply_stream_of("DEFAULT", "bench")
            answered = wait(lambda: client.xlen(replies) > 1, 60, engine)
            stop_process(engine, timeout=60)
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        timings = {e["event"]: e.get("seconds", 0.0) for e in lines if "seconds" in e}
        return {
            "ready": ready - started,
            "ready_cpu": ready_cpu,
            "answered": answered - started,
            "checkpoint_loaded": timings.get("checkpoint_loaded", float("nan")),
            "recovery_done": timings.get("recovery_done", float("nan")),
        }
    finally:
        client.close()
        stop_process(server, timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resting", type=int, default=1_000_000)
    parser.add_argument("--no-client-ids", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    engine = build(args.resting, not args.no_client_ids, args.seed)
    core = snapshot(engine)
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="restart-") as tmp:
        size = (
            checkpoint.write(
                Path(tmp), checkpoint.Checkpoint(CHECKPOINT_VERSION, engine.seq, "1-0", core)
            )
            .stat()
            .st_size
        )
        print(
            f"{len(engine.orders):,} resting orders, {len(engine.client_order_ids):,} client "
            f"order ids: checkpoint {size / 1e6:.1f} MB"
        )
        for run in range(args.runs):
            t = one_run(Path(tmp) / f"run{run}", core, engine.seq, settings)
            print(
                f"run {run + 1}: ready to match {t['ready']:.2f} s after start "
                f"({t['ready_cpu']:.2f} s of its CPU), first answer "
                f"{t['answered']:.2f} s (checkpoint loaded in {t['checkpoint_loaded']:.2f} s, "
                f"recovery done in {t['recovery_done']:.2f} s)"
            )


if __name__ == "__main__":
    main()
