"""Fixtures that start the real stack: a real redis-server on a free port, the engine, the
archiver and two API replicas as separate processes, exactly as `make run` does."""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.config import Settings
from shared.redis_client import Client, connect
from shared.redis_cluster import LocalCluster
from shared.redis_server import free_port
from shared.stack import Stack
from tests.cluster.stack import ENGINE_GROUPS, INSTRUMENTS
from tests.command_log import CommandLog

# httpcore asks `import sniffio` which async library runs on every request of an async
# httpx client (and falls back to asyncio when the import fails). sniffio is not installed,
# and Python does not remember a failed import, so each request searched every sys.path
# entry again: a fifth of the CPU of the async API tests. A None entry in sys.modules is
# Python's own "not importable" marker: the same ImportError, answered from the dict.
if importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]


@contextmanager
def running_stack(
    tmp: Path, *, engine_groups: tuple[str, ...] = ("",), **env: str
) -> Iterator[Stack]:
    """A stack of one API replica with these settings, stopped on exit (logs in tmp/logs)."""
    stack = Stack(
        tmp,
        [free_port()],
        env={"LOG_LEVEL": "info", **env},
        log_dir=tmp / "logs",
        engine_groups=engine_groups,
    )
    try:
        stack.start_all()
        stack.wait_ready()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The session's stack. With STACK_REDIS=cluster (`make cluster-test`) it runs on a local
    Redis Cluster of 3 masters and 3 replicas, with 4 instruments over 2 engine processes,
    so that the same API suite proves the cluster deployment."""
    data = tmp_path_factory.mktemp("stack")
    env = {"BOOK_INTERVAL_S": "1", "LOG_LEVEL": "info"}
    if os.environ.get("MONGODB_URL"):
        env["MONGODB_DB"] = f"test_{uuid.uuid4().hex[:8]}"
    with ExitStack() as resources:
        redis_url = ""
        engine_groups: tuple[str, ...] = ("",)
        if os.environ.get("STACK_REDIS") == "cluster":
            cluster = LocalCluster(data / "cluster")
            resources.callback(cluster.stop)
            cluster.start()
            redis_url, engine_groups = cluster.url, ENGINE_GROUPS
            env["INSTRUMENTS"] = INSTRUMENTS
        s = Stack(
            data,
            [free_port(), free_port()],
            redis_url=redis_url,
            env=env,
            log_dir=data / "logs",
            engine_groups=engine_groups,
        )
        resources.callback(s.stop)
        s.start_all()
        s.wait_ready()
        yield s


@pytest.fixture(scope="session")
def base_url(stack: Stack) -> str:
    return stack.api_url(stack.api_ports[0])


@pytest.fixture(scope="session")
def base_url2(stack: Stack) -> str:
    return stack.api_url(stack.api_ports[1])


@pytest.fixture(scope="session")
def settings(stack: Stack) -> Settings:
    return Settings(redis_url=stack.redis_url, data_dir=Path(stack.data_dir))


@pytest.fixture(scope="session")
def redis_client(stack: Stack) -> Iterator[Client]:
    client = connect(stack.redis_url)
    yield client
    client.close()


@pytest.fixture
def commands(redis_client: Client) -> CommandLog:
    return CommandLog(redis_client)


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        yield client


@pytest.fixture
def empty_book(http: httpx.Client) -> None:
    """Cancel every resting order so the test starts from an empty book."""
    while True:
        alive = http.get("/orders", params={"alive": "true", "limit": 1000}).json()
        if not alive:
            return
        for order in alive:
            http.delete(f"/orders/{order['order_id']}")


def recent_trades(http: httpx.Client) -> list[dict[str, Any]]:
    """The newest 1000 trades, oldest first: the session's earlier tests made many more."""
    return list(reversed(http.get("/trades", params={"limit": 1000, "order": "desc"}).json()))


def place(http: httpx.Client, side: int, price: float | str, quantity: int, **extra: object) -> str:
    response = http.post(
        "/orders", json={"side": side, "price": price, "quantity": quantity, **extra}
    )
    assert response.status_code in (200, 201), response.text
    order_id: str = response.json()["order_id"]
    return order_id


# Modules whose tests start no process and need no Redis (`make test-fast`), beside the API
# suite's in-process half; every other test is marked `stack`.
FAST_MODULES = {
    "tests/engine/test_matching.py",
    "tests/engine/test_order_types.py",
    "tests/engine/test_stateful.py",
    "tests/engine/test_checkpoint.py",
    "tests/engine/test_checkpoint_job.py",
    "tests/engine/test_replay.py",
    "tests/shared/test_prices.py",
    "tests/shared/test_tasks.py",
    "tests/shared/test_wire.py",
    "tests/test_lock.py",
    "tests/test_web_assets.py",
    "tests/store/test_contract.py",
    "tests/store/test_derived.py",
    "tests/api/test_rest.py",
    "tests/api/test_graphql.py",
    "tests/api/test_websockets.py",
    "tests/api/test_order_types.py",
    "tests/api/test_history.py",
    "tests/api/test_candles.py",
    "tests/api/test_client_order_id.py",
    "tests/api/test_book_replica.py",
    "tests/api/test_feed_resume.py",
    "tests/api/test_book_feed.py",
    "tests/api/test_order_feed.py",
    "tests/api/test_order_feed_keys.py",
    "tests/api/test_feed_views.py",
    "tests/api/test_book_sequence.py",
}
SLOW_PARAMS = {"redis", "mongo"}  # the parameters of fixtures that start a server


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        module = Path(str(item.path)).relative_to(root).as_posix()
        params = getattr(getattr(item, "callspec", None), "params", {})
        slow_param = any(isinstance(v, str) and v in SLOW_PARAMS for v in params.values())
        fixtures = item.fixturenames if isinstance(item, pytest.Function) else []
        if module not in FAST_MODULES or slow_param or "stack" in fixtures:
            item.add_marker(pytest.mark.stack)
