"""The stack on a local Redis Cluster, as `make run` runs it on one server: 4 instruments
spread over every shard, 2 engine processes owning two each (so each engine reads streams
on two shards), the archiver and 2 API replicas. Used by the cluster tests, the failover
harness and the cluster load run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.redis_cluster import LocalCluster
from shared.redis_server import free_port
from shared.stack import Stack

# Their hash tags fall on all three shards of a fresh 3-master cluster (slots 5648, 3205,
# 12517, 9413); each engine group spans two shards.
INSTRUMENTS = "DEFAULT,AAA,BBB,CCC"
ENGINE_GROUPS = ("DEFAULT,AAA", "BBB,CCC")


@contextmanager
def cluster_stack(
    tmp: Path,
    cluster: LocalCluster,
    *,
    api_replicas: int = 2,
    engine_groups: tuple[str, ...] = ENGINE_GROUPS,
    **env: str,
) -> Iterator[Stack]:
    """The stack on `cluster`, ready, stopped on exit (logs in tmp/logs). Each stack uses its
    own stream prefix, so stacks that share the session's cluster never see each other."""
    settings = {
        "INSTRUMENTS": INSTRUMENTS,
        "STREAM_PREFIX": f"x{free_port()}",
        "LOG_LEVEL": "info",
        **env,
    }
    stack = Stack(
        tmp,
        [free_port() for _ in range(api_replicas)],
        redis_url=cluster.url,
        env=settings,
        log_dir=tmp / "logs",
        engine_groups=engine_groups,
    )
    try:
        stack.start_all()
        stack.wait_ready()
        yield stack
    finally:
        stack.stop()
