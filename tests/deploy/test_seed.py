"""deploy/seed.py: idempotent demo configuration for ``make run`` and docker compose."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from notifier.cli import SCOPES

from deploy.seed import seed


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
        assert sorted(row.scopes) == ["messages:read", "messages:write"]
        assert len(rows) == 1  # registered once
