"""How long checkpoints stop matching: `python -m engine.stall_bench --resting 1000000`.

Commands (`engine.deep_book.churn`) arrive at a steady `--rate` against a book of
`--resting` orders, and a checkpoint is started every `--every` commands (one at a time), as
the service does. Each command's latency is measured open-loop, from the moment it was due
to the moment it was applied, so a checkpoint that stops the engine thread for 100 ms shows
as the 100 ms (and the queue behind it) that the commands arriving meanwhile wait.

`--mode fork` is the service's checkpoint (`engine.checkpoint_job`: the engine thread only
forks). fork() copies one page-table entry per 4 KiB page, so its cost grows with the
process's memory; run with `PYTHONMALLOC=malloc GLIBC_TUNABLES=glibc.malloc.hugetlb=1` to
put the heap on transparent huge pages (one entry per 2 MiB; the last line says how much
of the process is on them).

`--mode standby` is the service with a live standby that shares the checkpoint directory
(`engine.leader_checkpoints`): the engine thread forks nothing, it only makes the marker.
A second process, started before the book is built and
building its own (as a standby has its own memory), applies the same commands on the same
schedule and forks the checkpoint children itself; on this 2-core host it competes with
the engine for CPU as a same-host standby does. (The service also checks, every 200 ms
between reads, that the standby's report is fresh: one Redis round trip, not modelled here.)

In every mode each command's events are encoded, as the service does to publish them (and
the standby to compare its own with them).

`--mode inline` is the previous checkpoint, kept here as the baseline: the snapshot encoded
on the engine thread, the file written, fsynced and pruned by a writer thread.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from shared.events import encode_events

from . import checkpoint
from .checkpoint_job import CHECKPOINT_VERSION, CheckpointJob
from .deep_book import build, churn
from .lease import STANDBY, Marker
from .snapshot import snapshot

FOLLOW_LAG_NS = 1_000_000  # the standby applies each command this long after it was due


def percentile(samples: list[int], p: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * p))] / 1e6


def run(
    resting: int, client_ids: bool, rate: float, seconds: float, every: int, mode: str, seed: int
) -> None:
    directory = Path(tempfile.mkdtemp(prefix="stall-"))
    standby = Standby(resting, client_ids, rate, seconds, every, seed, directory)
    if mode == "standby":
        standby.fork()
    engine = build(resting, client_ids, seed)
    flow = churn(engine, int(rate * seconds), seed + 1)
    gc.collect()
    gc.freeze()  # as the service does after recovery
    job = CheckpointJob()
    writer = ThreadPoolExecutor(max_workers=1)
    writing: Future[None] | None = None
    pauses: list[tuple[float, float]] = []  # (wall ms, engine thread CPU ms) per checkpoint
    latencies = [0] * len(flow)
    clock = time.perf_counter_ns
    cpu = time.thread_time_ns  # what the engine thread itself spent: load does not inflate it
    interval = int(1e9 / rate)
    apply = engine.apply
    started = standby.go()
    for i, command in enumerate(flow):
        due = started + i * interval
        while clock() < due:
            pass
        encode_events(apply(command))  # what the service publishes
        if i % every == every - 1:
            t0, cpu0 = clock(), cpu()
            if mode == "standby":  # only the marker; the standby forks
                Marker(engine.seq, b"%d-0" % i, STANDBY)
                pauses.append(((clock() - t0) / 1e6, (cpu() - cpu0) / 1e6))
            elif mode == "fork":
                if job.running:
                    job.poll()
                if not job.running:
                    job.start(engine, f"{i}-0", directory)
                    pauses.append(((clock() - t0) / 1e6, (cpu() - cpu0) / 1e6))
            elif writing is None or writing.done():
                core = snapshot(engine)  # the engine thread encodes the whole book
                ckpt = checkpoint.Checkpoint(CHECKPOINT_VERSION, engine.seq, f"{i}-0", core)
                writing = writer.submit(_persist, directory, ckpt)
                pauses.append(((clock() - t0) / 1e6, (cpu() - cpu0) / 1e6))
        latencies[i] = clock() - due
    elapsed = (clock() - started) / 1e9
    if job.running:
        job.poll(block=True)
    writer.shutdown()
    followed = standby.result()
    latencies.sort()
    print(
        f"mode {mode}: {resting:,} resting ({len(engine.client_order_ids):,} client order ids), "
        f"{len(flow):,} commands at {rate:,.0f}/s "
        f"({elapsed:.1f} s), a checkpoint every {every:,} commands: {len(pauses)} taken"
    )
    print(
        "  latency from due time (ms): "
        f"p50 {percentile(latencies, 0.5):.3f}  p99 {percentile(latencies, 0.99):.3f}  "
        f"p99.9 {percentile(latencies, 0.999):.3f}  max {latencies[-1] / 1e6:.1f}"
    )
    if pauses:
        walls = sorted(wall for wall, _ in pauses)
        cpus = sorted(spent for _, spent in pauses)
        print(
            "  engine thread stopped per checkpoint (ms): "
            f"wall median {walls[len(walls) // 2]:.2f} max {walls[-1]:.2f}; "
            f"its own CPU time median {cpus[len(cpus) // 2]:.2f} max {cpus[-1]:.2f}"
        )
    if followed:
        print(
            f"  standby process: {followed['checkpoints']} checkpoints written, its fork "
            f"median {followed['fork_median_ms']:.2f} ms max {followed['fork_max_ms']:.2f} ms"
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    allocator = os.environ.get("PYTHONMALLOC", "pymalloc")
    print(f"  peak RSS {rss:,.0f} MiB, {huge_pages()}; PYTHONMALLOC={allocator}")


class Standby:
    """The standby process of `--mode standby`: its own book, the same commands, its own
    checkpoint children."""

    def __init__(
        self,
        resting: int,
        client_ids: bool,
        rate: float,
        seconds: float,
        every: int,
        seed: int,
        directory: Path,
    ) -> None:
        self.args = (resting, client_ids, rate, seconds, every, seed, directory)
        self.pid = 0
        self.ready = self.start = self.report = -1

    def fork(self) -> None:
        ready_r, ready_w = os.pipe()
        start_r, start_w = os.pipe()
        report_r, report_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(ready_r)
                os.close(start_w)
                os.close(report_r)
                os.write(report_w, json.dumps(_follow(*self.args, ready_w, start_r)).encode())
            except BaseException:
                code = 1
            os._exit(code)
        os.close(ready_w)
        os.close(start_r)
        os.close(report_w)
        self.pid, self.ready, self.start, self.report = pid, ready_r, start_w, report_r

    def go(self) -> int:
        """Wait for the standby's book, then start both clocks at the same instant."""
        started = time.perf_counter_ns() + 50_000_000
        if self.pid:
            os.read(self.ready, 1)
            started = time.perf_counter_ns() + 50_000_000
            os.write(self.start, str(started).encode())
        return started

    def result(self) -> dict[str, float] | None:
        if not self.pid:
            return None
        with os.fdopen(self.report, "rb") as pipe:
            report = pipe.read()
        os.waitpid(self.pid, 0)
        return json.loads(report) if report else None


