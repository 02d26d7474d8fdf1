"""Three failovers of masters holding instrument streams, under load, lose and duplicate
nothing acknowledged; engines, archiver and API replicas follow the new masters unaided."""

from __future__ import annotations

from pathlib import Path

from tests.cluster.failover import run


async def test_failovers_lose_and_duplicate_nothing_acknowledged(tmp_path: Path) -> None:
    report, failovers = await run(failovers=3, rate=360, seed=5, data_dir=tmp_path, interval=4)
    print(report.summary())
    print(failovers.summary())
    assert len(failovers.promoted_after) == 3
    assert report.acknowledged > 1000
    assert report.lost == 0
    assert report.duplicated == 0
    assert report.engine_hash == report.reference_hash
    assert report.problems == []
