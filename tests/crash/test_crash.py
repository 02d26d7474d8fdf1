"""Quick crash run for `make test`: 12 SIGKILLs across every service under steady load of
every order type, price and quantity changes, on two instruments."""

from __future__ import annotations

from pathlib import Path

from tests.crash.harness import run
from tests.crash.mix import INSTRUMENTS, MIX


async def test_kills_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    report = await run(kills=12, rate=100, seed=11, data_dir=tmp_path, interval=1.2)
    print(report.summary())
    assert set(report.kills) == {
        "engine",
        "archiver",
        "redis",
        *[k for k in report.kills if k.startswith("api-")],
    }
    assert len([k for k in report.kills if k.startswith("api-")]) == 2
    assert sum(report.kills.values()) == 12
    assert report.acknowledged > 200
    # Every kind of request was in flight around the kills, on both instruments.
    assert {name for _, name in MIX} <= set(report.kinds), report.kinds
    assert {f"place:{symbol}" for symbol in INSTRUMENTS} <= set(report.kinds), report.kinds
    assert report.lost == 0
    assert report.duplicated == 0
    assert report.engine_hash == report.reference_hash
    assert report.problems == []