def _follow(
    resting: int,
    client_ids: bool,
    rate: float,
    seconds: float,
    every: int,
    seed: int,
    directory: Path,
    ready_fd: int,
    start_fd: int,
) -> dict[str, float]:
    engine = build(resting, client_ids, seed)
    flow = churn(engine, int(rate * seconds), seed + 1)
    gc.collect()
    gc.freeze()
    os.write(ready_fd, b"1")
    started = int(os.read(start_fd, 64)) + FOLLOW_LAG_NS
    job = CheckpointJob()
    forks: list[float] = []
    clock = time.perf_counter_ns
    interval = int(1e9 / rate)
    apply = engine.apply
    for i, command in enumerate(flow):
        ahead = started + i * interval - clock()
        if ahead > 0:  # blocked on its read, as a standby is: the CPU is the engine's
            time.sleep(ahead / 1e9)
        encode_events(apply(command))  # compared with the leader's published bytes
        if i % every == every - 1:
            if job.running:
                job.poll()
            if not job.running:
                job.start(engine, f"{i}-0", directory)
                forks.append(job.fork_seconds * 1000)
    if job.running:
        job.poll(block=True)
    forks.sort()
    return {
        "checkpoints": len(forks),
        "fork_median_ms": forks[len(forks) // 2] if forks else 0.0,
        "fork_max_ms": forks[-1] if forks else 0.0,
    }


def huge_pages() -> str:
    """How much of the process is on transparent huge pages now (what makes fork cheap)."""
    sizes = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("Rss", "AnonHugePages"):
            sizes[name] = int(value.split()[0]) / 1024
    return f"{sizes.get('AnonHugePages', 0):,.0f} of {sizes.get('Rss', 0):,.0f} MiB on huge pages"


def _persist(directory: Path, ckpt: checkpoint.Checkpoint) -> None:
    checkpoint.write(directory, ckpt)
    checkpoint.prune(directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--resting", type=int, default=100_000)
    parser.add_argument("--no-client-ids", action="store_true")
    parser.add_argument("--rate", type=float, default=20_000, help="commands per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--every", type=int, default=10_000, help="commands per checkpoint")
    parser.add_argument("--mode", choices=("fork", "standby", "inline"), default="fork")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    run(
        args.resting,
        not args.no_client_ids,
        args.rate,
        args.seconds,
        args.every,
        args.mode,
        args.seed,
    )


if __name__ == "__main__":
    main()
