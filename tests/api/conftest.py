"""The API behaviour suite runs twice, over the two engine gateways (as exchange-core runs one
suite over its naive and its fast book):

- `inprocess`: the application in this process, served by uvicorn on a thread, with the
  real matching engine called in-process and the SQLite store in a temp dir. No Redis, no
  subprocess: the whole REST, GraphQL and WebSocket surface in seconds (`make test-fast`).
- `redis`: the real stack (Redis, engine, archiver, two API replicas as processes).

The tests see only URLs, so the same assertions hold for both.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
import uvicorn

from graphql_api.bootstrap import create_app
from graphql_api.edge.server import config as edge_config
from graphql_api.gateway.inprocess import InProcessGateway
from shared.config import Settings
from shared.redis_client import connect
from shared.redis_server import free_port
from shared.stack import Stack
from tests.command_log import CommandLog
from tests.redis_process import running_redis

GATEWAYS = ["inprocess", pytest.param("redis", marks=pytest.mark.stack)]


class ThreadServer:
    """uvicorn serving `app` on a free port, on a thread of the test process."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.app = create_app(settings)
        # Behind the edge's limits, as `python -m graphql_api` serves it.
        settings = replace(settings, api_host="127.0.0.1", api_port=self.port)
        self.server = uvicorn.Server(edge_config(settings, self.app))
        self.thread = threading.Thread(target=self.server.run, name="api", daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the in-process API did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def inprocess_settings(data_dir: Path) -> Settings:
    """The in-process gateway's settings (a test changes others with dataclasses.replace)."""
    return Settings(data_dir=data_dir, engine_gateway="inprocess", book_interval_s=1.0)


class AppliedLog:
    """The in-process twin of `CommandLog`: whether the engine applied any command since a
    mark (every command it applies hands out at least one sequence number)."""

    def __init__(self, gateway: InProcessGateway) -> None:
        self.gateway = gateway

    def mark(self) -> dict[str, int]:
        return {symbol: engine.seq for symbol, engine in self.gateway.engines.items()}

    def since(self, mark: dict[str, int]) -> int:
        return sum(engine.seq - mark[s] for s, engine in self.gateway.engines.items())


@pytest.fixture(scope="module")
def engineless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadServer]:
    """The API over a real Redis with no engine: a mutation waits there until the request
    timeout (3 s), which keeps it unanswered for as long as a test needs, and a test can
    answer it by writing the replica's reply stream itself."""
    data_dir = tmp_path_factory.mktemp("engineless")
    with engineless_redis(data_dir) as settings, ThreadServer(settings) as running:
        yield running


@contextmanager
def engineless_redis(data_dir: Path) -> Iterator[Settings]:
    """A Redis server for an API with no engine (`engineless`), and that API's settings."""
    with running_redis(data_dir / "redis") as (_, url):
        yield Settings(
            redis_url=url,
            data_dir=data_dir,
            engine_gateway="redis",
            request_timeout_s=3.0,
            body_timeout_s=1.0,
        )


@dataclass(frozen=True)
class Api:
    url: str
    url2: str  # a second replica (the in-process API serves both)
    commands: Callable[[], CommandLog | AppliedLog]
    gateway: str  # "inprocess" or "redis"


@pytest.fixture(scope="session", params=GATEWAYS)
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    if request.param == "redis":
        stack: Stack = request.getfixturevalue("stack")
        client = connect(stack.redis_url)
        urls = stack.api_url(stack.api_ports[0]), stack.api_url(stack.api_ports[1])
        yield Api(*urls, lambda: CommandLog(client), "redis")
        client.close()
        return
    with ThreadServer(inprocess_settings(tmp_path_factory.mktemp("inprocess"))) as server:
        gateway = server.app.state.service.gateway
        assert isinstance(gateway, InProcessGateway)
        yield Api(server.url, server.url, lambda: AppliedLog(gateway), "inprocess")


@pytest.fixture(scope="session")
def base_url(api: Api) -> str:
    return api.url


@pytest.fixture(scope="session")
def base_url2(api: Api) -> str:
    return api.url2


@pytest.fixture
def commands(api: Api) -> CommandLog | AppliedLog:
    return api.commands()


@pytest.fixture
async def ahttp(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An async HTTP client on replica 1."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
        yield client
