"""The shipped deployment files agree with the code: compose services, env vars, schema."""

from __future__ import annotations

import re
import shutil
import subprocess
from fnmatch import fnmatchcase
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest
import yaml

from engine.core_import import CORE
from graphql_api.schema import schema
from shared.config import ENV_VARS

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
OWN = {"engine", "archiver", "api"}


def test_compose_runs_redis_mongo_and_every_service() -> None:
    services = COMPOSE["services"]
    assert OWN | {"redis", "mongo", "proxy"} <= set(services)
    assert services["redis"]["image"].startswith("redis:7")
    assert "--appendonly" in services["redis"]["command"]
    assert services["mongo"]["image"].startswith("mongo:7")
    assert "--replSet" in services["mongo"]["command"]
    for name, service in services.items():
        assert "healthcheck" in service, f"{name} has no healthcheck"
        for dep, spec in (service.get("depends_on") or {}).items():
            assert spec == {"condition": "service_healthy"}, f"{name} -> {dep}"


@pytest.mark.parametrize("name", sorted(OWN))
def test_compose_commands_exist_in_code(name: str) -> None:
    command = COMPOSE["services"][name]["command"]
    assert command[:2] == ["python", "-m"]
    module = command[2]
    assert (ROOT / module / "__main__.py").is_file(), f"{name}: no module {module}"
    assert (ROOT / "Dockerfile").read_text().count(f"COPY --chown=app {module} {module}") == 1


def _docker_ignores(path: str) -> bool:
    """Whether `.dockerignore` keeps `path` out of the build context: a line matches the path
    or a folder above it, name by name; the last line that matches decides (`!` keeps)."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    names = path.split("/")
    ignored = False
    for line in (line.strip() for line in lines):
        if not line or line.startswith("#"):
            continue
        pattern = line.removeprefix("!").strip("/").split("/")
        depth = len(pattern)
        if depth <= len(names) and all(map(fnmatchcase, names[:depth], pattern)):
            ignored = not line.startswith("!")
    return ignored


def test_the_image_gets_no_compiled_core_from_the_build_context() -> None:
    """The image runs the matching core from its source (it has no mypyc). `COPY engine
    engine` would otherwise take the core that `make core` compiled in the tree (the image's
    CPython has the same extension suffix), and the image would import that instead: built
    on another machine, from whatever the tree held then."""
    suffix = EXTENSION_SUFFIXES[0]
    for name in (*CORE, "core__mypyc"):
        assert _docker_ignores(f"engine/{name}{suffix}"), name
    assert _docker_ignores("engine/core-sources.txt")
    assert not _docker_ignores("engine/matching.py")
    assert _docker_ignores("engine/__pycache__/matching.cpython-311.pyc")


def test_compose_env_names_are_read_by_config() -> None:
    for name in OWN:
        env = COMPOSE["services"][name]["environment"]
        unknown = set(env) - set(ENV_VARS)
        assert not unknown, f"{name} sets variables no service reads: {unknown}"
    text = (ROOT / "docker-compose.yml").read_text()
    for var in re.findall(r"\$\{(\w+)(?::-[^}]*)?\}", text):
        assert var in ENV_VARS or var == "PUBLISHED_PORT", var


def test_env_example_lists_every_variable_with_its_default() -> None:
    pairs = dict(
        line.split("=", 1)
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert pairs == {name: default for name, (default, _) in ENV_VARS.items()}


def test_exported_graphql_schema_matches_code() -> None:
    exported = (ROOT / "docs" / "schema.graphql").read_text()
    assert exported == schema.as_str() + "\n", "run: make schema"


def _compose_command() -> list[str] | None:
    """`docker compose` (the v2 plugin) when present, else Debian's `docker-compose`."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config_validates() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` here: checked structurally only")
    result = subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
