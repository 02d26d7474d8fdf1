"""Failover harness: steady load over 4 instruments on a Redis Cluster while, again and again,
the master holding an instrument's streams is SIGKILLed and its replica promoted.

`python -m tests.cluster.failover --failovers 10 --rate 300` is the long run;
`tests/cluster/test_failover.py` runs a short one. `--replica-ack off` runs it without the
acknowledgement wait, to show what that loses.

Before each kill the replica is frozen (SIGSTOP) and its replication link cut for
`--stall-ms`: the writes of that window reach the master only, as they would behind a
briefly partitioned replica. Without the wait they are acknowledged and then lost with the
master; with it, none of them is acknowledged. Nothing is restarted but the killed node,
which rejoins as a replica: the engines, the archiver and both API replicas must follow
the new masters on their own.

The checks are the crash harness's (tests/crash/harness.py), per instrument: every
acknowledged mutation stored with its outcome, nothing duplicated, stored events equal to a
failover-free replay of the command streams as they survived, and each engine's state hash
equal to that replay's.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path

from shared.redis_cluster import LocalCluster
from shared.stack import Stack
from tests.cluster.stack import INSTRUMENTS, cluster_stack
from tests.crash.harness import CommandTap, Ledger, Report, load, stack_settings, verify

PROMOTION_TIMEOUT_S = 30.0
LOAD_PROCESSES = 2  # the load runs beside the taps and the failovers: give it its own cores


@dataclass(frozen=True)
class StackView:
    """What the load needs of a running stack, in a form a load process can receive."""

    api_ports: list[int]
    api_host: str
    redis_url: str
    data_dir: Path
    environment: dict[str, str]

    @classmethod
    def of(cls, stack: Stack) -> StackView:
        return cls(stack.api_ports, stack.api_host, stack.redis_url, stack.data_dir, stack.env())

    def env(self) -> dict[str, str]:
        return self.environment

    def api_url(self, port: int | None = None) -> str:
        return f"http://{self.api_host}:{port or self.api_ports[0]}"


def load_process(
    view: StackView,
    rate: float,
    seed: int,
    symbols: tuple[str, ...],
    stop: ProcessEvent,
    out: Queue[Ledger],
) -> None:
    """The crash harness's load, in a process of its own until `stop` is set; puts its
    ledger on `out`."""

    async def main() -> None:
        ledger, until = Ledger(), asyncio.Event()

        async def watch() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.05)
            until.set()

        watcher = asyncio.create_task(watch())
        await load(view, ledger, rate, until, seed, symbols)
        await watcher
        out.put(ledger)

    asyncio.run(main())


def merged(ledgers: list[Ledger]) -> Ledger:
    total = Ledger()
    for ledger in ledgers:
        total.places.update(ledger.places)
        total.changes += ledger.changes
        total.no_liquidity += ledger.no_liquidity
        total.sent += ledger.sent
        total.kinds.update(ledger.kinds)
        total.failed.update(ledger.failed)
    return total


@dataclass
class Failovers:
    """Seconds from the kill until the replica served the slot, one entry per failover."""

    promoted_after: list[float] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)  # "SYMBOL@port" of each killed master
    unanswered_lost: int = 0  # journaled commands the failovers lost (never acknowledged)
    load_seconds: float = 0.0
    sent: int = 0
    acknowledged: int = 0

    def summary(self) -> str:
        times = sorted(self.promoted_after)
        if not times:
            return "failovers 0"
        seconds = max(self.load_seconds, 1e-9)
        return (
            f"load {self.sent / seconds:,.0f} mutations/s sent, "
            f"{self.acknowledged / seconds:,.0f}/s acknowledged over {seconds:.0f} s; "
            f"failovers {len(times)}, promotion s: p50 {statistics.median(times):.2f} "
            f"max {times[-1]:.2f}; commands lost unanswered {self.unanswered_lost}; "
            f"killed {self.killed}"
        )


def promoted(cluster: LocalCluster, key: str, replica: int) -> bool:
    try:
        return cluster.master_of(key) == replica
    except Exception:  # no live node answers yet
        return False


async def fail_over(
    cluster: LocalCluster,
    keys: dict[str, str],
    count: int,
    interval: float,
    stall_s: float,
    seed: int,
    record: Failovers,
) -> None:
    """`count` times: freeze the replica, kill the master of the next instrument's slot,
    wake the replica, wait for its promotion, restart the killed node as its replica."""
    rng = random.Random(seed + 2)
    symbols = list(keys)
    for i in range(count):
        await asyncio.sleep(rng.uniform(0.7, 1.3) * interval)
        symbol = symbols[i % len(symbols)]
        master = await asyncio.to_thread(cluster.master_of, keys[symbol])
        replica = (await asyncio.to_thread(cluster.shards))[master][0]
        if stall_s:
            # Frozen, and its link cut: what the master writes from here on reaches no
            # replica (a frozen replica alone would still get it from its socket buffer).
            cluster.kill(replica, signal.SIGSTOP)
            with cluster.node(master).client() as client:
                client.client_kill_filter(_type="replica")
            await asyncio.sleep(stall_s)
        started = time.monotonic()
        cluster.kill(master, signal.SIGKILL)
        if stall_s:
            cluster.kill(replica, signal.SIGCONT)
        while not await asyncio.to_thread(promoted, cluster, keys[symbol], replica):
            if time.monotonic() - started > PROMOTION_TIMEOUT_S:
                raise TimeoutError(f"{replica} not promoted for {symbol}")
            await asyncio.sleep(0.05)
        record.promoted_after.append(time.monotonic() - started)
        record.killed.append(f"{symbol}@{master}")
        await asyncio.to_thread(cluster.restart, master)
        await asyncio.to_thread(cluster.wait_healthy)


async def run(
    failovers: int,
    rate: float,
    seed: int,
    data_dir: Path,
    interval: float = 5.0,
    replica_ack: str = "auto",
    stall_ms: int = 300,
) -> tuple[Report, Failovers]:
    cluster = LocalCluster(data_dir / "cluster")
    record = Failovers()
    try:
        cluster.start()
        with cluster_stack(
            data_dir / "stack",
            cluster,
            SNAPSHOT_EVERY="300",
            SNAPSHOT_INTERVAL_S="2",
            REQUEST_TIMEOUT_S="10",
            REPLICA_ACK=replica_ack,
            RATE_LIMIT_PER_S="0",
        ) as stack:
            settings = stack_settings(stack)
            symbols = tuple(INSTRUMENTS.split(","))
            taps = {s: CommandTap(stack.redis_url, settings.command_stream_of(s)) for s in symbols}
            for tap in taps.values():
                tap.thread.start()
            pids = {name: process.pid for name, process in stack.processes.items()}
            context = multiprocessing.get_context("spawn")
            stop, out = context.Event(), context.Queue()
            view, share = StackView.of(stack), rate / LOAD_PROCESSES
            loads = [
                context.Process(
                    target=load_process, args=(view, share, seed * 100 + i, symbols, stop, out)
                )
                for i in range(LOAD_PROCESSES)
            ]
            load_started = time.monotonic()
            for process in loads:
                process.start()
            keys = {s: settings.command_stream_of(s) for s in symbols}
            try:
                await fail_over(cluster, keys, failovers, interval, stall_ms / 1000, seed, record)
                await asyncio.sleep(2.0)  # load on the final topology
            finally:
                stop.set()
                load_ended = time.monotonic()
                ledger = merged([await asyncio.to_thread(out.get, True, 120) for _ in loads])
                for process in loads:
                    process.join()
            record.load_seconds = load_ended - load_started
            record.sent, record.acknowledged = ledger.sent, ledger.acknowledged
            restarted = [
                name
                for name, process in stack.processes.items()
                if process.pid != pids[name] or process.poll() is not None
            ]
            report = await verify(stack, ledger, taps, [k.split("@")[0] for k in record.killed])
            if restarted:
                report.problems.append(f"services restarted or died: {restarted}")
            record.unanswered_lost = sum(tap.dropped for tap in taps.values())
            return report, record
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--failovers", type=int, default=10)
    parser.add_argument("--rate", type=float, default=360.0, help="mutations per second")
    parser.add_argument("--interval", type=float, default=5.0, help="mean s between failovers")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--replica-ack", choices=("auto", "off"), default="auto")
    parser.add_argument("--stall-ms", type=int, default=300, help="replica frozen before a kill")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="failover-") as tmp:
        started = time.monotonic()
        report, record = asyncio.run(
            run(
                args.failovers, args.rate, args.seed, Path(tmp), args.interval,
                args.replica_ack, args.stall_ms,
            )
        )  # fmt: skip
        print(report.summary())
        print(record.summary())
        print(f"elapsed {time.monotonic() - started:.0f} s; {'PASS' if report.ok() else 'FAIL'}")
        raise SystemExit(0 if report.ok() else 1)


if __name__ == "__main__":
    main()
