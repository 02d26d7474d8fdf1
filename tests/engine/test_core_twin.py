"""The core's two implementations (`engine.core_import`): compiled and source give the same
events and state, each process imports the one it should, and a build older than the sources
is never the one imported.

The rest of the core's tests run against whichever is imported: `make pytest` runs them
against the compiled core and again with ENGINE_CORE=python (`make test-core-source`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.core_import import CORE, compiled

ROOT = Path(__file__).resolve().parents[2]
BUILT = all(compiled(name) is not None for name in CORE)
needs_build = pytest.mark.skipif(not BUILT, reason="the core is not compiled (make core)")

# A short realistic flow, every event and the final state digested: what each implementation
# computed, printed as JSON by a fresh interpreter.
RUN = """
import hashlib, json
from engine.bench import steady_flow
from engine.core_import import status
from engine.matching import engine_for
from engine.snapshot import restore, snapshot, state_hash
from shared.events import encode_events

flow = steady_flow(20_000, seed=7, resting=500)
digest = hashlib.blake2b(digest_size=16)
engine = flow.start(7)
for command in flow.timed:
    digest.update(encode_events(engine.apply(command)))
banded = engine_for(0, (300, 100_000))
for command in flow.warmup[:5_000]:
    digest.update(encode_events(banded.apply(command)))
print(json.dumps({
    **status(),
    "events": digest.hexdigest(),
    "state": state_hash(engine),
    "restored": state_hash(restore(snapshot(engine))),
    "banded": state_hash(banded),
}))
"""


def run(root: Path, **env: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k != "ENGINE_CORE"}
    environ.update(env, PYTHONPATH=str(root))
    out = subprocess.run(
        [sys.executable, "-c", RUN], cwd=root, env=environ, capture_output=True, check=True
    )
    result: dict[str, str] = json.loads(out.stdout)
    return result


@needs_build
def test_compiled_and_source_agree() -> None:
    fast = run(ROOT)
    source = run(ROOT, ENGINE_CORE="python")
    assert fast.pop("implementation") == "compiled"
    assert source.pop("implementation") == "python"
    assert "reason" not in fast
    assert source.pop("reason") == "ENGINE_CORE=python"
    assert fast == source
    assert fast["state"] == fast["restored"]


@needs_build
def test_a_core_edited_after_its_build_runs_from_source(tmp_path: Path) -> None:
    """An edit after `make core` runs the edited source, not the stale compiled module
    (also an edit of a constant that the compiled code inlines)."""
    for package in ("engine", "shared"):
        shutil.copytree(ROOT / package, tmp_path / package)
    assert run(tmp_path)["implementation"] == "compiled"
    for edited in ("engine/matching.py", "shared/commands.py"):
        path = tmp_path / edited
        original = path.read_text()
        path.write_text(original + "# edited\n")
        stale = run(tmp_path)
        assert stale["implementation"] == "python"
        assert "changed since it was compiled" in stale["reason"]
        path.write_text(original)
        assert run(tmp_path)["implementation"] == "compiled"
