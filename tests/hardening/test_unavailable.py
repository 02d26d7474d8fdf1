"""The contract while a part of the stack is really down (its process stopped, in a stack of
this module's own): /health/live stays 200; /health/ready answers 503 naming the part; reads
answer 503 with Retry-After when the store cannot be brought up to date; GraphQL reports the
engine's absence as an error saying the command may still be applied, and a retry with the
same client order id finds the order once the engine is back."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from shared.stack import Stack
from tests.conftest import running_stack

READS = ("/orders", "/trades", "/orderbook")


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(
        tmp_path_factory.mktemp("unavailable"),
        REQUEST_TIMEOUT_S="1",
        READ_BARRIER_TIMEOUT_S="1",
        RATE_LIMIT_PER_S="0",
    ) as stack:
        yield stack


@pytest.fixture
def http(outage: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=outage.api_url(), timeout=20) as client:
        yield client


@pytest.fixture
def down(outage: Stack) -> Iterator[Callable[[str], None]]:
    """Stops a service for the test (SIGKILL: no goodbye); afterwards restarts it unless the
    test did, and waits until the stack is ready again."""
    stopped: list[str] = []

    def stop(name: str) -> None:
        outage.kill(name, signal.SIGKILL)
        stopped.append(name)

    yield stop
    for name in stopped:
        if outage.processes[name].poll() is not None:  # the test may have restarted it
            outage.start(name)
    settle(outage)


def eventually(check: Callable[[], bool], what: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.1)


def settle(stack: Stack) -> None:
    """Wait until the restarted stack answers an order and reads it back. Readiness alone
    is not enough: a heartbeat of the killed process may still be fresh."""
    stack.wait_ready()
    with httpx.Client(base_url=stack.api_url(), timeout=20) as http:

        def answered() -> bool:
            placed = http.post("/orders", json={"side": 1, "price": 1, "quantity": 1})
            if placed.status_code != 201:
                return False
            return http.get(f"/orders/{placed.json()['order_id']}").status_code == 200

        eventually(answered, "the restarted stack answers and reads back an order", within=60)


def ready_checks(http: httpx.Client) -> tuple[int, dict[str, Any]]:
    response = http.get("/health/ready")
    return response.status_code, response.json()


def assert_live(http: httpx.Client) -> None:
    live = http.get("/health/live")
    assert (live.status_code, live.json()) == (200, {"live": True}), live.text


def assert_unavailable(response: httpx.Response, says: str) -> None:
    assert response.status_code == 503, (response.request.url, response.status_code, response.text)
    assert response.headers["retry-after"] == "1", response.headers
    body = response.json()
    assert body["error"] == "unavailable" and says in body["message"], body


def graphql(http: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    response = http.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    payload: dict[str, Any] = response.json()
    return payload


def place(http: httpx.Client, **extra: object) -> str:
    response = http.post("/orders", json={"side": 1, "price": 10, "quantity": 1, **extra})
    assert response.status_code == 201, response.text
    order_id: str = response.json()["order_id"]
    return order_id


def test_healthy_stack_is_live_and_ready(http: httpx.Client) -> None:
    assert_live(http)
    status, checks = ready_checks(http)
    assert status == 200, checks
    assert {
        k: checks[k] for k in ("redis", "engine", "archiver", "store", "ready")
    } == dict.fromkeys(("redis", "engine", "archiver", "store", "ready"), True)


def test_engine_down_ready_503_names_the_engine(
    http: httpx.Client, down: Callable[[str], None]
) -> None:
    down("engine")
    eventually(lambda: ready_checks(http)[0] == 503, "ready turns 503")  # heartbeat expiry
    status, checks = ready_checks(http)
    assert (status, checks["ready"], checks["engine"]) == (503, False, False), checks
    assert (checks["redis"], checks["archiver"], checks["store"]) == (True, True, True), checks
    assert_live(http)
    assert_unavailable(
        http.post("/orders", json={"side": 1, "price": 10, "quantity": 1}), "did not answer"
    )
    for path in READS:  # the store is up to date: reads do not need the engine
        assert http.get(path).status_code == 200, path


PLACE = """mutation Place($input: PlaceOrderInput!) {
  placeOrder(input: $input) {
    __typename
    ... on OrderPlaced { orderId duplicate }
    ... on OrderRejected { reason }
  }
}"""
CANCEL = "mutation Cancel($id: ID!) { cancelOrder(id: $id) { success reason } }"
ORDER = "query Order($id: ID!) { order(id: $id) { orderId orderAlive clientOrderId } }"


def test_graphql_while_the_engine_is_down(
    http: httpx.Client, outage: Stack, down: Callable[[str], None]
) -> None:
    resting = place(http)
    coid = f"outage-{uuid.uuid4().hex}"
    order_input = {"side": -1, "price": "20", "quantity": 3, "clientOrderId": coid}
    down("engine")
    for payload, field in (
        (graphql(http, PLACE, input=order_input), "placeOrder"),
        (graphql(http, CANCEL, id=resting), "cancelOrder"),
    ):
        assert payload.get("data") is None, payload
        (error,) = payload["errors"]
        assert error["path"] == [field], error
        assert "did not answer in time" in error["message"], error
        assert "may still be applied" in error["message"], error
    # Queries read the store, which is up to date: they answer without the engine.
    order = graphql(http, ORDER, id=resting)
    assert "errors" not in order, order
    assert order["data"]["order"]["orderId"] == resting

    outage.start("engine")  # it replays the journaled commands
    # The client's part: retry with the same client order id until the answer is definite.
    retries: list[dict[str, Any]] = []

    def definite() -> bool:
        retries.append(graphql(http, PLACE, input=order_input))
        return retries[-1].get("data") is not None

    eventually(definite, "a retry gets a definite answer", within=60)
    assert all("may still be applied" in str(r["errors"]) for r in retries[:-1]), retries
    again = retries[-1]["data"]["placeOrder"]
    assert (again["__typename"], again["duplicate"]) == ("OrderPlaced", True), again
    stored = graphql(http, ORDER, id=again["orderId"])["data"]["order"]
    assert (stored["clientOrderId"], stored["orderAlive"]) == (coid, True), stored
    assert graphql(http, ORDER, id=resting)["data"]["order"]["orderAlive"] is False


def test_archiver_down_reads_and_ready_503(
    http: httpx.Client, outage: Stack, down: Callable[[str], None]
) -> None:
    down("archiver")
    order_id = place(http)  # the engine answers: its events wait for the archiver
    for path in (*READS, f"/orders/{order_id}"):
        assert_unavailable(http.get(path), "store is behind")
    for query, field in (
        ("{ orders { nodes { orderId } } }", "orders"),
        ("{ trades { nodes { tradeId } } }", "trades"),
        ("{ orderBook { seq } }", "orderBook"),
        (f'{{ order(id: "{order_id}") {{ orderId }} }}', "order"),
    ):
        payload = graphql(http, query)
        (error,) = payload["errors"]
        assert error["path"] == [field] and "store is behind" in error["message"], payload
    eventually(lambda: ready_checks(http)[0] == 503, "ready turns 503")  # heartbeat expiry
    status, checks = ready_checks(http)
    assert (status, checks["archiver"], checks["engine"]) == (503, False, True), checks
    assert_live(http)

    outage.start("archiver")
    eventually(lambda: http.get(f"/orders/{order_id}").status_code == 200, "reads answer again", 60)
    assert http.get(f"/orders/{order_id}").json()["order_alive"] is True


def test_redis_down_ready_503_live_200_mutations_503(
    http: httpx.Client, down: Callable[[str], None]
) -> None:
    down("redis")
    status, checks = ready_checks(http)
    assert (status, checks["ready"], checks["redis"]) == (503, False, False), checks
    assert_live(http)
    assert_unavailable(
        http.post("/orders", json={"side": 1, "price": 10, "quantity": 1}), "unavailable"
    )


def test_redis_down_reads_503(http: httpx.Client, down: Callable[[str], None]) -> None:
    down("redis")
    for path in READS:
        assert_unavailable(http.get(path), "")
    (error,) = graphql(http, "{ orders { nodes { orderId } } }")["errors"]
    assert error["message"] != "Unexpected error.", error


@pytest.mark.parametrize("path", ["/ws/trades?after=0", "/ws/orders?after=0", "/ws/book"])
def test_redis_down_feeds_close_1013_to_come_back(
    outage: Stack, down: Callable[[str], None], path: str
) -> None:
    """A feed that cannot go live (no live events, no read barrier) says so with 1013, the
    code that tells a client to reconnect later, rather than hang or fail with 1011. (What
    the store holds after `after` may come first: the store is up.)"""
    down("redis")
    url = outage.api_url().replace("http://", "ws://") + path
    with connect(url, open_timeout=10) as ws, pytest.raises(ConnectionClosed) as closed:
        for _ in range(10_000):
            ws.recv(timeout=20)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013, closed.value
