"""The shipped deployment files agree with the code: compose services, env vars, schema."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

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
