"""The crash load's request mix: every order type, price and quantity changes, two
instruments (the second with a coarser tick, so ids, streams and ticks are per instrument).

Kept apart from the harness so the mix can change without touching how the stack is run,
killed and checked.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# The crash stack's INSTRUMENTS: symbol -> tick size.
INSTRUMENTS = {"DEFAULT": Decimal("0.01"), "SECOND": Decimal("0.05")}
INSTRUMENTS_SPEC = ",".join(f"{symbol}:{tick}" for symbol, tick in INSTRUMENTS.items())

# Cumulative shares of each request kind.
MIX = (
    (0.40, "place:GTC"),
    (0.48, "place:IOC"),
    (0.54, "place:FOK"),
    (0.60, "place:market"),
    (0.78, "cancel"),
    (0.86, "modify:price"),
    (0.94, "modify:quantity"),
    (1.00, "modify:both"),
)


@dataclass(frozen=True)
class Request:
    kind: str  # one of MIX's names
    method: str
    path: str
    body: dict[str, Any] | None
    order_id: str = ""  # the order a cancel or modify aims at


def next_request(
    rng: random.Random, n: int, seed: int, known: list[str], symbols: tuple[str, ...]
) -> Request:
    """The n-th request: a place (client order id `c{seed}-{n}`, on one of `symbols`) when
    nothing is known yet, else a kind drawn from MIX; cancels and modifies aim at a known
    order, alive or not."""
    roll = rng.random()
    kind = next(name for share, name in MIX if roll < share) if known else "place:GTC"
    symbol = rng.choice(symbols)
    mid = 100 + rng.randint(-3, 3)
    if kind.startswith("place"):
        side = rng.choice((1, -1))
        body: dict[str, Any] = {
            "side": side,
            "quantity": rng.randint(1, 20),
            "client_order_id": f"c{seed}-{n}",
            "symbol": symbol,
        }
        if kind == "place:market":
            body["type"] = "market"
            body["time_in_force"] = rng.choice(("IOC", "FOK"))
        else:
            # Immediate orders aim across the book more often, so they trade.
            offset = rng.randint(-6, 2) if kind != "place:GTC" else rng.randint(-2, 6)
            body["price"] = mid - side * offset
            body["time_in_force"] = kind.split(":")[1]
        return Request(kind, "POST", "/orders", body)
    oid = rng.choice(known)
    if kind == "cancel":
        return Request(kind, "DELETE", f"/orders/{oid}", None, oid)
    change: dict[str, Any] = {}
    if kind in ("modify:price", "modify:both"):
        change["price"] = mid + rng.randint(-4, 4)
    if kind in ("modify:quantity", "modify:both"):
        change["quantity"] = rng.randint(1, 25)
    return Request(kind, "PUT", f"/orders/{oid}", change, oid)
