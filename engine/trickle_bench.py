"""What one engine process costs per command at live batch sizes: `python -m engine.trickle_bench`.

`engine.drain_bench` measures the engine draining a full stream, a thousand commands per
read, where the per-batch costs (a read, a publish script, their round trips) vanish. Under
the live stack (`tests.load` at 32-64 clients) the engine sees about a dozen commands per
read, and those per-batch costs dominate. This bench reproduces that: a local Redis (AOF on,
as `make run` runs it), the warm-up of `engine.bench`'s realistic flow drained first, then
`--commands` commands appended `--batch` at a time (each batch one MULTI/EXEC, so that the
engine's blocking read wakes to the whole batch) at a steady `--rate` commands/s. Prints the
engine's and Redis's CPU time per command over the timed part (from /proc: Redis's includes
the appends themselves), and Redis's time per command in each command (`INFO
commandstats`, which leaves out its socket and event-loop work), with the number of reads
and publishes per batch.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from shared.commands import encode_command
from shared.config import Settings
from shared.redis_server import start_redis
from shared.stack import stop_process

from .bench import steady_flow
from .drain_bench import as_request, fill, redis_time, user_system


def since(before: tuple[float, float], pid: int) -> tuple[float, float]:
    """User and system CPU time of a process since `before` (`user_system`)."""
    user, system = user_system(pid)
    return user - before[0], system - before[1]


def wait_for_event_of(client: redis.Redis, stream: str, command_id: bytes, engine: Any) -> None:
    """Until the event stream's newest entry answers `command_id` (the engine is caught up)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        last: Any = client.xrevrange(stream, "+", "-", count=1)
        if last and last[0][1][b"c"] == command_id:
            return
        if engine.poll() is not None:
            raise RuntimeError(f"engine exited with {engine.returncode}")
        time.sleep(0.002)
    raise TimeoutError("the engine did not catch up within 600 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=30_000)
    parser.add_argument("--rate", type=float, default=3000.0, help="commands/s appended")
    parser.add_argument("--batch", type=int, default=12, help="commands per append")
    parser.add_argument("--replicas", type=int, default=1, help="API replicas asking")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    settings = Settings()
    steady = steady_flow(args.commands, args.seed)
    stream = settings.command_stream
    with tempfile.TemporaryDirectory(prefix="trickle-") as tmp:
        server, url = start_redis(Path(tmp) / "redis")
        client = redis.Redis.from_url(url)
        engine: subprocess.Popen[bytes] | None = None
        try:
            for r in range(args.replicas):
                client.xadd(settings.reply_stream_of("DEFAULT", f"r{r}"), {"open": 1})
            warm_ids = fill(client, stream, steady.warmup, args.replicas)
            env = {
                **os.environ,
                "REDIS_URL": url,
                "DATA_DIR": str(Path(tmp) / "data"),
                "LOG_LEVEL": "warning",
            }
            engine = subprocess.Popen([sys.executable, "-m", "engine"], env=env)
            wait_for_event_of(client, settings.event_stream, warm_ids[-1], engine)
            time.sleep(1.0)  # the warm-up's checkpoint child, if any, is done
            print(f"engine pid {engine.pid}, redis pid {server.pid}", flush=True)
            bodies = [
                encode_command(as_request(c, len(warm_ids) + n, args.replicas))
                for n, c in enumerate(steady.timed)
            ]
            batches = [bodies[i : i + args.batch] for i in range(0, len(bodies), args.batch)]
            interval = args.batch / args.rate
            engine_cpu, redis_cpu = user_system(engine.pid), user_system(server.pid)
            client.config_resetstat()
            started = time.monotonic()
            late = 0
            last_id = b""
            for n, batch in enumerate(batches):
                due = started + n * interval
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                else:
                    late += 1
                pipe = client.pipeline(transaction=True)
                for body in batch:
                    pipe.xadd(stream, {"c": body})
                last_id = pipe.execute()[-1]
            wait_for_event_of(client, settings.event_stream, last_id, engine)
            seconds = time.monotonic() - started
            engine_cpu = since(engine_cpu, engine.pid)
            redis_cpu = since(redis_cpu, server.pid)
            stats = client.info("commandstats")
            n = len(bodies)
            calls = {k.removeprefix("cmdstat_"): v for k, v in stats.items()}
            reads = calls.get("xread", {}).get("calls", 0)
            publishes = calls.get("evalsha", {}).get("calls", 0)
            spent = redis_time(stats)
            print(
                f"{n:,} commands in {len(batches):,} batches of {args.batch} at "
                f"{n / seconds:,.0f}/s ({late} batches late); engine reads {reads:,}, "
                f"scripts {publishes:,} ({n / max(publishes, 1):.1f} commands per script)"
            )
            print(
                "Redis time in commands per command (us): "
                + ", ".join(f"{name} {usec / n:.2f}" for name, usec in spent[:6])
            )
            e_user, e_sys = (t / n * 1e6 for t in engine_cpu)
            r_user, r_sys = (t / n * 1e6 for t in redis_cpu)
            print(
                f"CPU per command: engine {e_user + e_sys:.1f} us ({e_user:.1f} user, "
                f"{e_sys:.1f} system), redis {r_user + r_sys:.1f} us ({r_user:.1f} user, "
                f"{r_sys:.1f} system)"
            )
        finally:
            if engine is not None:
                stop_process(engine, timeout=30)
            client.close()
            stop_process(server, timeout=10)


if __name__ == "__main__":
    main()
