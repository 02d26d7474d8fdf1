"""Redis clients chosen by the URL alone, for every service (sync and asyncio).

`redis://host:port/0` is one server; `redis+cluster://host:port[,host:port...]` is a Redis
Cluster, reached through any of the seed nodes listed. Nothing else in the code knows which
it has: every multi-key command, transaction and script names keys of one instrument only,
whose `{SYMBOL}` hash tag puts them in one slot (see docs/deployment.md).

Two things need one connection to the one node that holds a key, on a cluster as on a single
server: a MULTI/EXEC, and the WAIT that must follow the writes on the connection that made
them. `node_client` gives the client of that node; its non-transactional pipelines run on one
connection.
"""

from __future__ import annotations

import time
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    ClusterDownError,
    ExecAbortError,
    MovedError,
    ReadOnlyError,
    SlotNotCoveredError,
    TryAgainError,
)

CLUSTER_SCHEME = "redis+cluster"

Client = redis.Redis | RedisCluster
AsyncClient = aioredis.Redis | AsyncRedisCluster


class NotReplicated(redis.RedisError):
    """No replica confirmed the writes within the wait: acknowledging them could lose them."""


# Errors after which a service drops what it holds and starts over from durable state: the
# server went away, is loading, is a replica now, or the cluster is moving a slot.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    ClusterDownError,
    TryAgainError,
    MovedError,
    ReadOnlyError,
    ExecAbortError,
    SlotNotCoveredError,
    NotReplicated,
)


def is_cluster(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEME + "://")


