"""Archiver benchmark: `python -m tests.archiver_bench [--rate 2500] [--seconds 8] [--rounds 2]
[--batch N]`.

The archiver alone, under a steady trickle: a seeded crossing flow (about 60% place, 25%
cancel, 15% modify) is matched in-process by a real engine, and its events are appended to
a fresh Redis one entry per command, as the engine publishes them, at `--rate` commands/s.
The archiver (this tree's, SQLite store) follows the stream. Prints per round the archiver's
and Redis's CPU per event and per command, and the batches it stored (one progress copy
each). Its CPU per event falls as batches grow, so compare rounds with similar batch
counts; the figure is free of the API's, the engine's and the load client's share. With
`--batch N` the feed goes in lock step instead: N commands' entries at once (one MULTI),
then a wait for the archiver to copy its progress past them, so that every round stores
the same batches, one read each, however loaded the machine is.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redis.typing import EncodableT, FieldT

from engine.matching import MatchingEngine
from shared.commands import BUY, SELL
from shared.config import Settings
from shared.events import Accepted, Event, encode_events
from shared.redis_client import Client, connect
from tests.redis_process import running_redis

NS = 1_000_000_000
TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def flow(commands: int, seed: int) -> list[list[Event]]:
    """Each command's events, from a real engine fed a load-like flow."""
    engine, rng = MatchingEngine(), random.Random(seed)
    entries: list[list[Event]] = []
    resting: list[int] = []
    ts = 1_700_000_000 * NS
    for _ in range(commands):
        ts += rng.randrange(NS // 1000)
        roll = rng.random()
        if roll < 0.6 or not resting:
            side = rng.choice((BUY, SELL))
            price = 100_000 + rng.randint(-20, 20)
            events = engine.place(side, price, rng.randint(1, 10), None, ts)
            if isinstance(events[0], Accepted):
                resting.append(events[0].order_id)
        elif roll < 0.85:
            events = engine.cancel(resting.pop(rng.randrange(len(resting))), ts)
        else:
            target = resting[rng.randrange(len(resting))]
            events = engine.modify(target, 100_000 + rng.randint(-20, 20), ts)
        entries.append(events)
    return entries


def stored(client: Client, copy: str, seq: int, poll_s: float) -> None:
    """Until the archiver's progress copy reaches `seq`."""
    while int(client.get(copy) or 0) < seq:
        time.sleep(poll_s)


def run(entries: list[list[Event]], rate: float, batch: int) -> str:
    settings = Settings()
    stream = settings.event_stream_of("DEFAULT")
    with (
        tempfile.TemporaryDirectory(prefix="archiver-bench-") as tmp,
        running_redis(Path(tmp) / "redis") as (redis_process, url),
    ):
        client = connect(url)
        env = dict(os.environ, REDIS_URL=url, DATA_DIR=tmp, LOG_LEVEL="warning")
        env.pop("MONGODB_URL", None)
        archiver = subprocess.Popen(
            [sys.executable, "-m", "archiver"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while not client.exists(settings.archiver_heartbeat):
                if time.monotonic() > deadline:
                    raise SystemExit("the archiver did not start")
                time.sleep(0.05)
            before = cpu_of(archiver.pid), cpu_of(redis_process.pid)
            copy = settings.key("DEFAULT", "archiver:progress")
            started, sent = time.perf_counter(), 0
            while sent < len(entries):
                if batch:
                    due = min(len(entries), sent + batch)
                else:
                    due = min(len(entries), int((time.perf_counter() - started) * rate))
                if due == sent:
                    time.sleep(0.0005)
                    continue
                pipe = client.pipeline(transaction=bool(batch))
                for events in entries[sent:due]:
                    body: dict[FieldT, EncodableT] = {
                        "r": "",
                        "c": "0-1",
                        "e": encode_events(events),
                    }
                    pipe.xadd(stream, body, id=f"{events[-1].seq}-0")
                pipe.execute()
                sent = due
                if batch:
                    stored(client, copy, entries[due - 1][-1].seq, 0.0002)
            stored(client, copy, entries[-1][-1].seq, 0.01)
            archiver_s = cpu_of(archiver.pid) - before[0]
            redis_s = cpu_of(redis_process.pid) - before[1]
            event_count = sum(len(e) for e in entries)
            batches = client.info("commandstats").get("cmdstat_set", {}).get("calls", 0)
            return (
                f"{len(entries):,} commands, {event_count:,} events, {batches:,} batches: "
                f"archiver {archiver_s / event_count * 1e6:.1f} µs/event "
                f"({archiver_s / len(entries) * 1e6:.1f} per command), Redis with the feed "
                f"{redis_s / event_count * 1e6:.1f} µs/event; load {os.getloadavg()[0]:.2f}"
            )
        finally:
            archiver.send_signal(signal.SIGTERM)
            archiver.wait(10)
            client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2500, help="commands/s")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--batch", type=int, default=0, help="commands per lock-step batch (0: a steady --rate)"
    )
    args = parser.parse_args()
    entries = flow(int(args.rate * args.seconds), args.seed)
    for _ in range(args.rounds):
        print(run(entries, args.rate, args.batch), flush=True)


if __name__ == "__main__":
    main()
