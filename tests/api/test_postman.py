"""The Postman collection (postman/), run by newman against the real stack.

newman is installed by npm into the git-ignored project folder `.tools/newman` on first use:
`npm install --prefix .tools/newman newman@6` (newman 6 needs node >= 16). Node and npm must be
on PATH: without them the test fails with a message saying so, it does not skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from shared.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = ROOT / "postman" / "order-matching.postman_collection.json"
ENVIRONMENT = ROOT / "postman" / "order-matching.postman_environment.json"
NEWMAN_PREFIX = ROOT / ".tools" / "newman"
NEWMAN = NEWMAN_PREFIX / "node_modules" / ".bin" / "newman"
NEWMAN_SPEC = "newman@6"
MIN_NODE_MAJOR = 16
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # newman colours its failure table even with --color off

# newman runs against the stack (Redis, engine, archiver, API processes) whichever gateway the
# API suite's `api` fixture is on, so only its `redis` half runs it: the in-process half ran
# the same collection against the same stack a second time, with the in-process book emptied
# instead of the stack's.
pytestmark = [
    pytest.mark.usefixtures("empty_book"),
    pytest.mark.parametrize("api", ["redis"], indirect=True),
]


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT
    )


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            f"`node` is not on PATH: newman needs Node.js >= {MIN_NODE_MAJOR} (with npm)",
            pytrace=False,
        )
    version = _run([node, "--version"], timeout=30).stdout.strip()
    match = re.match(r"v(\d+)\.", version)
    if match is None or int(match.group(1)) < MIN_NODE_MAJOR:
        pytest.fail(f"newman 6 needs node >= {MIN_NODE_MAJOR}, found {version!r}", pytrace=False)
    return node


def _ensure_newman() -> Path:
    """The project-local newman, installed with npm if it is missing."""
    if NEWMAN.exists():
        return NEWMAN
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(
            "newman is missing and `npm` is not on PATH: install npm (it comes with Node.js), "
            f"or run `npm install --prefix .tools/newman {NEWMAN_SPEC}` yourself",
            pytrace=False,
        )
    install = _run(
        [npm, "install", "--prefix", str(NEWMAN_PREFIX), "--no-audit", "--no-fund", NEWMAN_SPEC],
        timeout=300,
    )
    if install.returncode != 0 or not NEWMAN.exists():
        pytest.fail(
            f"`npm install --prefix .tools/newman {NEWMAN_SPEC}` failed "
            f"(exit {install.returncode}):\n{install.stdout}\n{install.stderr}",
            pytrace=False,
        )
    return NEWMAN


@pytest.mark.timeout(600)  # the first run installs newman
def test_postman_collection_passes(stack: Stack) -> None:
    base_url = stack.api_url(stack.api_ports[0])
    node = _node()
    newman = _ensure_newman()
    result = _run(
        [
            node,
            str(newman),
            "run",
            str(COLLECTION),
            "-e",
            str(ENVIRONMENT),
            "--env-var",
            f"base_url={base_url}",
            "--reporters",
            "cli",
            "--color",
            "off",
            "--timeout-request",
            "15000",
        ],
        timeout=180,
    )
    output = ANSI.sub("", f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}")
    assert result.returncode == 0, f"newman exited with {result.returncode}\n{output}"
