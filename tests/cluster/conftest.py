"""Fixtures of the cluster suite (`make cluster-test`): a real Redis Cluster of 3 masters and
3 replicas (shared/redis_cluster.py), shared by the session; each test runs its own stack on
it (tests/cluster/stack.py) under its own stream prefix."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.redis_cluster import LocalCluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    redis_cluster = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        redis_cluster.start()
        yield redis_cluster
    finally:
        redis_cluster.stop()
