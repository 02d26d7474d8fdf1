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

`--mode inline` is the previous checkpoint, kept here as the baseline: the snapshot encoded
on the engine thread, the file written, fsynced and pruned by a writer thread.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from . import checkpoint
from .checkpoint_job import CHECKPOINT_VERSION, CheckpointJob
from .deep_book import build, churn
from .snapshot import snapshot


def percentile(samples: list[int], p: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * p))] / 1e6


def run(
    resting: int, client_ids: bool, rate: float, seconds: float, every: int, mode: str, seed: int
) -> None:
    engine = build(resting, client_ids, seed)
    flow = churn(engine, int(rate * seconds), seed + 1)
    gc.collect()
    gc.freeze()  # as the service does after recovery
    directory = Path(tempfile.mkdtemp(prefix="stall-"))
    job = CheckpointJob()
    writer = ThreadPoolExecutor(max_workers=1)
    writing: Future[None] | None = None
    pauses: list[tuple[float, float]] = []  # (wall ms, engine thread CPU ms) per checkpoint
    latencies = [0] * len(flow)
    clock = time.perf_counter_ns
    cpu = time.thread_time_ns  # what the engine thread itself spent: load does not inflate it
    interval = int(1e9 / rate)
    apply = engine.apply
    started = clock()
    for i, command in enumerate(flow):
        due = started + i * interval
        while clock() < due:
            pass
        apply(command)
        if i % every == every - 1:
            t0, cpu0 = clock(), cpu()
            if mode == "fork":
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
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    allocator = os.environ.get("PYTHONMALLOC", "pymalloc")
    print(f"  peak RSS {rss:,.0f} MiB, {huge_pages()}; PYTHONMALLOC={allocator}")


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
    parser.add_argument("--mode", choices=("fork", "inline"), default="fork")
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
