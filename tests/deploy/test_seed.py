"""deploy/seed.py: idempotent demo configuration for ``make run`` and docker compose."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from notifier.cli import SCOPES

from deploy.seed import GATEWAY_SCOPES, seed


class TestSeed:
    async def test_second_run_reuses_the_tokens(self, database_url: str, tmp_path: Path) -> None:
        first = await seed(database_url, state_dir=tmp_path)
        again = await seed(database_url, state_dir=tmp_path)
        assert first.tokens == again.tokens
        assert set(first.tokens) == {"notifier", "gateway"}
        assert (tmp_path / "dev-tokens.json").stat().st_mode & 0o077 == 0

    async def test_dev_token_has_every_scope(
        self, database_url: str, tmp_path: Path, client: httpx.AsyncClient
    ) -> None:
        ctx = await seed(database_url, state_dir=tmp_path)
        r = await client.get(
            "/v1/events", headers={"Authorization": f"Bearer {ctx.tokens['notifier']}"}
        )
        assert r.status_code == 200
        assert "admin" in SCOPES

    async def test_a_revoked_token_is_replaced(self, database_url: str, tmp_path: Path) -> None:
        from notifier.auth.tokens import list_tokens, revoke_token

        first = await seed(database_url, state_dir=tmp_path)
        (dev,) = [t for t in await list_tokens(database_url) if t.name == "dev"]
        await revoke_token(database_url, dev.id)
        again = await seed(database_url, state_dir=tmp_path)
        assert again.tokens["notifier"] != first.tokens["notifier"]

    async def test_gateway_token_from_the_environment_is_registered(
        self, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from gateway.models import ApiToken
        from notifier_common.auth import TokenRepository
        from notifier_common.db import create_engine, create_sessionmaker

        monkeypatch.setenv("NOTIFIER_GATEWAY_TOKEN", "ntf_given-by-compose")
        ctx = await seed(database_url, state_dir=tmp_path)
        await seed(database_url, state_dir=tmp_path)
        assert ctx.tokens["gateway"] == "ntf_given-by-compose"
        engine = create_engine(database_url, pool_size=1)
        try:
            async with create_sessionmaker(engine)() as session:
                row = await TokenRepository(ApiToken).find_active(session, "ntf_given-by-compose")
                rows = await TokenRepository(ApiToken).list(session)
        finally:
            await engine.dispose()
        assert row is not None
        assert sorted(row.scopes) == sorted(GATEWAY_SCOPES)
        assert len(rows) == 1  # registered once


class TestGatewayTokenScopes:
    """The seeded gateway token is the one the notifier's operator API flips provider switches
    with: the real gateway must accept it for that, not only for sending."""

    async def test_seeded_token_can_switch_a_provider_at_the_gateway(
        self, database_url: str, redis_url: str, tmp_path: Path
    ) -> None:
        from tests.gateway.conftest import client_for, log_gateway_settings, running

        ctx = await seed(database_url, state_dir=tmp_path)
        settings = log_gateway_settings(database_url, redis_url)
        headers = {"Authorization": f"Bearer {ctx.tokens['gateway']}"}
        async with running(settings) as app, client_for(app) as gw:
            off = await gw.put(
                "/v1/providers/log/switch",
                json={"enabled": False, "reason": "seed test"},
                headers=headers,
            )
            history = await gw.get("/v1/providers/log/switch/history", headers=headers)
            on = await gw.put("/v1/providers/log/switch", json={"enabled": True}, headers=headers)
        assert (off.status_code, history.status_code, on.status_code) == (200, 200, 200)
        assert off.json()["enabled"] is False

    async def test_a_given_token_registered_with_fewer_scopes_gets_them(
        self, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """docker compose shares the token through .env: a deployment seeded by an earlier
        release registered it without ``admin``; seeding again brings its scopes up to date."""
        from gateway.models import ApiToken
        from notifier_common.auth import TokenRepository, hash_token
        from notifier_common.db import create_engine, create_sessionmaker, session_scope

        engine = create_engine(database_url, pool_size=1)
        try:
            async with session_scope(create_sessionmaker(engine)) as session:
                session.add(
                    ApiToken(
                        name="notifier",
                        token_hash=hash_token("ntf_given-earlier"),
                        scopes=["messages:read", "messages:write"],
                    )
                )
            monkeypatch.setenv("NOTIFIER_GATEWAY_TOKEN", "ntf_given-earlier")
            await seed(database_url, state_dir=tmp_path)
            async with create_sessionmaker(engine)() as session:
                row = await TokenRepository(ApiToken).find_active(session, "ntf_given-earlier")
        finally:
            await engine.dispose()
        assert row is not None
        assert sorted(row.scopes) == sorted(GATEWAY_SCOPES)
        assert "admin" in row.scopes
