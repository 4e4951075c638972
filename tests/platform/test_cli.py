"""The ``notifier`` console script: OpenAPI on stdout, tokens that work against the API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
from notifier.cli import app
from notifier.settings import get_settings
from typer.testing import CliRunner

from tests.factories import event_body

runner = CliRunner()


@pytest.fixture
def cli_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Point the CLI (which reads settings from the environment) at the test database."""
    monkeypatch.setenv("NOTIFIER_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield database_url
    get_settings.cache_clear()


class TestOpenapi:
    def test_prints_valid_json_with_the_events_endpoint(self) -> None:
        result = runner.invoke(app, ["openapi"])
        assert result.exit_code == 0, result.output
        spec = json.loads(result.stdout)
        assert spec["openapi"].startswith("3.")
        assert "post" in spec["paths"]["/v1/events"]


class TestTokenCreate:
    async def test_created_token_is_accepted_by_the_api(
        self, cli_database: str, client: httpx.AsyncClient
    ) -> None:
        args = ["token", "create", "--name", "producer", "--scope", "events:write"]
        # the CLI runs its own event loop, so it runs in a thread here
        result = await asyncio.to_thread(runner.invoke, app, args)
        assert result.exit_code == 0, result.output
        token = result.stdout.strip()
        assert token.startswith("ntf_")

        r = await client.post(
            "/v1/events", json=event_body(), headers={"Authorization": f"Bearer {token}"}
        )
        assert r.status_code == 202, r.text

    async def test_unknown_scope_is_refused(self, cli_database: str) -> None:
        args = ["token", "create", "--name", "x", "--scope", "events:write", "--scope", "root"]
        result = await asyncio.to_thread(runner.invoke, app, args)
        assert result.exit_code != 0
        assert "unknown scope" in result.output
        listed = await asyncio.to_thread(runner.invoke, app, ["token", "list"])
        assert listed.stdout.strip() == ""  # nothing was created
