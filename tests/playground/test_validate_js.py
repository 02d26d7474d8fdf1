"""The playground's order checks (web_playground/validate.js) under node's own test runner:
exact tick-grid arithmetic and the wording of every message, cases a browser test would
need a round trip each for. Fails, does not skip, without node (CI has it for newman)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parent / "validate.test.mjs"


def test_order_checks_under_node() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("`node` is not on PATH: the playground's JavaScript tests need Node.js")
    result = subprocess.run(
        [node, "--test", str(TESTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout and "# pass 0" not in result.stdout, result.stdout
