"""``notifier suppressions list | add | lift`` in-process with CliRunner; ``lift`` calls the REAL
gateway over TCP with NOTIFIER_GATEWAY_URL / NOTIFIER_GATEWAY_TOKEN, as in production."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from gateway.models import Suppression as GatewaySuppression
from gateway.suppressions import repository as gateway_repository
from gateway.tokens import create_token
from notifier.models import Suppression, SuppressionReason, SuppressionSource
from notifier.settings import NotifierSettings
from notifier.suppressions import repository
from notifier.suppressions.repository import NewSuppression
from sqlalchemy import select

from tests.notifier.operator.test_cli import cli_env, invoke, run_db
from tests.notifier.suppressions.gateway_server import (
    NOTIFIER_SCOPES,
    refusing_url,
    serving_gateway,
)

__all__ = ["cli_env"]  # the fixture, imported for these tests

ANN = "ann@example.com"


def suppress(database_url: str, address: str, scope: str = "*") -> None:
    row = NewSuppression(address, scope, SuppressionReason.hard_bounce, SuppressionSource.gateway)
    run_db(database_url, lambda s: repository.add_many(s, [row]))


def rows(database_url: str) -> list[tuple[Any, ...]]:
    async def work(s: Any) -> list[tuple[Any, ...]]:
        stmt = select(Suppression.id, Suppression.address, Suppression.scope, Suppression.reason)
        return [tuple(r) for r in await s.execute(stmt.order_by(Suppression.id))]

    return run_db(database_url, work)


def gateway_rows(database_url: str) -> list[tuple[str, str]]:
    async def work(s: Any) -> list[tuple[str, str]]:
        stmt = select(GatewaySuppression.address, GatewaySuppression.scope)
        return [(a, sc) for a, sc in await s.execute(stmt.order_by(GatewaySuppression.id))]

    return run_db(database_url, work)


class TestListAndAdd:
    def test_add_then_list_as_json(self, cli_env: NotifierSettings) -> None:
        r = invoke("suppressions", "add", " Ann@Example.com", "--detail", "asked by phone")
        assert r.exit_code == 0, r.output
        assert "added" in r.stdout
        [(sid, address, scope, reason)] = rows(cli_env.database_url)
        assert (address, scope, reason) == (ANN, "*", SuppressionReason.manual)
        suppress(cli_env.database_url, "bob@example.com")

        r = invoke("suppressions", "list", "--address", "ANN@example.com", "--json")
        assert r.exit_code == 0, r.output
        page = json.loads(r.stdout)  # stdout is the JSON alone
        [item] = page["items"]
        assert (item["id"], item["reason"], item["source"]) == (sid, "manual", "operator")
        assert item["detail"].startswith("by cli")
        assert item["detail"].endswith(": asked by phone")
        assert page["next_cursor"] is None
        r = invoke("suppressions", "list", "--scope", "*", "--reason", "hard_bounce", "--json")
        assert [i["address"] for i in json.loads(r.stdout)["items"]] == ["bob@example.com"]
        r = invoke("suppressions", "list")  # a table (CliRunner's is narrow: short words only)
        assert r.exit_code == 0, r.output
        assert "operator" in r.stdout
        assert "gateway" in r.stdout

    def test_adding_an_existing_one_changes_nothing(self, cli_env: NotifierSettings) -> None:
        suppress(cli_env.database_url, ANN)
        r = invoke("suppressions", "add", ANN)
        assert r.exit_code == 0, r.output
        assert "already suppressed" in r.stdout
        assert "hard_bounce" in r.stdout
        [(_, _, _, reason)] = rows(cli_env.database_url)
        assert reason == SuppressionReason.hard_bounce

    def test_invalid_input_is_refused(self, cli_env: NotifierSettings) -> None:
        r = invoke("suppressions", "add", ANN, "--scope", "LowBalanceNotise")
        assert r.exit_code == 1
        assert "stops no letter" in r.stdout
        assert invoke("suppressions", "add", "a\x00b@example.com").exit_code == 2
        assert invoke("suppressions", "list", "--reason", "bored").exit_code == 2
        assert rows(cli_env.database_url) == []


@pytest.fixture
def with_gateway(cli_env: NotifierSettings, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The real gateway serving, and the CLI's settings pointing at it with an admin token."""
    token = asyncio.run(
        create_token(cli_env.database_url, name="notifier", scopes=list(NOTIFIER_SCOPES))
    )
    with serving_gateway(cli_env.database_url, cli_env.redis_url) as url:
        monkeypatch.setenv("NOTIFIER_GATEWAY_URL", url)
        monkeypatch.setenv("NOTIFIER_GATEWAY_TOKEN", token)
        yield url


class TestLift:
    def test_lift_removes_the_row_here_and_at_the_gateway(
        self, cli_env: NotifierSettings, with_gateway: str
    ) -> None:
        suppress(cli_env.database_url, ANN)
        gateway_row = gateway_repository.NewSuppression(ANN, "*", "hard_bounce", "log")
        run_db(cli_env.database_url, lambda s: gateway_repository.add_many(s, [gateway_row]))
        [(sid, *_)] = rows(cli_env.database_url)

        r = invoke("suppressions", "lift", str(sid), "--json")
        assert r.exit_code == 0, r.output
        out = json.loads(r.stdout)
        assert (out["suppression"]["id"], out["gateway_lifted"]) == (sid, 1)
        assert rows(cli_env.database_url) == []
        assert gateway_rows(cli_env.database_url) == []
        r = invoke("suppressions", "lift", str(sid))
        assert r.exit_code == 1
        assert f"suppression {sid} does not exist" in r.stdout

    def test_gateway_unreachable_fails_and_keeps_the_row(
        self, cli_env: NotifierSettings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        suppress(cli_env.database_url, ANN)
        [(sid, *_)] = rows(cli_env.database_url)
        with refusing_url() as url:
            monkeypatch.setenv("NOTIFIER_GATEWAY_URL", url)
            r = invoke("suppressions", "lift", str(sid))
        assert r.exit_code == 1
        assert "gateway unreachable" in r.stdout
        assert len(rows(cli_env.database_url)) == 1
