"""Quick crash run with a hot standby: engine kills hit the leading engine, the standby
takes over, and still nothing acknowledged is lost or duplicated (`--standby`)."""

from __future__ import annotations

from pathlib import Path

from tests.crash.harness import run


async def test_leader_kills_with_a_standby_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    report = await run(kills=8, rate=100, seed=3, data_dir=tmp_path, interval=1.0, standby=True)
    print(report.summary(), report.takeovers.summary())
    assert report.kills["engine"] == 3  # seed 3: three of the eight kills
    assert len(report.takeovers.seconds) == report.kills["engine"]
    assert report.acknowledged > 150
    assert report.lost == 0
    assert report.duplicated == 0
    assert report.engine_hash == report.reference_hash
    assert report.problems == []
