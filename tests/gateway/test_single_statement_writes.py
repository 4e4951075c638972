"""Writes that are one statement run without a transaction block around them (decision 0088):
the results of a dispatch and the ``log`` provider's record: two statements of such a session
are two transactions (two transaction ids), not one."""

from __future__ import annotations

from typing import cast

import httpx
from fastapi import FastAPI
from gateway.messages.service import MessageService
from gateway.providers.log import LogProvider
from notifier_common.db import session_scope
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.gateway.conftest import email
from tests.statements import round_trips

TXID = text("SELECT txid_current()")


async def runs_alone(factory: async_sessionmaker[AsyncSession]) -> bool:
    async with session_scope(factory) as session:
        return await session.scalar(TXID) != await session.scalar(TXID)


async def test_results_are_stored_by_a_statement_that_is_its_own_transaction(
    app: FastAPI,
) -> None:
    service = cast(MessageService, app.state.message_service)
    assert await runs_alone(service.single_statement)
    assert not await runs_alone(service.sessionmaker)  # the claim stays one transaction


async def test_log_provider_records_without_a_transaction_block(app: FastAPI) -> None:
    entry = app.state.registry.get("log")
    provider = cast(LogProvider, entry.provider)
    assert provider._sessionmaker is not None
    assert await runs_alone(provider._sessionmaker)


async def test_a_message_is_five_round_trips_on_the_gateway_pool(
    app: FastAPI, client: httpx.AsyncClient, writer: dict[str, str]
) -> None:
    """The round trips of a send (decisions 0088, 0089, 0107), seen by asyncpg itself (the hot
    statements run on its connection, not through SQLAlchemy's execute): the claim and one
    screening read (the provider switches and the suppressions together) in one transaction,
    then the results on their own; no pre-ping, nothing else."""
    await client.post("/v1/messages", json=email(), headers={**writer, "Idempotency-Key": "warm"})
    # the token's lookup is cached now
    async with round_trips(app.state.engine) as statements:
        r = await client.post(
            "/v1/messages",
            json=email(),
            headers={**writer, "Idempotency-Key": "five-round-trips"},
        )
    assert r.json()["outcome"] == "accepted"
    assert [s.split()[0] for s in statements] == ["BEGIN", "INSERT", "SELECT", "COMMIT;", "UPDATE"]
    assert statements[1].startswith("INSERT INTO gateway.messages")
    assert statements[2].startswith("SELECT true AS switch")
    assert statements[4].startswith("UPDATE gateway.messages")
