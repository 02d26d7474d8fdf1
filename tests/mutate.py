"""`make mutate`: hand-written semantic mutations of the matching core and of request
validation, each of which the fast tests must catch.

Each mutation is (file, exact original snippet, replacement) plus the tests that guard that
code. The runner copies the tree (git's tracked and untracked-but-not-ignored files) to a
scratch directory per mutation, applies the one change there, never in the working tree,
and runs the guarding tests on the copy. A test run that fails kills the mutation; one that
passes lets it survive. Before anything runs, every snippet must occur exactly once in its
file: the code moves under refactoring, and a snippet that no longer matches is an error
to fix here, not a mutation to skip. The unmutated copy must pass the same tests first.

    python -m tests.mutate              # every mutation; exit 1 if any survived
    python -m tests.mutate --check      # only verify that every snippet still matches
    python -m tests.mutate --only NAME  # one (repeatable)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENGINE_TESTS = ("tests/engine/test_matching.py", "tests/engine/test_order_types.py")
PRICE_TESTS = ("tests/shared/test_prices.py",)
COID_TESTS = ("tests/api/test_client_order_id.py",)
ORDER_TYPE_API_TESTS = ("tests/api/test_order_types.py",)
IN_PROCESS = ("-m", "not stack")  # the API suite over the in-process gateway: no processes
PER_RUN_TIMEOUT_S = 600


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]
    pytest_args: tuple[str, ...] = ()


MUTATIONS: tuple[Mutation, ...] = (
    # -- engine/matching.py ---------------------------------------------------------------
    Mutation(
        "buy trades at the aggressor's limit, not the resting price",
        "engine/matching.py",
        "Trade(seq, best, left, taker_id, maker_id, side, remaining, 0, ts)",
        "Trade(seq, limit, left, taker_id, maker_id, side, remaining, 0, ts)",
        ENGINE_TESTS,
    ),
    Mutation(
        "LIFO within a level (a new order joins a live level at its head)",
        "engine/matching.py",
        "level.queue.append(order)",
        "level.queue.appendleft(order)",
        ENGINE_TESTS,
    ),
    Mutation(
        "a buy at exactly the best ask does not trade",
        "engine/matching.py",
        "                if price >= self.asks.best:\n"
        "                    remaining = self._match(self.asks, side, price, quantity,",
        "                if price > self.asks.best:\n"
        "                    remaining = self._match(self.asks, side, price, quantity,",
        ENGINE_TESTS,
    ),
    Mutation(
        "IOC and FOK limit orders rest like GTC",
        "engine/matching.py",
        "if tif or price == MARKET:",
        "if price == MARKET:",
        ENGINE_TESTS,
    ),
    Mutation(
        "FOK refuses a quantity that is exactly available",
        "engine/matching.py",
        "total += level.total\n            if total >= quantity:\n                return True",
        "total += level.total\n            if total > quantity:\n                return True",
        ENGINE_TESTS,
    ),
    Mutation(
        "a market order on an empty side is not rejected",
        "engine/matching.py",
        "if price == MARKET and opposite.best == opposite.empty:",
        "if price == MARKET and opposite.best is None:",
        ENGINE_TESTS,
    ),
    Mutation(
        "a repeated client order id places a second order",
        "engine/matching.py",
        "known = self.client_order_ids.get(key)",
        "known = None",
        ENGINE_TESTS,
    ),
    Mutation(
        "lowering the quantity loses time priority",
        "engine/matching.py",
        "if quantity <= old_quantity:  # reduced (or unchanged): in place",
        "if quantity < 0:  # reduced (or unchanged): in place",
        ENGINE_TESTS,
    ),
    Mutation(
        "a quantity equal to what already traded is accepted",
        "engine/matching.py",
        "if quantity <= old_quantity - remaining:",
        "if quantity < old_quantity - remaining:",
        ENGINE_TESTS,
    ),
    Mutation(
        "the next, never handed out, order id counts as dead rather than unknown",
        "engine/matching.py",
        "if self.base < order_id < self.next_order_id else",
        "if self.base < order_id <= self.next_order_id else",
        ENGINE_TESTS,
    ),
    # -- engine/book.py -------------------------------------------------------------------
    Mutation(
        "a new better bid does not become the best bid",
        "engine/book.py",
        "if (price > self.best) if self.is_bid else (price < self.best):",
        "if (price < self.best) if self.is_bid else (price < self.best):",
        ENGINE_TESTS,
    ),
    Mutation(
        "the best price after its level empties is the worst one left",
        "engine/book.py",
        "top = levels[heap[0] * key]",
        "top = levels[max(heap) * key]",
        ENGINE_TESTS,
    ),
    Mutation(
        "a cancelled (or moved) order's quantity stays in its level's total",
        "engine/book.py",
        "        level.total -= order.remaining\n        order.remaining = 0\n",
        "        order.remaining = 0\n",
        ENGINE_TESTS,
    ),
    # -- shared/prices.py -----------------------------------------------------------------
    Mutation(
        "an off-tick price is accepted",
        "shared/prices.py",
        "if ticks != ticks.to_integral_value() or ticks < 1:",
        "if ticks < 1:",
        PRICE_TESTS,
    ),
    Mutation(
        "the maximum price is not enforced",
        "shared/prices.py",
        "if price > max_price:",
        "if price > max_price * 2:",
        PRICE_TESTS,
    ),
    Mutation(
        "true is accepted as quantity 1",
        "shared/prices.py",
        "if isinstance(value, bool) or not isinstance(value, int):",
        "if not isinstance(value, int):",
        PRICE_TESTS,
    ),
    Mutation(
        "side 0 is accepted",
        "shared/prices.py",
        "value not in (1, -1)",
        "value not in (1, -1, 0)",
        PRICE_TESTS,
    ),
    # -- the API's request validation -----------------------------------------------------
    Mutation(
        "client_order_id may hold control characters",
        "graphql_api/requests.py",
        "or not client_order_id.isprintable()",
        "or False",
        COID_TESTS,
        IN_PROCESS,
    ),
    Mutation(
        "client_order_id has no length limit",
        "graphql_api/requests.py",
        "or not 1 <= len(client_order_id) <= MAX_CLIENT_ORDER_ID",
        "or not 1 <= len(client_order_id)",
        COID_TESTS,
        IN_PROCESS,
    ),
    Mutation(
        "a market order may be GTC (and rest)",
        "graphql_api/requests.py",
        "elif market and tif == GTC:",
        "elif market and tif is None:",
        ORDER_TYPE_API_TESTS,
        IN_PROCESS,
    ),
)


class SnippetMissing(Exception):
    pass


def check(mutations: Iterable[Mutation], root: Path = ROOT) -> None:
    """Every snippet occurs exactly once in its file, or SnippetMissing names each that does
    not (re-check after every rebase: the code is being refactored)."""
    problems = []
    for m in mutations:
        path = root / m.file
        text = path.read_text() if path.exists() else ""
        found = text.count(m.original)
        if found != 1:
            where = "file missing" if not path.exists() else f"found {found} times"
            problems.append(f"{m.name!r}: {m.file}: {where}: {m.original!r}")
        for test in m.tests:
            if not (root / test.split("::")[0]).exists():
                problems.append(f"{m.name!r}: test {test} does not exist")
    if problems:
        raise SnippetMissing("\n".join(problems))


def tree_files(root: Path) -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout
    return [name for name in listed.decode().split("\0") if name and (root / name).is_file()]


def scratch_copy(root: Path, into: Path) -> Path:
    for name in tree_files(root):
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    return into


def run_tests(
    tree: Path,
    tests: Sequence[str],
    log: Path,
    stop_first: bool = True,
    pytest_args: Sequence[str] = (),
) -> tuple[int | None, float]:
    """pytest on `tree` (its code first on the path, for the tests and every process they
    start); the exit code, None on timeout, and the seconds it took."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args, *tests]
    if stop_first:
        command.append("-x")
    started = time.monotonic()
    with log.open("wb") as out:
        try:
            code: int | None = subprocess.run(
                command, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT,
                timeout=PER_RUN_TIMEOUT_S, check=False,
            ).returncode  # fmt: skip
        except subprocess.TimeoutExpired:
            code = None
    return code, time.monotonic() - started


