"""The storage port: what the archiver writes and the API reads.

Two adapters implement it (`sqlite_store` embedded, `mongo_store` for MongoDB) and pass one
contract suite (`tests/store/test_contract.py`). Writes are idempotent and order-tolerant:
every order document remembers the sequence number of the last event applied to it and
ignores older ones, and every event sets absolute values (a trade carries the remaining
quantity of both orders), so re-applying a batch, or two archivers racing, changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.config import Settings
from shared.events import Event


@dataclass(frozen=True, slots=True)
class OrderRecord:
    order_id: int
    side: int
    price: int
    quantity: int
    remaining: int
    traded: int
    cancelled: int
    alive: bool
    client_order_id: str | None
    created_ts: int
    updated_ts: int
    tif: int = 0  # shared.commands.GTC/IOC/FOK; price 0 is a market order
    owner: str = ""


@dataclass(frozen=True, slots=True)
class TradeRecord:
    trade_id: int
    price: int
    quantity: int
    bid_order_id: int
    ask_order_id: int
    taker_side: int
    ts: int


Depth = tuple[list[tuple[int, int]], list[tuple[int, int]]]


class GapError(RuntimeError):
    """A batch does not continue the stored sequence: an event would be skipped."""


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def apply(self, events: Sequence[Event]) -> None:
        """Persist events (ascending seq) and advance progress to the highest seq."""

    async def progress(self) -> int:
        """Highest sequence number stored (0 when empty)."""

    async def get_order(self, order_id: int) -> OrderRecord | None: ...

    async def list_orders(
        self,
        *,
        alive: bool | None,
        side: int | None,
        limit: int,
        after: int | None,
        owner: str | None = None,
    ) -> list[OrderRecord]:
        """Orders by ascending id (newest last), strictly after the `after` cursor."""

    async def list_trades(
        self, *, limit: int, after: int | None, order_id: int | None = None
    ) -> list[TradeRecord]:
        """Trades by ascending id (newest last), strictly after the `after` cursor."""

    async def depth(self, levels: int) -> Depth:
        """Aggregated alive quantity per price: bids descending, asks ascending."""

    async def events(self, after: int, limit: int) -> list[Event]:
        """The stored event log, ascending seq, strictly after `after`."""


def open_store(settings: Settings) -> Store:
    """MongoDB when `MONGODB_URL` is set, else the embedded SQLite store in `DATA_DIR`."""
    if settings.mongodb_url:
        from .mongo_store import MongoStore

        mongo: Store = MongoStore(settings.mongodb_url, settings.mongodb_db)
        return mongo
    from .sqlite_store import SqliteStore

    return SqliteStore(settings.data_dir / "exchange.sqlite3")
