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

Orders that rested before the file starts are unknown to the engine: rows that refer to
them are counted and skipped, never crashed on. The run prints how many executions it
reproduced exactly, then replays the same commands through a fresh engine to measure the
core's throughput and check that it ends in the same state.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from shared.commands import IOC, Cancel, Command, Modify, Place
from shared.events import Accepted, Trade

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
    final_hash: str = ""


def read_messages(path: Path) -> list[Row]:
    rows: list[Row] = []
    with path.open(newline="") as f:
        for record in csv.reader(f):
            if not record or not record[0].strip():
                continue
            _, kind, order_id, size, price, direction = record[:6]
            rows.append((int(kind), int(order_id), int(size), int(price), int(direction)))
    return rows


def convert_and_replay(rows: Iterable[Row]) -> ReplayResult:
    """Feed the rows to an engine, translating ids; the commands are kept for a re-run."""
    engine = MatchingEngine()
    result = ReplayResult()
    ids: dict[int, int] = {}  # LOBSTER id -> engine order id
    counts = result.counts
    for kind, lob_id, size, price, direction in rows:
        result.rows += 1
        if kind >= 5:
            counts[f"skipped_type_{kind}"] += 1
            continue
        if kind == 1:
            if price % PRICE_UNITS_PER_TICK:
                counts["skipped_off_tick"] += 1
                continue
            command: Command = Place(direction, price // PRICE_UNITS_PER_TICK, size)
            events = engine.apply(command)
            accepted = events[0]
            assert isinstance(accepted, Accepted)
            ids[lob_id] = accepted.order_id
            counts["place"] += 1
            counts["trades_on_place"] += len(events) - 1
            result.commands.append(command)
            continue
        order_id = ids.get(lob_id)
        order = engine.orders.get(order_id) if order_id is not None else None
        if kind == 4:
            result.executions += 1
        if order is None:
            counts["skipped_unknown_order" if order_id is None else "skipped_dead_order"] += 1
            continue
        if kind == 2:
            if size < order.remaining:
                command = Modify(order.order_id, 0, quantity=order.quantity - size)
                counts["reduce"] += 1
            else:
                command = Cancel(order.order_id)
                counts["reduce_to_cancel"] += 1
            engine.apply(command)
        elif kind == 3:
            command = Cancel(order.order_id)
            engine.apply(command)
            counts["cancel"] += 1
        else:
            command = Place(-direction, price // PRICE_UNITS_PER_TICK, size, tif=IOC)
            trades = [e for e in engine.apply(command) if isinstance(e, Trade)]
            if (
                len(trades) == 1
                and (trades[0].ask_order_id if direction < 0 else trades[0].bid_order_id)
                == order.order_id
                and trades[0].price * PRICE_UNITS_PER_TICK == price
                and trades[0].quantity == size
            ):
                result.exact += 1
            counts["execution"] += 1
        result.commands.append(command)
    result.final_hash = state_hash(engine)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("message_file", type=Path)
    args = parser.parse_args()

    rows = read_messages(args.message_file)
    result = convert_and_replay(rows)
    executions = result.executions
    print(f"{args.message_file.name}: {result.rows:,} rows -> {len(result.commands):,} commands")
    print("rows by outcome: " + ", ".join(f"{k} {v:,}" for k, v in sorted(result.counts.items())))
    share = result.exact / executions if executions else 0.0
    print(
        f"visible executions reproduced exactly: {result.exact:,} of {executions:,} ({share:.1%})"
    )

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