@dataclass(frozen=True)
class Outcome:
    mutation: Mutation
    verdict: str  # killed | survived | error
    seconds: float
    log: Path


def verdict_of(code: int | None) -> str:
    if code is None:
        return "killed"  # a hang under mutation is caught by the suite's timeouts too
    return {0: "survived", 1: "killed"}.get(code, "error")  # 2+: interrupted, no tests


def mutate(mutations: Sequence[Mutation], root: Path, logs: Path) -> list[Outcome]:
    check(mutations, root)
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mutate-") as tmp:
        clean = scratch_copy(root, Path(tmp) / "baseline")
        runs = sorted({(m.tests, m.pytest_args) for m in mutations})
        for n, (tests, args) in enumerate(runs):
            log = logs / f"baseline-{n}.log"
            code, seconds = run_tests(clean, tests, log, pytest_args=args)
            print(f"baseline {' '.join((*args, *tests))}: exit {code}, {seconds:.0f} s", flush=True)
            if code != 0:
                raise SystemExit(f"the unmutated tree fails its tests: see {log}")
        outcomes = []
        for i, m in enumerate(mutations, 1):
            tree = scratch_copy(root, Path(tmp) / f"m{i}")
            path = tree / m.file
            path.write_text(path.read_text().replace(m.original, m.replacement, 1))
            code, seconds = run_tests(tree, m.tests, logs / f"m{i}.log", pytest_args=m.pytest_args)
            outcome = Outcome(m, verdict_of(code), seconds, logs / f"m{i}.log")
            outcomes.append(outcome)
            print(f"{i:2} {outcome.verdict:8} {seconds:5.0f} s  {m.file}: {m.name}", flush=True)
            shutil.rmtree(tree)
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the snippets")
    parser.add_argument("--only", action="append", default=[], help="a mutation's name")
    parser.add_argument("--logs", type=Path, default=ROOT / ".mutate", help="pytest output")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.only and len(chosen) != len(args.only):
        raise SystemExit(f"unknown mutation among {args.only}")
    try:
        check(chosen)
    except SnippetMissing as exc:
        print(f"snippets that no longer match the code:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.check:
        print(f"all {len(chosen)} snippets match")
        return
    outcomes = mutate(chosen, ROOT, args.logs)
    killed = sum(o.verdict == "killed" for o in outcomes)
    survived = [o for o in outcomes if o.verdict == "survived"]
    errors = [o for o in outcomes if o.verdict == "error"]
    print(
        f"killed {killed} of {len(outcomes)} ({100 * killed / len(outcomes):.0f}%), "
        f"survived {len(survived)}, errors {len(errors)}"
    )
    for o in survived + errors:
        print(f"  {o.verdict}: {o.mutation.name} ({o.mutation.file}); log {o.log}")
    raise SystemExit(1 if survived or errors else 0)


if __name__ == "__main__":
    main()
