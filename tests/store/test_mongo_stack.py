"""The whole stack on the MongoDB adapter: the archiver writes to a MongoDB server (see
`tests/mongo_wire.py`) and the API reads from it, through a kill -9 of the archiver."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from shared.stack import Stack
from tests.conftest import running_stack
from tests.mongo_wire import wire_server


@pytest.fixture(scope="module")
def mongo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("mongo-stack")
    with (
        wire_server(data / "mongo") as url,
        running_stack(data, MONGODB_URL=url, MONGODB_DB=f"stack_{uuid.uuid4().hex[:8]}") as stack,
    ):
        yield stack


def test_orders_trades_and_book_read_back_from_mongodb(mongo_stack: Stack) -> None:
    with httpx.Client(base_url=mongo_stack.api_url(), timeout=10) as http:
        ask = http.post("/orders", json={"side": -1, "price": 100.5, "quantity": 5}).json()
        bid = http.post("/orders", json={"side": 1, "price": 101, "quantity": 8}).json()
        resting = http.get(f"/orders/{bid['order_id']}").json()
        assert (resting["order_price"], resting["traded_quantity"]) == (101, 5)
        assert resting["order_alive"] is True
        filled = http.get(f"/orders/{ask['order_id']}").json()
        assert (filled["traded_quantity"], filled["order_alive"]) == (5, False)
        (trade,) = http.get("/trades").json()
        assert (trade["trade_price"], trade["quantity"]) == (100.5, 5)
        assert (trade["bid_order_id"], trade["ask_order_id"]) == (bid["order_id"], ask["order_id"])
        book = http.get("/orderbook").json()
        assert (book["bids"], book["asks"]) == ([{"price": 101, "quantity": 3}], [])

        # The archiver dies mid-stream; its successor resumes from the progress in MongoDB.
        mongo_stack.kill("archiver")
        placed = [
            http.post("/orders", json={"side": 1, "price": 90 + k, "quantity": 1}).json()
            for k in range(5)
        ]
        assert http.delete(f"/orders/{bid['order_id']}").json() == {"success": True}
        mongo_stack.start("archiver")
        ids = [o["order_id"] for o in http.get("/orders", params={"alive": "true"}).json()]
        assert ids == [p["order_id"] for p in placed]  # read-your-writes after the restart
        assert http.get(f"/orders/{bid['order_id']}").json()["cancelled_quantity"] == 3
        assert len(http.get("/trades").json()) == 1
    assert not list(mongo_stack.data_dir.rglob("*.sqlite3"))  # nothing went to the embedded store
