"""`python -m tools.audit [LOCK ...]`: fail when a pinned dependency has a known vulnerability.

pip-audit does the auditing, from the lock file (no install, no resolution). Its usual sources
are the OSV API and PyPI's per-release JSON; where those answer (`--source osv`, the default when
the OSV API is reachable), every pin is audited exactly. On this project's machines and CI only
PyPI's index, files and per-project JSON are reachable: pip-audit's default PyPI source then
skips every package and still reports "no known vulnerabilities", a false green. So here
(`--source pypi-newest`) this module answers pip-audit's OSV queries itself, on loopback, from
the per-project JSON, which lists the vulnerabilities of a project's newest release:

- a pin that is the newest release is audited exactly;
- an older pin is checked against the newest release's vulnerabilities (those usually reach back,
  so this errs towards failing) except ones with a fix at or below the pin; a vulnerability fixed
  after the pin is not visible from here. Such pins are listed after the audit; `make lock`
  moves them to the newest releases, which makes them exact again.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

OSV_QUERY_URL = "https://api.osv.dev/v1/query"
PYPI_URL = "https://pypi.org/pypi"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def pins(lock: Path) -> dict[str, str]:
    """Canonical name -> pinned version, from a pip-compile/uv style lock file."""
    return {canonicalize_name(name): version for name, version in PIN.findall(lock.read_text())}


def osv_reachable(timeout: float = 5.0) -> bool:
    query = {"package": {"name": "pip", "ecosystem": "PyPI"}, "version": "20.0"}
    try:
        return httpx.post(OSV_QUERY_URL, json=query, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class NewestReleaseAdvisories:
    """PyPI's per-project JSON for each pinned project, turned into OSV answers for pip-audit."""

    pypi_url: str
    newest: dict[str, str] = field(default_factory=dict)
    vulns: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)

    def load(self, names: Sequence[str]) -> None:
        """One request per project, a few at a time (the whole dev lock takes seconds)."""
        with httpx.Client(timeout=60, follow_redirects=True) as client:

            def fetch(name: str) -> tuple[str, dict[str, Any] | None]:
                reply = client.get(f"{self.pypi_url}/{name}/json")
                if reply.status_code == 404:
                    return name, None
                reply.raise_for_status()
                data: dict[str, Any] = reply.json()
                return name, data

            with ThreadPoolExecutor(max_workers=8) as pool:
                for name, data in pool.map(fetch, names):
                    if data is None:
                        self.unknown.append(name)
                        continue
                    self.newest[name] = data["info"]["version"]
                    self.vulns[name] = [v for v in data.get("vulnerabilities") or [] if v]

    def answer(self, name: str, version: str) -> dict[str, Any]:
        """OSV `/v1/query` reply: the newest release's advisories that may reach this pin."""
        try:
            pinned = Version(version)
        except InvalidVersion:
            pinned = None
        found: list[dict[str, Any]] = []
        seen: set[str] = set()
        for vuln in self.vulns.get(name, []):
            ids = {vuln["id"], *(vuln.get("aliases") or [])}
            if ids & seen:  # PyPI lists one advisory under each of its ids (PYSEC, GHSA, CVE)
                continue
            seen |= ids
            fixes = [Version(f) for f in vuln.get("fixed_in") or []]
            if version != self.newest.get(name) and pinned and any(f <= pinned for f in fixes):
                continue
            events: list[dict[str, str]] = [{"introduced": "0"}]
            events += [{"fixed": str(f)} for f in fixes]
            found.append(
                {
                    "id": vuln["id"],
                    "aliases": vuln.get("aliases") or [],
                    "summary": vuln.get("summary") or vuln.get("details") or "N/A",
                    "withdrawn": vuln.get("withdrawn"),
                    "affected": [
                        {
                            "package": {"name": name, "ecosystem": "PyPI"},
                            "ranges": [{"type": "ECOSYSTEM", "events": events}],
                        }
                    ],
                }
            )
        return {"vulns": found} if found else {}

    def behind(self, pinned: dict[str, str]) -> list[str]:
        return [
            f"{name}=={version} (newest {self.newest[name]})"
            for name, version in sorted(pinned.items())
            if name in self.newest and version != self.newest[name]
        ]


@contextmanager
def serve(advisories: NewestReleaseAdvisories) -> Iterator[str]:
    """An OSV-compatible query endpoint on loopback; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            name = canonicalize_name(query["package"]["name"])
            body = json.dumps(advisories.answer(name, query["version"])).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """pip-audit's own report is the output; one line per query would bury it."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    finally:
        server.shutdown()
        server.server_close()


def pip_audit(lock: Path, extra: Sequence[str]) -> int:
    """pip-audit on the lock's pins; with OSV sources it checks only that hashes are present
    (it says so in a warning): pip checks them against the files when it installs."""
    command = [sys.executable, "-m", "pip_audit", "-r", str(lock), "--require-hashes"]
    command += ["--disable-pip", "--strict", "--progress-spinner", "off", *extra]
    return subprocess.run(command).returncode


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("locks", nargs="*", type=Path, default=[Path("requirements-dev.lock")])
    parser.add_argument("--source", choices=["auto", "osv", "pypi-newest"], default="auto")
    parser.add_argument("--pypi-url", default=PYPI_URL, help="per-project JSON API base")
    parser.add_argument(
        "--ignore-vuln", action="append", default=[], metavar="ID", help="passed to pip-audit"
    )
    args = parser.parse_args(argv)
    extra = [f"--ignore-vuln={vuln}" for vuln in args.ignore_vuln]
    source = args.source
    if source == "auto":
        source = "osv" if osv_reachable() else "pypi-newest"
        print(f"audit: vulnerability source {source}", file=sys.stderr)
    status = 0
    for lock in args.locks:
        if source == "osv":
            status |= pip_audit(lock, ["--vulnerability-service", "osv", *extra])
            continue
        pinned = pins(lock)
        advisories = NewestReleaseAdvisories(args.pypi_url)
        advisories.load(sorted(pinned))
        with serve(advisories) as url:
            status |= pip_audit(lock, ["--vulnerability-service", "osv", "--osv-url", url, *extra])
        behind = advisories.behind(pinned)
        print(
            f"audit: {lock}: {len(pinned) - len(behind)} of {len(pinned)} pins are their "
            "project's newest release and were audited exactly",
            file=sys.stderr,
        )
        if advisories.unknown:
            print(f"audit: not on PyPI, not audited: {advisories.unknown}", file=sys.stderr)
            status = 1
        if behind:
            print(
                f"audit: {len(behind)} older pins were checked against their project's newest "
                "release only (a fix published after the pin is not visible without the OSV "
                "API; `make lock` moves them up): " + ", ".join(behind),
                file=sys.stderr,
            )
    return status


if __name__ == "__main__":
    sys.exit(main())
