"""Runs the whole stack as separate processes: `python -m shared.stack` (that is `make run`).

Starts Redis (an embedded redis-server with AOF when `REDIS_URL` is unset), the engine, the
archiver and the API, waits until the API reports ready, prints the URLs, restarts a service
that dies, and stops everything on Ctrl-C. The test fixtures drive the same class, so the
tests run the stack exactly as users do.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from .config import Settings
from .logs import configure
from .redis_server import start_redis, wait_for_redis

SERVICES = {"archiver": "archiver"}


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Stack:
    def __init__(
        self,
        data_dir: Path,
        api_ports: list[int],
        redis_url: str = "",
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
        api_host: str = "127.0.0.1",
        engine_groups: tuple[str, ...] = ("",),
        standby: bool = False,
    ) -> None:
        """`engine_groups`: one engine process per entry, each owning the instruments the
        entry lists (its ENGINE_SYMBOLS; "" means all). `standby`: a second engine process
        per group (`engine-standby`, `engine-<i>-standby`), a hot standby that takes over
        within a second when the leading one dies (docs/recovery.md). The two are the same
        program: whichever holds an instrument's lease leads it."""
        self.data_dir = data_dir.resolve()
        self.api_ports = api_ports
        self.api_host = api_host
        self.extra_env = env or {}
        self.log_dir = log_dir
        self.redis_url = redis_url
        self.redis_port: int | None = None
        self.own_redis = not self.redis_url
        self.engine_groups = engine_groups
        self.standby = standby
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, IO[bytes]] = {}

    # -- processes --------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.extra_env)
        env["REDIS_URL"] = self.redis_url
        env["DATA_DIR"] = str(self.data_dir)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    def _output(self, name: str) -> IO[bytes] | None:
        if self.log_dir is None:
            return None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if name not in self._logs:
            self._logs[name] = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115
        return self._logs[name]

    def start_redis(self) -> None:
        if not self.own_redis:
            wait_for_redis(self.redis_url)
            return
        appendfsync = self.extra_env.get(
            "REDIS_APPENDFSYNC", os.environ.get("REDIS_APPENDFSYNC", "everysec")
        )
        process, url = start_redis(self.data_dir / "redis", self.redis_port, appendfsync)
        self.redis_url = url
        self.redis_port = int(url.rsplit(":", 1)[1].split("/")[0])
        self.processes["redis"] = process

    def start(self, name: str) -> None:
        """Start (or restart) one service by name: redis, engine, archiver, api-<port>."""
        if name == "redis":
            self.start_redis()
            return
        env = self.env()
        if name.startswith("api-"):
            env["API_PORT"] = name.split("-", 1)[1]
            env["API_HOST"] = self.api_host
            module = "graphql_api"
        elif name.startswith("engine"):
            group = name.removesuffix("-standby").removeprefix("engine").lstrip("-")
            env["ENGINE_SYMBOLS"] = self.engine_groups[int(group or 0)]
            module = "engine"
        else:
            module = SERVICES[name]
        out = self._output(name)
        # Own session: a terminal's Ctrl-C reaches only the launcher, which then stops the
        # services in order (API, archiver, engine, Redis last) instead of all at once.
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", module], env=env, stdout=out, stderr=out, start_new_session=True
        )

    def names(self) -> list[str]:
        engines = (
            ["engine"]
            if len(self.engine_groups) == 1
            else [f"engine-{i}" for i in range(len(self.engine_groups))]
        )
        if self.standby:
            engines = [name for engine in engines for name in (engine, f"{engine}-standby")]
        return [*engines, "archiver"] + [f"api-{port}" for port in self.api_ports]

    def start_all(self) -> None:
        self.start_redis()
        for name in self.names():
            self.start(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(sig)
        process.wait(timeout=30)

    def api_url(self, port: int | None = None) -> str:
        return f"http://{self.api_host}:{port or self.api_ports[0]}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for port in self.api_ports:
            url = f"{self.api_url(port)}/health/ready"
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        if response.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                for name, process in self.processes.items():
                    if process.poll() is not None:
                        raise RuntimeError(f"{name} exited with code {process.returncode}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} not ready within {timeout} s")
                time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM the services (API first, Redis last), then SIGKILL what lingers."""
        rank = {"api": 0, "archiver": 1, "engine": 2, "redis": 3}
        order = sorted(self.processes, key=lambda n: rank[n.split("-")[0]])
        for name in order:
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            stop_process(process, timeout=10)
        for log in self._logs.values():
            log.close()
        self._logs.clear()


FEEDS = ("trades", "orderbook", "orders", "book")


def main() -> None:
    settings = Settings.from_env()
    log = configure("stack", settings.log_level)
    parser = argparse.ArgumentParser(description="Run the whole exchange stack locally.")
    parser.add_argument("--api-replicas", type=int, default=1)
    parser.add_argument(
        "--standby",
        action="store_true",
        help="also run a hot standby engine (twice the engine's memory and CPU)",
    )
    args = parser.parse_args()
    ports = [settings.api_port + i for i in range(args.api_replicas)]
    stack = Stack(
        settings.data_dir,
        ports,
        settings.redis_url,
        api_host=settings.api_host,
        standby=args.standby,
    )
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        stack.start_all()
        stack.wait_ready()
        base = stack.api_url()
        log.info(
            "stack_ready",
            playground=f"{base}/",
            graphql=f"{base}/graphql",
            rest_docs=f"{base}/docs",
            websockets=[f"ws://{settings.api_host}:{ports[0]}/ws/{feed}" for feed in FEEDS],
            redis=stack.redis_url,
            data=str(stack.data_dir),
            stop="Ctrl-C stops everything",
        )
        while not stopping:
            time.sleep(0.5)
            for name, process in list(stack.processes.items()):
                if process.poll() is not None and not stopping:
                    log.warning("service_exited", name=name, code=process.returncode)
                    stack.start(name)
    finally:
        stack.stop()
        log.info("stopped")


if __name__ == "__main__":
    main()
