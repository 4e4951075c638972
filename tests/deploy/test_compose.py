"""docker-compose.yml is valid for the docker client, and deploy/Dockerfile only names things
that exist (there is no Docker engine here to build it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
APP_SERVICES = ("notifier-api", "notifier-worker", "gateway")


def compose_command() -> list[str]:
    if shutil.which("docker") is None:
        pytest.skip("the docker client is not installed")
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    reason = (
        "docker is installed but neither `docker compose` nor `docker-compose` is; "
        "install one (Debian: apt-get install docker-compose; .ci/run does it)"
    )
    if os.environ.get("CI"):  # CI installs it: missing there is a failure, not a skip
        pytest.fail(reason)
    pytest.skip(reason)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def console_scripts() -> set[str]:
    names = set()
    for pyproject in ROOT.glob("services/*/pyproject.toml"):
        names |= set(tomllib.loads(pyproject.read_text())["project"].get("scripts", {}))
    return names


class TestCompose:
    def test_docker_compose_config_is_valid(self) -> None:
        cmd = compose_command()
        result = subprocess.run(
            [*cmd, "-f", str(COMPOSE), "config", "-q"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr

    def test_every_long_running_service_has_a_healthcheck(self) -> None:
        services = compose()["services"]
        assert {"postgres", "redis", "migrate", *APP_SERVICES} <= set(services)
        for name, service in services.items():
            if service.get("restart") == "no":  # one-shots: migrate, seed
                continue
            assert service.get("healthcheck", {}).get("test"), name

    def test_apps_wait_for_healthy_dependencies_and_the_migration(self) -> None:
        services = compose()["services"]
        for name in APP_SERVICES:
            deps = services[name]["depends_on"]
            assert deps["postgres"] == {"condition": "service_healthy"}, name
            assert deps["redis"] == {"condition": "service_healthy"}, name
            assert deps["migrate"] == {"condition": "service_completed_successfully"}, name
        assert services["migrate"]["command"] == ["notifier", "migrate"]

    def test_commands_are_our_console_scripts(self) -> None:
        known = console_scripts() | {"python", "uvicorn", "redis-server"}
        for name, service in compose()["services"].items():
            if "command" in service:
                assert service["command"][0] in known, name


class TestDockerfile:
    def test_copied_paths_exist(self) -> None:
        for line in DOCKERFILE.read_text().splitlines():
            if not line.startswith("COPY ") or "--from=" in line:
                continue
            *sources, _dest = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), source

    def test_builds_with_uv_into_a_venv_and_runs_unprivileged(self) -> None:
        text = DOCKERFILE.read_text()
        assert "uv sync --locked --no-dev --no-editable" in text
        assert re.search(r"^FROM python:3\.11-slim AS runtime$", text, re.M)
        assert re.search(r"^USER app$", text, re.M)
        assert 'CMD ["notifier", "api", "--host", "0.0.0.0"]' in text
        assert "notifier" in console_scripts()
        assert "gateway" in console_scripts()
