"""A database restart while a provider is sending loses no result (decision 0089): the results
are written on a fresh connection, found at checkout without a ping, and the message is stored
``accepted`` (not left ``in_progress`` until its lease runs out, then sent again)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from gateway.models import MessageRecord
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.gateway.conftest import email

RESTART = "tests.gateway.fakes:ServerRestartProvider"


@pytest.fixture
def gateway_settings(make_settings: Any, database_url: str) -> Any:
    return make_settings(
        providers={"restart": {"kind": RESTART, "database_url": database_url}},
        default_provider="restart",
    )


async def test_results_survive_a_database_restart_during_the_provider_call(
    client: httpx.AsyncClient,
    writer: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    app: Any,
) -> None:
    r = await client.post(
        "/v1/messages", json=email(), headers={**writer, "Idempotency-Key": "restart-1"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "accepted"
    provider = app.state.registry.get("restart").provider
    assert provider.terminated >= 1  # the claim's connection was among them

    async with sessionmaker() as s:
        row = (
            await s.execute(
                select(MessageRecord).where(MessageRecord.idempotency_key == "restart-1")
            )
        ).scalar_one()
    assert row.status == "accepted"
    assert row.claim_token is None
