"""Replay a LOBSTER message file through the matching core: `python -m engine.replay FILE`.

LOBSTER (NASDAQ TotalView-ITCH reconstructions) message rows are
`time, type, order id, size, price x 10000, direction`. They become engine commands:

- 1 new order         -> place (GTC limit) at price / 100 ticks (tick 0.01)
- 2 partial cancel    -> reduce the order's total quantity by `size` (keeps priority),
                         or cancel when nothing would remain
- 3 delete            -> cancel
- 4 visible execution -> an IOC order on the other side at the resting order's price for
                         the executed size; it reproduces the execution exactly when its
                         single trade hits that resting order, at that price, for that size
- 5 hidden execution, 6 cross, 7 halt -> skipped and counted

Orders that rested before the file starts: NASDAQ order ids rise with time, so an id below
the file's first new order that the file refers to was resting when it starts. Such orders
are placed first, in id order (their time priority), each with the total size the file
later removes from it. Other unknown ids (orders that entered deeper than the file's levels)
are counted and skipped.

With `--cancel-executed`, an order that LOBSTER shows fully executed is cancelled if it
still rests in the engine (an execution that hit another order leaves it behind), so that
one divergence does not leave a stale order that later executions trade against.

The run prints how many executions it reproduced exactly and a digest of the trade list,
then replays the same commands through a fresh engine to measure the core's throughput and
check that it ends in the same state.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from shared.commands import IOC, Cancel, Command, Modify, Place
from shared.events import Accepted, Event, Trade, encode_events

from .matching import MatchingEngine
from .snapshot import state_hash

PRICE_UNITS_PER_TICK = 100  # LOBSTER prices are dollars x 10000; a tick is one cent

Row = tuple[int, int, int, int, int]  # type, order id, size, price, direction


@dataclass
class ReplayResult:
    rows: int = 0
    commands: list[Command] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    executions: int = 0
    exact: int = 0
    trades: list[Trade] = field(default_factory=list)
    final_hash: str = ""

    def trade_digest(self) -> str:
        """blake2b-128 of the trade list as the engine encodes events: two runs traded
        alike exactly when their digests are equal."""
        events: list[Event] = list(self.trades)
        return hashlib.blake2b(encode_events(events), digest_size=16).hexdigest()


def read_messages(path: Path) -> list[Row]:
    rows: list[Row] = []
    with path.open(newline="") as f:
        for record in csv.reader(f):
            if not record or not record[0].strip():
                continue
            _, kind, order_id, size, price, direction = record[:6]
            rows.append((int(kind), int(order_id), int(size), int(price), int(direction)))
    return rows


def resting_at_start(rows: list[Row]) -> list[Row]:
    """New-order rows for the orders that rested before the file starts: ids below the
    first new order's that rows of types 2-4 refer to and that no new-order row of the file
    brings in (some old ids do come in later, e.g. when their price enters the file's
    levels), in id order, each with the total size those rows remove from it (at the
    price and side they give)."""
    first = next((order_id for kind, order_id, *_ in rows if kind == 1), None)
    if first is None:
        return []
    added = {order_id for kind, order_id, *_ in rows if kind == 1}
    sizes: dict[int, int] = {}
    where: dict[int, tuple[int, int]] = {}
    for kind, order_id, size, price, direction in rows:
        if 2 <= kind <= 4 and order_id < first and order_id not in added:
            sizes[order_id] = sizes.get(order_id, 0) + size
            where.setdefault(order_id, (price, direction))
    return [(1, order_id, sizes[order_id], *where[order_id]) for order_id in sorted(sizes)]


def convert_and_replay(rows: list[Row], cancel_executed: bool = False) -> ReplayResult:
    """Feed the rows to an engine, translating ids; the commands are kept for a re-run."""
    engine = MatchingEngine()
    result = ReplayResult()
    ids: dict[int, int] = {}  # LOBSTER id -> engine order id
    visible: dict[int, int] = {}  # LOBSTER id -> its size still visible, as LOBSTER has it
    counts = result.counts
    trades = result.trades

    def apply(command: Command) -> list[Event]:
        result.commands.append(command)
        events = engine.apply(command)
        trades.extend(e for e in events if isinstance(e, Trade))
        return events

    def place(lob_id: int, size: int, price: int, direction: int) -> int:
        accepted, *fills = apply(Place(direction, price // PRICE_UNITS_PER_TICK, size))
        assert isinstance(accepted, Accepted)
        ids[lob_id] = accepted.order_id
        visible[lob_id] = size
        return len(fills)

    for _, lob_id, size, price, direction in resting_at_start(rows):
        counts["trades_on_place"] += place(lob_id, size, price, direction)
        counts["place_resting_at_start"] += 1
    for kind, lob_id, size, price, direction in rows:
        result.rows += 1
        if kind >= 5:
            counts[f"skipped_type_{kind}"] += 1
            continue
        if kind == 1:
            if price % PRICE_UNITS_PER_TICK:
                counts["skipped_off_tick"] += 1
                continue
            counts["trades_on_place"] += place(lob_id, size, price, direction)
            counts["place"] += 1
            continue
        order_id = ids.get(lob_id)
        order = engine.orders.get(order_id) if order_id is not None else None
        if kind == 4:
            result.executions += 1
        left = visible.get(lob_id, 0) - size
        if kind == 3 or left <= 0:
            visible.pop(lob_id, None)
        else:
            visible[lob_id] = left
        if order is None:
            counts["skipped_unknown_order" if order_id is None else "skipped_dead_order"] += 1
            continue
        if kind == 2:
            if size < order.remaining:
                apply(Modify(order.order_id, 0, quantity=order.quantity - size))
                counts["reduce"] += 1
            else:
                apply(Cancel(order.order_id))
                counts["reduce_to_cancel"] += 1
        elif kind == 3:
            apply(Cancel(order.order_id))
            counts["cancel"] += 1
        else:
            command = Place(-direction, price // PRICE_UNITS_PER_TICK, size, tif=IOC)
            fills = [e for e in apply(command) if isinstance(e, Trade)]
            if (
                len(fills) == 1
                and (fills[0].ask_order_id if direction < 0 else fills[0].bid_order_id)
                == order.order_id
                and fills[0].price * PRICE_UNITS_PER_TICK == price
                and fills[0].quantity == size
            ):
                result.exact += 1
            counts["execution"] += 1
            if cancel_executed and left <= 0 and order.order_id in engine.orders:
                apply(Cancel(order.order_id))
                counts["cancel_executed"] += 1
    result.final_hash = state_hash(engine)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("message_file", type=Path)
    parser.add_argument(
        "--cancel-executed",
        action="store_true",
        help="cancel an order once LOBSTER shows it fully executed, if it still rests",
    )
    args = parser.parse_args()

    rows = read_messages(args.message_file)
    result = convert_and_replay(rows, cancel_executed=args.cancel_executed)
    executions = result.executions
    print(f"{args.message_file.name}: {result.rows:,} rows -> {len(result.commands):,} commands")
    print("rows by outcome: " + ", ".join(f"{k} {v:,}" for k, v in sorted(result.counts.items())))
    share = result.exact / executions if executions else 0.0
    print(
        f"visible executions reproduced exactly: {result.exact:,} of {executions:,} ({share:.2%})"
    )
    print(f"trades: {len(result.trades):,}, digest (blake2b-128): {result.trade_digest()}")

    engine = MatchingEngine()
    apply = engine.apply
    started = time.perf_counter()
    for command in result.commands:
        apply(command)
    elapsed = time.perf_counter() - started
    same = state_hash(engine) == result.final_hash
    print(f"core replay: {len(result.commands) / elapsed:,.0f} commands/s; deterministic: {same}")


if __name__ == "__main__":
    main()
