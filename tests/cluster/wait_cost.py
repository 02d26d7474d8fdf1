"""What the acknowledgement wait costs one publish: `python -m tests.cluster.wait_cost`.

On a local 3+3 Redis Cluster it times, back to back and interleaved, the engine's publish as
it is sent without a replica to wait for (MULTI, XADD, EXEC) and with one (the same plus a
SET and WAIT 1 on the same connection), each `--rounds` times, and prints p50/p99 of both and
their difference. The end-to-end figure (API round trip) is `python -m tests.load --cluster`
with REPLICA_ACK=auto and then off.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import redis

from shared.redis_client import connect, node_client
from shared.redis_cluster import LocalCluster


def publish(node: redis.Redis, stream: str, wait: bool) -> float:
    started = time.perf_counter()
    pipe = node.pipeline(transaction=False)
    queue = cast(Callable[..., object], pipe.execute_command)  # untyped in redis-py
    queue("MULTI")
    pipe.xadd(stream, {"e": b"x" * 64}, maxlen=1000, approximate=True)
    if wait:
        pipe.set(stream + ":published", 1)
    queue("EXEC")
    if wait:
        queue("WAIT", 1, 1000)
    results = pipe.execute()
    if wait and results[-1] < 1:
        raise RuntimeError("no replica confirmed")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wait-") as tmp:
        cluster = LocalCluster(Path(tmp))
        try:
            cluster.start()
            client = connect(cluster.url)
            stream = "bench:{DEFAULT}:events"
            node = node_client(client, stream)
            times: dict[bool, list[float]] = {False: [], True: []}
            for i in range(args.rounds * 2):
                wait = bool(i % 2)
                times[wait].append(publish(node, stream, wait))
            for wait, label in ((False, "MULTI/XADD/EXEC      "), (True, "+ SET, WAIT 1 replica")):
                ordered = sorted(times[wait])
                p99 = ordered[int(len(ordered) * 0.99)]
                print(
                    f"{label}: p50 {statistics.median(ordered) * 1e3:.3f} ms  "
                    f"p99 {p99 * 1e3:.3f} ms  ({len(ordered)} publishes)"
                )
            cost = statistics.median(times[True]) - statistics.median(times[False])
            print(f"the wait adds {cost * 1e3:.3f} ms at the median")
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
