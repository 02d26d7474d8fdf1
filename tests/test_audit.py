"""The dependency audit fails on a known vulnerability and says what it could not see.

The real pip-audit runs against tools.audit's OSV endpoint; only PyPI is replaced, by a loopback
server holding per-project JSON in PyPI's format, so each case has a known answer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
HASH = "--hash=sha256:" + "0" * 64


def advisory(id: str, fixed_in: list[str], withdrawn: str | None = None) -> dict[str, Any]:
    return {
        "id": id,
        "aliases": [f"CVE-{id}"],
        "summary": f"{id} summary",
        "details": "details",
        "fixed_in": fixed_in,
        "link": f"https://osv.dev/vulnerability/{id}",
        "source": "osv",
        "withdrawn": withdrawn,
    }


# The same advisory under two ids, as PyPI lists them, must be reported once.
PROJECTS: dict[str, dict[str, Any]] = {
    "vulnpkg": {
        "version": "1.0",
        "vulns": [
            advisory("PYSEC-1", []),
            {**advisory("GHSA-1", []), "aliases": ["PYSEC-1"]},
        ],
    },
    "cleanpkg": {"version": "2.0", "vulns": []},
    "oldpkg": {
        "version": "3.0",
        "vulns": [
            advisory("PYSEC-FIXED-LATER", ["3.1"]),
            advisory("PYSEC-BACKPORTED", ["2.4", "3.1"]),
            advisory("PYSEC-WITHDRAWN", [], withdrawn="2026-01-01T00:00:00Z"),
        ],
    },
}


@pytest.fixture(scope="module")
def pypi() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = self.path.strip("/").split("/")[0]
            if name not in PROJECTS:
                self.send_error(404)
                return
            project = PROJECTS[name]
            body = json.dumps(
                {
                    "info": {"name": name, "version": project["version"]},
                    "vulnerabilities": project["vulns"],
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def audit(pypi: str, tmp_path: Path, pins: list[str], *extra: str) -> tuple[int, str]:
    lock = tmp_path / "requirements.lock"
    lock.write_text("".join(f"{pin} \\\n    {HASH}\n" for pin in pins))
    command = [sys.executable, "-m", "tools.audit", "--source", "pypi-newest", "--pypi-url", pypi]
    result = subprocess.run(
        [*command, *extra, str(lock)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, result.stdout + result.stderr


def test_a_vulnerable_newest_release_fails_the_audit(pypi: str, tmp_path: Path) -> None:
    status, out = audit(pypi, tmp_path, ["vulnpkg==1.0", "cleanpkg==2.0"])
    assert status != 0, out
    assert "PYSEC-1" in out
    assert "Found 1 known vulnerability" in out, out
    assert "2 of 2 pins are their project's newest release" in out


def test_a_clean_lock_passes(pypi: str, tmp_path: Path) -> None:
    status, out = audit(pypi, tmp_path, ["cleanpkg==2.0"])
    assert status == 0, out
    assert "No known vulnerabilities found" in out


def test_an_ignored_vulnerability_is_the_only_way_past_it(pypi: str, tmp_path: Path) -> None:
    status, out = audit(pypi, tmp_path, ["vulnpkg==1.0"], "--ignore-vuln", "PYSEC-1")
    assert status == 0, out


def test_an_older_pin_gets_the_newest_releases_advisories_and_is_named(
    pypi: str, tmp_path: Path
) -> None:
    status, out = audit(pypi, tmp_path, ["oldpkg==2.5"])
    assert status != 0, out
    assert "PYSEC-FIXED-LATER" in out
    assert "PYSEC-BACKPORTED" not in out, "fixed at 2.4, below the pin"
    assert "PYSEC-WITHDRAWN" not in out
    assert "oldpkg==2.5 (newest 3.0)" in out


def test_a_project_pypi_does_not_know_fails_the_audit(pypi: str, tmp_path: Path) -> None:
    status, out = audit(pypi, tmp_path, ["cleanpkg==2.0", "nosuchpkg==1.0"])
    assert status != 0, out
    assert "nosuchpkg" in out
