"""The lock files cover pyproject.toml: a requirement added or raised without `make lock` would
otherwise be missing from every install, since installs take the locks alone."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# What the locks were compiled for (Makefile: UV_COMPILE).
TARGET = {"python_version": "3.11", "sys_platform": "linux", "platform_machine": "x86_64"}
ENTRY = re.compile(
    r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\\n((?:    --hash=sha256:[0-9a-f]{64}.*\n)+)", re.M
)


def locked(name: str) -> dict[str, tuple[Version, int]]:
    """Canonical name -> (pinned version, number of hashes)."""
    text = (ROOT / name).read_text()
    return {
        canonicalize_name(m[1]): (Version(m[2]), m[3].count("--hash="))
        for m in ENTRY.finditer(text)
    }


RUNTIME = [*PYPROJECT["project"]["dependencies"], *PYPROJECT["build-system"]["requires"]]
DEV = [*RUNTIME, *PYPROJECT["project"]["optional-dependencies"]["dev"]]


@pytest.mark.parametrize(
    ("lock", "requirements"), [("requirements.lock", RUNTIME), ("requirements-dev.lock", DEV)]
)
def test_every_requirement_is_pinned_within_its_range(lock: str, requirements: list[str]) -> None:
    pins = locked(lock)
    for line in requirements:
        req = Requirement(line)
        if req.marker and not req.marker.evaluate(TARGET):
            continue
        name = canonicalize_name(req.name)
        assert name in pins, f"{lock} has no pin for {line}: run make lock"
        assert req.specifier.contains(pins[name][0], prereleases=True), (
            f"{lock} pins {name}=={pins[name][0]}, outside {line}: run make lock"
        )


def test_every_line_of_both_locks_is_a_hashed_pin() -> None:
    for lock in ("requirements.lock", "requirements-dev.lock"):
        text = (ROOT / lock).read_text()
        names = re.findall(r"^[A-Za-z0-9][^\s#]*", text, re.M)
        pins = locked(lock)
        assert len(names) == len(pins) > 0, f"{lock}: an entry without a hash or an exact pin"
        assert all(hashes > 0 for _, hashes in pins.values())


def test_the_image_and_the_venv_get_the_same_versions() -> None:
    runtime, dev = locked("requirements.lock"), locked("requirements-dev.lock")
    differ = {
        n: (v, dev.get(n, (None,))[0])
        for n, (v, _) in runtime.items()
        if dev.get(n, (None,))[0] != v
    }
    assert not differ, f"requirements.lock and requirements-dev.lock disagree: {differ}"
