"""The cluster itself, and the engine and archiver on it, driven through the streams."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from shared.commands import Place, encode_command
from shared.config import Settings
from shared.events import Accepted, Event, Trade
from shared.redis_client import Client, connect
from shared.redis_cluster import LocalCluster
from shared.replies import read_answers
from tests.cluster.stack import INSTRUMENTS, cluster_stack
from tests.redis_replies import read_entries


def test_three_masters_each_with_a_replica_in_sync_and_aof_on(cluster: LocalCluster) -> None:
    assert cluster.is_healthy()
    shards = cluster.shards()
    assert len(shards) == 3
    assert all(len(replicas) == 1 for replicas in shards.values())
    for node in cluster.nodes:
        with node.client() as client:
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.info("cluster")["cluster_enabled"] == 1
    masters = {cluster.master_of(f"x:{{{symbol}}}:commands") for symbol in INSTRUMENTS.split(",")}
    assert masters == set(shards), "the test instruments cover every shard"


def until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def stored_up_to(client: Client, progress: str, last: int) -> Callable[[], bool]:
    """Whether the archiver's progress key says it stored up to seq `last`."""
    return lambda: int(client.get(progress) or 0) == last


def drive(client: Client, settings: Settings, per_symbol: int) -> dict[str, list[Event]]:
    """Journal `per_symbol` crossing places on every instrument, as an API replica named "t"
    would, and return each instrument's answers once all have come back."""
    symbols = [i.symbol for i in settings.instruments]
    until(
        lambda: all(client.exists(settings.key(s, "engine:lease")) for s in symbols),
        "every instrument's engine",
    )
    replies = {s: settings.reply_stream_of(s, "t") for s in symbols}
    positions: dict[str, bytes | str] = {}
    for stream in replies.values():
        positions[stream] = client.xadd(stream, {"open": "t"})
    for n, symbol in enumerate(symbols * per_symbol):
        side = 1 if (n // len(symbols)) % 2 else -1
        command = Place(side=side, price=100, quantity=1, request_id=f"t-{n}")
        client.xadd(settings.command_stream_of(symbol), {"c": encode_command(command)})
    answered: dict[str, list[Event]] = {s: [] for s in symbols}

    def read_replies() -> bool:
        for symbol in symbols:
            stream = replies[symbol]
            response = client.xread({stream: positions[stream]}, count=100)
            for entry_id, fields in read_entries(response):
                flat = [item for pair in fields.items() for item in pair]
                for _, events in read_answers(flat):
                    answered[symbol].extend(events)
                positions[stream] = entry_id
        return all(
            len([e for e in a if type(e) is Accepted]) == per_symbol for a in answered.values()
        )

    until(read_replies, "every command's answer")
    return answered


def test_engines_and_archiver_serve_every_shard(tmp_path: Path, cluster: LocalCluster) -> None:
    """Two engines owning two instruments each on different shards answer every command
    (published only once a replica has it), and the archiver stores every instrument."""
    with cluster_stack(tmp_path, cluster, api_replicas=0) as stack:
        settings = Settings(
            instruments_spec=INSTRUMENTS, stream_prefix=stack.env()["STREAM_PREFIX"]
        )
        client = connect(stack.redis_url)
        answered = drive(client, settings, 10)
        for instrument in settings.instruments:
            events = answered[instrument.symbol]
            assert len([e for e in events if type(e) is Trade]) == 5
            assert all(instrument.owns(e.seq) for e in events)
            # Published with a replica in sync: the engine took the path that WAITs.
            published = client.get(settings.key(instrument.symbol, "engine:published"))
            last = max(e.seq for e in events)
            assert int(published or 0) == last
            progress = settings.key(instrument.symbol, "archiver:progress")
            until(stored_up_to(client, progress, last), f"the archiver storing {instrument.symbol}")
        assert all(p.poll() is None for p in stack.processes.values())
        client.close()


def test_an_archiver_stores_only_its_instruments(tmp_path: Path, cluster: LocalCluster) -> None:
    """ARCHIVER_SYMBOLS splits the archiving between processes, as ENGINE_SYMBOLS splits the
    matching: this one stores two of the four instruments and leaves the others alone."""
    with cluster_stack(tmp_path, cluster, api_replicas=0, ARCHIVER_SYMBOLS="AAA,CCC") as stack:
        settings = Settings(
            instruments_spec=INSTRUMENTS, stream_prefix=stack.env()["STREAM_PREFIX"]
        )
        client = connect(stack.redis_url)
        answered = drive(client, settings, 4)
        for symbol in ("AAA", "CCC"):
            last = max(e.seq for e in answered[symbol])
            progress = settings.key(symbol, "archiver:progress")
            until(stored_up_to(client, progress, last), f"the archiver storing {symbol}")
        for symbol in ("DEFAULT", "BBB"):
            assert client.get(settings.key(symbol, "archiver:progress")) is None
        client.close()


def test_a_restarted_node_rejoins_as_the_replica_of_its_successor(cluster: LocalCluster) -> None:
    master = cluster.master_of("x:{AAA}:commands")
    replica = cluster.shards()[master][0]
    cluster.kill(master)
    until(lambda: _master_or_none(cluster, "x:{AAA}:commands") == replica, "the failover")
    cluster.restart(master)
    cluster.wait_healthy()
    assert cluster.shards()[replica] == [master]


def _master_or_none(cluster: LocalCluster, key: str) -> int | None:
    try:
        return cluster.master_of(key)
    except (RuntimeError, redis.RedisError):
        return None


def test_mutations_go_on_once_a_dead_replica_is_marked_failed(
    tmp_path: Path, cluster: LocalCluster
) -> None:
    """The wait is for a replica that exists: with the replica of an instrument's master
    dead for good, mutations on that instrument are answered again once the cluster holds
    it failed (they are not refused forever), and those of other shards never stop."""
    with cluster_stack(tmp_path, cluster, api_replicas=1, REQUEST_TIMEOUT_S="2") as stack:
        master = cluster.master_of("x:{AAA}:commands")
        replica = cluster.shards()[master][0]
        other = next(s for s in ("BBB", "DEFAULT", "CCC") if not _on(cluster, s, master))
        with httpx.Client(base_url=stack.api_url(), timeout=10) as http:
            cluster.kill(replica)
            try:
                order = {"side": 1, "price": 1, "quantity": 1}
                assert http.post("/orders", json={**order, "symbol": other}).status_code == 201
                until(
                    lambda: (
                        http.post("/orders", json={**order, "symbol": "AAA"}).status_code == 201
                    ),
                    "a place on AAA answered without its master's replica",
                )
            finally:
                cluster.restart(replica)
                cluster.wait_healthy()


def _on(cluster: LocalCluster, symbol: str, master: int) -> bool:
    return cluster.master_of(f"x:{{{symbol}}}:commands") == master
