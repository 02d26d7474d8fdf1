"""How fast one engine process drains its command stream: `python -m engine.drain_bench`.

Pre-fills a local Redis (AOF on, `appendfsync everysec`, as `make run` runs it) with the
realistic flow of `engine.bench` (`steady_flow`: a warm-up that builds a book of about
5,000 resting orders, then `--commands` commands at that steady state: 60/25/15 place,
cancel, modify, a quarter of places crossing), each from one of `--replicas` API replicas
(so each answer also goes to that replica's reply stream). Then it starts `python -m
engine` and times the steady-state commands, from the event of the last warm-up command to
the event of the last command: decode, match, encode, append events and replies, with
checkpoints every SNAPSHOT_EVERY commands as configured. This is the per-instrument
ceiling of one engine. Prints commands/s and the CPU time per command of the engine and of
Redis.
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

from shared.commands import Cancel, Command, Modify, Place, encode_command
from shared.config import Settings
from shared.redis_server import start_redis
from shared.stack import stop_process

from .bench import steady_flow

TICKS = os.sysconf("SC_CLK_TCK")


def user_system(pid: int) -> tuple[float, float]:
    """User and system CPU time of a process so far: the system part is mostly the socket
    round trips."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    return sum(user_system(pid))


def redis_time(stats: dict[str, Any]) -> list[tuple[str, int]]:
    """(command, µs Redis spent in it), most first, from `INFO commandstats` (the commands'
    own time, without socket and event-loop work)."""
    spent = ((name.removeprefix("cmdstat_"), int(v["usec"])) for name, v in stats.items())
    return sorted(spent, key=lambda item: -item[1])


def as_request(command: Command, n: int, replicas: int) -> Command:
    """The command as the API journals it: a request id naming the replica, a timestamp."""
    request_id = f"r{n % replicas}-{n}"
    ts = 1_700_000_000_000_000_000 + n * 1000
    if type(command) is Place:
        return Place(command.side, command.price, command.quantity, None, request_id, ts)
    if type(command) is Cancel:
        return Cancel(command.order_id, request_id, ts)
    assert type(command) is Modify
    return Modify(command.order_id, command.price, request_id, ts, command.quantity)


def fill(client: redis.Redis, stream: str, commands: list[Command], replicas: int) -> list[bytes]:
    ids: list[bytes] = []
    for start in range(0, len(commands), 2000):
        pipe = client.pipeline(transaction=False)
        for n in range(start, min(start + 2000, len(commands))):
            pipe.xadd(stream, {"c": encode_command(as_request(commands[n], n, replicas))})
        ids.extend(pipe.execute())
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--replicas", type=int, default=2, help="API replicas asking")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--snapshot-every", default="10000")
    args = parser.parse_args()
    settings = Settings()
    steady = steady_flow(args.commands, args.seed)
    flow = steady.warmup + steady.timed
    timed_from = len(steady.warmup) - 1  # the timing starts at this command's event
    book = steady.start(args.seed)
    resting = [len(book.orders)]
    for n, command in enumerate(steady.timed):
        book.apply(command)
        if n % 1000 == 999:
            resting.append(len(book.orders))
    print(
        f"steady state: {min(resting):,}..{max(resting):,} resting orders "
        f"(mean {sum(resting) / len(resting):,.0f}) over the timed commands"
    )
    with tempfile.TemporaryDirectory(prefix="drain-") as tmp:
        server, url = start_redis(Path(tmp) / "redis")
        client = redis.Redis.from_url(url)
        engine: subprocess.Popen[bytes] | None = None
        try:
            for r in range(args.replicas):
                client.xadd(settings.reply_stream_of("DEFAULT", f"r{r}"), {"open": 1})
            started = time.monotonic()
            ids = fill(client, settings.command_stream, flow, args.replicas)
            print(
                f"{len(ids):,} commands journaled ({len(steady.warmup):,} of warm-up) in "
                f"{time.monotonic() - started:.1f} s"
            )
            position = {entry_id: n for n, entry_id in enumerate(ids)}
            env = {
                **os.environ,
                "REDIS_URL": url,
                "DATA_DIR": str(Path(tmp) / "data"),
                "SNAPSHOT_EVERY": args.snapshot_every,
                "LOG_LEVEL": "warning",
            }
            engine = subprocess.Popen([sys.executable, "-m", "engine"], env=env)
            redis_cpu = cpu_seconds(server.pid)
            first: tuple[float, int, float] | None = None
            while True:
                last: Any = client.xrevrange(settings.event_stream, "+", "-", count=1)
                now = time.monotonic()
                if last:
                    done = position[last[0][1][b"c"]]
                    if first is None and done >= timed_from:
                        first = (now, done, cpu_seconds(engine.pid))
                        redis_cpu = cpu_seconds(server.pid)
                        client.config_resetstat()
                    if done == len(ids) - 1:
                        break
                if engine.poll() is not None:
                    raise RuntimeError(f"engine exited with {engine.returncode}")
                time.sleep(0.005)
            assert first is not None
            seconds = now - first[0]
            drained = len(ids) - 1 - first[1]
            engine_cpu = cpu_seconds(engine.pid) - first[2]
            redis_cpu = cpu_seconds(server.pid) - redis_cpu
            events = client.xlen(settings.event_stream)
            spent = redis_time(client.info("commandstats"))
            print(
                "Redis time in commands per drained command (us): "
                + ", ".join(f"{name} {usec / drained:.2f}" for name, usec in spent[:5])
            )
            print(
                f"drained {drained:,} commands in {seconds:.2f} s: {drained / seconds:,.0f} "
                f"commands/s ({events:,} event entries); CPU per command: engine "
                f"{engine_cpu / drained * 1e6:.2f} us, redis {redis_cpu / drained * 1e6:.2f} us"
            )
        finally:
            if engine is not None:
                stop_process(engine, timeout=30)
            client.close()
            stop_process(server, timeout=10)


if __name__ == "__main__":
    main()