def _seeds(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    parts = urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    options: dict[str, Any] = {}
    if credentials:
        user, _, password = credentials.partition(":")
        options = {"username": unquote(user) or None, "password": unquote(password) or None}
    seeds = []
    for host in hosts.split(","):
        name, _, port = host.rpartition(":")
        seeds.append((name or host, int(port or 6379)))
    return seeds, options


def connect(url: str, **options: Any) -> Client:
    """A client for `url`: a RedisCluster for `redis+cluster://`, else a plain Redis."""
    if not is_cluster(url):
        return redis.Redis.from_url(url, **options)
    seeds, credentials = _seeds(url)
    nodes = [ClusterNode(host, port) for host, port in seeds]  # type: ignore[no-untyped-call]
    return RedisCluster(startup_nodes=nodes, **credentials, **options)


class _Connection(aioredis.Connection):
    """Reports a write on a connection the peer closed as the ConnectionError it is. Under
    uvloop that write raises RuntimeError ("the handler is closed"), which no retry or
    recovery path expects (redis-py issue 4287); a failover makes it common."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        try:
            await super().send_packed_command(command, check_health)
        except RuntimeError as exc:
            raise redis.ConnectionError(f"write on a closed connection: {exc}") from exc


def connect_async(
    url: str, max_connections: int | None = None, pool_wait_s: float = 5.0, **options: Any
) -> AsyncClient:
    """An asyncio client for `url`. `max_connections`: per server (per node on a cluster).
    On a single server a request beyond it waits up to `pool_wait_s` for a free one; a
    cluster client has no waiting pool, and fails it (MaxConnectionsError)."""
    if not is_cluster(url):
        if max_connections is None:
            return aioredis.Redis.from_url(url, connection_class=_Connection, **options)
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_wait_s,
            connection_class=_Connection,
            **options,
        )
        return aioredis.Redis(connection_pool=pool)
    seeds, credentials = _seeds(url)
    if max_connections is not None:
        options["max_connections"] = max_connections
    client = AsyncRedisCluster(
        startup_nodes=[AsyncClusterNode(host, port) for host, port in seeds],
        **credentials,
        **options,
    )
    # The cluster client takes no connection class: set it on the seeds and on the
    # settings (shared with its node manager) that every node found later is built from.
    client.connection_kwargs["connection_class"] = _Connection
    for node in client.startup_nodes:
        node.connection_class = _Connection
    return client


def node_client(client: Client, key: str) -> redis.Redis:
    """The client of the node serving `key` (the client itself on a single server)."""
    if isinstance(client, redis.Redis):
        return client
    node = cast(ClusterNode, client.get_node_from_key(key))  # type: ignore[no-untyped-call]
    return client.get_redis_connection(node)


_async_nodes: dict[tuple[int, str, int], aioredis.Redis] = {}


def async_node_client(client: AsyncClient, key: str) -> aioredis.Redis:
    """The asyncio client of the node serving `key`: one per node, kept for reuse."""
    if isinstance(client, aioredis.Redis):
        return client
    node = client.get_node_from_key(key)
    if node is None:
        raise SlotNotCoveredError(f"no node serves {key}")
    place = (id(client), str(node.host), int(node.port))
    found = _async_nodes.get(place)
    if found is None:
        kwargs = {k: v for k, v in node.connection_kwargs.items() if k in ("username", "password")}
        found = _async_nodes[place] = aioredis.Redis(host=place[1], port=place[2], **kwargs)
    return found


def replicas_of(cluster_nodes: str | bytes) -> int:
    """Replicas that a cluster node's CLUSTER NODES lists for it and does not hold failed,
    connected or not: a replica whose link just broke still counts, so a write is not
    acknowledged unreplicated merely because the link is down at that moment."""
    text = cluster_nodes.decode() if isinstance(cluster_nodes, bytes) else cluster_nodes
    rows = [line.split() for line in text.splitlines() if line.strip()]
    me = next((row[0] for row in rows if "myself" in row[2].split(",")), None)
    return sum(
        1
        for row in rows
        if row[3] == me and "slave" in row[2].split(",") and "fail" not in row[2].split(",")
    )


def _replicas(node: redis.Redis) -> int:
    try:
        return replicas_of(node.execute_command("CLUSTER", "NODES"))  # type: ignore[no-untyped-call]
    except redis.ResponseError:  # not a cluster: the replicas connected now
        return int(node.info("replication").get("connected_slaves", 0))


async def _replicas_async(node: aioredis.Redis) -> int:
    try:
        return replicas_of(await node.execute_command("CLUSTER", "NODES"))  # type: ignore[no-untyped-call]
    except redis.ResponseError:
        return int((await node.info("replication")).get("connected_slaves", 0))


class ReplicaAcks:
    """How many replicas a write must reach before it is acknowledged, per node.

    `mode` "auto": one, when the node has a replica (a master with none has nobody to wait
    for, and a single server never pays for the wait); "off": never wait. A cluster node's
    replicas are those the cluster knows and does not hold failed; a single server's, those
    connected. What a node has is asked again at most once a second, and at once after a
    wait fell short."""

    REFRESH_S = 1.0

    def __init__(self, mode: str, timeout_ms: int) -> None:
        if mode not in ("auto", "off"):
            raise ValueError(f"REPLICA_ACK must be auto or off, not {mode!r}")
        self.mode = mode
        self.timeout_ms = timeout_ms
        self._known: dict[Any, tuple[float, int]] = {}

    def _cached(self, node: Any) -> int | None:
        if self.mode == "off":
            return 0
        known = self._known.get(id(node))
        if known is not None and time.monotonic() - known[0] < self.REFRESH_S:
            return known[1]
        return None

    def _store(self, node: Any, replicas: int) -> int:
        wanted = min(1, replicas)
        self._known[id(node)] = (time.monotonic(), wanted)
        return wanted

    def wanted(self, node: redis.Redis) -> int:
        cached = self._cached(node)
        if cached is not None:
            return cached
        return self._store(node, _replicas(node))

    async def wanted_async(self, node: aioredis.Redis) -> int:
        cached = self._cached(node)
        if cached is not None:
            return cached
        return self._store(node, await _replicas_async(node))

    def check(self, node: redis.Redis, wanted: int, acked: int) -> None:
        """Raise NotReplicated unless `acked` replicas confirmed, or none is left to."""
        if acked < wanted:
            self._known.pop(id(node), None)
            if self.wanted(node):
                raise NotReplicated(f"{acked} of {wanted} replicas within {self.timeout_ms} ms")

    async def check_async(self, node: aioredis.Redis, wanted: int, acked: int) -> None:
        if acked < wanted:
            self._known.pop(id(node), None)
            if await self.wanted_async(node):
                raise NotReplicated(f"{acked} of {wanted} replicas within {self.timeout_ms} ms")
